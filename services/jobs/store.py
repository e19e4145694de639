"""Jobs in PostgreSQL (schema `jobs`): rows, leases for workers, dispatch to deployments, and the
outbox of status events."""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from servicekit.errors import ErrorKind, ServiceError
from servicekit.outbox import outbox_insert, outbox_table
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    case,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from vidflow.jobs.v1 import events_pb2

from services.jobs.domain.dispatch import QueuedJob, assign
from services.jobs.domain.job import Asset, Job, JobError
from services.jobs.domain.lifecycle import WORKER_STAGES, Stage, check_move
from services.jobs.domain.routing import Registry
from services.jobs.domain.segments import Segment
from services.jobs.domain.video_spec import VideoSpec
from services.jobs.subjects import status_subject
from services.jobs.translate import job_to_proto

SCHEMA = "jobs"
metadata = MetaData(schema=SCHEMA)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner_id", String(64), nullable=False),
    Column("request_id", String(128)),
    Column("model", String(64), nullable=False),
    Column("prompt", Text, nullable=False),
    Column("seconds", Integer, nullable=False),
    Column("size", String(16), nullable=False),
    Column("stage", String(16), nullable=False),
    Column("progress", Integer, nullable=False, server_default="0"),
    Column("error_code", String(64)),
    Column("error_message", Text),
    Column("upstream_id", String(128)),
    Column("cost_credits", BigInteger, nullable=False, server_default="0"),
    Column("asset_key", Text),
    Column("asset_duration", Float),
    Column("asset_width", Integer),
    Column("asset_height", Integer),
    Column("asset_codec", String(32)),
    Column("asset_bytes", BigInteger),
    Column("traceparent", String(64), nullable=False, server_default=""),
    Column("event_sequence", BigInteger, nullable=False, server_default="0"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("lease_owner", String(128)),
    Column("lease_expires_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("completed_at", DateTime(timezone=True)),
    Column("expires_at", DateTime(timezone=True)),
    Column("deployment", String(64)),
    Column("upstream_model", String(128)),
    Column("tried_deployments", ARRAY(String(64)), nullable=False, server_default="{}"),
    Column("queued_at", DateTime(timezone=True)),
    Column("submitted_at", DateTime(timezone=True)),
    Column("last_progress_at", DateTime(timezone=True)),
    Column("poll_interval_seconds", Float),
    Column("api_key_id", String(64), nullable=False, server_default=""),
    Column("reference_keys", ARRAY(Text), nullable=False, server_default="{}"),
    Column("segments", JSONB, nullable=False, server_default="[]"),
    Column("segment_index", Integer, nullable=False, server_default="0"),
    Column("retry_count", Integer, nullable=False, server_default="0"),
    Column("last_retry_at", DateTime(timezone=True)),
    Column("remixed_from_job_id", String(64)),
    Column("remix_source_upstream_id", String(128)),
    Column("pinned_deployment", String(64)),
    Index("jobs_owner_created", "owner_id", "created_at", "id"),
    Index(
        "jobs_owner_request", "owner_id", "request_id", unique=True, postgresql_where="request_id IS NOT NULL"
    ),
    Index("jobs_due", "next_attempt_at", postgresql_where="stage NOT IN ('completed', 'failed')"),
    Index("jobs_queue", "model", "queued_at", "id", postgresql_where="stage = 'queued'"),
    Index(
        "jobs_upstream", "deployment", "upstream_id", unique=True, postgresql_where="upstream_id IS NOT NULL"
    ),
)
provider_events = Table(
    "provider_events",
    metadata,
    Column("event_id", String(128), primary_key=True),
    Column("deployment", String(64), nullable=False),
    Column("upstream_id", String(128), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
outbox = outbox_table(metadata)

_IN_FLIGHT_STAGES = (Stage.SUBMITTING.value, Stage.GENERATING.value)
_DISPATCH_LOCK = zlib.crc32(b"jobs.dispatch")
# Ids per IN (...) query, well below what PostgreSQL takes in one statement.
_ID_BATCH = 1000
# Two-key advisory locks in this space serialise creates per API key.
_KEY_LOCK_SPACE = zlib.crc32(b"jobs.api_key") & 0x7FFFFFFF
_queue = jobs.alias("ahead")
# 1-based place among queued jobs of the same model; 0 for jobs that are not queued.
_QUEUE_POSITION = case(
    (
        jobs.c.stage == Stage.QUEUED.value,
        select(func.count())
        .where(
            _queue.c.stage == Stage.QUEUED.value,
            _queue.c.model == jobs.c.model,
            tuple_(_queue.c.queued_at, _queue.c.id) <= tuple_(jobs.c.queued_at, jobs.c.id),
        )
        .scalar_subquery(),
    ),
    else_=0,
).label("queue_position")


class DuplicateRequest(Exception):
    """The owner already created a job with this request id."""


class ConcurrencyLimitReached(Exception):
    """The API key already has as many unfinished jobs as it may."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} unfinished jobs")
        self.limit = limit


class StaleJob(Exception):
    """Someone else moved the job first; the caller's view is out of date."""


@dataclass(frozen=True)
class Changes:
    """Fields a stage move may set alongside the stage; None leaves a field as it is."""

    progress: int | None = None
    error: JobError | None = None
    upstream_id: str | None = None
    cost_credits: int | None = None
    asset: Asset | None = None
    completed_at: datetime | None = None
    expires_at: datetime | None = None
    submitted_at: datetime | None = None
    # Failover: forget the deployment and remember that it failed this job.
    give_up_deployment: bool = False
    segments: tuple[Segment, ...] | None = None
    segment_index: int | None = None
    # The next clip of a long video: forget the finished clip's provider video.
    next_clip: bool = False
    # A retry: the job starts over from admission, keeping only its finished clips.
    retry_at: datetime | None = None

    def as_values(self, job: Job) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if self.progress is not None:
            values["progress"] = self.progress
            if self.progress != job.progress:
                values["last_progress_at"] = func.now()
        if self.error is not None:
            values["error_code"] = self.error.code
            values["error_message"] = self.error.message
        if self.upstream_id is not None:
            values["upstream_id"] = self.upstream_id
        if self.cost_credits is not None:
            values["cost_credits"] = self.cost_credits
        if self.asset is not None:
            values.update(
                asset_key=self.asset.object_key,
                asset_duration=self.asset.duration_seconds,
                asset_width=self.asset.width,
                asset_height=self.asset.height,
                asset_codec=self.asset.video_codec,
                asset_bytes=self.asset.size_bytes,
            )
        if self.completed_at is not None:
            values["completed_at"] = self.completed_at
        if self.expires_at is not None:
            values["expires_at"] = self.expires_at
        if self.submitted_at is not None:
            values["submitted_at"] = self.submitted_at
        if self.segments is not None:
            values["segments"] = [segment.to_json() for segment in self.segments]
        if self.segment_index is not None:
            values["segment_index"] = self.segment_index
        if self.next_clip:
            values.update(upstream_id=None, expires_at=None, poll_interval_seconds=None)
        if self.retry_at is not None:
            values.update(
                retry_count=job.retry_count + 1,
                last_retry_at=self.retry_at,
                error_code=None,
                error_message=None,
                upstream_id=None,
                expires_at=None,
                deployment=None,
                upstream_model=None,
                tried_deployments=[],
                queued_at=None,
                submitted_at=None,
                last_progress_at=None,
                poll_interval_seconds=None,
                cost_credits=0,
            )
        if self.give_up_deployment and job.deployment:
            values.update(
                deployment=None,
                upstream_model=None,
                upstream_id=None,
                tried_deployments=sorted(job.tried_deployments | {job.deployment}),
            )
        return values


@dataclass(frozen=True)
class DispatchResult:
    started: list[Job]
    # Queued jobs that every deployment serving their model has already failed.
    stranded: list[Job]


class JobStore:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        on_event_written: Callable[[], None] = lambda: None,
        on_moved: Callable[[Job, Job], None] = lambda before, after: None,
    ) -> None:
        self._engine = engine
        # Called after a commit that wrote a status event, so the outbox relay sends it at once.
        self._on_event_written = on_event_written
        # Called with (before, after) once a stage change is committed (metrics).
        self._on_moved = on_moved

    async def insert_admitting(
        self,
        *,
        job_id: str,
        owner_id: str,
        spec: VideoSpec,
        request_id: str | None,
        traceparent: str,
        api_key_id: str = "",
        segments: Sequence[Segment] = (),
        max_concurrent_jobs: int = 0,
        remix_of: Job | None = None,
        reference_keys: Sequence[str] = (),
    ) -> Job:
        """The row exists before any money moves, so a crash mid-admission leaves something to finish;
        it is born with its prepared reference images, so whoever finishes it has them. With a
        concurrency limit, the key's unfinished jobs are counted under a per-key lock, so concurrent
        creates cannot both take the last slot."""
        try:
            async with self._engine.begin() as conn:
                if max_concurrent_jobs > 0 and api_key_id:
                    await self._check_concurrency(conn, api_key_id, max_concurrent_jobs)
                row = (
                    await conn.execute(
                        jobs.insert()
                        .values(
                            id=job_id,
                            owner_id=owner_id,
                            request_id=request_id,
                            model=spec.model,
                            prompt=spec.prompt,
                            seconds=spec.seconds,
                            size=spec.size,
                            stage=Stage.ADMITTING.value,
                            traceparent=traceparent,
                            api_key_id=api_key_id,
                            segments=[segment.to_json() for segment in segments],
                            reference_keys=list(reference_keys),
                            remixed_from_job_id=remix_of.id if remix_of else None,
                            remix_source_upstream_id=remix_of.upstream_id if remix_of else None,
                            pinned_deployment=remix_of.deployment if remix_of else None,
                        )
                        .returning(jobs)
                    )
                ).one()
        except IntegrityError as exc:
            raise DuplicateRequest(request_id) from exc
        return _to_job(row)

    @staticmethod
    async def _check_concurrency(conn: AsyncConnection, api_key_id: str, limit: int) -> None:
        await conn.execute(select(func.pg_advisory_xact_lock(_KEY_LOCK_SPACE, func.hashtext(api_key_id))))
        unfinished = await conn.scalar(
            select(func.count())
            .select_from(jobs)
            .where(
                jobs.c.api_key_id == api_key_id,
                jobs.c.stage.not_in([Stage.COMPLETED.value, Stage.FAILED.value]),
            )
        )
        if (unfinished or 0) >= limit:
            raise ConcurrencyLimitReached(limit)

    async def get(self, job_id: str, *, owner_id: str | None = None) -> Job | None:
        query = select(jobs, _QUEUE_POSITION).where(jobs.c.id == job_id)
        if owner_id is not None:
            query = query.where(jobs.c.owner_id == owner_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
        return _to_job(row) if row else None

    async def get_owned(self, job_id: str, owner_id: str) -> Job:
        """The owner's job; a missing job and another owner's answer the same 404."""
        job = await self.get(job_id, owner_id=owner_id) if owner_id else None
        if job is None:
            raise ServiceError(
                ErrorKind.NOT_FOUND,
                f"No video found with id '{job_id}'.",
                param="video_id",
                code="video_not_found",
            )
        return job

    async def find_by_request_id(self, owner_id: str, request_id: str) -> Job | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(jobs, _QUEUE_POSITION).where(
                        jobs.c.owner_id == owner_id, jobs.c.request_id == request_id
                    )
                )
            ).one_or_none()
        return _to_job(row) if row else None

    async def delete_finished(self, job: Job) -> None:
        """Forget a completed or failed job (its assets are already gone)."""
        async with self._engine.begin() as conn:
            await conn.execute(
                jobs.delete().where(
                    jobs.c.id == job.id, jobs.c.stage.in_([Stage.COMPLETED.value, Stage.FAILED.value])
                )
            )

    async def finished_or_gone(self, job_ids: Sequence[str], *, finished_before: datetime) -> list[str]:
        """Those of `job_ids` that no longer exist, or were last changed before `finished_before`
        and are completed or failed: nothing will read their staged files again."""
        in_use: set[str] = set()
        async with self._engine.connect() as conn:
            for start in range(0, len(job_ids), _ID_BATCH):
                batch = list(job_ids[start : start + _ID_BATCH])
                rows = await conn.execute(
                    select(jobs.c.id).where(
                        jobs.c.id.in_(batch),
                        or_(
                            jobs.c.stage.not_in([Stage.COMPLETED.value, Stage.FAILED.value]),
                            jobs.c.updated_at >= finished_before,
                        ),
                    )
                )
                in_use.update(row.id for row in rows)
        return [job_id for job_id in job_ids if job_id not in in_use]

    async def delete_admitting(self, job_id: str) -> None:
        """Forget a job whose admission was refused before anything was published or charged."""
        async with self._engine.begin() as conn:
            await conn.execute(
                jobs.delete().where(jobs.c.id == job_id, jobs.c.stage == Stage.ADMITTING.value)
            )

    async def list_for_owner(
        self, owner_id: str, *, limit: int, after_id: str | None, descending: bool
    ) -> tuple[list[Job], bool]:
        """One page of the owner's visible jobs and whether more follow."""
        query = select(jobs, _QUEUE_POSITION).where(
            jobs.c.owner_id == owner_id, jobs.c.stage != Stage.ADMITTING.value
        )
        key = tuple_(jobs.c.created_at, jobs.c.id)
        async with self._engine.connect() as conn:
            if after_id:
                cursor = (
                    await conn.execute(
                        select(jobs.c.created_at, jobs.c.id).where(
                            jobs.c.owner_id == owner_id, jobs.c.id == after_id
                        )
                    )
                ).one_or_none()
                if cursor is None:
                    return [], False
                query = query.where(key < tuple_(*cursor) if descending else key > tuple_(*cursor))
            order = (
                (jobs.c.created_at.desc(), jobs.c.id.desc()) if descending else (jobs.c.created_at, jobs.c.id)
            )
            rows = (await conn.execute(query.order_by(*order).limit(limit + 1))).all()
        return [_to_job(row) for row in rows[:limit]], len(rows) > limit

    async def move(
        self, job: Job, target: Stage, changes: Changes = Changes(), *, publish: bool = True
    ) -> Job:
        """Change stage (and fields) and write the status event in the same transaction."""
        check_move(job.stage, target)
        values = changes.as_values(job)
        values.update(stage=target.value, next_attempt_at=func.now())
        if target is Stage.QUEUED and job.queued_at is None:
            values["queued_at"] = func.now()
        async with self._engine.begin() as conn:
            updated = await _update_in(conn, job, values, publish=publish)
        if publish:
            self._on_event_written()
        self._on_moved(job, updated)
        return updated

    async def record_progress(
        self,
        job: Job,
        progress: int,
        *,
        next_poll_in: float,
        changed: bool | None = None,
        segments: Sequence[Segment] | None = None,
    ) -> Job:
        """Progress within a stage: an event only when the number (or a clip's) changed."""
        if changed is None:
            changed = progress != job.progress or (segments is not None and tuple(segments) != job.segments)
        publish = changed
        values: dict[str, Any] = {
            "progress": progress,
            "poll_interval_seconds": next_poll_in,
            "next_attempt_at": func.now() + timedelta(seconds=next_poll_in),
        }
        if segments is not None:
            values["segments"] = [segment.to_json() for segment in segments]
        if progress != job.progress:
            values["last_progress_at"] = func.now()
        async with self._engine.begin() as conn:
            updated = await _update_in(conn, job, values, publish=publish)
        if publish:
            self._on_event_written()
        return updated

    async def retry_later(self, job: Job, delay_seconds: float, *, lease_owner: str) -> None:
        """Try the step again after `delay_seconds`, if the caller still holds the job's lease at the
        stage it saw: a worker whose lease ran out must not push back (or unlease) the step another
        worker is now running, or a later stage's."""
        async with self._engine.begin() as conn:
            changed = await conn.execute(
                update(jobs)
                .where(
                    jobs.c.id == job.id, jobs.c.stage == job.stage.value, jobs.c.lease_owner == lease_owner
                )
                .values(
                    attempts=jobs.c.attempts + 1,
                    next_attempt_at=func.now() + timedelta(seconds=delay_seconds),
                    lease_owner=None,
                    lease_expires_at=None,
                )
            )
        if changed.rowcount == 0:
            raise StaleJob(job.id)

    async def dispatch(
        self, registry: Registry, *, unavailable: frozenset[str] = frozenset(), batch: int = 500
    ) -> DispatchResult:
        """Start the oldest queued jobs on deployments with free slots. One dispatcher runs at a time
        across replicas (advisory lock), so slot counts cannot race; a busy lock means another
        replica is dispatching right now, and this call does nothing."""
        started: list[Job] = []
        stranded: list[Job] = []
        async with self._engine.begin() as conn:
            # Most ticks find nothing queued; that answer comes from the small partial index,
            # without counting every in-flight job.
            if not await conn.scalar(select(jobs.c.id).where(jobs.c.stage == Stage.QUEUED.value).limit(1)):
                return DispatchResult([], [])
            if not await conn.scalar(select(func.pg_try_advisory_xact_lock(_DISPATCH_LOCK))):
                return DispatchResult([], [])
            in_flight = {
                row.deployment: row.in_flight
                for row in await conn.execute(
                    select(jobs.c.deployment, func.count().label("in_flight"))
                    .where(jobs.c.stage.in_(_IN_FLIGHT_STAGES), jobs.c.deployment.is_not(None))
                    .group_by(jobs.c.deployment)
                )
            }
            if all(
                in_flight.get(name, 0) >= deployment.max_concurrent
                for name, deployment in registry.deployments.items()
            ):
                # Every slot is taken: reading the queue would start nothing. (A job no deployment
                # can take is failed at the next tick with a free slot.)
                return DispatchResult([], [])
            queued_rows = (
                await conn.execute(
                    select(jobs)
                    .where(jobs.c.stage == Stage.QUEUED.value)
                    .order_by(jobs.c.queued_at, jobs.c.id)
                    .limit(batch)
                )
            ).all()
            queued = {row.id: _to_job(row) for row in queued_rows}
            assignments, exhausted = assign(
                registry,
                [
                    QueuedJob(job.id, job.spec.model, job.tried_deployments, job.pinned_deployment)
                    for job in queued.values()
                ],
                in_flight,
                unavailable,
            )
            for assignment in assignments:
                job = queued[assignment.job_id]
                values = {
                    "stage": Stage.SUBMITTING.value,
                    "deployment": assignment.route.deployment,
                    "upstream_model": assignment.route.upstream_model,
                    "next_attempt_at": func.now(),
                    # The first start, for how long videos take; a failover keeps it.
                    "submitted_at": func.coalesce(jobs.c.submitted_at, func.now()),
                }
                started.append(await _update_in(conn, job, values, publish=True))
            stranded = [queued[job_id] for job_id in exhausted]
        if started:
            self._on_event_written()
        for job in started:
            self._on_moved(queued[job.id], job)
        return DispatchResult(started, stranded)

    async def lease_due(
        self, *, worker_id: str, limit: int, lease_seconds: float, admission_grace_seconds: float
    ) -> list[Job]:
        """Claim due jobs for this worker. SKIP LOCKED keeps replicas from claiming the same row,
        and the lease expiry hands a crashed worker's jobs to another. Polls come last: with
        thousands of videos overdue for a poll, a finished video must not wait behind them."""
        now = func.now()
        due = and_(
            jobs.c.next_attempt_at <= now,
            or_(jobs.c.lease_expires_at.is_(None), jobs.c.lease_expires_at < now),
        )
        pipeline = or_(
            jobs.c.stage.in_([stage.value for stage in WORKER_STAGES if stage is not Stage.GENERATING]),
            and_(
                jobs.c.stage == Stage.ADMITTING.value,
                jobs.c.created_at < now - timedelta(seconds=admission_grace_seconds),
            ),
        )
        leased: list[Job] = []
        async with self._engine.begin() as conn:
            for wanted in (pipeline, jobs.c.stage == Stage.GENERATING.value):
                room = limit - len(leased)
                if room <= 0:
                    break
                picked = (
                    select(jobs.c.id)
                    .where(wanted, due)
                    .order_by(jobs.c.next_attempt_at)
                    .limit(room)
                    .with_for_update(skip_locked=True)
                )
                rows = (
                    await conn.execute(
                        update(jobs)
                        .where(jobs.c.id.in_(picked.scalar_subquery()))
                        .values(
                            lease_owner=worker_id, lease_expires_at=now + timedelta(seconds=lease_seconds)
                        )
                        .returning(jobs)
                    )
                ).all()
                leased.extend(_to_job(row) for row in rows)
        return leased

    async def record_provider_event(
        self, *, event_id: str, deployment: str, upstream_id: str, event_type: str
    ) -> tuple[bool, Job | None]:
        """Remember a provider webhook once. Returns (first time seen, the job it concerns)."""
        async with self._engine.begin() as conn:
            inserted = await conn.scalar(
                insert(provider_events)
                .values(
                    event_id=event_id, deployment=deployment, upstream_id=upstream_id, event_type=event_type
                )
                .on_conflict_do_nothing()
                .returning(provider_events.c.event_id)
            )
            row = (
                await conn.execute(
                    select(jobs).where(jobs.c.deployment == deployment, jobs.c.upstream_id == upstream_id)
                )
            ).one_or_none()
        return inserted is not None, _to_job(row) if row else None

    async def upstream_claimed(self, deployment: str, upstream_id: str) -> bool:
        """Whether a job already owns this provider video, as its current clip or a finished one."""
        finished_clip = jobs.c.segments.contains([{"deployment": deployment, "upstream_id": upstream_id}])
        async with self._engine.connect() as conn:
            found = await conn.scalar(
                select(jobs.c.id)
                .where(
                    or_(
                        and_(jobs.c.deployment == deployment, jobs.c.upstream_id == upstream_id),
                        finished_clip,
                    )
                )
                .limit(1)
            )
        return found is not None

    async def typical_durations(self, *, sample: int = 200) -> dict[str, float]:
        """Median seconds from first start to completion per second of video, by model, over the
        most recent completed jobs."""
        recent = (
            select(
                jobs.c.model,
                (func.extract("epoch", jobs.c.completed_at - jobs.c.submitted_at) / jobs.c.seconds).label(
                    "rate"
                ),
            )
            .where(
                jobs.c.stage == Stage.COMPLETED.value,
                jobs.c.submitted_at.is_not(None),
                jobs.c.completed_at.is_not(None),
            )
            .order_by(jobs.c.completed_at.desc())
            .limit(sample)
            .subquery()
        )
        query = select(
            recent.c.model, func.percentile_cont(0.5).within_group(recent.c.rate).label("median")
        ).group_by(recent.c.model)
        async with self._engine.connect() as conn:
            return {row.model: float(row.median) for row in await conn.execute(query)}

    async def events_for(self, job_id: str) -> Sequence[bytes]:
        """Status events written for a job, oldest first (for tests and replays)."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(outbox.c.payload).where(outbox.c.msg_id.like(f"{job_id}:%")).order_by(outbox.c.id)
            )
            return [row.payload for row in rows]


async def _update_in(conn: AsyncConnection, job: Job, values: dict[str, Any], *, publish: bool) -> Job:
    """Compare-and-set on the stage the caller saw; ends the caller's lease and resets retries."""
    values = {
        **values,
        "updated_at": func.now(),
        "attempts": 0,
        "lease_owner": None,
        "lease_expires_at": None,
    }
    if publish:
        values["event_sequence"] = jobs.c.event_sequence + 1
    row = (
        await conn.execute(
            update(jobs)
            .where(jobs.c.id == job.id, jobs.c.stage == job.stage.value)
            .values(**values)
            .returning(jobs)
        )
    ).one_or_none()
    if row is None:
        raise StaleJob(job.id)
    updated = _to_job(row)
    if publish:
        await _enqueue_status_event(conn, updated)
    return updated


async def _enqueue_status_event(conn: AsyncConnection, job: Job) -> None:
    event = events_pb2.VideoStatusChangedEvent(
        event_id=uuid.uuid4().hex, sequence=job.event_sequence, job=job_to_proto(job)
    )
    event.occur_time.GetCurrentTime()
    await conn.execute(
        outbox_insert(
            outbox,
            subject=status_subject(job.owner_id, job.id),
            payload=event.SerializeToString(),
            msg_id=f"{job.id}:{job.event_sequence}",
        )
    )


def _to_job(row: Any) -> Job:
    asset = (
        Asset(
            object_key=row.asset_key,
            duration_seconds=row.asset_duration or 0.0,
            width=row.asset_width or 0,
            height=row.asset_height or 0,
            video_codec=row.asset_codec or "",
            size_bytes=row.asset_bytes or 0,
        )
        if row.asset_key
        else None
    )
    return Job(
        id=row.id,
        owner_id=row.owner_id,
        spec=VideoSpec(model=row.model, prompt=row.prompt, seconds=row.seconds, size=row.size),
        stage=Stage(row.stage),
        progress=row.progress,
        created_at=row.created_at,
        completed_at=row.completed_at,
        expires_at=row.expires_at,
        error=JobError(row.error_code, row.error_message or "") if row.error_code else None,
        upstream_id=row.upstream_id,
        cost_credits=row.cost_credits,
        asset=asset,
        attempts=row.attempts,
        event_sequence=row.event_sequence,
        traceparent=row.traceparent,
        deployment=row.deployment,
        upstream_model=row.upstream_model,
        tried_deployments=frozenset(row.tried_deployments or ()),
        queued_at=row.queued_at,
        submitted_at=row.submitted_at,
        last_progress_at=row.last_progress_at,
        poll_interval_seconds=row.poll_interval_seconds,
        queue_position=getattr(row, "queue_position", 0) or 0,
        api_key_id=row.api_key_id,
        reference_keys=tuple(row.reference_keys or ()),
        segments=tuple(Segment.from_json(item) for item in row.segments or ()),
        segment_index=row.segment_index,
        retry_count=row.retry_count,
        last_retry_at=row.last_retry_at,
        remixed_from_job_id=row.remixed_from_job_id,
        remix_source_upstream_id=row.remix_source_upstream_id,
        pinned_deployment=row.pinned_deployment,
    )
