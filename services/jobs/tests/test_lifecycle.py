import pytest

from services.jobs.domain.lifecycle import (
    ALLOWED_MOVES,
    IllegalMove,
    Stage,
    Status,
    check_move,
    retry_delay_seconds,
)


def test_every_stage_maps_to_an_openai_status():
    assert {stage.status for stage in Stage} == set(Status)


def test_terminal_stages_allow_no_moves_but_a_retry():
    assert ALLOWED_MOVES[Stage.COMPLETED] == frozenset()
    # A client's retry starts a failed job over from admission, where credits are held again.
    assert ALLOWED_MOVES[Stage.FAILED] == {Stage.ADMITTING}
    for stage in Stage:
        if not stage.is_terminal:
            assert ALLOWED_MOVES[stage], stage


def test_money_is_settled_before_a_job_ends():
    # Completed only through capture, failed (after admission) only through release.
    reaching_completed = {s for s, targets in ALLOWED_MOVES.items() if Stage.COMPLETED in targets}
    reaching_failed = {s for s, targets in ALLOWED_MOVES.items() if Stage.FAILED in targets}
    assert reaching_completed == {Stage.CAPTURING}
    assert reaching_failed == {Stage.RELEASING, Stage.ADMITTING}


def test_every_non_terminal_stage_can_end():
    for start in Stage:
        seen, frontier = {start}, [start]
        while frontier:
            for nxt in ALLOWED_MOVES[frontier.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert seen & {Stage.COMPLETED, Stage.FAILED}, start


def test_illegal_moves_are_refused():
    with pytest.raises(IllegalMove):
        check_move(Stage.COMPLETED, Stage.FAILED)
    with pytest.raises(IllegalMove):
        check_move(Stage.QUEUED, Stage.COMPLETED)


def test_retry_delay_grows_then_caps():
    delays = [retry_delay_seconds(n) for n in range(1, 12)]
    assert delays == sorted(delays)
    assert delays[0] == 1.0
    assert max(delays) == 60.0
