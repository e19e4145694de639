"""gRPC translation for JobsService: proto in, application call, proto out."""

from __future__ import annotations

import grpc
from servicekit.errors import ErrorKind, ServiceError
from vidflow.jobs.v1 import jobs_pb2, jobs_service_pb2, jobs_service_pb2_grpc

from services.jobs.admission import Admission, JobRequest
from services.jobs.cancellation import Cancellation
from services.jobs.deletion import Deletion
from services.jobs.domain.routing import Registry
from services.jobs.estimator import Estimator
from services.jobs.intake import Outcome, ProviderEventIntake
from services.jobs.peers import ReferenceImage
from services.jobs.retries import Retries
from services.jobs.store import JobStore

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20


class JobsApi(jobs_service_pb2_grpc.JobsServiceServicer):
    def __init__(
        self,
        admission: Admission,
        store: JobStore,
        intake: ProviderEventIntake,
        registry: Registry,
        cancellation: Cancellation,
        deletion: Deletion,
        retries: Retries,
    ) -> None:
        self._retries = retries
        self._estimator = Estimator(store, registry)
        self._admission = admission
        self._cancellation = cancellation
        self._deletion = deletion
        self._store = store
        self._intake = intake
        self._registry = registry

    async def CreateJob(
        self, request: jobs_service_pb2.CreateJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_service_pb2.CreateJobResponse:
        job_request = JobRequest(
            owner_id=request.owner_id,
            model=request.model,
            prompt=request.prompt,
            seconds=request.seconds,
            size=request.size,
            request_id=request.request_id,
            api_key_id=request.api_key_id,
            references=tuple(
                ReferenceImage(data=image.data, content_type=image.content_type, filename=image.filename)
                for image in request.reference_images
            ),
            pad_references=request.reference_fit == jobs_service_pb2.REFERENCE_FIT_PAD,
            segments=tuple((segment.prompt, segment.seconds) for segment in request.segments),
            max_concurrent_jobs=max(0, request.max_concurrent_jobs),
            remix_of_job_id=request.remix_of_job_id[:128],
        )
        if request.validate_only:
            job = await self._admission.quote(job_request)
        else:
            job = await self._admission.create(job_request)
        return jobs_service_pb2.CreateJobResponse(job=await self._estimator.to_proto(job))

    async def CancelJob(
        self, request: jobs_service_pb2.CancelJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_service_pb2.CancelJobResponse:
        job = await self._cancellation.cancel(owner_id=request.owner_id, job_id=request.job_id)
        return jobs_service_pb2.CancelJobResponse(job=await self._estimator.to_proto(job))

    async def RetryJob(
        self, request: jobs_service_pb2.RetryJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_service_pb2.RetryJobResponse:
        job = await self._retries.retry(owner_id=request.owner_id, job_id=request.job_id)
        return jobs_service_pb2.RetryJobResponse(job=await self._estimator.to_proto(job))

    async def GetJob(
        self, request: jobs_service_pb2.GetJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_service_pb2.GetJobResponse:
        job = await self._store.get_owned(request.job_id, request.owner_id)
        return jobs_service_pb2.GetJobResponse(job=await self._estimator.to_proto(job))

    async def ListJobs(
        self, request: jobs_service_pb2.ListJobsRequest, context: grpc.aio.ServicerContext
    ) -> jobs_service_pb2.ListJobsResponse:
        if request.page_size < 0 or request.page_size > MAX_PAGE_SIZE:
            raise ServiceError(
                ErrorKind.INVALID_ARGUMENT,
                f"limit must be between 0 and {MAX_PAGE_SIZE}",
                param="limit",
                code="invalid_value",
            )
        jobs, has_more = await self._store.list_for_owner(
            request.owner_id,
            limit=request.page_size or DEFAULT_PAGE_SIZE,
            after_id=request.page_token or None,
            descending=request.order != jobs_pb2.SORT_ORDER_ASCENDING,
        )
        return jobs_service_pb2.ListJobsResponse(
            jobs=[await self._estimator.to_proto(job) for job in jobs],
            next_page_token=jobs[-1].id if has_more and jobs else "",
        )

    async def DeleteJob(
        self, request: jobs_service_pb2.DeleteJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_service_pb2.DeleteJobResponse:
        await self._deletion.delete(owner_id=request.owner_id, job_id=request.job_id)
        return jobs_service_pb2.DeleteJobResponse(job_id=request.job_id)

    async def RecordProviderEvent(
        self, request: jobs_service_pb2.RecordProviderEventRequest, context: grpc.aio.ServicerContext
    ) -> jobs_service_pb2.RecordProviderEventResponse:
        for name in ("deployment", "event_id", "event_type", "upstream_id"):
            value = getattr(request, name)
            if not value or len(value) > 128:
                raise ServiceError(
                    ErrorKind.INVALID_ARGUMENT, f"{name} must be 1 to 128 characters", param=name
                )
        if request.deployment not in self._registry.deployments:
            raise ServiceError(
                ErrorKind.NOT_FOUND, f"Unknown deployment '{request.deployment}'.", param="deployment"
            )
        outcome = await self._intake.record(
            deployment=request.deployment,
            event_id=request.event_id,
            event_type=request.event_type,
            upstream_id=request.upstream_id,
        )
        return jobs_service_pb2.RecordProviderEventResponse(outcome=_OUTCOMES[outcome])


_OUTCOMES = {
    Outcome.APPLIED: jobs_service_pb2.PROVIDER_EVENT_OUTCOME_APPLIED,
    Outcome.DUPLICATE: jobs_service_pb2.PROVIDER_EVENT_OUTCOME_DUPLICATE,
    Outcome.IGNORED: jobs_service_pb2.PROVIDER_EVENT_OUTCOME_IGNORED,
}
