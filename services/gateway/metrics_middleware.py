"""The gateway's metrics: requests by route and status, and how long they took.

The route label is the route's template (`/v1/videos/{video_id}`), never the raw path, and
requests no route matched share one label, so ids and junk paths cannot grow the series.
Outermost middleware: the status is the one the client got, after errors became OpenAI bodies.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from servicekit.metrics import get_meter

from services.gateway.http_errors import Handler

SERVICE = "gateway"
UNMATCHED_ROUTE = "unmatched"
# A client that hung up before the answer (nginx's convention).
CLIENT_CLOSED = 499
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

_meter = get_meter("vidflow.gateway")
_requests = _meter.create_counter(
    "vidflow_gateway_requests", unit="1", description="HTTP requests by method, route and status"
)
_duration = _meter.create_histogram(
    "vidflow_gateway_request_duration_seconds",
    unit="s",
    description="Time to answer an HTTP request, by method and route",
    explicit_bucket_boundaries_advisory=_BUCKETS,
)


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.monotonic()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = CLIENT_CLOSED
        raise
    finally:
        labels = {"service": SERVICE, "method": _method(request), "route": route_label(request)}
        _requests.add(1, {**labels, "status": str(status)})
        _duration.record(time.monotonic() - started, labels)


def route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


def _method(request: web.Request) -> str:
    return request.method if request.method in _METHODS else "OTHER"
