"""Long videos: a request longer than a model makes in one clip becomes several clips (segments),
generated in order, each from the previous clip's last frame, then stitched into one video.

Everything here is pure: planning the clips, splitting a prompt among them, and how far along
the whole video is.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from servicekit.errors import ErrorKind, ServiceError

from services.jobs.domain.job_error import JobError

# The longest clip a model makes in one request (the Videos API's largest `seconds`).
LONGEST_CLIP_SECONDS = 20
# Clip lengths the Videos API accepts; a planned or requested clip must be one of them.
CLIP_SECONDS = (4, 8, 12, 16, 20)
MAX_SEGMENTS = 12
MAX_VIDEO_SECONDS = 120
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n+")


class SegmentStatus(enum.StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True)
class Segment:
    index: int
    prompt: str
    seconds: int
    status: SegmentStatus = SegmentStatus.PENDING
    progress: int = 0
    upstream_id: str | None = None
    deployment: str | None = None
    error: JobError | None = None
    retry_count: int = 0
    # When this clip's generation began; a lost create is looked for among videos made after it.
    started_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "prompt": self.prompt,
            "seconds": self.seconds,
            "status": self.status.value,
            "progress": self.progress,
            "upstream_id": self.upstream_id,
            "deployment": self.deployment,
            "error": {"code": self.error.code, "message": self.error.message} if self.error else None,
            "retry_count": self.retry_count,
            "started_at": self.started_at.isoformat() if self.started_at else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Segment:
        error = data.get("error")
        started = data.get("started_at")
        return cls(
            index=int(data["index"]),
            prompt=str(data["prompt"]),
            seconds=int(data["seconds"]),
            status=SegmentStatus(data.get("status", SegmentStatus.PENDING.value)),
            progress=int(data.get("progress", 0)),
            upstream_id=data.get("upstream_id"),
            deployment=data.get("deployment"),
            error=JobError(error["code"], error["message"]) if error else None,
            retry_count=int(data.get("retry_count", 0)),
            started_at=datetime.fromisoformat(started) if started else None,
        )


def is_long(seconds: int) -> bool:
    return seconds > LONGEST_CLIP_SECONDS


def check_long_seconds(seconds: int) -> None:
    """A long video is made of whole clips, so its length is a multiple of the shortest clip."""
    unit = CLIP_SECONDS[0]
    if seconds > MAX_VIDEO_SECONDS or seconds % unit:
        raise _invalid(
            "seconds",
            f"Invalid seconds {seconds}. Videos longer than {LONGEST_CLIP_SECONDS} s are made of clips: "
            f"use a multiple of {unit} up to {MAX_VIDEO_SECONDS}, or send `segments`.",
        )


def plan(prompt: str, seconds: int, requested: Sequence[tuple[str, int]] = ()) -> tuple[Segment, ...]:
    """The clips of a video: the client's, or planned from the prompt when the video is longer than
    one clip; none for a single clip."""
    if requested:
        return _requested(requested)
    if not is_long(seconds):
        return ()
    check_long_seconds(seconds)
    lengths = split_seconds(seconds)
    prompts = split_prompt(prompt, len(lengths))
    return tuple(
        Segment(index=i, prompt=text, seconds=length)
        for i, (text, length) in enumerate(zip(prompts, lengths, strict=True))
    )


def _requested(requested: Sequence[tuple[str, int]]) -> tuple[Segment, ...]:
    if len(requested) > MAX_SEGMENTS:
        raise _invalid("segments", f"At most {MAX_SEGMENTS} segments; got {len(requested)}.")
    segments = []
    for index, (prompt, seconds) in enumerate(requested):
        if not prompt or not prompt.strip():
            raise _invalid(f"segments[{index}].prompt", "Every segment needs a prompt.")
        if "\x00" in prompt:
            raise _invalid(f"segments[{index}].prompt", "The prompt must not contain NUL characters.")
        if seconds not in CLIP_SECONDS:
            raise _invalid(
                f"segments[{index}].seconds",
                f"Invalid seconds {seconds}. Allowed values: {', '.join(map(str, CLIP_SECONDS))}.",
            )
        segments.append(Segment(index=index, prompt=prompt.strip(), seconds=seconds))
    total = sum(segment.seconds for segment in segments)
    if total > MAX_VIDEO_SECONDS:
        raise _invalid("segments", f"The segments add up to {total} s; the maximum is {MAX_VIDEO_SECONDS}.")
    return tuple(segments)


def split_seconds(total: int) -> list[int]:
    """As few clips as possible, as even as the clip lengths allow, longer ones first."""
    unit = CLIP_SECONDS[0]
    count = math.ceil(total / LONGEST_CLIP_SECONDS)
    units_each, extra = divmod(total // unit, count)
    return [(units_each + 1) * unit] * extra + [units_each * unit] * (count - extra)


def split_prompt(prompt: str, count: int) -> list[str]:
    """Consecutive sentences shared out among the clips, balanced by length. A prompt with fewer
    sentences than clips describes one continuous shot: every clip gets all of it."""
    sentences = [part.strip() for part in _SENTENCE_END.split(prompt.strip()) if part and part.strip()]
    if len(sentences) < count:
        return [prompt.strip()] * count
    total = sum(len(sentence) for sentence in sentences)
    groups: list[list[str]] = [[] for _ in range(count)]
    consumed = 0
    group = 0
    for position, sentence in enumerate(sentences):
        later_groups = count - 1 - group
        if groups[group] and later_groups:
            has_share = consumed >= total * (group + 1) / count
            # Every later clip needs at least one of the sentences left.
            must_move = len(sentences) - position == later_groups
            if has_share or must_move:
                group += 1
        groups[group].append(sentence)
        consumed += len(sentence)
    return [" ".join(parts) for parts in groups]


def overall_progress(segments: Sequence[Segment]) -> int:
    """Progress of the whole video, weighted by each clip's length."""
    total = sum(segment.seconds for segment in segments)
    if not total:
        return 0
    done = sum(
        segment.seconds * (100 if segment.status is SegmentStatus.COMPLETED else segment.progress)
        for segment in segments
    )
    return done // total


def with_segment(segments: Sequence[Segment], index: int, **changes: Any) -> tuple[Segment, ...]:
    return tuple(replace(segment, **changes) if segment.index == index else segment for segment in segments)


def reset_for_retry(segments: Sequence[Segment], kept: set[int]) -> tuple[Segment, ...]:
    """Clips in `kept` stay finished; every other clip is generated again."""
    reset = []
    for segment in segments:
        if segment.index in kept and segment.status is SegmentStatus.COMPLETED:
            reset.append(segment)
            continue
        reset.append(
            Segment(
                index=segment.index,
                prompt=segment.prompt,
                seconds=segment.seconds,
                retry_count=segment.retry_count + (segment.status is not SegmentStatus.PENDING),
            )
        )
    return tuple(reset)


def first_unfinished(segments: Sequence[Segment]) -> int:
    return next(
        (segment.index for segment in segments if segment.status is not SegmentStatus.COMPLETED),
        len(segments),
    )


def _invalid(param: str, message: str) -> ServiceError:
    return ServiceError(ErrorKind.INVALID_ARGUMENT, message, param=param, code="invalid_value")
