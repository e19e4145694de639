"""JWT bearer tokens from an identity provider, verified against its JWKS.

Only asymmetric algorithms: the JWKS is public, so an HMAC "signed" with a public key, or
`alg: none`, must never verify. Keys come from `JWT_JWKS_URL`, cached; a token naming a key id
the cache does not know triggers a refresh, at most once per `jwks_min_refresh_seconds`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt
from servicekit.config import ConfigError, env_float, env_str
from servicekit.errors import ErrorKind, ServiceError

log = logging.getLogger(__name__)

# Asymmetric only; HS* would let anyone holding the public JWKS mint tokens.
SUPPORTED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
)
MAX_TOKEN_CHARS = 8192
MAX_JWKS_BYTES = 1024 * 1024
MAX_JWKS_KEYS = 64
_NAME_CLAIMS = ("name", "email", "preferred_username")
_MAX_NAME_CHARS = 200


@dataclass(frozen=True)
class JwtSettings:
    issuer: str
    audience: str
    jwks_url: str
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    leeway_seconds: float = 30.0
    # The claim naming the role; a value of "admin" (or a list holding it) makes an admin.
    role_claim: str = "vidflow_role"
    jwks_cache_seconds: float = 300.0
    jwks_min_refresh_seconds: float = 30.0
    jwks_timeout_seconds: float = 5.0

    def __post_init__(self) -> None:
        refused = [name for name in self.algorithms if name not in SUPPORTED_ALGORITHMS]
        if refused or not self.algorithms:
            raise ConfigError(
                f"JWT_ALGORITHMS must be among {', '.join(sorted(SUPPORTED_ALGORITHMS))}; "
                f"refused: {', '.join(refused) or 'none given'}"
            )
        if not self.jwks_url.startswith(("https://", "http://")):
            raise ConfigError("JWT_JWKS_URL must be an http(s) URL")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> JwtSettings | None:
        """None unless JWT_ISSUER, JWT_AUDIENCE and JWT_JWKS_URL are set (some but not all: an error)."""
        required = {
            name: env_str(name, "", environ=environ)
            for name in ("JWT_ISSUER", "JWT_AUDIENCE", "JWT_JWKS_URL")
        }
        if not any(required.values()):
            return None
        missing = [name for name, value in required.items() if not value]
        if missing:
            raise ConfigError(f"JWT authentication needs {', '.join(missing)} as well")
        algorithms = env_str("JWT_ALGORITHMS", ",".join(cls.algorithms), environ=environ)
        return cls(
            issuer=required["JWT_ISSUER"],
            audience=required["JWT_AUDIENCE"],
            jwks_url=required["JWT_JWKS_URL"],
            algorithms=tuple(name.strip() for name in algorithms.split(",") if name.strip()),
            leeway_seconds=env_float("JWT_LEEWAY_SECONDS", cls.leeway_seconds, environ=environ),
            role_claim=env_str("JWT_ROLE_CLAIM", cls.role_claim, environ=environ),
            jwks_cache_seconds=env_float("JWT_JWKS_CACHE_SECONDS", cls.jwks_cache_seconds, environ=environ),
            jwks_min_refresh_seconds=env_float(
                "JWT_JWKS_MIN_REFRESH_SECONDS", cls.jwks_min_refresh_seconds, environ=environ
            ),
            jwks_timeout_seconds=env_float(
                "JWT_JWKS_TIMEOUT_SECONDS", cls.jwks_timeout_seconds, environ=environ
            ),
        )


@dataclass(frozen=True)
class TokenIdentity:
    user_id: str
    role: str
    name: str


def looks_like_jwt(token: str) -> bool:
    """Three dot-separated parts; the signature may be empty (an unsigned `alg: none` token is a
    token the verifier refuses, not a wrong API key)."""
    parts = token.split(".")
    return len(parts) == 3 and bool(parts[0]) and bool(parts[1])


def user_id_for(issuer: str, subject: str) -> str:
    """Our user id for an identity provider's subject: safe in NATS subjects, S3 keys and columns
    whatever the subject holds, and different issuers' equal subjects stay different users."""
    digest = hashlib.sha256(json.dumps([issuer, subject]).encode()).hexdigest()
    return f"user_{digest[:32]}"


def role_from(claims: Mapping[str, Any], role_claim: str) -> str:
    value = claims.get(role_claim) if role_claim else None
    if value == "admin" or (isinstance(value, list) and "admin" in value):
        return "admin"
    return "user"


def display_name(claims: Mapping[str, Any], subject: str) -> str:
    for claim in _NAME_CLAIMS:
        value = claims.get(claim)
        if isinstance(value, str) and (printable := _printable(value)):
            return printable
    return _printable(subject) or "external user"


