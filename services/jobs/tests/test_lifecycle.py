import pytest

from services.jobs.domain.lifecycle import (
    ALLOWED_MOVES,
    IllegalMove,
    Stage,
    Status,
    check_move,
    keeps_retrying,
    retry_delay_seconds,
    waited_before,
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


def test_the_backoff_waited_before_each_failure_adds_up_the_delays():
    assert waited_before(1) == 0
    assert [waited_before(n + 1) - waited_before(n) for n in range(1, 12)] == [
        retry_delay_seconds(n) for n in range(1, 12)
    ]


@pytest.mark.parametrize("patience", [0.5, 10.0, 300.0, 1800.0, 7200.0])
def test_a_step_keeps_retrying_for_its_patience_then_gives_up(patience):
    tries = 1
    while keeps_retrying(tries, patience):
        tries += 1
    # It waited less than the patience before its last retry, and gave up with the patience spent.
    assert waited_before(tries - 1) < patience <= waited_before(tries)


def test_an_outage_of_half_an_hour_is_waited_out_by_default():
    from services.jobs.config import WorkerSettings

    patience = WorkerSettings(worker_id="w").step_retry_patience_seconds
    thirty_minutes = next(n for n in range(1, 1000) if waited_before(n) >= 30 * 60 - 60)
    assert keeps_retrying(thirty_minutes, patience)
    # The old rule (eight tries) gave up after about two minutes.
    assert waited_before(8) < 130 < patience
