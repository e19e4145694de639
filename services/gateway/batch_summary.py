"""A video batch's counts and aggregate status, pure.

Each item is in one state: its video's status (`queued`, `in_progress`, `completed`, `failed`),
`rejected` when the item made no video (invalid, unfunded, over a limit...), or `deleted` when its
video was deleted since. The batch is:

- `in_progress` while any video is queued or in progress;
- `completed` when none is, and no item failed or was rejected;
- `failed` when nothing completed and at least one item failed or was rejected;
- `partially_failed` when some completed and some failed or were rejected.

Deleted videos count as neither success nor failure.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable


class ItemState(enum.StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    REJECTED = "rejected"
    DELETED = "deleted"


class BatchStatus(enum.StrEnum):
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    PARTIALLY_FAILED = "partially_failed"


def item_state(video_status: str | None, *, rejected: bool = False) -> ItemState:
    """From the item's video status; None with `rejected` when the item made no video, None
    without it when the video is gone."""
    if video_status is None:
        return ItemState.REJECTED if rejected else ItemState.DELETED
    return ItemState(video_status)


def counts(states: Iterable[ItemState]) -> dict[str, int]:
    tally = Counter(states)
    return {"total": sum(tally.values()), **{state.value: tally[state] for state in ItemState}}


def batch_status(tally: dict[str, int]) -> BatchStatus:
    if tally[ItemState.QUEUED] or tally[ItemState.IN_PROGRESS]:
        return BatchStatus.IN_PROGRESS
    unsuccessful = tally[ItemState.FAILED] + tally[ItemState.REJECTED]
    if not unsuccessful:
        return BatchStatus.COMPLETED
    return BatchStatus.PARTIALLY_FAILED if tally[ItemState.COMPLETED] else BatchStatus.FAILED
