"""Schemathesis against the gateway's own OpenAPI document, on the in-process stack.

Every documented operation is fuzzed with schema-valid (positive) and schema-breaking (negative)
requests, and every answer must: not be a 5xx, have a documented status code and content type,
carry the documented headers, and match the documented schema. Bounded: derandomized (a fixed
seed), a fixed number of examples per operation, no shrinking. The fuzzing user has a few hundred
credits, so the videos that valid creates start are few and short; once they are spent, creates
answer 402, which is documented too.

Hypothesis drives schemathesis synchronously, so it runs in a worker thread while the session's
event loop keeps serving the stack.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.gateway.app import make_app
from services.gateway.config import Settings
from services.gateway.docs_routes import build_openapi
from tests.helpers import eventually, loopback_urls, new_user

pytestmark = [
    pytest.mark.e2e,
    # Raised from inside schemathesis's own strategies, not ours.
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]

# The function /openapi.json is served from (tests/test_openapi.py checks they agree).
DOCUMENT = build_openapi(make_app(Settings(database_url="postgresql://unused.invalid/vidflow")))
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES_PER_OPERATION = 15
# The finished video below costs 40; the rest pays for a few short videos from valid creates.
FUZZ_CREDITS = 200


def _streams(operation: dict[str, Any]) -> bool:
    """Event streams and WebSocket upgrades stay open; request-response fuzzing does not fit them."""
    replies = operation["responses"]
    return "101" in replies or any(
        "text/event-stream" in reply.get("content", {}) for reply in replies.values()
    )


OPERATIONS = {
    f"{method.upper()} {route_path}": operation
    for route_path, item in DOCUMENT["paths"].items()
    for method, operation in item.items()
    if isinstance(operation, dict) and "responses" in operation and not _streams(operation)
}
# Path parameters that name something that exists (filled in per run); random ones only find 404s.
REAL = ("video_id", "deployment")
ON_REAL_IDS = [
    label
    for label in OPERATIONS
    if any("{" + name + "}" in label for name in REAL)
    and set(re.findall(r"\{(\w+)\}", label)) <= set(REAL)
    # DELETE is left out so the video outlives the test.
    and not label.startswith("DELETE ")
]


@dataclass(frozen=True)
class Fuzzer:
    user: str
    video_id: str  # a finished video of the user's


@pytest.fixture(scope="module")
async def fuzzer(stack) -> Fuzzer:
    """A user with a finished video, made before fuzzing spends the user's credits."""
    user = await new_user(stack, "fuzz", credits=FUZZ_CREDITS)
    headers = {"Authorization": f"Bearer {stack.key(user)}"}
    created = await asyncio.to_thread(
        requests.post,
        f"{stack.gateway_url}/v1/videos",
        json={"prompt": "A windmill at dawn", "seconds": "4"},
        headers=headers,
        timeout=20,
    )
    assert created.status_code == 200, created.text
    video_id: str = created.json()["id"]

    async def completed() -> bool | None:
        got = await asyncio.to_thread(
            requests.get, f"{stack.gateway_url}/v1/videos/{video_id}", headers=headers, timeout=20
        )
        assert got.json()["status"] != "failed", got.text
        return True if got.json()["status"] == "completed" else None

    await eventually(completed, deadline_seconds=60)
    return Fuzzer(user, video_id)


def _headers(stack, fuzzer: Fuzzer, operation: dict[str, Any]) -> dict[str, str]:
    if operation.get("security") == []:
        return {}  # signed, not keyed: the provider webhook intake
    user = "user_admin" if operation.get("x-vidflow-admin-only") else fuzzer.user
    return {"Authorization": f"Bearer {stack.key(user)}"}


def _fuzz(label: str, base_url: str, headers: dict[str, str], path_parameters: dict[str, str] | None) -> None:
    method, route_path = label.split(" ", 1)
    operation = SCHEMA[route_path][method]
    strategy = st.one_of(
        operation.as_strategy(schemathesis.GenerationMode.POSITIVE, path_parameters=path_parameters),
        operation.as_strategy(schemathesis.GenerationMode.NEGATIVE, path_parameters=path_parameters),
    )

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def conforms(case: schemathesis.Case) -> None:
        # Generated bodies can register webhook targets (any URL, with private ones allowed in the
        # test stack); deliveries must stay on this machine.
        if not isinstance(case.body, NotSet):
            case.body = loopback_urls(case.body)
        if case.query:
            case.query = loopback_urls(case.query)
        case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=30)

    conforms()


@pytest.mark.parametrize("label", list(OPERATIONS))
async def test_operation_conforms_to_the_document(stack, fuzzer, label):
    headers = _headers(stack, fuzzer, OPERATIONS[label])
    await asyncio.to_thread(_fuzz, label, stack.gateway_url, headers, None)


@pytest.mark.parametrize("label", ON_REAL_IDS)
async def test_operation_on_real_ids_conforms_to_the_document(stack, fuzzer, label):
    # A finished video of the fuzzing user's, and the webhook intake's configured deployment.
    headers = _headers(stack, fuzzer, OPERATIONS[label])
    real = {"video_id": fuzzer.video_id, "deployment": "default"}
    path_parameters = {name: value for name, value in real.items() if "{" + name + "}" in label}
    await asyncio.to_thread(_fuzz, label, stack.gateway_url, headers, path_parameters)


def test_only_streaming_operations_are_left_out_of_fuzzing():
    for route_path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            if f"{method.upper()} {route_path}" not in OPERATIONS:
                assert _streams(operation), (method, route_path)
    assert "POST /v1/videos" in OPERATIONS and "GET /v1/videos/{video_id}/content" in ON_REAL_IDS
