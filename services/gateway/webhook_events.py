"""Client webhook events, pure: which event a job status is, the delivery id, the payload, and the
wait before the next try. No I/O here; `webhook_delivery` does that.

A delivery's id is the Standard Webhooks `webhook-id`. It is derived from what the event is about
(the target, the video, the event type, and which run of the video it ends), so the same event
reaching two replicas, or reaching one twice after a crash, is one delivery with one id.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime

from vidflow.jobs.v1 import jobs_pb2

from services.gateway.openai_format import video_resource

VIDEO_COMPLETED = "video.completed"
VIDEO_FAILED = "video.failed"
# Every status event while a video is queued or in progress (stage, progress, queue position).
VIDEO_PROGRESS = "video.progress"
EVENT_TYPES = (VIDEO_COMPLETED, VIDEO_FAILED, VIDEO_PROGRESS)
# What an endpoint gets when it names no events, and all a per-video webhook_url ever gets.
FINAL_EVENTS = (VIDEO_COMPLETED, VIDEO_FAILED)
# The target part of a delivery id for a per-video webhook_url (endpoints use their own id).
VIDEO_WEBHOOK_TARGET = "video_webhook"
DELIVERY_ID_PREFIX = "msg_"


def event_type_of(job: jobs_pb2.Job) -> str:
    if job.status == jobs_pb2.JOB_STATUS_COMPLETED:
        return VIDEO_COMPLETED
    if job.status == jobs_pb2.JOB_STATUS_FAILED:
        return VIDEO_FAILED
    return VIDEO_PROGRESS


def delivery_id(target: str, job: jobs_pb2.Job, event_type: str, sequence: int) -> str:
    """Final events are keyed by the run they end (a failed video that is retried can fail or
    complete again, once per run), so repeated status events of a finished run share one id.
    Progress events are keyed by the job's event sequence."""
    occurrence = sequence if event_type == VIDEO_PROGRESS else job.retry_count
    digest = hashlib.sha256(f"{target}\n{job.id}\n{event_type}\n{occurrence}".encode()).hexdigest()
    return DELIVERY_ID_PREFIX + digest[:32]


def payload(event_type: str, job: jobs_pb2.Job, occurred_at: datetime) -> bytes:
    """The body sent, byte for byte the same on every try: `{"type", "timestamp", "data"}`, with the
    video object exactly as `GET /v1/videos/{id}` showed it when the event happened."""
    body = {
        "type": event_type,
        "timestamp": occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "data": video_resource(job),
    }
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float
    max_seconds: float
    max_attempts: int

    def delay_after(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after try number `attempt` (1-based) failed: the exponential step
        `base * 2^(attempt-1)`, capped, of which the second half is random (equal jitter), so
        receivers that fail together are not all retried at the same moment."""
        step = min(self.max_seconds, self.base_seconds * 2 ** min(attempt - 1, 62))
        return step / 2 + (rng or random).uniform(0, step / 2)

    def gives_up_after(self, attempt: int) -> bool:
        return attempt >= self.max_attempts
