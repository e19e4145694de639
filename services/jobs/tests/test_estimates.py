from datetime import UTC, datetime, timedelta

from services.jobs.domain.estimates import DEFAULT_SECONDS_PER_VIDEO_SECOND, Typical, estimate_completion
from services.jobs.domain.job import Job
from services.jobs.domain.lifecycle import Stage
from services.jobs.domain.video_spec import VideoSpec

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
TYPICAL = Typical({"sora-2": 5.0})  # 5 s of wall time per second of video


def _job(
    stage: Stage, *, seconds: int = 8, progress: int = 0, position: int = 0, started_ago: float = 0
) -> Job:
    return Job(
        id="video_x",
        owner_id="user_x",
        spec=VideoSpec("sora-2", "a cat", seconds, "720x1280"),
        stage=stage,
        progress=progress,
        created_at=NOW - timedelta(seconds=started_ago + 1),
        submitted_at=NOW - timedelta(seconds=started_ago),
        queue_position=position,
    )


def test_a_queued_job_waits_for_the_waves_ahead_of_it_then_runs():
    # 40 s per 8 s video; 2 slots: positions 1-2 start now, 3-4 after one run.
    assert estimate_completion(_job(Stage.QUEUED, position=1), TYPICAL, slots=2, now=NOW) == NOW + timedelta(
        seconds=40
    )
    assert estimate_completion(_job(Stage.QUEUED, position=3), TYPICAL, slots=2, now=NOW) == NOW + timedelta(
        seconds=80
    )


def test_a_running_job_is_extrapolated_from_its_progress():
    job = _job(Stage.GENERATING, progress=25, started_ago=30)
    assert estimate_completion(job, TYPICAL, slots=1, now=NOW) == NOW + timedelta(seconds=90)


def test_early_progress_falls_back_to_the_typical_run():
    job = _job(Stage.GENERATING, progress=2, started_ago=10)
    assert estimate_completion(job, TYPICAL, slots=1, now=NOW) == NOW + timedelta(seconds=39.2)


def test_unknown_models_get_the_cautious_default_and_ended_jobs_none():
    unknown = Typical({})
    job = _job(Stage.QUEUED, position=1, seconds=4)
    assert estimate_completion(job, unknown, slots=1, now=NOW) == NOW + timedelta(
        seconds=4 * DEFAULT_SECONDS_PER_VIDEO_SECOND
    )
    assert estimate_completion(_job(Stage.COMPLETED), TYPICAL, slots=1, now=NOW) is None
    assert estimate_completion(_job(Stage.FAILED), TYPICAL, slots=1, now=NOW) is None
