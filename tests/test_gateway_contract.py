"""The gateway's HTTP contract: OpenAI-style errors for every bad request, tenancy, paging, idempotency.

Raw HTTP through aiohttp, so the tests control exactly what goes on the wire; the openai SDK where
a client would naturally use it. Every error must be `{"error": {message, type, param, code}}` with
the right status, never a 500.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import openai
import pytest

from tests.helpers import balance, credit, eventually, new_user

pytestmark = pytest.mark.e2e

ERROR_KEYS = {"message", "type", "param", "code"}
VIDEO_KEYS = {
    "id",
    "object",
    "model",
    "status",
    "progress",
    "created_at",
    "completed_at",
    "expires_at",
    "prompt",
    "size",
    "seconds",
    "remixed_from_video_id",
    "error",
}
CHEAP = {"model": "sora-2", "seconds": "4", "size": "720x1280"}


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
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


@pytest.fixture(scope="module")
async def funded(stack) -> str:
    """user_alice with enough credits for every video this module creates."""
    await credit(stack.billing_address, "user_alice", 100_000, request_id=f"contract-{uuid.uuid4()}")
    return "user_alice"


async def call(
    http: aiohttp.ClientSession,
    stack,
    method: str,
    path: str,
    *,
    user: str | None = "user_alice",
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> Answer:
    sent = {"Authorization": f"Bearer {stack.key(user)}"} if user else {}
    sent.update(headers or {})
    async with http.request(method, f"{stack.gateway_url}{path}", headers=sent, **kwargs) as response:
        answer = Answer(response.status, response.headers, await response.text())
    assert "X-Request-Id" in answer.headers, (method, path, answer.status)
    return answer


def assert_error(answer: Answer, status: int, *, param: str | None = None) -> dict[str, Any]:
    assert answer.status == status, answer.text
    body = answer.json
    assert set(body) == {"error"}, body
    error = body["error"]
    assert ERROR_KEYS <= set(error), error
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in answer.text
    if param is not None:
        assert error["param"] == param, error
    return error


def assert_video(body: dict[str, Any], **expected: Any) -> None:
    assert VIDEO_KEYS <= set(body), VIDEO_KEYS - set(body)
    assert body["object"] == "video"
    assert isinstance(body["seconds"], str)
    assert body["status"] in ("queued", "in_progress", "completed", "failed")
    assert isinstance(body["progress"], int) and isinstance(body["created_at"], int)
    for key, value in expected.items():
        assert body[key] == value, (key, body)


async def create(http, stack, user: str = "user_alice", **fields: Any) -> dict[str, Any]:
    answer = await call(http, stack, "POST", "/v1/videos", user=user, json={**CHEAP, **fields})
    assert answer.status == 200, answer.text
    return answer.json


def sdk(stack, user_id: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.gateway_url}/v1", api_key=stack.key(user_id), max_retries=0)


# First in the module, so its job is at the front of the worker's queue.
async def test_poll_after_header_is_sent_while_in_flight_and_not_once_completed(http, stack, funded):
    answer = await call(http, stack, "POST", "/v1/videos", json={**CHEAP, "prompt": "A kite over a beach"})
    assert answer.status == 200, answer.text
    assert answer.json["status"] in ("queued", "in_progress")
    assert int(answer.headers["openai-poll-after-ms"]) > 0
    video_id = answer.json["id"]

    async def completed() -> Answer | None:
        got = await call(http, stack, "GET", f"/v1/videos/{video_id}")
        assert got.json["status"] != "failed", got.text
        return got if got.json["status"] == "completed" else None

    done = await eventually(completed, deadline_seconds=30)
    assert "openai-poll-after-ms" not in done.headers
    assert_video(done.json, id=video_id, progress=100)


async def test_health_and_readiness_need_no_key(http, stack):
    for path in ("/healthz", "/readyz"):
        answer = await call(http, stack, "GET", path, user=None)
        assert answer.status == 200, answer.text


# --- create: what is accepted ---------------------------------------------------------------------


async def test_create_by_json_returns_a_video_resource(http, stack, funded):
    answer = await call(
        http, stack, "POST", "/v1/videos", json={**CHEAP, "prompt": "A red fox in snow", "seconds": "8"}
    )
    assert answer.status == 200, answer.text
    assert_video(answer.json, model="sora-2", prompt="A red fox in snow", seconds="8", size="720x1280")
    assert answer.json["id"]


async def test_create_by_multipart_returns_a_video_resource(http, stack, funded):
    form = aiohttp.FormData(default_to_multipart=True)
    for name, value in {**CHEAP, "prompt": "A tram at dusk", "size": "1280x720"}.items():
        form.add_field(name, value)
    answer = await call(http, stack, "POST", "/v1/videos", data=form)
    assert answer.status == 200, answer.text
    assert_video(answer.json, model="sora-2", prompt="A tram at dusk", seconds="4", size="1280x720")


async def test_create_with_the_sdk_parses_as_a_video(stack, funded):
    video = await asyncio.to_thread(
        sdk(stack, "user_alice").videos.create, model="sora-2", prompt="Rain on a window", seconds="4"
    )
    assert video.object == "video" and video.seconds == "4" and video.status in ("queued", "in_progress")


async def test_a_prompt_of_exactly_the_maximum_length_is_accepted(http, stack, funded):
    answer = await call(http, stack, "POST", "/v1/videos", json={**CHEAP, "prompt": "a" * 32_000})
    assert answer.status == 200, answer.text[:300]


async def test_full_hd_on_sora_2_pro_needs_funds_and_is_refused_on_sora_2(http, stack, funded):
    pro_full_hd = {"model": "sora-2-pro", "size": "1920x1080", "seconds": "4", "prompt": "A city at night"}
    answer = await call(http, stack, "POST", "/v1/videos", json=pro_full_hd)
    assert answer.status == 200, answer.text
    assert_video(answer.json, model="sora-2-pro", size="1920x1080")

    broke = await call(http, stack, "POST", "/v1/videos", user="user_broke", json=pro_full_hd)
    assert assert_error(broke, 402)["code"] == "insufficient_quota"

    plain = await call(http, stack, "POST", "/v1/videos", json={**pro_full_hd, "model": "sora-2"})
    assert_error(plain, 400, param="size")


# --- create: what is refused ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": "sora-9"}, "model"),
        ({"seconds": "5"}, "seconds"),
        ({"seconds": "abc"}, "seconds"),
        ({"seconds": 0}, "seconds"),
        ({"seconds": -4}, "seconds"),
        ({"seconds": True}, "seconds"),
        ({"seconds": 4.5}, "seconds"),
        ({"seconds": "²"}, "seconds"),
        ({"seconds": "9" * 5000}, "seconds"),
        ({"size": "640x480"}, "size"),
        ({"size": "1920x1080"}, "size"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   \n\t "}, "prompt"),
        ({"prompt": "a" * 32_001}, "prompt"),
        ({"prompt": "nul \x00 byte"}, "prompt"),
        ({"prompt": ["a list"]}, "prompt"),
        ({"model": 7}, "model"),
    ],
)
async def test_invalid_create_fields_are_400_naming_the_field(http, stack, fields, param):
    body = {**CHEAP, "prompt": "A valid prompt", **fields}
    answer = await call(http, stack, "POST", "/v1/videos", json=body)
    assert_error(answer, 400, param=param)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'["a", "list"]', "application/json"),
        (b'"just a string"', "application/json"),
        (b"null", "application/json"),
        (b'{"prompt": "unterminated', "application/json"),
        (b"", "application/json"),
        (b"\xff\xfe{}", "application/json"),
        (b"[" * 100_000, "application/json"),
        (b'{"prompt": "x"}', "application/json; charset=no-such-charset"),
        (b'{"prompt": "lone surrogate \\ud800"}', "application/json"),
        (b"prompt=hello", "text/plain"),
        (b"prompt=hello", "application/x-www-form-urlencoded"),
    ],
    ids=[
        "array",
        "string",
        "null",
        "malformed",
        "empty",
        "not-utf8",
        "deeply-nested",
        "unknown-charset",
        "lone-surrogate",
        "text-plain",
        "urlencoded",
    ],
)
async def test_unreadable_bodies_are_400(http, stack, body, content_type):
    answer = await call(http, stack, "POST", "/v1/videos", data=body, headers={"Content-Type": content_type})
    assert_error(answer, 400)


def _part(name: str, value: bytes) -> bytes:
    return b'--B\r\nContent-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n' + value + b"\r\n"


@pytest.mark.filterwarnings("ignore::aiohttp.BadContentDispositionHeader")
@pytest.mark.parametrize(
    ("body", "content_type", "param"),
    [
        (_part("prompt", b"a cat") + b"--B--\r\n", "multipart/form-data; boundary=OTHER", None),
        (_part("prompt", b"a cat") + b"--B--\r\n", "multipart/form-data", None),
        (_part("model", b"sora-2") + b'--B\r\nContent-Disposition: form-data; name="pro', None, None),
        (_part("model", b"sora-2") + _part("prompt", b"a cat")[:-12], None, None),
        (b"--B\r\n" + b"X-Filler: 1\r\n" * 200 + b"\r\nvalue\r\n--B--\r\n", None, None),
        (_part("prompt", b"\xff\xfe\x00binary\x80") + b"--B--\r\n", None, "prompt"),
    ],
    ids=["wrong-boundary", "no-boundary", "truncated-headers", "truncated-body", "many-headers", "binary"],
)
async def test_malformed_multipart_is_400(http, stack, body, content_type, param):
    headers = {"Content-Type": content_type or "multipart/form-data; boundary=B"}
    answer = await call(http, stack, "POST", "/v1/videos", data=body, headers=headers)
    assert_error(answer, 400, param=param)


# --- list and content parameters ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("limit=1000", "limit"),
        ("limit=abc", "limit"),
        ("limit=-1", "limit"),
        ("limit=²", "limit"),
        ("limit=" + "9" * 5000, "limit"),
        ("order=sideways", "order"),
    ],
    ids=["1000", "abc", "negative", "superscript", "huge", "order"],
)
async def test_bad_list_parameters_are_400(http, stack, query, param):
    answer = await call(http, stack, "GET", f"/v1/videos?{query}")
    assert_error(answer, 400, param=param)


async def test_an_unknown_content_variant_is_400(http, stack, funded):
    video = await create(http, stack, prompt="A variant check")
    answer = await call(http, stack, "GET", f"/v1/videos/{video['id']}/content?variant=bogus")
    assert_error(answer, 400, param="variant")


# --- authentication -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearer vf_wrong_key", "Bearer " + "k" * 10_240],
    ids=["missing", "basic", "bearer-only", "empty-bearer", "wrong-key", "10kb-key"],
)
async def test_bad_credentials_are_401_without_echoing_the_key(http, stack, authorization):
    headers = {"Authorization": authorization} if authorization is not None else {}
    for method, path in (("GET", "/v1/videos"), ("POST", "/v1/videos"), ("GET", "/v1/videos/video_x")):
        answer = await call(http, stack, method, path, user=None, headers=headers, json=CHEAP)
        assert_error(answer, 401)
        if authorization:
            _, _, secret = authorization.partition(" ")
            assert not secret or secret not in answer.text


# --- not found and tenancy ------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", "/content"])
@pytest.mark.parametrize("video_id", ["video_does_not_exist", "v" * 500], ids=["unknown", "500-chars"])
async def test_unknown_ids_are_404(http, stack, video_id, suffix):
    answer = await call(http, stack, "GET", f"/v1/videos/{video_id}{suffix}")
    assert_error(answer, 404, param="video_id")


async def test_unknown_routes_under_v1_are_404(http, stack):
    for method, path in (("GET", "/v1/nothing-here"), ("POST", "/v1/videos/x/y/z"), ("GET", "/v1/")):
        assert_error(await call(http, stack, method, path), 404)


async def test_another_users_video_is_indistinguishable_from_a_missing_one(http, stack, funded):
    video = await create(http, stack, prompt="Alice's private garden")
    missing_id = f"video_{uuid.uuid4().hex}"
    for suffix in ("", "/content"):
        foreign = await call(http, stack, "GET", f"/v1/videos/{video['id']}{suffix}", user="user_bob")
        missing = await call(http, stack, "GET", f"/v1/videos/{missing_id}{suffix}", user="user_bob")
        assert foreign.status == missing.status == 404
        assert set(foreign.headers) - {"Date"} == set(missing.headers) - {"Date"}
        assert json.loads(foreign.text.replace(video["id"], "ID")) == json.loads(
            missing.text.replace(missing_id, "ID")
        )
        assert "Alice" not in foreign.text

    bobs_list = await call(http, stack, "GET", "/v1/videos?limit=100", user="user_bob")
    assert bobs_list.status == 200
    assert video["id"] not in {item["id"] for item in bobs_list.json["data"]}
    after_alice = await call(http, stack, "GET", f"/v1/videos?after={video['id']}", user="user_bob")
    assert after_alice.status == 200 and after_alice.json["data"] == []


# --- idempotency and paging -----------------------------------------------------------------------


async def test_the_same_idempotency_key_creates_and_charges_once(http, stack):
    user = await new_user(stack, "idem")  # no other video of this user moves its balance
    key = f"idem-{uuid.uuid4()}"
    body = {**CHEAP, "prompt": "A paper boat on a pond"}
    headers = {"Idempotency-Key": key}
    first = await call(http, stack, "POST", "/v1/videos", user=user, json=body, headers=headers)
    again = await call(http, stack, "POST", "/v1/videos", user=user, json=body, headers=headers)
    assert first.status == again.status == 200
    assert first.json["id"] == again.json["id"]
    # Held or captured, one video's worth of credits has left the available balance.
    available, _ = await balance(stack.billing_address, user)
    assert available == 1_000 - 4 * 10

    other = await call(
        http,
        stack,
        "POST",
        "/v1/videos",
        user=user,
        json=body,
        headers={"Idempotency-Key": f"idem-{uuid.uuid4()}"},
    )
    assert other.status == 200 and other.json["id"] != first.json["id"]


async def test_idempotency_keys_that_share_a_long_prefix_are_still_different_keys(http, stack, funded):
    prefix = "k" * 128 + uuid.uuid4().hex
    body = {**CHEAP, "prompt": "A long key"}
    first = await call(
        http, stack, "POST", "/v1/videos", json=body, headers={"Idempotency-Key": prefix + "1"}
    )
    second = await call(
        http, stack, "POST", "/v1/videos", json=body, headers={"Idempotency-Key": prefix + "2"}
    )
    if first.status == 200:
        assert second.status == 200 and second.json["id"] != first.json["id"]
    else:
        assert_error(first, 400, param="Idempotency-Key")
        assert_error(second, 400, param="Idempotency-Key")


async def test_list_pages_forwards_and_backwards(http, stack):
    user = await new_user(stack, "pager")  # so the list holds exactly these three videos
    ids = [(await create(http, stack, user=user, prompt=f"Page item {n}"))["id"] for n in range(3)]

    async def page(query: str) -> dict[str, Any]:
        answer = await call(http, stack, "GET", f"/v1/videos?{query}", user=user)
        assert answer.status == 200, answer.text
        body = answer.json
        assert body["object"] == "list"
        for item in body["data"]:
            assert_video(item)
        got = [item["id"] for item in body["data"]]
        assert body["first_id"] == (got[0] if got else None)
        assert body["last_id"] == (got[-1] if got else None)
        return body

    asc = await page("order=asc&limit=2")
    assert [item["id"] for item in asc["data"]] == ids[:2] and asc["has_more"] is True
    rest = await page(f"order=asc&limit=2&after={asc['last_id']}")
    assert [item["id"] for item in rest["data"]] == ids[2:] and rest["has_more"] is False

    desc = await page("limit=2")
    assert [item["id"] for item in desc["data"]] == ids[::-1][:2] and desc["has_more"] is True
    tail = await page(f"limit=2&after={desc['last_id']}")
    assert [item["id"] for item in tail["data"]] == ids[::-1][2:] and tail["has_more"] is False

    everything = await page("order=desc")
    assert [item["id"] for item in everything["data"]] == ids[::-1]
    assert [item["id"] for item in (await page("order=asc"))["data"]] == ids


# --- transport edges ------------------------------------------------------------------------------


async def test_huge_headers_are_refused_and_the_gateway_keeps_serving(http, stack):
    async with http.get(f"{stack.gateway_url}/v1/videos", headers={"X-Huge": "h" * 100_000}) as response:
        assert 400 <= response.status < 500
    answer = await call(http, stack, "GET", "/healthz", user=None)
    assert answer.status == 200


async def test_wrong_method_is_an_openai_style_405(http, stack):
    answer = await call(http, stack, "DELETE", "/v1/videos")
    assert_error(answer, 405)
    assert "GET" in answer.headers["Allow"]


async def test_every_response_carries_a_request_id(http, stack):
    # `call` asserts the header on every answer; this checks that a client's own id comes back.
    answer = await call(http, stack, "GET", "/v1/videos", headers={"X-Request-Id": "req_from_client"})
    assert answer.headers["X-Request-Id"] == "req_from_client"
    anonymous = await call(http, stack, "GET", "/v1/videos", user=None)
    assert anonymous.headers["X-Request-Id"].startswith("req_")
