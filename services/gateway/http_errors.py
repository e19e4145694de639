"""Every error leaves the gateway as an OpenAI-style body; the status comes from servicekit's table."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web
from servicekit.db import database_unavailable
from servicekit.errors import GENERIC_INTERNAL_MESSAGE, ErrorKind, ServiceError, openai_error_body

log = logging.getLogger(__name__)
REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID = web.RequestKey("request_id", str)
# A client's own request id is echoed only if it is short and plain.
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_HTTP_STATUS_KINDS = {
    400: ErrorKind.INVALID_ARGUMENT,
    401: ErrorKind.UNAUTHENTICATED,
    403: ErrorKind.PERMISSION_DENIED,
    404: ErrorKind.NOT_FOUND,
    413: ErrorKind.PAYLOAD_TOO_LARGE,
    429: ErrorKind.RATE_LIMITED,
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(error: ServiceError) -> web.Response:
    return web.json_response(openai_error_body(error), status=error.kind.http_status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = request.headers.get(REQUEST_ID_HEADER, "")
    if not _CLIENT_REQUEST_ID.match(request_id):
        request_id = new_request_id()
    request[REQUEST_ID] = request_id
    try:
        response = await handler(request)
    except ServiceError as error:
        response = error_response(error)
        # A peer's RESOURCE_EXHAUSTED may say when to come back (the jobs service's concurrency limit).
        retry_after = error.metadata.get("retry_after_seconds", "")
        if error.kind is ErrorKind.RATE_LIMITED and retry_after.isdigit():
            response.headers["Retry-After"] = retry_after
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kind = _HTTP_STATUS_KINDS.get(exc.status)
        if kind is None:
            response = web.json_response(
                {
                    "error": {
                        "message": exc.reason,
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }
                },
                status=exc.status,
            )
        else:
            message = "Unknown request URL." if exc.status == 404 else (exc.text or exc.reason)
            if exc.status == 413:
                message = "The request body is too large."
            code = "request_too_large" if exc.status == 413 else None
            response = error_response(ServiceError(kind, message, code=code))
        if exc.status == 405:
            response.headers["Allow"] = exc.headers.get("Allow", "")
    except Exception as exc:
        unavailable = database_unavailable(exc)
        if unavailable is None:
            log.exception("request failed", extra={"path": request.path, "request_id": request_id})
            response = error_response(ServiceError(ErrorKind.INTERNAL, GENERIC_INTERNAL_MESSAGE))
        else:
            # The database is restarting or failing over: a passing state the client may retry.
            log.warning(
                "request failed: database unavailable",
                extra={"path": request.path, "request_id": request_id, "error": repr(exc)},
            )
            response = error_response(unavailable)
    response.headers[REQUEST_ID_HEADER] = request_id
    return response


def new_request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


async def request_id_header(request: web.Request, response: web.StreamResponse) -> None:
    """An on_response_prepare hook: answers streamed by a handler (prepared before the middleware
    sees them) carry the request id too."""
    request_id = request.get(REQUEST_ID)
    if request_id is not None:
        response.headers[REQUEST_ID_HEADER] = request_id
