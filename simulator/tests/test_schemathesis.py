"""Property-based conformance: schemathesis drives a live simulator from the published OpenAPI spec.

The spec lives in shared/reference beside the repository (as in CI). Operations the simulator does
not implement are excluded: characters (`/videos/characters...`), edits and extensions. The spec
documents only 200 responses, so `status_code_conformance` would flag every deliberate 400/404;
it is left out. What is checked: no 5xx, and every response the spec documents matches its schema
(plus content-type and required-header conformance). Random ids only ever find 404s, so a second
test points `{video_id}` at a freshly created video and fuzzes everything else.

The server runs in its own thread and event loop because schemathesis calls it synchronously.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)

from simulator.app import start_server
from simulator.config import Settings

from .conftest import API_KEY, StalledRenderer

SPEC = Path(__file__).resolve().parents[3] / "shared/reference/openai-videos-openapi.yml"
NOT_IMPLEMENTED = r"^/videos/(characters|edits|extensions)"
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    content_type_conformance,
    response_headers_conformance,
]

pytestmark = pytest.mark.integration

if not SPEC.is_file():
    pytest.skip(
        f"OpenAPI spec not found at {SPEC} (CI checks out shared/ beside the repository)",
        allow_module_level=True,
    )
# Loaded eagerly: schemathesis 4.32's lazy `from_fixture` loader breaks on pytest 9 (it sets
# `node._nodeid`, which pytest 9 no longer has).
schema = schemathesis.openapi.from_path(SPEC).exclude(path_regex=NOT_IMPLEMENTED)


@pytest.fixture(scope="module")
def live_simulator() -> Iterator[str]:
    """A simulator on a real port, served from a background thread; yields its /v1 base URL."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    ports: list[int] = []

    async def serve(stop: asyncio.Event) -> None:
        # Renders never finish: the fuzzer exercises the HTTP contract, not ffmpeg.
        settings_ = Settings(host="127.0.0.1", port=0, api_key=API_KEY, generation_seconds=1.0)
        runner, port = await start_server(settings_, renderer=StalledRenderer())
        ports.append(port)
        started.set()
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(stop),), daemon=True)
    thread.start()
    assert started.wait(10), "simulator did not start"
    try:
        yield f"http://127.0.0.1:{ports[0]}/v1"
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


@schema.parametrize()
@settings(
    max_examples=30,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_simulator_conforms_to_the_openai_videos_spec(case: schemathesis.Case, live_simulator: str) -> None:
    case.call_and_validate(
        base_url=live_simulator, headers={"Authorization": f"Bearer {API_KEY}"}, checks=CHECKS, timeout=10
    )


@schema.include(path_regex=r"\{video_id\}").parametrize()
@settings(
    max_examples=30,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_operations_on_an_existing_video_conform(case: schemathesis.Case, live_simulator: str) -> None:
    auth = {"Authorization": f"Bearer {API_KEY}"}
    created = requests.post(
        f"{live_simulator}/videos", files={"prompt": (None, "fuzz")}, headers=auth, timeout=10
    )
    assert created.status_code == 200, created.text
    case.path_parameters = {**(case.path_parameters or {}), "video_id": created.json()["id"]}
    case.call_and_validate(base_url=live_simulator, headers=auth, checks=CHECKS, timeout=10)
