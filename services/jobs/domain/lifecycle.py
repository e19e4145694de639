"""Job stages, the client-visible status of each, and the moves allowed between them."""

from __future__ import annotations

import enum


class Status(enum.StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"


class Stage(enum.StrEnum):
    ADMITTING = "admitting"  # moderation and credit hold in progress
    QUEUED = "queued"  # admitted, waiting for a worker
    SUBMITTING = "submitting"  # create sent (or about to be) to the provider
    GENERATING = "generating"  # provider is working; we poll it
    DOWNLOADING = "downloading"  # copying the provider's files into staging storage
    RENDERING = "rendering"  # renderer ingests and probes the files
    CAPTURING = "capturing"  # charging the hold for the seconds delivered
    RELEASING = "releasing"  # giving the hold back after a failure
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def status(self) -> Status:
        return _STATUS_OF_STAGE[self]

    @property
    def is_terminal(self) -> bool:
        return self in (Stage.COMPLETED, Stage.FAILED)


_STATUS_OF_STAGE = {
    Stage.ADMITTING: Status.QUEUED,
    Stage.QUEUED: Status.QUEUED,
    Stage.SUBMITTING: Status.QUEUED,
    Stage.GENERATING: Status.IN_PROGRESS,
    Stage.DOWNLOADING: Status.IN_PROGRESS,
    Stage.RENDERING: Status.IN_PROGRESS,
    Stage.CAPTURING: Status.IN_PROGRESS,
    Stage.RELEASING: Status.IN_PROGRESS,
    Stage.COMPLETED: Status.COMPLETED,
    Stage.FAILED: Status.FAILED,
}

ALLOWED_MOVES: dict[Stage, frozenset[Stage]] = {
    Stage.ADMITTING: frozenset({Stage.QUEUED, Stage.FAILED}),
    Stage.QUEUED: frozenset({Stage.SUBMITTING, Stage.RELEASING}),
    # Back to QUEUED when its deployment failed: the dispatcher picks the next one.
    Stage.SUBMITTING: frozenset({Stage.GENERATING, Stage.RELEASING, Stage.QUEUED}),
    Stage.GENERATING: frozenset({Stage.GENERATING, Stage.DOWNLOADING, Stage.RELEASING}),
    # Back to SUBMITTING for the next clip of a long video.
    Stage.DOWNLOADING: frozenset({Stage.RENDERING, Stage.RELEASING, Stage.SUBMITTING}),
    Stage.RENDERING: frozenset({Stage.CAPTURING, Stage.RELEASING}),
    Stage.CAPTURING: frozenset({Stage.COMPLETED}),
    Stage.RELEASING: frozenset({Stage.FAILED}),
    Stage.COMPLETED: frozenset(),
    # A retry asked for by the client: admitted (credits held) again.
    Stage.FAILED: frozenset({Stage.ADMITTING}),
}

# Stages a worker drives forward. QUEUED jobs wait for the dispatcher, which starts them within
# each deployment's limit; ADMITTING rows are picked up only when their admission stalled.
WORKER_STAGES = (
    Stage.SUBMITTING,
    Stage.GENERATING,
    Stage.DOWNLOADING,
    Stage.RENDERING,
    Stage.CAPTURING,
    Stage.RELEASING,
)


class IllegalMove(Exception):
    def __init__(self, current: Stage, target: Stage) -> None:
        super().__init__(f"a job cannot move from {current} to {target}")


def check_move(current: Stage, target: Stage) -> None:
    if target not in ALLOWED_MOVES[current]:
        raise IllegalMove(current, target)


def retry_delay_seconds(attempt: int, *, base: float = 1.0, cap: float = 60.0) -> float:
    """Exponential backoff for a step that failed transiently; the worker adds no jitter because
    leases already spread replicas out."""
    return float(min(cap, base * (2 ** max(0, attempt - 1))))


def waited_before(attempt: int) -> float:
    """Seconds of backoff a step has sat out before its `attempt`-th failure (1 = the first)."""
    return sum(retry_delay_seconds(earlier) for earlier in range(1, attempt))


def keeps_retrying(attempt: int, patience_seconds: float) -> bool:
    """A step that failed transiently for the `attempt`-th time is tried again while the backoff it
    has waited out is shorter than the patience: an outage of our own storage, renderer or of the
    provider is a wait, measured in time rather than in tries, and only a long one fails the video."""
    return waited_before(attempt) < patience_seconds
