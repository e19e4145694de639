"""The staging sweeper against real PostgreSQL and S3: the staged files of finished and deleted jobs
go after the retention; those of jobs in flight, or finished within it, stay."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

import pytest
from minio import Minio
from servicekit.db import make_engine, upgrade_schema

from services.jobs.app import MIGRATIONS
from services.jobs.domain.job import Job, new_job_id
from services.jobs.domain.lifecycle import Stage
from services.jobs.domain.video_spec import VideoSpec
from services.jobs.staging import StagingArea, segment_staging_key, staging_key
from services.jobs.staging_sweeper import StagingSweeper
from services.jobs.store import SCHEMA, Changes, JobStore

pytestmark = pytest.mark.integration

SPEC = VideoSpec(model="sora-2", prompt="a cat", seconds=4, size="720x1280")
# Each path from admission, ending in the stage named.
PATHS = {
    Stage.GENERATING: (Stage.QUEUED, Stage.SUBMITTING, Stage.GENERATING),
    Stage.FAILED: (Stage.QUEUED, Stage.RELEASING, Stage.FAILED),
    Stage.COMPLETED: (
        Stage.QUEUED,
        Stage.SUBMITTING,
        Stage.GENERATING,
        Stage.DOWNLOADING,
        Stage.RENDERING,
        Stage.CAPTURING,
        Stage.COMPLETED,
    ),
}


@pytest.fixture
async def store(fresh_database_url: str) -> AsyncIterator[JobStore]:
    await asyncio.to_thread(upgrade_schema, fresh_database_url, MIGRATIONS, SCHEMA)
    engine = make_engine(fresh_database_url, pool_size=2)
    yield JobStore(engine)
    await engine.dispose()


async def _job_at(store: JobStore, stage: Stage) -> Job:
    job = await store.insert_admitting(
        job_id=new_job_id(), owner_id="user_a", spec=SPEC, request_id=None, traceparent=""
    )
    for step in PATHS[stage]:
        job = await store.move(job, step)
    return job


async def _stage_files(staging: StagingArea, tmp_path, job_id: str, names: Sequence[str]) -> None:
    for name in names:
        path = tmp_path / name
        path.write_bytes(b"clip")
        await staging.upload_as(staging_key(job_id, name), path)


def _staged(s3: Minio, bucket: str) -> set[str]:
    return {item.object_name or "" for item in s3.list_objects(bucket, prefix="staging/", recursive=True)}


async def test_staged_files_of_finished_and_deleted_jobs_go_after_the_retention_and_no_others(
    store: JobStore, s3: Minio, s3_bucket: str, tmp_path
) -> None:
    staging = StagingArea(s3, s3_bucket)
    in_flight = await _job_at(store, Stage.GENERATING)
    failed = await _job_at(store, Stage.FAILED)
    completed = await _job_at(store, Stage.COMPLETED)
    deleted = new_job_id()  # its row is gone; its files were left behind
    clips = ["segment-0.mp4", "segment-1.mp4"]  # as a long video stages its finished clips
    for job_id in (in_flight.id, failed.id, completed.id, deleted):
        await _stage_files(staging, tmp_path, job_id, clips)
    # Something else in the bucket is never the sweeper's business.
    await staging.upload_as("media/user_a/video.mp4", tmp_path / clips[0])
    everything = _staged(s3, s3_bucket)

    # Within the retention, everything stays.
    patient = StagingSweeper(store, staging, retention=timedelta(hours=1), interval_seconds=60)
    assert await patient.sweep() == 0
    assert _staged(s3, s3_bucket) == everything

    # Past it, only the in-flight job keeps its files.
    prompt = StagingSweeper(store, staging, retention=timedelta(0), interval_seconds=60)
    assert await prompt.sweep() == 6
    assert _staged(s3, s3_bucket) == {staging_key(in_flight.id, name) for name in clips}
    assert [item.object_name for item in s3.list_objects(s3_bucket, prefix="media/", recursive=True)] == [
        "media/user_a/video.mp4"
    ]
    # A retry now makes every clip again: it keeps only clips whose files are still there.
    assert not await staging.exists(segment_staging_key(failed.id, 0))


async def test_a_failed_job_retried_within_the_retention_keeps_its_clips(
    store: JobStore, s3: Minio, s3_bucket: str, tmp_path
) -> None:
    staging = StagingArea(s3, s3_bucket)
    failed = await _job_at(store, Stage.FAILED)
    await _stage_files(staging, tmp_path, failed.id, ["segment-0.mp4"])
    retried = await store.move(failed, Stage.ADMITTING, Changes(progress=0))
    assert retried.stage is Stage.ADMITTING

    sweeper = StagingSweeper(store, staging, retention=timedelta(0), interval_seconds=60)
    assert await sweeper.sweep() == 0
    assert await staging.exists(segment_staging_key(failed.id, 0))
