"""When a video will probably be ready: from how long this model's recent videos took per second of
video, how far along the job is, and how many videos wait ahead of it for a provider slot."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.jobs.domain.job import Job
from services.jobs.domain.lifecycle import Stage

# Before any video of a model has finished here: a cautious guess, per second of video.
DEFAULT_SECONDS_PER_VIDEO_SECOND = 15.0
# Below this much progress, extrapolating from it is noise; the typical time is better.
_MIN_PROGRESS_TO_EXTRAPOLATE = 10


@dataclass(frozen=True)
class Typical:
    """Recent wall time from submission to completion per second of video, by model."""

    seconds_per_video_second: dict[str, float]

    def run_seconds(self, job: Job) -> float:
        rate = self.seconds_per_video_second.get(job.spec.model, DEFAULT_SECONDS_PER_VIDEO_SECOND)
        return rate * job.spec.seconds


def estimate_completion(job: Job, typical: Typical, *, slots: int, now: datetime) -> datetime | None:
    """None once the job has ended."""
    if job.stage.is_terminal:
        return None
    run = typical.run_seconds(job)
    if job.stage in (Stage.ADMITTING, Stage.QUEUED):
        # Those ahead start in waves of `slots`; ours starts after its wave, then runs.
        waves = math.ceil(max(job.queue_position, 1) / max(slots, 1)) - 1
        return now + timedelta(seconds=waves * run + run)
    started = job.submitted_at or job.queued_at or job.created_at
    elapsed = max((now - started).total_seconds(), 0.0)
    if job.progress >= _MIN_PROGRESS_TO_EXTRAPOLATE:
        remaining = elapsed * (100 - job.progress) / job.progress
    else:
        remaining = max(run - elapsed, run * (100 - job.progress) / 100)
    return now + timedelta(seconds=remaining)
