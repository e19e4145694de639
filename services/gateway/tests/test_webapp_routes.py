"""The web app's files over real HTTP: the page with its Content-Security-Policy, every module and
file it loads, revalidation, and a 404 with an OpenAI error body for any other name."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.gateway.http_errors import errors_middleware
from services.gateway.webapp_routes import WEBAPP_DIR, add_webapp_routes

_REFERENCED = re.compile(r'(?:src|href)="(app/[^"]+)"')
_IMPORTED = re.compile(r'^import .* from "\./([^"]+)";$', re.MULTILINE)
_CSS_URL = re.compile(r'url\("([^"]+)"\)')


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    app = web.Application(middlewares=[errors_middleware])
    add_webapp_routes(app)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_the_page_needs_no_key_and_allows_scripts_only_from_itself(client):
    response = await client.get("/")
    assert response.status == 200
    assert response.content_type == "text/html"
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    page = await response.text()
    # No inline script or style, which the policy would block.
    assert "<style" not in page and " style=" not in page
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", page))


async def test_every_file_the_page_loads_is_served_with_its_type(client):
    page = (WEBAPP_DIR / "index.html").read_text()
    wanted = {path.removeprefix("app/") for path in _REFERENCED.findall(page)}
    for module in WEBAPP_DIR.glob("*.js"):
        wanted |= set(_IMPORTED.findall(module.read_text()))
    wanted |= set(_CSS_URL.findall((WEBAPP_DIR / "app.css").read_text()))
    assert {"app.js", "app.css", "api.js", "live.js"} <= wanted
    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    for name in sorted(wanted):
        response = await client.get(f"/app/{name}")
        assert response.status == 200, name
        assert response.content_type == types[name[name.rindex(".") :]], name
        assert response.headers["Cache-Control"] == "no-cache"


async def test_an_unchanged_file_revalidates_with_304(client):
    first = await client.get("/app/app.js")
    etag = first.headers["ETag"]
    again = await client.get("/app/app.js", headers={"If-None-Match": etag})
    assert again.status == 304


@pytest.mark.parametrize(
    "path",
    [
        "/app/missing.js",
        "/app/index.html",  # the page is served at / only
        "/app/..%2Fwebapp_routes.py",
        "/app/%2E%2E%2F%2E%2E%2Fpyproject.toml",
    ],
)
async def test_any_other_name_is_a_404_with_an_openai_error_body(client, path):
    response = await client.get(path)
    assert response.status == 404
    body = await response.json()
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"] == "Unknown request URL."
