"""Request bodies over GATEWAY_MAX_BODY_BYTES get a 413 on every route, and bodies too slow a 408.

A declared Content-Length over the limit is refused here, before authentication and before a
byte of the body is read. Bodies without one (chunked) are counted as they are read: aiohttp's
`client_max_size` stops `read()`, `json()` and `post()` at the limit with a 413. A streamed
multipart body is not counted that way (the create-video reader takes it part by part with
per-part caps only), so multipart uploads must declare their length: 411 otherwise. Clients send
one anyway (the openai SDK, browsers' FormData, curl -F).

Bodies must also arrive in time: a client that trickles one (or declares more bytes than it sends)
would otherwise hold a connection and a handler for as long as it likes. A watchdog beside the
handler fails the body's stream with `BodyTooSlow` when no byte of it comes for `idle_seconds`, or
it is not complete `deadline_seconds` after the handler started; the client gets a 408 and the
connection is closed. Slow headers are bounded by the server's keep-alive timeout (`app.serve`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import StreamReader, web
from aiohttp.typedefs import Middleware
from servicekit.errors import ErrorKind, ServiceError, openai_error_body

from services.gateway.http_errors import Handler

REQUEST_TOO_LARGE = "request_too_large"


def too_large(max_bytes: int) -> ServiceError:
    return ServiceError(
        ErrorKind.PAYLOAD_TOO_LARGE,
        f"The request body is larger than the limit of {max_bytes} bytes.",
        code=REQUEST_TOO_LARGE,
    )


@dataclass(frozen=True)
class BodyTimeouts:
    idle_seconds: float
    deadline_seconds: float


class BodyTooSlow(TimeoutError):
    """Set on a request's body stream by the watchdog; the middleware answers it with a 408. A
    TimeoutError, so aiohttp's lingering read after the answer stops quietly and closes."""


def body_limit_middleware(max_bytes: int, timeouts: BodyTimeouts) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        length = request.content_length
        if length is not None and length > max_bytes:
            raise too_large(max_bytes)
        if length is None and request.body_exists and request.content_type.startswith("multipart/"):
            return _length_required()
        if not request.body_exists or request.content.is_eof():
            return await handler(request)  # nothing left to wait for (small bodies come whole)
        watchdog = asyncio.create_task(_watch_body(request.content, timeouts))
        try:
            return await handler(request)
        except BodyTooSlow:
            return _too_slow()
        finally:
            watchdog.cancel()

    return middleware


async def _watch_body(content: StreamReader, timeouts: BodyTimeouts) -> None:
    """Fail the body's stream once the client stops sending it or takes too long. Progress is a new
    byte arriving (our handlers read their body first thing, so the client is the one waited for)."""
    loop = asyncio.get_running_loop()
    started = last_progress = loop.time()
    seen = content.total_bytes
    interval = min(timeouts.idle_seconds, timeouts.deadline_seconds) / 4
    while not content.is_eof():
        await asyncio.sleep(interval)
        now = loop.time()
        if content.total_bytes != seen:
            seen, last_progress = content.total_bytes, now
        idle = now - last_progress > timeouts.idle_seconds
        if (idle or now - started > timeouts.deadline_seconds) and not content.is_eof():
            content.set_exception(BodyTooSlow())
            return


def _too_slow() -> web.Response:
    error = ServiceError(
        ErrorKind.INVALID_ARGUMENT,
        "The request body did not arrive in time.",
        code="request_timeout",
    )
    # 408 has no kind in the error table; like 411 below, only the gateway answers it.
    response = web.json_response(openai_error_body(error), status=408)
    response.force_close()  # the rest of the body is not worth waiting for
    return response


def _length_required() -> web.Response:
    error = ServiceError(
        ErrorKind.INVALID_ARGUMENT,
        "Send multipart uploads with a Content-Length header.",
        param="Content-Length",
        code="length_required",
    )
    # 411 is the exact answer; the table has no kind for it and nothing but the gateway needs one.
    return web.json_response(openai_error_body(error), status=411)
