"""Requests per minute per API key, shared by every gateway replica through PostgreSQL.

A key's bucket holds a minute's worth of requests and refills at its per-minute rate, so a client
may spend its whole minute in a burst and then goes at the steady rate. The answer carries
OpenAI's `x-ratelimit-*-requests` headers; a refusal is a 429 with `Retry-After`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from servicekit.token_bucket import Take, TokenBuckets, bucket_table
from sqlalchemy.ext.asyncio import AsyncEngine

from services.gateway.identity import Principal, metadata

request_buckets = bucket_table("request_buckets", metadata, "bucket", key_length=100)


@dataclass(frozen=True)
class RateLimitState:
    limit: int
    take: Take

    @property
    def allowed(self) -> bool:
        return self.take.taken

    @property
    def retry_after_seconds(self) -> int:
        """Whole seconds, at least one, as Retry-After wants."""
        return max(1, math.ceil(self.take.retry_after_seconds))

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit-requests": str(self.limit),
            "x-ratelimit-remaining-requests": str(self.take.whole_tokens),
            "x-ratelimit-reset-requests": duration_text(self.take.seconds_to_full),
        }


def duration_text(seconds: float) -> str:
    """OpenAI's spelling of a reset time: "850ms", "12s", "1m30s"."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    whole = math.ceil(seconds)
    minutes, rest = divmod(whole, 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


def bucket_of(principal: Principal) -> str:
    return principal.api_key_id or f"user:{principal.user_id}"


class RequestLimiter:
    def __init__(self, engine: AsyncEngine, default_requests_per_minute: int) -> None:
        self._buckets = TokenBuckets(engine, request_buckets, "bucket")
        self._default = default_requests_per_minute

    def limit_for(self, principal: Principal) -> int:
        configured = principal.requests_per_minute
        return self._default if configured is None else configured

    async def check(self, principal: Principal) -> RateLimitState | None:
        """Spend one request from the principal's budget; None when it has no limit."""
        limit = self.limit_for(principal)
        if limit <= 0:
            return None
        take = await self._buckets.take(bucket_of(principal), capacity=limit, per_second=limit / 60.0)
        return RateLimitState(limit, take)
