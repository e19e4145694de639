"""The HTTP adapter: Vidflow's /v1 routes as async methods over one aiohttp session.

Answers come back as the API's JSON objects; an error answer becomes `ApiError` carrying the
OpenAI error body's fields, and an unreachable or garbled gateway becomes `TransportError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote as url_quote
from urllib.parse import urlsplit

import aiohttp

from vidflow_cli import __version__
from vidflow_cli.config import ClientConfig
from vidflow_cli.create_request import CreateVideo, create_fields, multipart_parts

# Every call is bounded; a download may take long as a whole but must keep bytes flowing.
API_TIMEOUT = aiohttp.ClientTimeout(total=120, connect=10)
DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10, sock_read=60)
POLL_AFTER_HEADER = "openai-poll-after-ms"
_CHUNK_BYTES = 1 << 16


@dataclass
class ApiError(Exception):
    """An OpenAI-style error answer (`{"error": {"message", "type", "param", "code"}}`)."""

    status: int
    message: str
    code: str | None = None
    type: str | None = None
    param: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. `needed` and `available` on a 402

    def __post_init__(self) -> None:
        super().__init__(self.message)

    @property
    def is_missing_route(self) -> bool:
        """The gateway has no such route (an older gateway), as opposed to no such video."""
        return self.status in (404, 405) and self.code is None and self.param is None

    @property
    def is_transient(self) -> bool:
        return self.status in (429, 502, 503, 504)


class TransportError(Exception):
    """The gateway could not be reached, or answered something that is not the API."""


@dataclass(frozen=True)
class Fetched:
    body: dict[str, Any]
    poll_after_ms: int | None  # the server's hint while the video is in flight


@dataclass(frozen=True)
class Downloaded:
    path: Path
    size_bytes: int
    content_type: str


def multipart_body(request: CreateVideo) -> aiohttp.FormData:
    texts, files = multipart_parts(request)
    form = aiohttp.FormData()
    for name, value in texts:
        form.add_field(name, value)
    for part in files:
        form.add_field(part.name, part.data, filename=part.filename, content_type=part.content_type)
    return form


class VidflowClient:
    def __init__(self, config: ClientConfig, session: aiohttp.ClientSession) -> None:
        self._base_url = config.base_url
        self._session = session
        host = urlsplit(config.base_url)
        # Named in connection errors: host and port only, never userinfo that may hold a password.
        self.gateway = f"{host.hostname}:{host.port}" if host.port else str(host.hostname)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, config: ClientConfig) -> AsyncIterator[VidflowClient]:
        headers = {"Authorization": f"Bearer {config.api_key}", "User-Agent": f"vidflow-cli/{__version__}"}
        # trust_env: HTTPS_PROXY and NO_PROXY apply, as they do for curl and the openai SDK.
        async with aiohttp.ClientSession(headers=headers, timeout=API_TIMEOUT, trust_env=True) as session:
            yield cls(config, session)

    async def create_video(
        self, request: CreateVideo, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        if request.references:
            return (await self._call("POST", "/videos", data=multipart_body(request), headers=headers)).body
        return (await self._call("POST", "/videos", json=create_fields(request), headers=headers)).body

    async def quote(self, request: CreateVideo) -> dict[str, Any]:
        return (await self._call("POST", "/billing/quote", json=create_fields(request))).body

    async def list_videos(
        self, *, limit: int | None = None, after: str | None = None, order: str | None = None
    ) -> dict[str, Any]:
        params = {
            name: str(value)
            for name, value in (("limit", limit), ("after", after), ("order", order))
            if value is not None
        }
        return (await self._call("GET", "/videos", params=params)).body

    async def get_video(self, video_id: str) -> Fetched:
        return await self._call("GET", f"/videos/{_segment(video_id)}")

    async def cancel_video(self, video_id: str) -> dict[str, Any]:
        return (await self._call("POST", f"/videos/{_segment(video_id)}/cancel")).body

    async def retry_video(self, video_id: str) -> dict[str, Any]:
        return (await self._call("POST", f"/videos/{_segment(video_id)}/retry")).body

    async def delete_video(self, video_id: str) -> dict[str, Any]:
        return (await self._call("DELETE", f"/videos/{_segment(video_id)}")).body

    async def balance(self) -> dict[str, Any]:
        return (await self._call("GET", "/billing/balance")).body

    async def download(self, video_id: str, *, variant: str, destination: Path) -> Downloaded:
        """Streams to a temporary file next to `destination`, renamed into place only when whole,
        so an interrupted download never leaves a truncated file under the final name."""
        url = f"{self._base_url}/videos/{_segment(video_id)}/content"
        try:
            async with self._session.get(
                url, params={"variant": variant}, timeout=DOWNLOAD_TIMEOUT
            ) as answer:
                if answer.status != 200:
                    raise await _api_error(answer)
                expected = None if "Content-Encoding" in answer.headers else answer.content_length
                size = await _save(destination, answer.content.iter_chunked(_CHUNK_BYTES), expected)
                return Downloaded(destination, size, answer.content_type)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._transport_error(exc) from None

    async def _call(self, method: str, path: str, **kwargs: Any) -> Fetched:
        try:
            async with self._session.request(method, f"{self._base_url}{path}", **kwargs) as answer:
                if answer.status >= 400:
                    raise await _api_error(answer)
                body = await _json_object(answer)
                return Fetched(body, _poll_after_ms(answer.headers.get(POLL_AFTER_HEADER)))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._transport_error(exc) from None

    def _transport_error(self, exc: BaseException) -> TransportError:
        if isinstance(exc, TimeoutError):
            return TransportError(f"The gateway at {self.gateway} did not answer in time.")
        if isinstance(exc, aiohttp.ClientConnectionError):
            return TransportError(f"Could not reach the gateway at {self.gateway}: {type(exc).__name__}.")
        return TransportError(f"The gateway at {self.gateway} sent a response the CLI cannot read.")


async def _save(destination: Path, chunks: AsyncIterator[bytes], expected_bytes: int | None) -> int:
    destination.parent.mkdir(parents=True, exist_ok=True)
    # Opened plainly (not with mkstemp's 0600), so the file gets the user's usual permissions.
    partial = destination.with_name(f".{destination.name}.{secrets.token_hex(4)}.part")
    size = 0
    try:
        # Disk writes off the event loop, so the socket keeps draining while the disk catches up.
        with await asyncio.to_thread(open, partial, "xb") as file:
            async for chunk in chunks:
                await asyncio.to_thread(file.write, chunk)
                size += len(chunk)
        if expected_bytes is not None and size != expected_bytes:
            raise TransportError(f"The download ended early ({size} of {expected_bytes} bytes).")
        os.replace(partial, destination)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise
    return size


def _segment(video_id: str) -> str:
    # Ids go into the path as one segment: "../billing" must not reach another route.
    return url_quote(video_id, safe="")


def _poll_after_ms(value: str | None) -> int | None:
    if value is None or not (value.isascii() and value.isdigit()) or len(value) > 9:
        return None
    return int(value)


async def _json_object(answer: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        body = json.loads(await answer.read())
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise TransportError(
            f"The gateway answered HTTP {answer.status} with {answer.content_type or 'no content type'}, "
            "not a JSON object; is the base URL the API root (ending in /v1)?"
        )
    return body


async def _api_error(answer: aiohttp.ClientResponse) -> ApiError:
    try:
        body = json.loads(await answer.read())
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        # Not our gateway's error body (a proxy's HTML page, say): report the status alone.
        return ApiError(status=answer.status, message=f"HTTP {answer.status} {answer.reason or ''}".strip())
    known = ("message", "code", "type", "param")
    return ApiError(
        status=answer.status,
        message=error["message"],
        code=_text_or_none(error.get("code")),
        type=_text_or_none(error.get("type")),
        param=_text_or_none(error.get("param")),
        extra={name: value for name, value in error.items() if name not in known},
    )


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
