"""A client for the OpenAI Videos API contract: timeouts on every call, bounded retries with
backoff and jitter that honour retry-after, a shared request budget, reconciliation before a
create is retried, and errors classified for the job's failure code."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from services.jobs.domain.video_spec import VideoSpec
from services.jobs.provider import (
    AssetVariant,
    ProviderError,
    ProviderErrorKind,
    ReferenceFile,
    UpstreamStatus,
    UpstreamVideo,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
_RETRYABLE_STATUS = {408, 409, 429}
_CHUNK = 1 << 16
# Provider clocks drift; a lost create may be stamped a little before we sent it.
_CLOCK_SLACK = timedelta(seconds=30)
_RECONCILE_PAGES = 5


class OpenAIVideosProvider:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        session: aiohttp.ClientSession,
        timeout_seconds: float,
        max_attempts: int,
        acquire_budget: Callable[[], Awaitable[None]] | None = None,
        record_call: Callable[[str, str, float], None] = lambda operation, outcome, seconds: None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._max_attempts = max_attempts
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._acquire_budget = acquire_budget
        # (operation, outcome, seconds to the response headers) for every HTTP request: metrics.
        self._record_call = record_call
        self.requests_sent = 0

    async def create(
        self,
        spec: VideoSpec,
        *,
        model: str,
        idempotency_key: str,
        not_before: datetime,
        claimed: Callable[[str], Awaitable[bool]],
        reference: ReferenceFile | None = None,
    ) -> UpstreamVideo:
        body = {"model": model, "prompt": spec.prompt, "seconds": str(spec.seconds), "size": spec.size}
        return await self._start(
            "create",
            "/videos",
            lambda: _create_payload(body, reference),
            body,
            idempotency_key=idempotency_key,
            not_before=not_before,
            claimed=claimed,
        )

    async def remix(
        self,
        source_upstream_id: str,
        spec: VideoSpec,
        *,
        model: str,
        idempotency_key: str,
        not_before: datetime,
        claimed: Callable[[str], Awaitable[bool]],
    ) -> UpstreamVideo:
        # A remix keeps its source's model, size and length: that is what a lost one looks like.
        body = {"model": model, "prompt": spec.prompt, "seconds": str(spec.seconds), "size": spec.size}
        return await self._start(
            "remix",
            f"/videos/{source_upstream_id}/remix",
            lambda: {"json": {"prompt": spec.prompt}},
            body,
            idempotency_key=idempotency_key,
            not_before=not_before,
            claimed=claimed,
        )

    async def _start(
        self,
        operation: str,
        path: str,
        payload: Callable[[], dict[str, Any]],
        body: dict[str, str],
        *,
        idempotency_key: str,
        not_before: datetime,
        claimed: Callable[[str], Awaitable[bool]],
    ) -> UpstreamVideo:
        """POST something that makes a video; a lost answer is reconciled before trying again. The
        payload is built per try: a form body is consumed once it is sent."""
        answer_lost = False

        async def attempt() -> UpstreamVideo:
            nonlocal answer_lost
            if answer_lost:
                # The last try may have created the video before failing: look before creating again.
                existing = await self._find_created(body, not_before, claimed)
                if existing is not None:
                    log.info("reconciled a lost create", extra={"upstream_id": existing.id})
                    return existing
            try:
                # The same Idempotency-Key on every try, for providers that honour it.
                async with await self._request(
                    operation, "POST", path, headers={"Idempotency-Key": idempotency_key}, **payload()
                ) as response:
                    return _video_from(await _json_or_raise(response), response)
            except ProviderError as error:
                answer_lost = error.status is None or error.status >= 500 or error.status == 408
                raise
            except (aiohttp.ClientError, TimeoutError):
                answer_lost = True
                raise

        return await self._with_retries(operation, attempt)

    async def retrieve(self, upstream_id: str) -> UpstreamVideo:
        async def attempt() -> UpstreamVideo:
            async with await self._request("retrieve", "GET", f"/videos/{upstream_id}") as response:
                return _video_from(await _json_or_raise(response), response)

        return await self._with_retries("retrieve", attempt)

    async def download(self, upstream_id: str, variant: AssetVariant, destination: Path) -> None:
        async def attempt() -> None:
            async with await self._request(
                "download", "GET", f"/videos/{upstream_id}/content", params={"variant": variant.value}
            ) as response:
                if response.status >= 400:
                    await _json_or_raise(response)
                partial = destination.with_suffix(destination.suffix + ".part")
                with partial.open("wb") as out:
                    async for chunk in response.content.iter_chunked(_CHUNK):
                        out.write(chunk)
                partial.replace(destination)

        await self._with_retries(f"download {variant}", attempt)

    async def _find_created(
        self, body: dict[str, str], not_before: datetime, claimed: Callable[[str], Awaitable[bool]]
    ) -> UpstreamVideo | None:
        """Newest first, stop once past `not_before`: an unclaimed video matching what we asked for.
        Another job with the same prompt may own a match, so claimed ids are passed over."""
        after: str | None = None
        for _ in range(_RECONCILE_PAGES):
            params = {"limit": "100", "order": "desc", **({"after": after} if after else {})}
            async with await self._request("list", "GET", "/videos", params=params) as response:
                page = await _json_or_raise(response)
            videos = [v for v in page.get("data") or [] if isinstance(v, dict)]
            for raw in videos:
                video = _video_from(raw, None)
                if video.created_at and video.created_at < not_before - _CLOCK_SLACK:
                    return None
                wanted = (body["prompt"], body["model"], body["size"], body["seconds"])
                if (video.prompt, video.model, video.size, video.seconds) == wanted and not await claimed(
                    video.id
                ):
                    return video
            if not page.get("has_more") or not videos:
                return None
            after = str(videos[-1].get("id"))
        return None

    async def _request(self, operation: str, method: str, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        if self._acquire_budget is not None:
            await self._acquire_budget()
        self.requests_sent += 1
        headers = {**self._headers, **kwargs.pop("headers", {})}
        started = time.monotonic()
        try:
            response = await self._session.request(
                method, f"{self._base_url}{path}", headers=headers, timeout=self._timeout, **kwargs
            )
        except TimeoutError:
            self._record_call(operation, "timeout", time.monotonic() - started)
            raise
        except aiohttp.ClientError:
            self._record_call(operation, "connection_error", time.monotonic() - started)
            raise
        self._record_call(operation, _outcome(response.status), time.monotonic() - started)
        return response

    async def _with_retries(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        for number in range(1, self._max_attempts + 1):
            try:
                return await attempt()
            except ProviderError as error:
                if not error.kind.retryable or number == self._max_attempts:
                    raise
                delay = error.retry_after if error.retry_after is not None else _backoff(number)
            except (aiohttp.ClientError, TimeoutError) as exc:
                if number == self._max_attempts:
                    raise ProviderError(
                        ProviderErrorKind.TRANSIENT, f"provider unreachable: {exc!r}"
                    ) from exc
                delay = _backoff(number)
            log.info(
                "provider call retried", extra={"call": what, "attempt": number, "delay": round(delay, 2)}
            )
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")


def _outcome(status: int) -> str:
    """A response as a metrics label: its status class, with 429 (rate limited) on its own."""
    return "429" if status == 429 else f"{status // 100}xx"


def _create_payload(body: dict[str, str], reference: ReferenceFile | None) -> dict[str, Any]:
    """JSON without a reference; multipart with the image as `input_reference` (built per try:
    a form body is consumed once it is sent)."""
    if reference is None:
        return {"json": body}
    form = aiohttp.FormData()
    for name, value in body.items():
        form.add_field(name, value)
    form.add_field(
        "input_reference", reference.data, filename=reference.filename, content_type=reference.content_type
    )
    return {"data": form}


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
    code = str(error.get("code") or "")
    raise ProviderError(
        classify(response.status, code, str(error.get("type") or "")),
        message,
        status=response.status,
        retry_after=retry_after_seconds(response.headers),
        code=code,
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


def _video_from(payload: dict[str, Any], response: aiohttp.ClientResponse | None) -> UpstreamVideo:
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
    poll_after = response.headers.get("openai-poll-after-ms") if response is not None else None
    return UpstreamVideo(
        id=upstream_id,
        status=status,
        progress=_progress(payload.get("progress")),
        error_code=str(error.get("code") or (raw_status if status is UpstreamStatus.ENDED_OTHERWISE else "")),
        error_message=str(error.get("message") or ""),
        expires_at=_timestamp(payload.get("expires_at")),
        poll_after_seconds=float(poll_after) / 1000 if poll_after and poll_after.isdigit() else None,
        created_at=_timestamp(payload.get("created_at")),
        prompt=str(payload.get("prompt") or ""),
        model=str(payload.get("model") or ""),
        size=str(payload.get("size") or ""),
        seconds=str(payload.get("seconds") or ""),
    )


def _progress(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(0, min(100, int(value)))


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None
