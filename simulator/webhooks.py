"""Outgoing webhooks: OpenAI's `video.completed` / `video.failed` events, signed with Standard Webhooks.

Each event is delivered from its own background task: POST with a per-attempt timeout, retried
with exponential backoff until a 2xx or the attempt budget is spent. Every retry of one event
carries the same `webhook-id` (the event id), so receivers can de-duplicate. `close()` cancels
deliveries still in flight; like OpenAI's, delivery is at-least-once while the process lives.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from servicekit.webhooks import headers_for

log = logging.getLogger(__name__)

EventType = Literal["video.completed", "video.failed"]
MAX_RETRY_DELAY_SECONDS = 300.0


@dataclass(frozen=True)
class WebhookSettings:
    url: str
    secret: str
    max_attempts: int = 6
    retry_base_seconds: float = 1.0
    timeout_seconds: float = 10.0


def new_event_id() -> str:
    return f"evt_{secrets.token_hex(16)}"


def video_event(event_type: EventType, video_id: str, *, event_id: str, created_at: float) -> dict[str, Any]:
    """The event body as OpenAI sends it."""
    return {
        "id": event_id,
        "object": "event",
        "created_at": int(created_at),
        "type": event_type,
        "data": {"id": video_id},
    }


def retry_delay(attempt: int, base_seconds: float) -> float:
    """Wait after failed attempt number `attempt` (1-based): base, 2x base, 4x base, ... capped."""
    return float(min(MAX_RETRY_DELAY_SECONDS, base_seconds * 2 ** (attempt - 1)))


class WebhookSender:
    """Delivers events in background tasks it owns; `close()` stops them and the HTTP session."""

    def __init__(
        self,
        settings: WebhookSettings,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._sleep = sleep
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=settings.timeout_seconds))
        self._deliveries: set[asyncio.Task[bool]] = set()

    def send(self, event_type: EventType, video_id: str) -> asyncio.Task[bool]:
        event_id = new_event_id()
        body = json.dumps(
            video_event(event_type, video_id, event_id=event_id, created_at=self._clock()),
            separators=(",", ":"),
        ).encode()
        task = asyncio.create_task(self._deliver(event_id, event_type, body), name=f"webhook {event_id}")
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)
        return task

    async def close(self) -> None:
        deliveries = list(self._deliveries)
        for delivery in deliveries:
            delivery.cancel()
        await asyncio.gather(*deliveries, return_exceptions=True)
        await self._session.close()

    async def _deliver(self, event_id: str, event_type: str, body: bytes) -> bool:
        settings = self._settings
        context = {"event_id": event_id, "event_type": event_type}
        for attempt in range(1, settings.max_attempts + 1):
            # Signed afresh per attempt: the timestamp is the send time, the id stays the same.
            headers = {
                "Content-Type": "application/json",
                **headers_for(settings.secret, event_id, body, now=self._clock()),
            }
            try:
                async with self._session.post(settings.url, data=body, headers=headers) as response:
                    outcome = f"HTTP {response.status}"
                    if 200 <= response.status < 300:
                        log.info("webhook delivered", extra={**context, "attempt": attempt})
                        return True
            except (aiohttp.ClientError, TimeoutError) as exc:
                outcome = type(exc).__name__
            if attempt < settings.max_attempts:
                delay = retry_delay(attempt, settings.retry_base_seconds)
                log.info(
                    "webhook attempt failed; retrying",
                    extra={**context, "attempt": attempt, "outcome": outcome, "retry_in_seconds": delay},
                )
                await self._sleep(delay)
            else:
                log.warning("webhook given up", extra={**context, "attempts": attempt, "outcome": outcome})
        return False
