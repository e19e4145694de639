"""CORS for browser clients: preflights answered before authentication, headers on every answer.

Browsers send no credentials to an API authenticated by bearer tokens, so `*` is fine there; with
credentials (cookies) allowed, the CORS rules forbid `*` and every origin must be named.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware
from servicekit.config import ConfigError, env_bool, env_int, env_str

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ANY_ORIGIN = "*"
ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
DEFAULT_ALLOWED_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-Request-Id"
# What a browser script may read from our answers (CORS hides anything not safelisted).
EXPOSED_HEADERS = ", ".join(
    (
        "X-Request-Id",
        "Retry-After",
        "openai-poll-after-ms",
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
    )
)
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
# A comma-separated list of header names (RFC 9110 tokens), of sane length.
_HEADER_LIST = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+(\s*,\s*[!#$%&'*+.^_`|~0-9A-Za-z-]+)*$")
_MAX_REQUESTED_HEADERS_CHARS = 2000


@dataclass(frozen=True)
class CorsSettings:
    # Empty: CORS off (browsers on other origins cannot call the API).
    origins: tuple[str, ...] = ()
    allow_credentials: bool = False
    max_age_seconds: int = 600

    def __post_init__(self) -> None:
        if ANY_ORIGIN in self.origins and self.allow_credentials:
            raise ConfigError("GATEWAY_CORS_ORIGINS=* cannot be combined with GATEWAY_CORS_ALLOW_CREDENTIALS")
        for origin in self.origins:
            if origin != ANY_ORIGIN and not _ORIGIN.match(origin):
                raise ConfigError(
                    f"GATEWAY_CORS_ORIGINS: {origin!r} is not an origin like https://app.example"
                )

    @property
    def enabled(self) -> bool:
        return bool(self.origins)

    def allowed_origin(self, origin: str | None) -> str | None:
        """The Access-Control-Allow-Origin value for this request's Origin, or None."""
        if not origin or not self.enabled:
            return None
        if ANY_ORIGIN in self.origins:
            return ANY_ORIGIN
        return origin if origin.lower() in self.origins else None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CorsSettings:
        raw = env_str("GATEWAY_CORS_ORIGINS", "", environ=environ)
        return cls(
            origins=tuple(origin.strip().rstrip("/").lower() for origin in raw.split(",") if origin.strip()),
            allow_credentials=env_bool(
                "GATEWAY_CORS_ALLOW_CREDENTIALS", cls.allow_credentials, environ=environ
            ),
            max_age_seconds=env_int("GATEWAY_CORS_MAX_AGE_SECONDS", cls.max_age_seconds, environ=environ),
        )


def _common_headers(settings: CorsSettings, allowed: str, headers: dict[str, str]) -> None:
    headers["Access-Control-Allow-Origin"] = allowed
    if allowed != ANY_ORIGIN:
        headers["Vary"] = "Origin"
    if settings.allow_credentials:
        headers["Access-Control-Allow-Credentials"] = "true"


def cors_middleware(settings: CorsSettings) -> Middleware:
    """Answers preflights from allowed origins itself, so they need no API key."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        is_preflight = request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
        allowed = settings.allowed_origin(request.headers.get("Origin")) if is_preflight else None
        if allowed is None:
            return await handler(request)
        requested = request.headers.get("Access-Control-Request-Headers", "").strip()
        headers = {
            "Access-Control-Allow-Methods": ALLOWED_METHODS,
            # Echo what the browser asks for (the openai JS SDK sends its own x-stainless-* headers).
            "Access-Control-Allow-Headers": requested
            if requested and len(requested) <= _MAX_REQUESTED_HEADERS_CHARS and _HEADER_LIST.match(requested)
            else DEFAULT_ALLOWED_HEADERS,
            "Access-Control-Max-Age": str(settings.max_age_seconds),
        }
        _common_headers(settings, allowed, headers)
        return web.Response(status=204, headers=headers)

    return middleware


def cors_headers(settings: CorsSettings) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """An on_response_prepare hook: every answer to an allowed origin, errors and streams included,
    carries the CORS headers, so a browser script can read 401, 413 and 429 bodies too."""

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        allowed = settings.allowed_origin(request.headers.get("Origin"))
        if allowed is None:
            return
        headers: dict[str, str] = {}
        _common_headers(settings, allowed, headers)
        for name, value in headers.items():
            if (
                name == "Vary"
                and "Vary" in response.headers
                and "origin" not in response.headers["Vary"].lower()
            ):
                response.headers["Vary"] = f"{response.headers['Vary']}, Origin"
            elif name != "Vary" or "Vary" not in response.headers:
                response.headers[name] = value
        if request.method != "OPTIONS":
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS

    return add_headers