def _printable(text: str) -> str:
    # Drops NUL, control characters and lone surrogates, none of which PostgreSQL text takes.
    return "".join(char for char in text if char.isprintable())[:_MAX_NAME_CHARS].strip()


def _unauthenticated(message: str, code: str = "invalid_token") -> ServiceError:
    return ServiceError(ErrorKind.UNAUTHENTICATED, message, code=code)


class JwksCache:
    """The identity provider's signing keys by key id, fetched over HTTP."""

    def __init__(self, settings: JwtSettings, http: aiohttp.ClientSession) -> None:
        self._settings = settings
        self._http = http
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = -float("inf")
        self._attempted_at = -float("inf")
        self._lock = asyncio.Lock()

    async def key(self, key_id: str | None) -> jwt.PyJWK:
        now = time.monotonic()
        if now - self._fetched_at >= self._settings.jwks_cache_seconds:
            await self._refresh(min_interval=self._settings.jwks_min_refresh_seconds)
        found = self._find(key_id)
        if found is None:
            # An unknown key id may be a key the provider just rotated in: look again, bounded.
            await self._refresh(min_interval=self._settings.jwks_min_refresh_seconds)
            found = self._find(key_id)
        if found is None:
            if not self._keys:
                raise ServiceError(
                    ErrorKind.UNAVAILABLE, "Token verification keys are unavailable; retry shortly."
                )
            raise _unauthenticated("Invalid bearer token.")
        return found

    def _find(self, key_id: str | None) -> jwt.PyJWK | None:
        if key_id is None:
            # A token without "kid" is acceptable only when there is no choice to make.
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(key_id)

    async def _refresh(self, *, min_interval: float) -> None:
        async with self._lock:
            # Another request may have refreshed while this one waited for the lock.
            if time.monotonic() - self._attempted_at < min_interval:
                return
            self._attempted_at = time.monotonic()
            try:
                keys = await self._fetch()
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                # Keep serving the keys already known; the provider may be briefly away.
                log.warning("JWKS fetch failed", extra={"error": type(exc).__name__})
                return
            self._keys = keys
            self._fetched_at = time.monotonic()

    async def _fetch(self) -> dict[str, jwt.PyJWK]:
        timeout = aiohttp.ClientTimeout(total=self._settings.jwks_timeout_seconds)
        async with self._http.get(self._settings.jwks_url, timeout=timeout) as response:
            if response.status != 200:
                raise ValueError(f"JWKS answered {response.status}")
            body = await response.content.read(MAX_JWKS_BYTES + 1)
        if len(body) > MAX_JWKS_BYTES:
            raise ValueError("JWKS document too large")
        document = json.loads(body)
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError("JWKS document has no keys list")
        keys: dict[str, jwt.PyJWK] = {}
        for entry in document["keys"][:MAX_JWKS_KEYS]:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" or entry.get("kty") == "oct":
                continue
            try:
                key = jwt.PyJWK(entry)
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                continue
            if key.algorithm_name in self._settings.algorithms:
                keys[str(entry.get("kid", ""))] = key
        if not keys:
            raise ValueError("JWKS holds no usable signing key")
        return keys


class JwtVerifier:
    def __init__(self, settings: JwtSettings, http: aiohttp.ClientSession) -> None:
        self._settings = settings
        self._jwks = JwksCache(settings, http)

    async def verify(self, token: str) -> TokenIdentity:
        """The identity a valid token speaks for; ServiceError (401) otherwise. Messages never quote
        the token."""
        settings = self._settings
        if len(token) > MAX_TOKEN_CHARS:
            raise _unauthenticated("Invalid bearer token.")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise _unauthenticated("Invalid bearer token.") from None
        algorithm = header.get("alg")
        if algorithm not in settings.algorithms:
            raise _unauthenticated("Invalid bearer token: its signing algorithm is not accepted.")
        key_id = header.get("kid")
        key = await self._jwks.key(key_id if isinstance(key_id, str) else None)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=list(settings.algorithms),
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=settings.leeway_seconds,
                options={"require": ["exp", "iss", "sub", "aud"], "enforce_minimum_key_length": True},
            )
        except jwt.ExpiredSignatureError:
            raise _unauthenticated("The bearer token has expired.", code="token_expired") from None
        except jwt.ImmatureSignatureError:
            raise _unauthenticated("The bearer token is not valid yet.") from None
        except (jwt.InvalidTokenError, jwt.PyJWKError, ValueError, TypeError):
            raise _unauthenticated("Invalid bearer token.") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise _unauthenticated("Invalid bearer token: it names no subject.")
        return TokenIdentity(
            user_id=user_id_for(settings.issuer, subject),
            role=role_from(claims, settings.role_claim),
            name=display_name(claims, subject),
        )
