"""The gateway's request metrics over real HTTP: route templates instead of paths, one label for
unmatched paths and odd methods, and the status the client got after errors became OpenAI bodies."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import REGISTRY
from servicekit.metrics import setup_metrics

from services.gateway.http_errors import errors_middleware
from services.gateway.metrics_middleware import UNMATCHED_ROUTE, metrics_middleware


def requests(**labels: str) -> float:
    return (
        REGISTRY.get_sample_value("vidflow_gateway_requests_total", {"service": "gateway", **labels}) or 0.0
    )


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[str, str]]:
    """A gateway-shaped app under a prefix of its own, so counts from other tests never mix in."""
    setup_metrics()
    prefix = f"/t{uuid.uuid4().hex[:12]}"

    async def video(request: web.Request) -> web.Response:
        return web.json_response({"id": request.match_info["video_id"]})

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("bug")

    async def too_large(request: web.Request) -> web.Response:
        raise web.HTTPRequestEntityTooLarge(max_size=1, actual_size=2)

    app = web.Application(middlewares=[metrics_middleware, errors_middleware])
    app.router.add_get(f"{prefix}/videos/{{video_id}}", video)
    app.router.add_post(f"{prefix}/broken", broken)
    app.router.add_post(f"{prefix}/upload", too_large)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", prefix
    finally:
        await runner.cleanup()


async def test_requests_count_by_route_template_and_the_status_sent(gateway: tuple[str, str]) -> None:
    url, prefix = gateway
    unmatched_before = requests(method="OTHER", route=UNMATCHED_ROUTE, status="405")
    async with aiohttp.ClientSession() as session:
        for video_id in ("video_a", "video_b"):
            async with session.get(f"{url}{prefix}/videos/{video_id}") as response:
                assert response.status == 200
        async with session.post(f"{url}{prefix}/broken") as response:
            assert response.status == 500
        async with session.post(f"{url}{prefix}/upload") as response:
            assert response.status == 413
        async with session.request("PROPFIND", f"{url}{prefix}/videos/video_a") as response:
            assert response.status == 405

    assert requests(method="GET", route=f"{prefix}/videos/{{video_id}}", status="200") == 2
    assert requests(method="POST", route=f"{prefix}/broken", status="500") == 1
    assert requests(method="POST", route=f"{prefix}/upload", status="413") == 1
    # No route answers PROPFIND: one label for such requests, whatever their path or method.
    assert requests(method="OTHER", route=UNMATCHED_ROUTE, status="405") == unmatched_before + 1
    assert (
        REGISTRY.get_sample_value(
            "vidflow_gateway_request_duration_seconds_count",
            {"service": "gateway", "method": "GET", "route": f"{prefix}/videos/{{video_id}}"},
        )
        == 2
    )
