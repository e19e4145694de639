"""The jobs service's metrics: stage changes, time to finish, provider calls, and queue gauges.

Counters and histograms are recorded where things happen (`JobStore.move` and dispatch,
`OpenAIVideosProvider._request`); the gauges are counted in PostgreSQL just before each scrape,
so every replica reports the same, true numbers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from servicekit.metrics import Reading, get_meter, observed_gauge
from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.jobs.domain.job import Job
from services.jobs.domain.lifecycle import Stage
from services.jobs.domain.routing import Registry
from services.jobs.store import _IN_FLIGHT_STAGES, jobs

SERVICE = "jobs"
METER = "vidflow.jobs"
# Seconds from create to completed or failed: videos take from seconds to an hour or so.
FINISH_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
# Seconds to a provider's response headers (downloads stream on after that).
PROVIDER_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_UNFINISHED = tuple(stage for stage in Stage if not stage.is_terminal)
# Failures the platform did not cause; every other code (provider, render, timeout...) is an error.
_FAILURE_CAUSES = {"moderation_blocked": "moderation", "cancelled": "cancelled"}

_meter = get_meter(METER)
_moves = _meter.create_counter(
    "vidflow_jobs_transitions", unit="1", description="Jobs that entered each stage"
)
_finish_time = _meter.create_histogram(
    "vidflow_jobs_completion_time_seconds",
    unit="s",
    description="Time from create to completed or failed",
    explicit_bucket_boundaries_advisory=FINISH_BUCKETS,
)
_failures = _meter.create_counter(
    "vidflow_jobs_failures",
    unit="1",
    description="Failed jobs by cause: moderation (refused), cancelled (by the client) or error",
)
_provider_requests = _meter.create_counter(
    "vidflow_provider_requests",
    unit="1",
    description="Provider HTTP requests; outcome is the status class, 429, timeout or connection_error",
)
_provider_latency = _meter.create_histogram(
    "vidflow_provider_request_duration_seconds",
    unit="s",
    description="Time to a provider deployment's response headers",
    explicit_bucket_boundaries_advisory=PROVIDER_BUCKETS,
)
_active = observed_gauge(
    METER, "vidflow_jobs_active", description="Unfinished jobs by stage (from PostgreSQL)"
)
_queued = observed_gauge(
    METER, "vidflow_jobs_queued", description="Admitted jobs waiting for a provider slot, by model"
)
_in_flight = observed_gauge(
    METER,
    "vidflow_jobs_in_flight",
    description="Jobs holding a provider slot (submitting or generating), by deployment",
)
_slots = observed_gauge(
    METER, "vidflow_jobs_deployment_slots", description="Jobs a deployment may run at once (max_concurrent)"
)


def observe_move(before: Job, after: Job) -> None:
    """Count a stage change; a finished job also records how long it took from create."""
    if before.stage is after.stage:
        return
    stage = after.stage
    _moves.add(1, {"service": SERVICE, "stage": stage.value, "status": stage.status.value})
    if stage.is_terminal:
        finished = after.completed_at or datetime.now(UTC)
        _finish_time.record(
            max(0.0, (finished - after.created_at).total_seconds()),
            {"service": SERVICE, "status": stage.status.value, "model": after.spec.model},
        )
    if stage is Stage.FAILED:
        cause = _FAILURE_CAUSES.get(after.error.code if after.error else "", "error")
        _failures.add(1, {"service": SERVICE, "model": after.spec.model, "cause": cause})


def provider_call_recorder(deployment: str) -> Callable[[str, str, float], None]:
    """`record(operation, outcome, seconds)` for one deployment's provider client."""

    def record(operation: str, outcome: str, seconds: float) -> None:
        labels = {"service": SERVICE, "deployment": deployment, "operation": operation, "outcome": outcome}
        _provider_requests.add(1, labels)
        _provider_latency.record(seconds, labels)

    return record


@dataclass(frozen=True)
class JobCounts:
    """Unfinished jobs by stage, queued jobs by model, and slots in use by deployment."""

    by_stage: Mapping[str, int]
    queued_by_model: Mapping[str, int]
    in_flight_by_deployment: Mapping[str, int]


async def count_jobs(engine: AsyncEngine) -> JobCounts:
    """Three grouped counts over unfinished jobs only (the predicates of the partial indexes
    `jobs_due` and `jobs_queue`), never the finished rows, which only grow: the counters cover those."""
    async with engine.connect() as conn:
        return JobCounts(
            by_stage=await _count_by(
                conn, jobs.c.stage, jobs.c.stage.not_in([Stage.COMPLETED.value, Stage.FAILED.value])
            ),
            queued_by_model=await _count_by(conn, jobs.c.model, jobs.c.stage == Stage.QUEUED.value),
            # Dispatch's own definition: a job holds a slot while submitting or generating.
            in_flight_by_deployment=await _count_by(
                conn,
                jobs.c.deployment,
                and_(jobs.c.stage.in_(_IN_FLIGHT_STAGES), jobs.c.deployment.is_not(None)),
            ),
        )


class QueueGauges:
    """The gauges of `JobCounts`, counted before each scrape. Every stage, routed model and
    deployment is reported, zero included, so alerts and rates have a series from the start."""

    def __init__(self, engine: AsyncEngine, registry: Registry) -> None:
        self._engine = engine
        self._registry = registry
        self._counts: JobCounts | None = None

    @contextlib.contextmanager
    def observed(self) -> Iterator[None]:
        with (
            _active.fed_by(self._active_readings),
            _queued.fed_by(self._queued_readings),
            _in_flight.fed_by(self._in_flight_readings),
            _slots.fed_by(self._slots_readings),
        ):
            yield

    async def refresh(self) -> None:
        self._counts = None  # should counting fail, no numbers beat stale ones
        self._counts = await count_jobs(self._engine)

    def _active_readings(self) -> list[Reading]:
        if self._counts is None:
            return []
        return [
            (
                float(self._counts.by_stage.get(stage.value, 0)),
                {"service": SERVICE, "stage": stage.value, "status": stage.status.value},
            )
            for stage in _UNFINISHED
        ]

    def _queued_readings(self) -> list[Reading]:
        if self._counts is None:
            return []
        counts = self._counts.queued_by_model
        return [
            (float(counts.get(model, 0)), {"service": SERVICE, "model": model})
            for model in sorted(set(self._registry.routes) | set(counts))
        ]

    def _slots_readings(self) -> list[Reading]:
        # Like the others, only once this service's endpoint refreshed: a second in-process stack
        # without metrics must not report its deployments under the same labels.
        if self._counts is None:
            return []
        return [
            (float(deployment.max_concurrent), {"service": SERVICE, "deployment": name})
            for name, deployment in self._registry.deployments.items()
        ]

    def _in_flight_readings(self) -> list[Reading]:
        if self._counts is None:
            return []
        counts = self._counts.in_flight_by_deployment
        return [
            (float(counts.get(name, 0)), {"service": SERVICE, "deployment": name})
            for name in sorted(set(self._registry.deployments) | set(counts))
        ]


async def _count_by(
    conn: AsyncConnection, column: ColumnElement[Any], where: ColumnElement[bool]
) -> dict[str, int]:
    rows = await conn.execute(select(column, func.count()).where(where).group_by(column))
    return {str(key): int(count) for key, count in rows}
