"""Request bodies over GATEWAY_MAX_BODY_BYTES get a 413 on every route.

A declared Content-Length over the limit is refused here, before authentication and before a
byte of the body is read. Bodies without one (chunked) are counted as they are read: aiohttp's
`client_max_size` stops `read()`, `json()` and `post()` at the limit with a 413. A streamed
multipart body is not counted that way (the create-video reader takes it part by part with
per-part caps only), so multipart uploads must declare their length: 411 otherwise. Clients send
one anyway (the openai SDK, browsers' FormData, curl -F).
"""

from __future__ import annotations

from aiohttp import web
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


def body_limit_middleware(max_bytes: int) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        length = request.content_length
        if length is not None and length > max_bytes:
            raise too_large(max_bytes)
        if length is None and request.body_exists and request.content_type.startswith("multipart/"):
            return _length_required()
        return await handler(request)

    return middleware


def _length_required() -> web.Response:
    error = ServiceError(
        ErrorKind.INVALID_ARGUMENT,
        "Send multipart uploads with a Content-Length header.",
        param="Content-Length",
        code="length_required",
    )
    # 411 is the exact answer; the table has no kind for it and nothing but the gateway needs one.
    return web.json_response(openai_error_body(error), status=411)
