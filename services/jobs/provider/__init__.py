"""The provider port: what the jobs service needs from any video-generation API.

`openai_videos.OpenAIVideosProvider` speaks the OpenAI `/v1/videos` contract (hosted vendors,
vLLM-Omni, SGLang, our simulator). Another API family (long-running operations, queue APIs)
is one more class with these three methods.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from services.jobs.domain.video_spec import VideoSpec


class UpstreamStatus(enum.StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    # Anything else a provider may add (cancelled, expired...) ends the job rather than spinning.
    ENDED_OTHERWISE = "ended_otherwise"


@dataclass(frozen=True)
class UpstreamVideo:
    id: str
    status: UpstreamStatus
    progress: int
    error_code: str = ""
    error_message: str = ""
    expires_at: datetime | None = None
    poll_after_seconds: float | None = None
    created_at: datetime | None = None
    # What the video was made from, for reconciling a create whose answer was lost.
    prompt: str = ""
    model: str = ""
    size: str = ""
    seconds: str = ""


class ProviderErrorKind(enum.StrEnum):
    CONTENT_POLICY = "content_policy"
    RATE_LIMITED = "rate_limited"
    TRANSIENT = "transient"
    INVALID_REQUEST = "invalid_request"
    PERMANENT = "permanent"

    @property
    def retryable(self) -> bool:
        return self in (ProviderErrorKind.RATE_LIMITED, ProviderErrorKind.TRANSIENT)


class ProviderError(Exception):
    def __init__(
        self,
        kind: ProviderErrorKind,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        code: str = "",
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after
        # The provider's own error code, for example "video_expired".
        self.code = code


class AssetVariant(enum.StrEnum):
    VIDEO = "video"
    THUMBNAIL = "thumbnail"
    SPRITESHEET = "spritesheet"


@dataclass(frozen=True)
class ReferenceFile:
    """A prepared reference image, sent as OpenAI's `input_reference` upload."""

    data: bytes
    content_type: str
    filename: str


class VideoProvider(Protocol):
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
        """Start a video; never start a second one for the same key, even after a lost answer.
        `not_before` bounds the search for a video an earlier attempt may have created, and
        `claimed` says whether an upstream id already belongs to another job."""
        ...

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
        """Start a remix of a video this deployment made, with the same guarantees as `create`."""
        ...

    async def retrieve(self, upstream_id: str) -> UpstreamVideo: ...

    async def download(self, upstream_id: str, variant: AssetVariant, destination: Path) -> None: ...
