"""Bearer API-key authentication for /v1; the principal rides on the request."""

from __future__ import annotations

from aiohttp import web
from servicekit.errors import ErrorKind, ServiceError

from services.gateway.http_errors import Handler
from services.gateway.identity import Principal
from services.gateway.keys import IDENTITY

PRINCIPAL = web.RequestKey("principal", Principal)
_MAX_KEY_LENGTH = 256


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/v1/"):
        request[PRINCIPAL] = await _authenticate(request)
    return await handler(request)


async def _authenticate(request: web.Request) -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ServiceError(
            ErrorKind.UNAUTHENTICATED,
            "You didn't provide an API key. Send it in the Authorization header as 'Bearer YOUR_KEY'.",
            code="missing_api_key",
        )
    token = token.strip()
    principal = await request.app[IDENTITY].authenticate(token) if len(token) <= _MAX_KEY_LENGTH else None
    if principal is None:
        # Never echo the key back: error bodies and logs are not the place for secrets.
        raise ServiceError(ErrorKind.UNAUTHENTICATED, "Incorrect API key provided.", code="invalid_api_key")
    return principal


def principal_of(request: web.Request) -> Principal:
    principal: Principal = request[PRINCIPAL]
    return principal
