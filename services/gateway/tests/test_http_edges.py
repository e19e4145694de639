"""What every route shares, through a real gateway server: 413 for oversized bodies (declared or
chunked, JSON or multipart), CORS, malformed and huge Authorization headers, and an X-Request-Id
on every answer, including those given before any handler runs."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from services.gateway.cors import CorsSettings
from services.gateway.tests.running_gateway import Tenant, migrated, new_tenant, running_gateway, settings_for

pytestmark = pytest.mark.integration
MAX_BODY = 4096
ORIGIN = "https://app.example"


@pytest.fixture
async def database(fresh_database_url: str) -> str:
    return await migrated(fresh_database_url)


@pytest.fixture
async def gateway(database: str) -> AsyncIterator[str]:
    settings = settings_for(database, max_body_bytes=MAX_BODY, cors=CorsSettings(origins=(ORIGIN,)))
    async with running_gateway(settings) as url:
        yield url


@pytest.fixture
async def alice(database: str) -> Tenant:
    return await new_tenant(database)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


def error_of(status: int, text: str, headers: Any, expected: int) -> dict[str, Any]:
    assert status == expected, text
    assert headers["X-Request-Id"].startswith("req_")
    body = json.loads(text)
    assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"])
    return body["error"]


async def send(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> tuple[int, str, Any]:
    async with http.request(method, url, **kwargs) as response:
        return response.status, await response.text(), response.headers


async def chunked(data: bytes) -> AsyncIterator[bytes]:
    """A body without Content-Length: aiohttp sends an async generator chunked."""
    for start in range(0, len(data), 1000):
        yield data[start : start + 1000]


def multipart(size: int) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("model", "sora-2")
    form.add_field("input_reference", b"\xff" * size, filename="big.png", content_type="image/png")
    return form


# --- body limits ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/videos", "/v1/api_keys", "/v1/billing/quote", "/v1/admin/users"])
async def test_a_declared_oversized_body_is_413_before_authentication(http, gateway, path):
    # No API key at all: the size is refused first, and no byte of the body needs reading.
    for kwargs in (
        {"json": {"prompt": "x" * MAX_BODY}},
        {"data": multipart(MAX_BODY)},
    ):
        status, text, headers = await send(http, "POST", f"{gateway}{path}", **kwargs)
        error = error_of(status, text, headers, 413)
        assert error["code"] == "request_too_large" and error["type"] == "invalid_request_error"


async def test_a_chunked_oversized_json_body_is_413(http, gateway, alice):
    body = json.dumps({"name": "x" * MAX_BODY}).encode()
    status, text, headers = await send(
        http,
        "POST",
        f"{gateway}/v1/api_keys",
        data=chunked(body),
        headers={**alice.auth, "Content-Type": "application/json"},
    )
    assert error_of(status, text, headers, 413)["code"] == "request_too_large"


async def test_a_multipart_body_without_a_length_is_411(http, gateway, alice):
    # Its parts are read one by one with per-part caps, so only a declared length bounds the total.
    boundary = "vidflow-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nsora-2\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="input_reference"; filename="big.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + b"\xff" * (2 * MAX_BODY)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, text, headers = await send(
        http,
        "POST",
        f"{gateway}/v1/videos",
        data=chunked(body),
        headers={**alice.auth, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert error_of(status, text, headers, 411)["code"] == "length_required"


async def test_bodies_within_the_limit_pass(http, gateway, alice):
    status, text, _ = await send(
        http, "POST", f"{gateway}/v1/api_keys", json={"name": "n"}, headers=alice.auth
    )
    assert status == 200, text
    body = json.dumps({"name": "chunked"}).encode()
    status, text, _ = await send(
        http,
        "POST",
        f"{gateway}/v1/api_keys",
        data=chunked(body),
        headers={**alice.auth, "Content-Type": "application/json"},
    )
    assert status == 200 and json.loads(text)["name"] == "chunked"


# --- authorization headers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer vf_abc def",
        "Bearer \t",
        "bearer",
        "Token vf_abc",
        "Bearer vf_" + "k" * 300,
        "Bearer a.b.c",
    ],
)
async def test_malformed_authorization_headers_are_401(http, gateway, authorization):
    status, text, headers = await send(
        http, "GET", f"{gateway}/v1/api_keys", headers={"Authorization": authorization}
    )
    error = error_of(status, text, headers, 401)
    assert error["code"] in ("missing_api_key", "invalid_api_key")
    _, _, secret = authorization.partition(" ")
    assert not secret.strip() or secret.strip() not in text


async def test_authorization_bytes_that_are_not_utf8_are_401_not_500(gateway):
    host, port = gateway.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"GET /v1/api_keys HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer vf_\xff\xfe\xc3\x28\r\nConnection: close\r\n\r\n"
    )
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b"X-Request-Id: req_" in head
    assert json.loads(body)["error"]["code"] == "invalid_api_key"


async def test_a_huge_authorization_header_is_a_clean_400_that_neither_echoes_nor_logs_it(
    http, gateway, caplog
):
    secret = "vf_SECRET" + "s" * 100_000
    with caplog.at_level(logging.DEBUG):
        status, text, headers = await send(
            http, "GET", f"{gateway}/v1/api_keys", headers={"Authorization": f"Bearer {secret}"}
        )
    error = error_of(status, text, headers, 400)
    assert error["code"] == "invalid_http_request"
    assert "SECRET" not in text
    assert not [
        record
        for record in caplog.records
        if "SECRET" in record.getMessage() or "SECRET" in str(record.exc_info)
    ]
    # The gateway keeps serving.
    status, _, _ = await send(http, "GET", f"{gateway}/healthz")
    assert status == 200


async def test_a_broken_request_line_is_an_openai_style_400(gateway):
    host, port = gateway.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"400" and b"X-Request-Id: req_" in head
    assert json.loads(body)["error"]["type"] == "invalid_request_error"


# --- CORS -------------------------------------------------------------------------------------------


async def test_a_preflight_is_answered_without_a_key(http, gateway):
    status, _, headers = await send(
        http,
        "OPTIONS",
        f"{gateway}/v1/videos",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os",
        },
    )
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == ORIGIN and "Origin" in headers["Vary"]
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert headers["Access-Control-Allow-Headers"] == "authorization, content-type, x-stainless-os"
    assert int(headers["Access-Control-Max-Age"]) > 0
    assert "Access-Control-Allow-Credentials" not in headers
    assert headers["X-Request-Id"].startswith("req_")


async def test_answers_to_an_allowed_origin_expose_our_headers_errors_included(http, gateway, alice):
    status, _, headers = await send(
        http, "GET", f"{gateway}/v1/api_keys", headers={**alice.auth, "Origin": ORIGIN}
    )
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    exposed = {name.strip().lower() for name in headers["Access-Control-Expose-Headers"].split(",")}
    assert {
        "x-request-id",
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "openai-poll-after-ms",
        "retry-after",
    } <= exposed
    for kwargs in ({}, {"json": {"p": "x" * MAX_BODY}}):
        status, _, headers = await send(
            http, "POST", f"{gateway}/v1/videos", headers={"Origin": ORIGIN}, **kwargs
        )
        assert status in (401, 413) and headers["Access-Control-Allow-Origin"] == ORIGIN


async def test_other_origins_get_no_cors_headers(http, gateway, alice):
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    status, _, headers = await send(http, "OPTIONS", f"{gateway}/v1/videos", headers=preflight)
    assert status != 204 and "Access-Control-Allow-Origin" not in headers
    _, _, headers = await send(
        http, "GET", f"{gateway}/v1/api_keys", headers={**alice.auth, "Origin": "https://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in headers


async def test_cors_is_off_unless_configured(http, database, alice):
    async with running_gateway(settings_for(database)) as url:
        preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}
        _, _, headers = await send(http, "OPTIONS", f"{url}/v1/api_keys", headers=preflight)
        assert "Access-Control-Allow-Origin" not in headers
        _, _, headers = await send(
            http, "GET", f"{url}/v1/api_keys", headers={**alice.auth, "Origin": ORIGIN}
        )
        assert "Access-Control-Allow-Origin" not in headers


async def test_any_origin_is_answered_with_a_star(http, database):
    async with running_gateway(settings_for(database, cors=CorsSettings(origins=("*",)))) as url:
        preflight = {"Origin": "https://anywhere.example", "Access-Control-Request-Method": "POST"}
        status, _, headers = await send(http, "OPTIONS", f"{url}/v1/videos", headers=preflight)
        assert status == 204 and headers["Access-Control-Allow-Origin"] == "*"
        assert "Vary" not in headers or "Origin" not in headers["Vary"]


# --- request ids ------------------------------------------------------------------------------------


async def test_every_answer_carries_a_request_id(http, gateway, alice, database):
    admin = await new_tenant(database, role="admin")
    _, limited, _ = await send(
        http,
        "POST",
        f"{gateway}/v1/admin/users/{alice.user_id}/api_keys",
        json={"requests_per_minute": 1},
        headers=admin.auth,
    )
    key = {"Authorization": f"Bearer {json.loads(limited)['value']}"}
    cases = [
        ("GET", "/v1/api_keys", {}, 401),
        ("GET", "/v1/api_keys", key, 200),
        ("GET", "/v1/api_keys", key, 429),
        ("GET", "/v1/nothing", alice.auth, 404),
        ("DELETE", "/healthz", {}, 405),
        ("POST", "/v1/api_keys", {**alice.auth, "Content-Length": str(MAX_BODY + 1)}, 413),
    ]
    for method, path, headers, expected in cases:
        kwargs = {"data": b"x" * (MAX_BODY + 1)} if expected == 413 else {}
        headers = {name: value for name, value in headers.items() if name != "Content-Length"}
        status, _, answer = await send(http, method, f"{gateway}{path}", headers=headers, **kwargs)
        assert status == expected, (method, path)
        assert answer["X-Request-Id"].startswith("req_"), (method, path)
    status, _, answer = await send(http, "GET", f"{gateway}/v1/api_keys", headers=key)
    assert status == 429 and int(answer["Retry-After"]) >= 1
    # A client's own plain id comes back; one that is not plain is replaced.
    _, _, answer = await send(http, "GET", f"{gateway}/healthz", headers={"X-Request-Id": "trace-42"})
    assert answer["X-Request-Id"] == "trace-42"
    _, _, answer = await send(http, "GET", f"{gateway}/healthz", headers={"X-Request-Id": "x" * 500})
    assert answer["X-Request-Id"].startswith("req_")
