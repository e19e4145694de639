"""The job record as the rest of the service sees it."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from datetime import datetime

from services.jobs.domain.job_error import JobError
from services.jobs.domain.lifecycle import Stage, Status
from services.jobs.domain.segments import Segment
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
    # A long video's clips, in order; empty for a single clip.
    segments: tuple[Segment, ...] = ()
    # The clip being made now.
    segment_index: int = 0
    retry_count: int = 0
    last_retry_at: datetime | None = None
    # A remix: the job it was remixed from, and the provider video the remix is made from, on
    # the deployment that made it.
    remixed_from_job_id: str | None = None
    remix_source_upstream_id: str | None = None
    pinned_deployment: str | None = None

    @property
    def status(self) -> Status:
        return self.stage.status

    @property
    def hold_key(self) -> str:
        """Billing's key for this attempt's credit hold: each retry holds credits anew."""
        return self.id if not self.retry_count else f"{self.id}.retry-{self.retry_count}"

    @property
    def current_segment(self) -> Segment | None:
        if not self.segments or self.segment_index >= len(self.segments):
            return None
        return self.segments[self.segment_index]

    @property
    def provider_spec(self) -> VideoSpec:
        """What the provider is asked for now: the whole video, or the current clip of a long one."""
        segment = self.current_segment
        if segment is None:
            return self.spec
        return replace(self.spec, prompt=segment.prompt, seconds=segment.seconds)

    @property
    def provider_request_key(self) -> str:
        """The Idempotency-Key of the provider create: one video per clip and per retry."""
        key = self.id
        segment = self.current_segment
        if segment is not None:
            key += f".s{segment.index}"
            if segment.retry_count:
                key += f".r{segment.retry_count}"
        elif self.retry_count:
            key += f".r{self.retry_count}"
        return key
