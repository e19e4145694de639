"""A client for the OpenAI Videos API contract: timeouts on every call, bounded retries with
backoff and jitter that honour retry-after, and errors classified for the job's failure code."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from services.jobs.config import ProviderSettings
from services.jobs.domain.video_spec import VideoSpec
from services.jobs.provider import (
    AssetVariant,
    ProviderError,
    ProviderErrorKind,
    UpstreamStatus,
    UpstreamVideo,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
_RETRYABLE_STATUS = {408, 409, 429}
_CHUNK = 1 << 16


class OpenAIVideosProvider:
    def __init__(self, settings: ProviderSettings, session: aiohttp.ClientSession) -> None:
        self._settings = settings
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout_seconds)
        self._headers = {"Authorization": f"Bearer {settings.api_key}"}

    async def create(self, spec: VideoSpec, *, idempotency_key: str) -> UpstreamVideo:
        body = {"model": spec.model, "prompt": spec.prompt, "seconds": str(spec.seconds), "size": spec.size}

        async def attempt() -> UpstreamVideo:
            # The same Idempotency-Key on every try: a create that timed out is not made twice.
            async with self._session.post(
                f"{self._settings.base_url}/videos",
                json=body,
                headers={**self._headers, "Idempotency-Key": idempotency_key},
                timeout=self._timeout,
            ) as response:
                return _video_from(await _json_or_raise(response), response)

        return await self._with_retries("create", attempt)

    async def retrieve(self, upstream_id: str) -> UpstreamVideo:
        async def attempt() -> UpstreamVideo:
            async with self._session.get(
                f"{self._settings.base_url}/videos/{upstream_id}",
                headers=self._headers,
                timeout=self._timeout,
            ) as response:
                return _video_from(await _json_or_raise(response), response)

        return await self._with_retries("retrieve", attempt)

    async def download(self, upstream_id: str, variant: AssetVariant, destination: Path) -> None:
        async def attempt() -> None:
            async with self._session.get(
                f"{self._settings.base_url}/videos/{upstream_id}/content",
                params={"variant": variant.value},
                headers=self._headers,
                timeout=self._timeout,
            ) as response:
                if response.status >= 400:
                    await _json_or_raise(response)
                partial = destination.with_suffix(destination.suffix + ".part")
                with partial.open("wb") as out:
                    async for chunk in response.content.iter_chunked(_CHUNK):
                        out.write(chunk)
                partial.replace(destination)

        await self._with_retries(f"download {variant}", attempt)

    async def _with_retries(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        for number in range(1, self._settings.max_attempts + 1):
            try:
                return await attempt()
            except ProviderError as error:
                if not error.kind.retryable or number == self._settings.max_attempts:
                    raise
                delay = error.retry_after if error.retry_after is not None else _backoff(number)
            except (aiohttp.ClientError, TimeoutError) as exc:
                if number == self._settings.max_attempts:
                    raise ProviderError(
                        ProviderErrorKind.TRANSIENT, f"provider unreachable: {exc!r}"
                    ) from exc
                delay = _backoff(number)
            log.info(
                "provider call retried", extra={"call": what, "attempt": number, "delay": round(delay, 2)}
            )
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")


def _backoff(attempt: int, base: float = 0.5, cap: float = 20.0) -> float:
    """Full jitter (AWS architecture blog): spreads retries of many jobs apart."""
    return random.uniform(0, min(cap, base * 2**attempt))


async def _json_or_raise(response: aiohttp.ClientResponse) -> dict[str, Any]:
    text = await response.text()
    try:
        payload = json.loads(text) if text else {}
    except json.JSONDecodeError:
        payload = {}
    if response.status < 400:
        if not isinstance(payload, dict):
            raise ProviderError(ProviderErrorKind.TRANSIENT, "provider sent a body that is not a JSON object")
        return payload
    error = payload.get("error") if isinstance(payload, dict) else None
    error = error if isinstance(error, dict) else {}
    message = str(error.get("message") or text[:200] or response.reason or "provider error")
    raise ProviderError(
        classify(response.status, str(error.get("code") or ""), str(error.get("type") or "")),
        message,
        status=response.status,
        retry_after=retry_after_seconds(response.headers),
    )


def classify(status: int, code: str, error_type: str) -> ProviderErrorKind:
    if "moderation" in code or "content_policy" in code or "safety" in code or "content_policy" in error_type:
        return ProviderErrorKind.CONTENT_POLICY
    if status == 429:
        return ProviderErrorKind.RATE_LIMITED
    if status in _RETRYABLE_STATUS or status >= 500:
        return ProviderErrorKind.TRANSIENT
    if status in (400, 404, 413, 422):
        return ProviderErrorKind.INVALID_REQUEST
    return ProviderErrorKind.PERMANENT


def retry_after_seconds(headers: Any) -> float | None:
    """`retry-after-ms` is more precise than `retry-after`, so it wins when both are present."""
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            return max(0.0, float(raw) * scale)
        except ValueError:
            continue
    return None


def _video_from(payload: dict[str, Any], response: aiohttp.ClientResponse) -> UpstreamVideo:
    upstream_id = payload.get("id")
    if not isinstance(upstream_id, str) or not upstream_id:
        raise ProviderError(ProviderErrorKind.TRANSIENT, "provider response has no video id")
    raw_status = str(payload.get("status") or "")
    try:
        status = UpstreamStatus(raw_status)
    except ValueError:
        status = UpstreamStatus.ENDED_OTHERWISE
    raw_error = payload.get("error")
    error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
    expires_at = payload.get("expires_at")
    poll_after = response.headers.get("openai-poll-after-ms")
    return UpstreamVideo(
        id=upstream_id,
        status=status,
        progress=max(0, min(100, int(payload.get("progress") or 0))),
        error_code=str(error.get("code") or (raw_status if status is UpstreamStatus.ENDED_OTHERWISE else "")),
        error_message=str(error.get("message") or ""),
        expires_at=datetime.fromtimestamp(expires_at, UTC) if isinstance(expires_at, int | float) else None,
        poll_after_seconds=float(poll_after) / 1000 if poll_after and poll_after.isdigit() else None,
    )
