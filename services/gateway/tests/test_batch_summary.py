"""A batch's counts and aggregate status from its items' states."""

from __future__ import annotations

import pytest

from services.gateway.batch_summary import BatchStatus, ItemState, batch_status, counts, item_state

Q, P, C, F, R, D = (
    ItemState.QUEUED,
    ItemState.IN_PROGRESS,
    ItemState.COMPLETED,
    ItemState.FAILED,
    ItemState.REJECTED,
    ItemState.DELETED,
)


def test_counts_name_every_state_and_add_up_to_the_total():
    tally = counts([Q, C, C, R, D])
    assert tally == {
        "total": 5,
        "queued": 1,
        "in_progress": 0,
        "completed": 2,
        "failed": 0,
        "rejected": 1,
        "deleted": 1,
    }


@pytest.mark.parametrize(
    ("states", "status"),
    [
        ([Q, C], BatchStatus.IN_PROGRESS),
        ([P, R], BatchStatus.IN_PROGRESS),  # still working, even with a rejection
        ([C, C], BatchStatus.COMPLETED),
        ([C, D], BatchStatus.COMPLETED),  # a deleted video is not a failure
        ([F, R], BatchStatus.FAILED),
        ([R], BatchStatus.FAILED),
        ([C, F], BatchStatus.PARTIALLY_FAILED),
        ([C, R, D], BatchStatus.PARTIALLY_FAILED),
    ],
)
def test_the_aggregate_status(states, status):
    assert batch_status(counts(states)) is status


def test_item_state_comes_from_the_video_or_from_its_absence():
    assert item_state("in_progress") is P
    assert item_state(None, rejected=True) is R
    assert item_state(None) is D
    with pytest.raises(ValueError):
        item_state("exploded")
