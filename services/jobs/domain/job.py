"""The job record as the rest of the service sees it."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from services.jobs.domain.lifecycle import Stage, Status
from services.jobs.domain.video_spec import VideoSpec


def new_job_id() -> str:
    # Same shape as OpenAI's ids; random, so it reveals nothing about the provider or order.
    return f"video_{secrets.token_hex(16)}"


@dataclass(frozen=True)
class Asset:
    object_key: str
    duration_seconds: float
    width: int
    height: int
    video_codec: str
    size_bytes: int


@dataclass(frozen=True)
class JobError:
    code: str
    message: str


@dataclass(frozen=True)
class Job:
    id: str
    owner_id: str
    spec: VideoSpec
    stage: Stage
    progress: int
    created_at: datetime
    completed_at: datetime | None = None
    expires_at: datetime | None = None
    error: JobError | None = None
    upstream_id: str | None = None
    cost_credits: int = 0
    asset: Asset | None = None
    attempts: int = 0
    event_sequence: int = 0
    traceparent: str = ""
    deployment: str | None = None
    upstream_model: str | None = None
    tried_deployments: frozenset[str] = frozenset()
    queued_at: datetime | None = None
    submitted_at: datetime | None = None
    last_progress_at: datetime | None = None
    poll_interval_seconds: float | None = None
    # 1 for the next job of its model to start; 0 once it has started.
    queue_position: int = 0
    # The API key that created the job, whose budget its hold counts against.
    api_key_id: str = ""
    # Object keys of the prepared reference images, in the client's order.
    reference_keys: tuple[str, ...] = ()

    @property
    def status(self) -> Status:
        return self.stage.status
