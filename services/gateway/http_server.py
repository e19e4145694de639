"""The HTTP server under the app: requests that are not valid HTTP also get an OpenAI error body.

aiohttp answers a request it cannot parse (a header over the size limit, a broken request line)
before any middleware runs, with a plain-text body that quotes the offending bytes and an ERROR
log line with the same quote. For an oversized Authorization header that quote is the API key.
This runner swaps in a connection handler that answers with an OpenAI error body and a request
id, and logs only the kind of error.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from servicekit.errors import GENERIC_INTERNAL_MESSAGE, ErrorKind, ServiceError, openai_error_body

from services.gateway.http_errors import REQUEST_ID_HEADER, new_request_id

log = logging.getLogger(__name__)


class _OpenAIErrorsHandler(RequestHandler):
    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            # Our bug, not the client's bytes: keep the traceback in the log.
            self.log_exception("Error handling request", exc_info=exc)
            error = ServiceError(ErrorKind.INTERNAL, GENERIC_INTERNAL_MESSAGE)
        else:
            # The parser's own message quotes the request's bytes; neither the log nor the body gets it.
            log.info("malformed HTTP request refused", extra={"status": status, "error": type(exc).__name__})
            error = ServiceError(
                ErrorKind.PAYLOAD_TOO_LARGE if status == 413 else ErrorKind.INVALID_ARGUMENT,
                "A request header or the request line is too long."
                if isinstance(exc, LineTooLong)
                else "The request is not valid HTTP.",
                code="invalid_http_request",
            )
        if request.writer.output_size > 0:
            raise ConnectionError("Response is sent already, cannot send another response with the error")
        response = web.json_response(openai_error_body(error), status=status)
        response.headers[REQUEST_ID_HEADER] = new_request_id()
        response.force_close()
        return response


class _Server(web.Server):
    def __init__(
        self,
        made: web.Server,
        *,
        loop: asyncio.AbstractEventLoop,
        **handler_kwargs: Any,
    ) -> None:
        super().__init__(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=loop,
            **handler_kwargs,
        )
        self._handler_loop = loop
        self._handler_kwargs = handler_kwargs

    def __call__(self) -> RequestHandler:
        return _OpenAIErrorsHandler(self, loop=self._handler_loop, **self._handler_kwargs)


class GatewayRunner(web.AppRunner):
    """An AppRunner whose connections answer unparseable requests in the API's own error format."""

    def __init__(self, app: web.Application, *, shutdown_timeout: float, **handler_kwargs: Any) -> None:
        super().__init__(app, shutdown_timeout=shutdown_timeout, **handler_kwargs)
        self._handler_kwargs = handler_kwargs

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return _Server(made, loop=asyncio.get_running_loop(), **self._handler_kwargs)
