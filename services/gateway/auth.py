"""Bearer authentication for /v1 (API keys, and JWTs when an identity provider is configured), then
the per-key request rate limit. The principal and its rate-limit state ride on the request."""

from __future__ import annotations

from aiohttp import web
from servicekit.errors import ErrorKind, ServiceError

from services.gateway.http_errors import Handler, error_response
from services.gateway.identity import Principal
from services.gateway.jwt_tokens import looks_like_jwt
from services.gateway.keys import IDENTITY, JWT_VERIFIER, RATE_LIMITER
from services.gateway.rate_limits import RateLimitState

PRINCIPAL = web.RequestKey("principal", Principal)
RATE_LIMIT = web.RequestKey("rate_limit", RateLimitState)
_MAX_KEY_LENGTH = 256
# Without an Authorization header these take the token in-band: browsers cannot set headers on a
# WebSocket, so the live socket reads it from the first message (never from the URL, which logs keep).
_IN_BAND_AUTH_PATHS = frozenset({"/v1/ws"})


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/v1/") and not (
        request.path in _IN_BAND_AUTH_PATHS and "Authorization" not in request.headers
    ):
        request[PRINCIPAL] = await _authenticate(request)
    return await handler(request)


@web.middleware
async def rate_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    principal = request.get(PRINCIPAL)
    if principal is None:
        return await handler(request)
    state = await request.app[RATE_LIMITER].check(principal)
    if state is None:
        return await handler(request)
    request[RATE_LIMIT] = state
    if not state.allowed:
        response = error_response(
            ServiceError(
                ErrorKind.RATE_LIMITED,
                f"Rate limit reached for requests: {state.limit} per minute. "
                f"Try again in {state.retry_after_seconds}s.",
                code="rate_limit_exceeded",
            )
        )
        response.headers["Retry-After"] = str(state.retry_after_seconds)
        return response
    return await handler(request)


async def rate_limit_headers(request: web.Request, response: web.StreamResponse) -> None:
    """An on_response_prepare hook, so streamed answers carry the headers too."""
    state = request.get(RATE_LIMIT)
    if state is not None:
        response.headers.update(state.headers())


async def _authenticate(request: web.Request) -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ServiceError(
            ErrorKind.UNAUTHENTICATED,
            "You didn't provide an API key. Send it in the Authorization header as 'Bearer YOUR_KEY'.",
            code="missing_api_key",
        )
    return await authenticate_token(request.app, token)


async def authenticate_token(app: web.Application, token: str) -> Principal:
    """Who a bearer token (API key or JWT) stands for, or UNAUTHENTICATED. Also used in-band."""
    # Keys and JWTs are printable ASCII; anything else (say, bytes that are not UTF-8) cannot match.
    well_formed = token.isascii() and token.isprintable() and " " not in token
    verifier = app.get(JWT_VERIFIER)
    if well_formed and verifier is not None and looks_like_jwt(token):
        identity = await verifier.verify(token)
        await app[IDENTITY].ensure_user(user_id=identity.user_id, name=identity.name, role=identity.role)
        return Principal(identity.user_id, identity.role)
    principal = None
    if well_formed and len(token) <= _MAX_KEY_LENGTH:
        principal = await app[IDENTITY].authenticate(token)
    if principal is None:
        # Never echo the key back: error bodies and logs are not the place for secrets.
        raise ServiceError(ErrorKind.UNAUTHENTICATED, "Incorrect API key provided.", code="invalid_api_key")
    return principal


def principal_of(request: web.Request) -> Principal:
    principal: Principal = request[PRINCIPAL]
    return principal


def require_admin(request: web.Request) -> Principal:
    principal = principal_of(request)
    if not principal.is_admin:
        raise ServiceError(
            ErrorKind.PERMISSION_DENIED, "This route needs an admin API key.", code="admin_only"
        )
    return principal
