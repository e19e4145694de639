"""The job pipeline: workers lease due jobs and drive each one stage by stage.

Every step is safe to repeat, because a worker may crash between doing a step and recording it:
provider creates carry the job id as Idempotency-Key, the renderer's ingest and billing's
capture and release are keyed by the job id, and stage moves are compare-and-set on the stage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from opentelemetry import trace
from servicekit.errors import ErrorKind, ServiceError
from servicekit.lifecycle import wait_for_signal
from servicekit.storage import storage_unavailable
from servicekit.telemetry import context_from_headers

from services.jobs.admission import Admission
from services.jobs.config import ProviderSettings, WorkerSettings
from services.jobs.domain.job import Job, JobError
from services.jobs.domain.lifecycle import Stage, keeps_retrying, retry_delay_seconds
from services.jobs.domain.segments import SegmentStatus, first_unfinished, overall_progress, with_segment
from services.jobs.peers import BillingClient, RendererClient
from services.jobs.provider import (
    AssetVariant,
    ProviderError,
    ProviderErrorKind,
    ReferenceFile,
    UpstreamStatus,
    VideoProvider,
)
from services.jobs.staging import StagingArea, content_type_of, segment_staging_key, staging_key
from services.jobs.store import Changes, JobStore, StaleJob

log = logging.getLogger(__name__)
tracer = trace.get_tracer("vidflow.jobs")

# Peer failures worth waiting out; anything else from a peer is a verdict about this job.
_TRANSIENT_KINDS = {ErrorKind.UNAVAILABLE, ErrorKind.DEADLINE_EXCEEDED, ErrorKind.INTERNAL, ErrorKind.ABORTED}
_PROVIDER_FAILURE_CODES = {
    ProviderErrorKind.CONTENT_POLICY: "content_policy_violation",
    ProviderErrorKind.INVALID_REQUEST: "provider_rejected_request",
    ProviderErrorKind.PERMANENT: "provider_error",
    ProviderErrorKind.RATE_LIMITED: "provider_rate_limited",
    ProviderErrorKind.TRANSIENT: "provider_unavailable",
}
# Backoff while a step's outcome cannot be written (the database is restarting or failing over).
_RECORD_RETRY_FIRST_PAUSE_SECONDS = 0.5
_RECORD_RETRY_MAX_PAUSE_SECONDS = 5.0
_FILENAMES = {
    AssetVariant.VIDEO: "video.mp4",
    AssetVariant.THUMBNAIL: "thumbnail.webp",
    AssetVariant.SPRITESHEET: "spritesheet.jpg",
}


class _Retry(Exception):
    """The step hit a passing failure; try the same step again later."""


class _ClipFailed(Exception):
    """The clip cannot be made; the job fails with this error."""

    def __init__(self, error: JobError) -> None:
        super().__init__(error.message)
        self.error = error


class JobWorker:
    def __init__(
        self,
        *,
        store: JobStore,
        admission: Admission,
        providers: Mapping[str, VideoProvider],
        provider_settings: ProviderSettings,
        staging: StagingArea,
        renderer: RendererClient,
        billing: BillingClient,
        settings: WorkerSettings,
    ) -> None:
        self._store = store
        self._admission = admission
        self._providers = providers
        self._provider_settings = provider_settings
        self._registry = provider_settings.registry
        # Deployment -> monotonic time until which it gets no new jobs after failing them.
        self._cooling_until: dict[str, float] = {}
        self._staging = staging
        self._renderer = renderer
        self._billing = billing
        self._settings = settings
        self._wake = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._dispatch()
            claimed = 0
            free = self._settings.concurrency - len(self._in_flight)
            if free > 0:
                try:
                    jobs = await self._store.lease_due(
                        worker_id=self._settings.worker_id,
                        limit=free,
                        lease_seconds=self._settings.lease_seconds,
                        admission_grace_seconds=self._settings.admission_grace_seconds,
                    )
                except Exception as exc:
                    log.warning("leasing jobs failed", extra={"error": repr(exc)})
                    jobs = []
                for job in jobs:
                    task = asyncio.create_task(self._advance(job), name=f"job-{job.id}")
                    self._in_flight.add(task)
                    task.add_done_callback(self._step_finished)
                claimed = len(jobs)
            if claimed == 0 or claimed == free:
                await wait_for_signal(stop, self._wake, seconds=self._settings.idle_poll_seconds)
                self._wake.clear()
        await self._drain()

    async def _dispatch(self) -> None:
        """Start queued jobs where deployments have room; fail those no deployment can take."""
        now = time.monotonic()
        cooling = frozenset(name for name, until in self._cooling_until.items() if until > now)
        try:
            result = await self._store.dispatch(self._registry, unavailable=cooling)
        except Exception as exc:
            log.warning("dispatch failed", extra={"error": repr(exc)})
            return
        for job in result.stranded:
            error = JobError(
                "provider_unavailable", "Every provider deployment for this model failed the video."
            )
            try:
                await self._store.move(job, Stage.RELEASING, _failure(job, error))
            except StaleJob:
                pass
            except Exception as exc:
                # The database went away mid-tick; raising would end the worker's loop for good.
                log.warning("could not fail a stranded job", extra={"job_id": job.id, "error": repr(exc)})

    def _cool_down(self, deployment: str) -> None:
        self._cooling_until[deployment] = time.monotonic() + self._provider_settings.cooldown_seconds

    def _step_finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._wake.set()  # a slot is free, and the job may have a next step due now

    async def _drain(self) -> None:
        """Let running steps finish; whatever is cut off keeps its lease and is redone elsewhere."""
        if self._in_flight:
            _, pending = await asyncio.wait(self._in_flight, timeout=self._settings.lease_seconds / 4)
            for task in pending:
                task.cancel()

    async def _advance(self, job: Job) -> None:
        parent = context_from_headers({"traceparent": job.traceparent} if job.traceparent else None)
        with tracer.start_as_current_span(f"job step {job.stage}", context=parent) as span:
            span.set_attribute("vidflow.job_id", job.id)
            try:
                await self._step_and_record(job)
            except Exception as exc:
                # Even the outcome could not be written: the database is away. Keep trying to
                # schedule the retry, or the job would sit out the whole lease once it is back.
                log.warning(
                    "could not record a job step's outcome", extra={"job_id": job.id, "error": repr(exc)}
                )
                await self._retry_once_recorded(job, repr(exc))

    async def _step_and_record(self, job: Job) -> None:
        try:
            await self.step(job)
        except StaleJob:
            log.info("job moved by someone else", extra={"job_id": job.id})
        except _Retry as retry:
            await self._retry_or_give_up(job, str(retry))
        except _ClipFailed as failed:
            with contextlib.suppress(StaleJob):
                await self._store.move(job, Stage.RELEASING, _failure(job, failed.error))
        except Exception as exc:
            unavailable = storage_unavailable(exc)
            if unavailable is None:
                log.exception("job step crashed", extra={"job_id": job.id, "stage": job.stage})
                await self._retry_or_give_up(job, "internal error")
                return
            # Staging in media storage failed (down, hung, 5xx): wait it out like any peer outage.
            log.warning(
                "job step waits for media storage",
                extra={"job_id": job.id, "stage": job.stage, "error": repr(exc)},
            )
            await self._retry_or_give_up(job, unavailable.message)

    async def _retry_once_recorded(self, job: Job, reason: str) -> None:
        """Schedule the step again as soon as the database takes the write, backing off; after half a
        lease, stop and let the lease's expiry hand the job to a worker."""
        deadline = time.monotonic() + self._settings.lease_seconds / 2
        pause = _RECORD_RETRY_FIRST_PAUSE_SECONDS
        while time.monotonic() + pause < deadline:
            await asyncio.sleep(pause)
            pause = min(pause * 2, _RECORD_RETRY_MAX_PAUSE_SECONDS)
            try:
                await self._retry_or_give_up(job, reason)
                return
            except Exception as exc:
                log.warning(
                    "could not record a job step's outcome", extra={"job_id": job.id, "error": repr(exc)}
                )
        log.warning("gave up recording a job step's outcome; its lease will expire", extra={"job_id": job.id})

    async def step(self, job: Job) -> None:
        match job.stage:
            case Stage.ADMITTING:
                await self._finish_admission(job)
            case Stage.SUBMITTING:
                await self._submit(job)
            case Stage.GENERATING:
                await self._poll(job)
            case Stage.DOWNLOADING:
                await self._download(job)
            case Stage.RENDERING:
                await self._render(job)
            case Stage.CAPTURING:
                await self._capture(job)
            case Stage.RELEASING:
                await self._release(job)

    async def _finish_admission(self, job: Job) -> None:
        try:
            await self._admission.admit(job)
        except ServiceError as error:
            if error.kind in _TRANSIENT_KINDS:
                raise _Retry(error.message) from error
            # The client that asked is gone; record why the job could not start. Nothing was held.
            await self._store.move(
                job, Stage.FAILED, Changes(error=JobError(error.code or "rejected", error.message))
            )

    async def _submit(self, job: Job) -> None:
        assert job.deployment is not None and job.upstream_model is not None
        segment = job.current_segment
        if segment is not None and segment.index > 0:
            reference: ReferenceFile | None = await self._previous_clip_frame(job, segment.index)
        else:
            reference = await self._first_reference(job)
        try:
            deployment = job.deployment
            provider = self._providers[deployment]

            async def claimed(upstream_id: str) -> bool:
                return await self._store.upstream_claimed(deployment, upstream_id)

            if job.remix_source_upstream_id:
                upstream = await provider.remix(
                    job.remix_source_upstream_id,
                    job.provider_spec,
                    model=job.upstream_model,
                    idempotency_key=job.provider_request_key,
                    not_before=_not_before(job),
                    claimed=claimed,
                )
            else:
                upstream = await provider.create(
                    job.provider_spec,
                    model=job.upstream_model,
                    idempotency_key=job.provider_request_key,
                    not_before=_not_before(job),
                    claimed=claimed,
                    reference=reference,
                )
        except ProviderError as error:
            if error.kind.retryable:
                await self._fail_over_or_wait(job, error)
            else:
                await self._provider_failed(job, error)
            return
        if segment is None:
            changes = Changes(upstream_id=upstream.id, progress=upstream.progress)
        else:
            segments = with_segment(
                job.segments,
                segment.index,
                status=SegmentStatus.IN_PROGRESS,
                upstream_id=upstream.id,
                deployment=deployment,
                progress=min(upstream.progress, 99),
                error=None,
            )
            changes = Changes(
                upstream_id=upstream.id, segments=segments, progress=min(overall_progress(segments), 99)
            )
        await self._store.move(job, Stage.GENERATING, changes)

    async def _first_reference(self, job: Job) -> ReferenceFile | None:
        """The OpenAI contract takes one input_reference: the first image the client sent. All of
        them were moderated; the rest stay with the job for providers that take several."""
        if not job.reference_keys:
            return None
        key = job.reference_keys[0]
        extension = key.rsplit(".", 1)[-1]
        return ReferenceFile(await self._staging.read(key), content_type_of(key), f"reference.{extension}")

    async def _previous_clip_frame(self, job: Job, index: int) -> ReferenceFile:
        """Continuity: the next clip of a long video starts from the last frame of the one before."""
        try:
            image = await self._renderer.capture_last_frame(
                job_id=job.id, owner_id=job.owner_id, staging_key=segment_staging_key(job.id, index - 1)
            )
        except ServiceError as error:
            if error.kind in _TRANSIENT_KINDS:
                raise _Retry(error.message) from error
            raise _ClipFailed(
                JobError(error.code or "render_failed", f"Clip {index} could not start: {error.message}")
            ) from error
        return ReferenceFile(image, "image/jpeg", f"clip-{index - 1}-last-frame.jpg")

    async def _fail_over_or_wait(self, job: Job, error: ProviderError) -> None:
        """The deployment keeps failing: hand the job to the next one serving its model, if any."""
        assert job.deployment is not None
        self._cool_down(job.deployment)
        if job.pinned_deployment:
            raise _Retry(error.message)  # a remix has only the deployment that made its source
        remaining = self._registry.candidates(
            job.spec.model, excluding=job.tried_deployments | {job.deployment}
        )
        if not remaining:
            raise _Retry(error.message)
        log.info("job fails over", extra={"job_id": job.id, "from": job.deployment, "reason": error.message})
        await self._store.move(job, Stage.QUEUED, Changes(give_up_deployment=True))

    async def _poll(self, job: Job) -> None:
        assert job.upstream_id is not None and job.deployment is not None
        if self._past_deadline(job):
            timeout = JobError("timeout", "The provider made no progress on this video before the deadline.")
            await self._store.move(job, Stage.RELEASING, _failure(job, timeout))
            return
        try:
            upstream = await self._providers[job.deployment].retrieve(job.upstream_id)
        except ProviderError as error:
            await self._provider_failed(job, error)
            return
        segment = job.current_segment
        if upstream.status is UpstreamStatus.COMPLETED:
            if segment is None:
                changes = Changes(progress=100, expires_at=upstream.expires_at)
            else:
                segments = with_segment(job.segments, segment.index, progress=100)
                changes = Changes(
                    progress=min(overall_progress(segments), 99),
                    expires_at=upstream.expires_at,
                    segments=segments,
                )
            await self._store.move(job, Stage.DOWNLOADING, changes)
        elif upstream.status in (UpstreamStatus.FAILED, UpstreamStatus.ENDED_OTHERWISE):
            ended = JobError(
                upstream.error_code or "generation_failed",
                upstream.error_message
                or f"The provider ended the video as {upstream.error_code or 'failed'}.",
            )
            await self._store.move(job, Stage.RELEASING, _failure(job, ended))
        elif segment is None:
            # Keep 99 for our own download and render, so 100 means the video is really ready.
            progress = max(min(upstream.progress, 99), job.progress)
            wait = self._next_poll_seconds(job, progress, upstream.poll_after_seconds)
            await self._store.record_progress(job, progress, next_poll_in=wait)
        else:
            clip_progress = max(min(upstream.progress, 99), segment.progress)
            segments = with_segment(job.segments, segment.index, progress=clip_progress)
            progress = max(min(overall_progress(segments), 99), job.progress)
            wait = self._next_poll_seconds(job, progress, upstream.poll_after_seconds)
            await self._store.record_progress(job, progress, next_poll_in=wait, segments=segments)

    def _next_poll_seconds(self, job: Job, progress: int, hint: float | None) -> float:
        """Rarely when webhooks report completion; otherwise the provider's hint, backing off while
        nothing changes, within the configured bounds."""
        settings = self._provider_settings
        assert job.deployment is not None
        if self._registry.deployments[job.deployment].webhooks:
            return settings.webhook_poll_seconds
        floor = max(settings.min_poll_seconds, hint or 0.0)
        if progress != job.progress:
            return min(floor, settings.max_poll_seconds)
        return min(settings.max_poll_seconds, max(floor, (job.poll_interval_seconds or floor) * 1.5))

    def _past_deadline(self, job: Job) -> bool:
        last_sign_of_life = job.last_progress_at or job.queued_at or job.created_at
        deadline = timedelta(seconds=self._provider_settings.progress_deadline_seconds)
        return datetime.now(UTC) - last_sign_of_life > deadline

    async def _download(self, job: Job) -> None:
        assert job.upstream_id is not None and job.deployment is not None
        if job.expires_at and job.expires_at <= datetime.now(UTC):
            error = JobError(
                "asset_expired", "The provider's download link expired before we could copy the video."
            )
            await self._store.move(job, Stage.RELEASING, _failure(job, error))
            return
        workdir = Path(tempfile.mkdtemp(prefix=f"{job.id}-"))
        try:
            # A clip of a long video needs only its video: the stitched whole gets its own stills.
            wanted = {AssetVariant.VIDEO: _FILENAMES[AssetVariant.VIDEO]} if job.segments else _FILENAMES
            for variant, filename in wanted.items():
                path = workdir / filename
                try:
                    await self._providers[job.deployment].download(job.upstream_id, variant, path)
                except ProviderError as error:
                    if variant is AssetVariant.VIDEO and "expired" in error.code:
                        expired = JobError(
                            "asset_expired",
                            f"The provider's video expired before we copied it: {error.message}",
                        )
                        await self._store.move(job, Stage.RELEASING, _failure(job, expired))
                        return
                    if variant is AssetVariant.VIDEO:
                        await self._provider_failed(job, error)
                        return
                    log.warning("preview asset unavailable", extra={"job_id": job.id, "variant": variant})
                    continue
                if job.current_segment is not None:
                    await self._staging.upload_as(segment_staging_key(job.id, job.segment_index), path)
                else:
                    await self._staging.upload(job.id, path)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        if job.current_segment is not None:
            await self._next_clip(job)
        else:
            await self._store.move(job, Stage.RENDERING)

    async def _next_clip(self, job: Job) -> None:
        """A clip is staged: start the next one on the same deployment, or stitch them all."""
        segments = with_segment(
            job.segments, job.segment_index, status=SegmentStatus.COMPLETED, progress=100, error=None
        )
        following = first_unfinished(segments)
        progress = min(overall_progress(segments), 99)
        if following >= len(segments):
            await self._store.move(job, Stage.RENDERING, Changes(segments=segments, progress=progress))
            return
        segments = with_segment(segments, following, started_at=datetime.now(UTC))
        await self._store.move(
            job,
            Stage.SUBMITTING,
            Changes(segments=segments, segment_index=following, next_clip=True, progress=progress),
        )

    async def _render(self, job: Job) -> None:
        try:
            asset = await self._renderer.ingest(
                job_id=job.id,
                owner_id=job.owner_id,
                staging_key=staging_key(job.id, _FILENAMES[AssetVariant.VIDEO]),
                expected_seconds=job.spec.seconds,
                expected_size=job.spec.size,
                segment_staging_keys=[segment_staging_key(job.id, clip.index) for clip in job.segments],
            )
        except ServiceError as error:
            if error.kind in _TRANSIENT_KINDS:
                raise _Retry(error.message) from error
            failure = JobError(error.code or "invalid_provider_asset", error.message)
            await self._store.move(job, Stage.RELEASING, Changes(error=failure))
            return
        await self._store.move(job, Stage.CAPTURING, Changes(asset=asset))

    async def _capture(self, job: Job) -> None:
        assert job.asset is not None
        delivered = min(job.spec.seconds, max(1, round(job.asset.duration_seconds)))
        try:
            charged = await self._billing.capture(job_id=job.hold_key, delivered_seconds=delivered)
        except ServiceError as error:
            raise _Retry(error.message) from error
        await self._store.move(
            job, Stage.COMPLETED, Changes(cost_credits=charged, completed_at=datetime.now(UTC), progress=100)
        )

    async def _release(self, job: Job) -> None:
        try:
            await self._billing.release(job_id=job.hold_key, reason=job.error.code if job.error else "failed")
        except ServiceError as error:
            if error.kind is not ErrorKind.NOT_FOUND:  # no hold means nothing to give back
                raise _Retry(error.message) from error
        await self._store.move(job, Stage.FAILED, Changes(cost_credits=0))

    async def _provider_failed(self, job: Job, error: ProviderError) -> None:
        if error.kind.retryable:
            raise _Retry(error.message)
        failure = JobError(_PROVIDER_FAILURE_CODES[error.kind], error.message)
        await self._store.move(job, Stage.RELEASING, _failure(job, failure))

    async def _retry_or_give_up(self, job: Job, reason: str) -> None:
        attempt = job.attempts + 1
        money_moving = job.stage in (Stage.CAPTURING, Stage.RELEASING)
        if money_moving or keeps_retrying(attempt, self._settings.step_retry_patience_seconds):
            delay = retry_delay_seconds(attempt)
            log.info(
                "job step will be retried",
                extra={
                    "job_id": job.id,
                    "stage": job.stage,
                    "reason": reason,
                    "attempt": attempt,
                    "delay": delay,
                },
            )
            try:
                await self._store.retry_later(job, delay, lease_owner=self._settings.worker_id)
            except StaleJob:
                log.info("job's lease ran out before its retry was recorded", extra={"job_id": job.id})
            return
        failure = JobError(
            "provider_unavailable" if job.upstream_id or job.stage is Stage.SUBMITTING else "internal_error",
            f"Gave up after {attempt} attempts: {reason}",
        )
        target = Stage.FAILED if job.stage is Stage.ADMITTING else Stage.RELEASING
        try:
            await self._store.move(job, target, _failure(job, failure))
        except StaleJob:
            pass


def _failure(job: Job, error: JobError) -> Changes:
    """The job fails with `error`; for a long video, so does the clip being made."""
    segment = job.current_segment
    if segment is None or segment.status is SegmentStatus.COMPLETED:
        return Changes(error=error)
    return Changes(
        error=error,
        segments=with_segment(job.segments, segment.index, status=SegmentStatus.FAILED, error=error),
    )


def _not_before(job: Job) -> datetime:
    """Videos a lost create may have made were made after this: a retry's or a clip's start."""
    segment = job.current_segment
    if segment is not None and segment.started_at is not None:
        return segment.started_at
    return job.last_retry_at or job.created_at
