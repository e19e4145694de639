"""The gateway's published contract, checked against the running stack and swept route by route.

The routes come from the OpenAPI document (built from the route table), so a route added later is
swept too: another user's ids answer exactly like missing ones, admin routes refuse non-admins,
and unreadable bodies are 400s with OpenAI error bodies on every route that takes a body.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

import aiohttp
import pytest
from openapi_spec_validator import validate

from services.gateway.app import make_app
from services.gateway.config import Settings
from services.gateway.docs_routes import build_openapi
from tests.helpers import credit, eventually, loopback_urls

pytestmark = pytest.mark.e2e

# The same function the gateway serves /openapi.json from; the first test checks they agree.
DOCUMENT = build_openapi(make_app(Settings(database_url="postgresql://unused.invalid/vidflow")))
METHODS = ("get", "put", "post", "patch", "delete")
ERROR_KEYS = {"message", "type", "param", "code"}
_PARAMETER = re.compile(r"\{(\w+)\}")


def _operations(predicate: Any) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), route_path, operation)
        for route_path, item in DOCUMENT["paths"].items()
        for method, operation in item.items()
        if method in METHODS and predicate(route_path, operation)
    ]


def _is_user_route(route_path: str, operation: dict[str, Any]) -> bool:
    return route_path.startswith("/v1/") and not operation.get("x-vidflow-admin-only")


OWNED = _operations(lambda route_path, operation: _is_user_route(route_path, operation) and "{" in route_path)
ADMIN = _operations(lambda route_path, operation: bool(operation.get("x-vidflow-admin-only")))
WITH_A_BODY = _operations(lambda route_path, operation: "requestBody" in operation)


def _ids(operations: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    return [f"{method} {route_path}" for method, route_path, _ in operations]


@dataclass
class Answer:
    status: int
    headers: Any
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    stack,
    method: str,
    target: str,
    *,
    user: str | None,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> Answer:
    sent = {"Authorization": f"Bearer {stack.key(user)}"} if user else {}
    sent.update(headers or {})
    async with http.request(method, f"{stack.gateway_url}{target}", headers=sent, **kwargs) as response:
        # Media comes back too (a download), so undecodable bytes are replaced, not fatal.
        return Answer(response.status, response.headers, (await response.read()).decode(errors="replace"))


def assert_error(answer: Answer, status: int) -> dict[str, Any]:
    assert answer.status == status, answer.text[:500]
    assert answer.headers["Content-Type"].startswith("application/json")
    body = answer.json
    assert set(body) == {"error"} and ERROR_KEYS <= set(body["error"]), body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def _example(operation: dict[str, Any]) -> Any:
    """The JSON example the document gives for the body, so only the id can be at fault. Any URL in
    it (a webhook target, say) points at loopback instead."""
    content = operation.get("requestBody", {}).get("content", {})
    return loopback_urls(content.get("application/json", {}).get("example"))


def _fill(route_path: str, values: dict[str, str]) -> str:
    return _PARAMETER.sub(lambda match: values[match.group(1)], route_path)


def _same_shape_missing(real_id: str) -> str:
    """An id shaped like `real_id` (same prefix and length) that names nothing."""
    prefix, _, rest = real_id.rpartition("_")
    fresh = (uuid.uuid4().hex * 4)[: len(rest)]
    return f"{prefix}_{fresh}" if prefix else fresh


# --- the document and the docs page ---------------------------------------------------------------


async def test_the_served_document_is_the_built_one_and_valid_openapi_3_1(http, stack):
    answer = await call(http, stack, "GET", "/openapi.json", user=None)
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    served = answer.json
    validate(served)
    assert served == json.loads(json.dumps(DOCUMENT))
    assert "/v1/videos" in served["paths"] and "/openapi.json" not in served["paths"]


async def test_the_docs_page_and_everything_it_loads_come_from_the_gateway(http, stack):
    page = await call(http, stack, "GET", "/docs", user=None)
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    # Nothing from another origin, and no inline script.
    assert page.headers["Content-Security-Policy"].startswith("default-src 'self';")

    class Links(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.found: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            wanted = {"script": "src", "link": "href"}.get(tag)
            self.found += [value for name, value in attrs if name == wanted and value]

    parser = Links()
    parser.feed(page.text)
    assert len(parser.found) >= 3, parser.found
    base = f"{stack.gateway_url}/docs"
    for link in parser.found:
        url = urljoin(base, link)
        assert url.startswith(stack.gateway_url), f"{link} leaves the gateway"
        async with http.get(url) as response:
            assert response.status == 200, url
            assert len(await response.read()) > 0
    init = await call(http, stack, "GET", "/docs/init.js", user=None)
    # Swagger UI reads the document from the page's own origin.
    assert '"openapi.json"' in init.text
    bundle = await call(http, stack, "GET", "/docs/assets/swagger-ui-bundle.js", user=None)
    assert "SwaggerUIBundle" in bundle.text


# --- cross-tenant sweep ---------------------------------------------------------------------------


class AlicesIds:
    """user_alice's real ids by path parameter name. `video_id` is a completed video, so a missing
    ownership check would show (a download would answer 200). Any other kind is found in the
    collection the path hangs under (`/v1/things/{thing_id}` -> `GET /v1/things`), or made there
    with the example body the document gives for `POST /v1/things`."""

    def __init__(self, http: aiohttp.ClientSession, stack: Any, video_id: str) -> None:
        self._http, self._stack = http, stack
        self._known = {"video_id": video_id}
        self.made: list[tuple[str, str]] = []  # (route path, path) of what this made, to delete later

    async def get(self, name: str, route_path: str) -> str:
        if name not in self._known:
            self._known[name] = await self._find_or_make(name, route_path)
        return self._known[name]

    async def all(self, route_path: str) -> dict[str, str]:
        return {name: await self.get(name, route_path) for name in _PARAMETER.findall(route_path)}

    async def _find_or_make(self, name: str, route_path: str) -> str:
        collection = route_path[: route_path.index("{" + name + "}")].rstrip("/")
        listed = await call(self._http, self._stack, "GET", collection, user="user_alice")
        if listed.status == 200 and listed.json.get("data"):
            return str(listed.json["data"][0]["id"])
        example = _example(DOCUMENT["paths"].get(collection, {}).get("post", {}))
        if example is not None:
            made = await call(self._http, self._stack, "POST", collection, user="user_alice", json=example)
            if made.status == 200 and "id" in made.json:
                made_id = str(made.json["id"])
                item = route_path[: route_path.index("{" + name + "}") + len(name) + 2]
                self.made.append((item, item.replace("{" + name + "}", made_id)))
                return made_id
        pytest.fail(
            f"No way to get one of user_alice's {name} for {route_path}: GET {collection} lists none "
            f"and POST {collection} has no JSON example that makes one. Document an example, or teach "
            "AlicesIds in tests/test_openapi.py to make one."
        )


@pytest.fixture(scope="module")
async def alices_ids(http, stack) -> AsyncIterator[AlicesIds]:
    await credit(stack.billing_address, "user_alice", 1_000, request_id=f"openapi-{uuid.uuid4()}")
    created = await call(
        http,
        stack,
        "POST",
        "/v1/videos",
        user="user_alice",
        json={"model": "sora-2", "seconds": "4", "prompt": "A lighthouse in the fog"},
    )
    assert created.status == 200, created.text
    video_id = created.json["id"]

    async def completed() -> bool | None:
        got = await call(http, stack, "GET", f"/v1/videos/{video_id}", user="user_alice")
        assert got.json["status"] != "failed", got.text
        return True if got.json["status"] == "completed" else None

    await eventually(completed, deadline_seconds=60)
    ids = AlicesIds(http, stack, video_id)
    yield ids
    # What the sweep made for alice (a webhook endpoint, say) would outlive this module otherwise.
    for item, made in ids.made:
        if "delete" in DOCUMENT["paths"].get(item, {}):
            deleted = await call(http, stack, "DELETE", made, user="user_alice")
            assert deleted.status < 300, deleted.text


@pytest.mark.parametrize(("method", "route_path", "operation"), OWNED, ids=_ids(OWNED))
async def test_another_users_ids_answer_exactly_like_missing_ones(
    http, stack, alices_ids, method, route_path, operation
):
    names = _PARAMETER.findall(route_path)
    real_ids = await alices_ids.all(route_path)
    missing_ids = {name: _same_shape_missing(real_ids[name]) for name in names}
    body = _example(operation)
    kwargs: dict[str, Any] = {"json": body} if body is not None else {}
    before = await _alices_view(http, stack, route_path, real_ids)
    foreign = await call(http, stack, method, _fill(route_path, real_ids), user="user_bob", **kwargs)
    missing = await call(http, stack, method, _fill(route_path, missing_ids), user="user_bob", **kwargs)
    assert_error(foreign, 404)
    assert_error(missing, 404)

    def anonymised(answer: Answer, ids: dict[str, str]) -> Any:
        text = answer.text
        for name in names:
            text = text.replace(ids[name], f"<{name}>")
        return json.loads(text)

    assert anonymised(foreign, real_ids) == anonymised(missing, missing_ids)
    assert set(foreign.headers) - {"Date"} == set(missing.headers) - {"Date"}
    assert "user_alice" not in foreign.text
    # Bob's DELETE, cancel or retry did nothing: alice still sees what she saw.
    assert await _alices_view(http, stack, route_path, real_ids) == before


async def _alices_view(http, stack, route_path: str, ids: dict[str, str]) -> list[tuple[int, Any]]:
    """Status and lifecycle status of each resource the path names, as alice retrieves it."""
    view = []
    for name in _PARAMETER.findall(route_path):
        item = route_path[: route_path.index("{" + name + "}") + len(name) + 2]
        if "get" in DOCUMENT["paths"].get(item, {}):
            answer = await call(http, stack, "GET", _fill(item, ids), user="user_alice")
            assert answer.status == 200, answer.text[:300]
            view.append((answer.status, answer.json.get("status"), answer.json.get("revoked_at")))
    return view


# Ids no resource can have: control characters PostgreSQL text refuses, bytes that are not UTF-8,
# and ids too long to be ours. Each must answer like any other missing id, not 500.
IMPOSSIBLE_IDS = {
    "nul": "bad%00id",
    "not-utf8": "%FF%FE",
    "surrogate": "%ED%A0%80",
    "newline": "a%0Ab",
    "too-long": "v" * 300,
}


@pytest.mark.parametrize("kind", list(IMPOSSIBLE_IDS))
@pytest.mark.parametrize(("method", "route_path", "operation"), OWNED, ids=_ids(OWNED))
async def test_ids_nothing_can_have_answer_404(http, stack, method, route_path, operation, kind):
    target = _fill(route_path, {name: IMPOSSIBLE_IDS[kind] for name in _PARAMETER.findall(route_path)})
    body = _example(operation)
    answer = await call(
        http, stack, method, target, user="user_bob", **({"json": body} if body is not None else {})
    )
    assert_error(answer, 404)


ADMIN_WITH_IDS = [
    (method, route_path, operation) for method, route_path, operation in ADMIN if "{" in route_path
]


@pytest.mark.parametrize(("method", "route_path", "operation"), ADMIN_WITH_IDS, ids=_ids(ADMIN_WITH_IDS))
async def test_admin_routes_answer_unprintable_ids_with_4xx(http, stack, method, route_path, operation):
    # Admins may name any account, so only ids that cannot be stored at all are refused.
    for impossible in (IMPOSSIBLE_IDS["nul"], IMPOSSIBLE_IDS["newline"], IMPOSSIBLE_IDS["too-long"]):
        target = _fill(route_path, {name: impossible for name in _PARAMETER.findall(route_path)})
        body = _example(operation)
        answer = await call(
            http,
            stack,
            method,
            target,
            user="user_admin",
            headers={"Idempotency-Key": f"openapi-{uuid.uuid4()}"},
            **({"json": body} if body is not None else {}),
        )
        assert answer.status in (400, 404), (impossible, answer.text[:300])
        assert_error(answer, answer.status)


@pytest.mark.parametrize(
    "target", ["/v1/videos?after=a%00b", "/v1/videos?after=a%0Ab", "/v1/billing/ledger?after=a%00b"]
)
async def test_cursors_nothing_can_have_are_refused_not_500(http, stack, target):
    answer = await call(http, stack, "GET", target, user="user_bob")
    assert_error(answer, 400)


@pytest.mark.parametrize(("method", "route_path", "operation"), ADMIN, ids=_ids(ADMIN))
async def test_admin_routes_refuse_other_users(http, stack, method, route_path, operation):
    target = _fill(route_path, {name: "user_alice" for name in _PARAMETER.findall(route_path)})
    body = _example(operation)
    answer = await call(
        http,
        stack,
        method,
        target,
        user="user_bob",
        headers={"Idempotency-Key": f"openapi-{uuid.uuid4()}"},
        **({"json": body} if body is not None else {}),
    )
    assert assert_error(answer, 403)["type"] == "permission_error"


# --- unreadable bodies on every route that takes one ----------------------------------------------

# Not an empty body: routes whose fields are all optional read it as {} (the create route's own
# test covers it).
UNREADABLE_JSON = {
    "not-json": (b'{"prompt": "unterminated', "application/json"),
    "array": (b"[1, 2]", "application/json"),
    "null": (b"null", "application/json"),
    "not-utf8": (b"\xff\xfe{}", "application/json"),
    "deeply-nested": (b"[" * 50_000, "application/json"),  # under the webhook route's 64 KiB
    "unknown-charset": (b"{}", "application/json; charset=no-such-charset"),
}


def _part(name: str, value: bytes) -> bytes:
    return b'--B\r\nContent-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n' + value + b"\r\n"


MALFORMED_MULTIPART = {
    "wrong-boundary": (_part("prompt", b"a cat") + b"--B--\r\n", "multipart/form-data; boundary=OTHER"),
    "no-boundary": (_part("prompt", b"a cat") + b"--B--\r\n", "multipart/form-data"),
    "truncated": (_part("model", b"sora-2") + b'--B\r\nContent-Disposition: form-data; name="pro', None),
    "binary-text": (_part("prompt", b"\xff\xfe\x00binary\x80") + b"--B--\r\n", None),
}
BODY_CASES = [
    pytest.param(method, route_path, operation, body, content_type, id=f"{method} {route_path} {label}")
    for method, route_path, operation in WITH_A_BODY
    for label, (body, content_type) in [
        *UNREADABLE_JSON.items(),
        *(
            MALFORMED_MULTIPART.items()
            if "multipart/form-data" in operation["requestBody"]["content"]
            else []
        ),
    ]
]
# Path parameters a route with a body may have: real ids, so the body is what is at fault.
_BODY_ROUTE_VALUES = {"account_id": "user_alice", "deployment": "default"}


@pytest.mark.filterwarnings("ignore::aiohttp.BadContentDispositionHeader")
@pytest.mark.parametrize(("method", "route_path", "operation", "body", "content_type"), BODY_CASES)
async def test_unreadable_bodies_are_400_on_every_route_that_takes_one(
    http, stack, alices_ids, method, route_path, operation, body, content_type
):
    if operation.get("security") == []:
        user = None
    else:
        user = "user_admin" if operation.get("x-vidflow-admin-only") else "user_alice"
    names = _PARAMETER.findall(route_path)
    user_route = _is_user_route(route_path, operation)
    values = await alices_ids.all(route_path) if user_route else {}
    values.update({name: value for name, value in _BODY_ROUTE_VALUES.items() if name in names})
    known = all(name in values for name in names)
    target = _fill(route_path, {name: values.get(name, "unknown") for name in names})
    headers = {
        "Content-Type": content_type or "multipart/form-data; boundary=B",
        "Idempotency-Key": f"openapi-{uuid.uuid4()}",
    }
    answer = await call(http, stack, method, target, user=user, headers=headers, data=body)
    if known:
        assert_error(answer, 400)
    else:  # an id of a kind this test cannot make: the route may look it up first
        assert answer.status in (400, 404), answer.text[:300]
        assert_error(answer, answer.status)


async def test_a_signed_route_still_needs_no_api_key_but_a_signature(http, stack):
    answer = await call(
        http, stack, "POST", "/webhooks/providers/default", user=None, json={"type": "video.completed"}
    )
    assert assert_error(answer, 400)["code"] == "invalid_signature"


async def test_the_budget_route_refuses_bad_json_for_a_well_formed_key_id(http, stack):
    # The sweep above cannot make a key id; the budget route checks only the id's shape first.
    answer = await call(
        http,
        stack,
        "PUT",
        "/v1/admin/api_keys/key_0123456789abcdef/budget",
        user="user_admin",
        data=b"[",
        headers={"Content-Type": "application/json"},
    )
    assert_error(answer, 400)
