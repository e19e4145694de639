"""Which queued jobs may start now: FIFO per model, within each deployment's concurrency limit."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from services.jobs.domain.routing import Registry, Route


@dataclass(frozen=True)
class QueuedJob:
    id: str
    model: str
    # Deployments that already failed this job; it moves on to the next candidate.
    tried: frozenset[str]
    # A remix must go to the deployment that made its source video.
    pinned: str | None = None


@dataclass(frozen=True)
class Assignment:
    job_id: str
    route: Route


def assign(
    registry: Registry,
    queued_oldest_first: Iterable[QueuedJob],
    in_flight: Mapping[str, int],
    unavailable: frozenset[str] = frozenset(),
) -> tuple[list[Assignment], list[str]]:
    """Give free slots to the oldest jobs. Returns the assignments, and the ids of jobs that have no
    deployment left to try. Once the head job of a queue cannot start, younger jobs with the same
    choices wait too, so nobody overtakes; jobs with other models or other choices are not held up."""
    load = dict(in_flight)
    assignments: list[Assignment] = []
    exhausted: list[str] = []
    blocked: set[tuple[str, tuple[Route, ...]]] = set()
    for job in queued_oldest_first:
        candidates = registry.candidates(job.model, excluding=job.tried)
        if job.pinned is not None:
            candidates = tuple(route for route in candidates if route.deployment == job.pinned)
        if not candidates:
            exhausted.append(job.id)
            continue
        queue = (job.model, candidates)
        if queue in blocked:
            continue
        free = [
            route
            for route in candidates
            if route.deployment not in unavailable
            and load.get(route.deployment, 0) < registry.deployments[route.deployment].max_concurrent
        ]
        if not free:
            blocked.add(queue)
            continue
        route = free[0]
        load[route.deployment] = load.get(route.deployment, 0) + 1
        assignments.append(Assignment(job.id, route))
    return assignments, exhausted
