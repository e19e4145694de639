"""Admitting a job: validate, moderate, hold credits - in that order, so nothing is charged
for a request that moderation refuses, and no provider sees an unmoderated prompt."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from servicekit.errors import ErrorKind, ServiceError
from servicekit.telemetry import current_traceparent

from services.jobs.domain.job import Job, JobError, new_job_id
from services.jobs.domain.lifecycle import Stage
from services.jobs.domain.video_spec import VideoSpec, validate_spec
from services.jobs.peers import (
    BillingClient,
    ModerationClient,
    PreparedReference,
    ReferenceImage,
    RendererClient,
)
from services.jobs.staging import content_type_of
from services.jobs.store import Changes, DuplicateRequest, JobStore

log = logging.getLogger(__name__)
MAX_REFERENCE_IMAGES = 4


@dataclass(frozen=True)
class JobRequest:
    owner_id: str
    model: str
    prompt: str
    seconds: int
    size: str
    request_id: str = ""
    api_key_id: str = ""
    references: tuple[ReferenceImage, ...] = ()
    # Pad references to the frame instead of cropping them.
    pad_references: bool = False


class Admission:
    def __init__(
        self,
        store: JobStore,
        moderation: ModerationClient,
        billing: BillingClient,
        renderer: RendererClient,
        read_object: Callable[[str], Awaitable[bytes]],
        on_admitted: Callable[[], None],
    ) -> None:
        self._store = store
        self._moderation = moderation
        self._billing = billing
        self._renderer = renderer
        self._read_object = read_object
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
            prepared = await self._prepare_references(job, request)
            if prepared:
                job = await self._store.set_references(job, [reference.object_key for reference in prepared])
            return await self.admit(job, prepared)
        except ServiceError as error:
            if error.kind in (ErrorKind.INSUFFICIENT_QUOTA, ErrorKind.INVALID_ARGUMENT):
                # Refused outright (no money, or a bad image): the client gets a 4xx and no job exists.
                await self._store.delete_admitting(job.id)
            raise

    async def _stored_references(self, job: Job) -> list[PreparedReference]:
        return [
            PreparedReference(
                index=index,
                object_key=key,
                content_type=content_type_of(key),
                data=await self._read_object(key),
            )
            for index, key in enumerate(job.reference_keys)
        ]

    async def _prepare_references(self, job: Job, request: JobRequest) -> list[PreparedReference]:
        if not request.references:
            return []
        return await self._renderer.prepare_references(
            job_id=job.id,
            owner_id=job.owner_id,
            images=list(request.references),
            target_size=job.spec.size,
            pad=request.pad_references,
        )

    @staticmethod
    def _validated(request: JobRequest) -> VideoSpec:
        if not request.owner_id:
            raise ServiceError(ErrorKind.INVALID_ARGUMENT, "owner_id is required", param="owner_id")
        if len(request.references) > MAX_REFERENCE_IMAGES:
            raise ServiceError(
                ErrorKind.INVALID_ARGUMENT,
                f"At most {MAX_REFERENCE_IMAGES} reference images; got {len(request.references)}.",
                param="input_reference",
                code="invalid_value",
            )
        return validate_spec(request.model, request.prompt, request.seconds, request.size)

    async def admit(self, job: Job, prepared: list[PreparedReference] | None = None) -> Job:
        """Moderation of the prompt and every reference image, then the credit hold. Safe to
        repeat: every step is keyed by the job id. A resumed admission reads the prepared
        references back from storage."""
        verdict = await self._moderation.check_prompt(
            job_id=job.id, owner_id=job.owner_id, prompt=job.spec.prompt
        )
        if not verdict.approved:
            log.info("job refused by moderation", extra={"job_id": job.id, "category": verdict.category})
            return await self._store.move(
                job, Stage.FAILED, Changes(error=JobError("moderation_blocked", verdict.reason))
            )
        if job.reference_keys:
            images = prepared or await self._stored_references(job)
            verdict = await self._moderation.check_images(job_id=job.id, owner_id=job.owner_id, images=images)
            if not verdict.approved:
                log.info(
                    "job refused by image moderation", extra={"job_id": job.id, "category": verdict.category}
                )
                return await self._store.move(
                    job, Stage.FAILED, Changes(error=JobError("moderation_blocked", verdict.reason))
                )
        amount = await self._billing.reserve(
            account_id=job.owner_id, job_id=job.id, spec=job.spec, api_key_id=job.api_key_id
        )
        admitted = await self._store.move(job, Stage.QUEUED, Changes(cost_credits=amount))
        self._on_admitted()
        return admitted


def _content_type_of(key: str) -> str:
    return (
        "image/jpeg"
        if key.endswith((".jpg", ".jpeg"))
        else "image/webp"
        if key.endswith(".webp")
        else "image/png"
    )
