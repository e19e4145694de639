"""Admitting a job: validate, moderate, hold credits - in that order, so nothing is charged
for a request that moderation refuses, and no provider sees an unmoderated prompt."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from servicekit.errors import ErrorKind, ServiceError
from servicekit.telemetry import current_traceparent

from services.jobs.domain.job import Job, JobError, new_job_id
from services.jobs.domain.lifecycle import Stage
from services.jobs.domain.video_spec import VideoSpec, validate_spec
from services.jobs.peers import BillingClient, ModerationClient
from services.jobs.store import Changes, DuplicateRequest, JobStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobRequest:
    owner_id: str
    model: str
    prompt: str
    seconds: int
    size: str
    request_id: str = ""
    api_key_id: str = ""


class Admission:
    def __init__(
        self,
        store: JobStore,
        moderation: ModerationClient,
        billing: BillingClient,
        on_admitted: Callable[[], None],
    ) -> None:
        self._store = store
        self._moderation = moderation
        self._billing = billing
        self._on_admitted = on_admitted

    async def quote(self, request: JobRequest) -> Job:
        """What create would do, without doing it (AIP-163 validate_only): the same validation,
        and the price billing would hold. Nothing is stored, moderated or charged."""
        spec = self._validated(request)
        cost = await self._billing.quote(spec)
        return Job(
            id="",
            owner_id=request.owner_id,
            spec=spec,
            stage=Stage.ADMITTING,
            progress=0,
            created_at=datetime.now(UTC),
            cost_credits=cost,
        )

    async def create(self, request: JobRequest) -> Job:
        spec = self._validated(request)
        owner_id, request_id = request.owner_id, request.request_id
        if request_id and (existing := await self._store.find_by_request_id(owner_id, request_id)):
            return existing
        try:
            job = await self._store.insert_admitting(
                job_id=new_job_id(),
                owner_id=owner_id,
                spec=spec,
                request_id=request_id or None,
                traceparent=current_traceparent(),
                api_key_id=request.api_key_id,
            )
        except DuplicateRequest:
            # A concurrent request with the same key won the insert; answer with its job.
            existing = await self._store.find_by_request_id(owner_id, request_id)
            if existing is None:
                raise ServiceError(ErrorKind.ABORTED, "Concurrent request; retry it.") from None
            return existing
        try:
            return await self.admit(job)
        except ServiceError as error:
            if error.kind is ErrorKind.INSUFFICIENT_QUOTA:
                # Refused outright: the client gets 402 and no job exists.
                await self._store.delete_admitting(job.id)
            raise

    @staticmethod
    def _validated(request: JobRequest) -> VideoSpec:
        if not request.owner_id:
            raise ServiceError(ErrorKind.INVALID_ARGUMENT, "owner_id is required", param="owner_id")
        return validate_spec(request.model, request.prompt, request.seconds, request.size)

    async def admit(self, job: Job) -> Job:
        """Moderation, then the credit hold. Safe to repeat: both are keyed by the job id."""
        verdict = await self._moderation.check_prompt(
            job_id=job.id, owner_id=job.owner_id, prompt=job.spec.prompt
        )
        if not verdict.approved:
            log.info("job refused by moderation", extra={"job_id": job.id, "category": verdict.category})
            return await self._store.move(
                job, Stage.FAILED, Changes(error=JobError("moderation_blocked", verdict.reason))
            )
        amount = await self._billing.reserve(
            account_id=job.owner_id, job_id=job.id, spec=job.spec, api_key_id=job.api_key_id
        )
        admitted = await self._store.move(job, Stage.QUEUED, Changes(cost_credits=amount))
        self._on_admitted()
        return admitted
