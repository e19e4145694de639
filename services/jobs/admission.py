"""Admitting a job: validate, moderate, hold credits - in that order, so nothing is charged
for a request that moderation refuses, and no provider sees an unmoderated prompt."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from servicekit.errors import ErrorKind, ServiceError
from servicekit.telemetry import current_traceparent

from services.jobs.domain import segments
from services.jobs.domain.job import Job, JobError, new_job_id
from services.jobs.domain.lifecycle import Stage
from services.jobs.domain.segments import Segment
from services.jobs.domain.video_spec import VideoSpec, validate_spec
from services.jobs.peers import (
    BillingClient,
    ModerationClient,
    PreparedReference,
    ReferenceImage,
    RendererClient,
)
from services.jobs.staging import content_type_of
from services.jobs.store import Changes, ConcurrencyLimitReached, DuplicateRequest, JobStore, StaleJob

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
    # A long video's clips as (prompt, seconds); empty lets the service plan them.
    segments: tuple[tuple[str, int], ...] = ()
    # The API key's limit on unfinished jobs; 0 for none.
    max_concurrent_jobs: int = 0
    # A remix of this (completed) job of the same owner: its model, size and length, a new prompt.
    remix_of_job_id: str = ""


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
        source = await self._remix_source(request)
        spec, planned = self._validated(request, source)
        cost = await self._billing.quote(spec)
        return Job(
            id="",
            owner_id=request.owner_id,
            spec=spec,
            stage=Stage.ADMITTING,
            progress=0,
            created_at=datetime.now(UTC),
            cost_credits=cost,
            segments=planned,
        )

    async def create(self, request: JobRequest) -> Job:
        source = await self._remix_source(request)
        spec, planned = self._validated(request, source)
        owner_id, request_id = request.owner_id, request.request_id
        if request_id and (existing := await self._store.find_by_request_id(owner_id, request_id)):
            return await self._resume(existing)
        job_id = new_job_id()
        # Before the row: a job is never without its images, whoever finishes its admission. A failure
        # here leaves no job (and the renderer's sweeper removes images no job took).
        prepared = await self._prepare_references(job_id, owner_id, spec.size, request)
        try:
            job = await self._store.insert_admitting(
                job_id=job_id,
                owner_id=owner_id,
                spec=spec,
                request_id=request_id or None,
                traceparent=current_traceparent(),
                api_key_id=request.api_key_id,
                segments=planned,
                max_concurrent_jobs=request.max_concurrent_jobs,
                remix_of=source,
                reference_keys=[reference.object_key for reference in prepared],
            )
        except ConcurrencyLimitReached as limit:
            raise ServiceError(
                ErrorKind.RATE_LIMITED,
                f"This API key already has {limit.limit} unfinished videos, its limit; "
                "wait for one to finish.",
                code="concurrent_jobs_limit_exceeded",
                metadata={"retry_after_seconds": "10"},
            ) from None
        except DuplicateRequest:
            # A concurrent request with the same key won the insert; answer with its job.
            existing = await self._store.find_by_request_id(owner_id, request_id)
            if existing is None:
                raise ServiceError(ErrorKind.ABORTED, "Concurrent request; retry it.") from None
            return existing
        return await self._admit_for_client(job, prepared)

    async def _resume(self, job: Job) -> Job:
        """A create retried with its Idempotency-Key. A job still being admitted means the first try
        failed or was cut off (a peer down, a crash): admit it now, as the first try would have, rather
        than after the worker's grace period. Safe beside a first try that is only slow: every step
        is keyed by the job id, and the move to QUEUED is compare-and-set."""
        if job.stage is not Stage.ADMITTING:
            return job
        return await self._admit_for_client(job)

    async def _admit_for_client(self, job: Job, prepared: list[PreparedReference] | None = None) -> Job:
        try:
            return await self.admit(job, prepared)
        except StaleJob:
            # Another try of the same request (same Idempotency-Key) admitted it meanwhile.
            current = await self._store.get(job.id)
            if current is None:
                raise ServiceError(ErrorKind.ABORTED, "Concurrent request; retry it.") from None
            return current
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

    async def _prepare_references(
        self, job_id: str, owner_id: str, size: str, request: JobRequest
    ) -> list[PreparedReference]:
        if not request.references:
            return []
        return await self._renderer.prepare_references(
            job_id=job_id,
            owner_id=owner_id,
            images=list(request.references),
            target_size=size,
            pad=request.pad_references,
        )

    async def _remix_source(self, request: JobRequest) -> Job | None:
        """The video a remix starts from: the caller's own, finished, and still held by its provider."""
        if not request.remix_of_job_id:
            return None
        source = await self._store.get_owned(request.remix_of_job_id, request.owner_id)
        if source.stage is not Stage.COMPLETED:
            raise _remix_refused(
                f"Video {source.id} is {source.status.value}; only completed videos can be remixed.",
                "video_not_completed",
            )
        if source.segments:
            raise _remix_refused(
                "Long videos cannot be remixed; remix one made in a single clip.", "remix_not_supported"
            )
        if not source.upstream_id or not source.deployment:
            raise _remix_refused(f"Video {source.id} has no provider video to remix.", "remix_not_supported")
        if source.expires_at is not None and source.expires_at <= datetime.now(UTC):
            raise _remix_refused(
                f"The provider no longer keeps the video {source.id} was made from; it cannot be remixed.",
                "remix_source_expired",
            )
        if request.references or request.segments:
            raise ServiceError(
                ErrorKind.INVALID_ARGUMENT,
                "A remix takes only a new prompt: no reference images or segments.",
                param="prompt",
                code="invalid_value",
            )
        return source

    @staticmethod
    def _validated(request: JobRequest, remix_of: Job | None = None) -> tuple[VideoSpec, tuple[Segment, ...]]:
        if not request.owner_id:
            raise ServiceError(ErrorKind.INVALID_ARGUMENT, "owner_id is required", param="owner_id")
        if len(request.references) > MAX_REFERENCE_IMAGES:
            raise ServiceError(
                ErrorKind.INVALID_ARGUMENT,
                f"At most {MAX_REFERENCE_IMAGES} reference images; got {len(request.references)}.",
                param="input_reference",
                code="invalid_value",
            )
        if remix_of is not None:
            source = remix_of.spec
            return validate_spec(source.model, request.prompt, source.seconds, source.size), ()
        if not request.segments:
            spec = validate_spec(request.model, request.prompt, request.seconds, request.size)
            return spec, segments.plan(spec.prompt, spec.seconds)
        # The client's clips first: a bad clip is named as such, not as a bad total.
        planned = segments.plan("", 0, request.segments)
        total = sum(segment.seconds for segment in planned)
        if request.seconds and request.seconds != total:
            raise ServiceError(
                ErrorKind.INVALID_ARGUMENT,
                f"seconds is {request.seconds} but the segments add up to {total}; "
                "send one or make them agree.",
                param="seconds",
                code="invalid_value",
            )
        prompt = request.prompt or "\n".join(segment.prompt for segment in planned)
        return validate_spec(request.model, prompt, total, request.size), planned

    async def admit(self, job: Job, prepared: list[PreparedReference] | None = None) -> Job:
        """Moderation of the prompt and every reference image, then the credit hold. Safe to
        repeat: every step is keyed by the job id. A resumed admission reads the prepared
        references back from storage."""
        if job.retry_count:
            # A retry sends what moderation already approved: the same prompts and images.
            return await self._hold_and_queue(job)
        verdict = await self._moderation.check_prompt(
            job_id=job.id, owner_id=job.owner_id, prompt=moderated_text(job)
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
        return await self._hold_and_queue(job)

    async def _hold_and_queue(self, job: Job) -> Job:
        amount = await self._billing.reserve(
            account_id=job.owner_id, job_id=job.hold_key, spec=job.spec, api_key_id=job.api_key_id
        )
        admitted = await self._store.move(job, Stage.QUEUED, Changes(cost_credits=amount))
        self._on_admitted()
        return admitted


def moderated_text(job: Job) -> str:
    """The prompt and every clip's own prompt: whatever a provider will be sent is checked."""
    texts = [job.spec.prompt]
    texts += [segment.prompt for segment in job.segments if segment.prompt not in texts]
    return "\n\n".join(texts)


def _remix_refused(message: str, code: str) -> ServiceError:
    return ServiceError(ErrorKind.FAILED_PRECONDITION, message, param="video_id", code=code)
