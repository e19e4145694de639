"""Domain Job <-> vidflow.jobs.v1.Job; shared by the gRPC API and the status events."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp
from vidflow.jobs.v1 import jobs_pb2

from services.jobs.domain.job import Job
from services.jobs.domain.lifecycle import Stage, Status
from services.jobs.domain.segments import Segment, SegmentStatus

STATUS_TO_PROTO = {
    Status.QUEUED: jobs_pb2.JOB_STATUS_QUEUED,
    Status.IN_PROGRESS: jobs_pb2.JOB_STATUS_IN_PROGRESS,
    Status.COMPLETED: jobs_pb2.JOB_STATUS_COMPLETED,
    Status.FAILED: jobs_pb2.JOB_STATUS_FAILED,
}
STAGE_TO_PROTO = {stage: jobs_pb2.JobStage.Value(f"JOB_STAGE_{stage.name}") for stage in Stage}
SEGMENT_STATUS_TO_PROTO = {
    status: jobs_pb2.SegmentStatus.Value(f"SEGMENT_STATUS_{status.name}") for status in SegmentStatus
}


def job_to_proto(job: Job) -> jobs_pb2.Job:
    message = jobs_pb2.Job(
        id=job.id,
        owner_id=job.owner_id,
        model=job.spec.model,
        prompt=job.spec.prompt,
        seconds=job.spec.seconds,
        size=job.spec.size,
        status=STATUS_TO_PROTO[job.status],
        stage=STAGE_TO_PROTO[job.stage],
        progress=job.progress,
        cost_credits=job.cost_credits,
        queue_position=job.queue_position,
        reference_image_count=len(job.reference_keys),
        retry_count=job.retry_count,
        remixed_from_job_id=job.remixed_from_job_id or "",
        api_key_id=job.api_key_id,
    )
    if job.last_retry_at:
        message.last_retry_time.CopyFrom(_timestamp(job.last_retry_at))
    for segment in job.segments:
        clip = message.segments.add(
            index=segment.index,
            prompt=segment.prompt,
            seconds=segment.seconds,
            status=SEGMENT_STATUS_TO_PROTO[_shown_status(job, segment)],
            progress=100 if segment.status is SegmentStatus.COMPLETED else segment.progress,
            retry_count=segment.retry_count,
        )
        if segment.error:
            clip.error.code = segment.error.code
            clip.error.message = segment.error.message
    message.create_time.CopyFrom(_timestamp(job.created_at))
    if job.completed_at:
        message.complete_time.CopyFrom(_timestamp(job.completed_at))
    if job.expires_at:
        message.expire_time.CopyFrom(_timestamp(job.expires_at))
    if job.error:
        message.error.code = job.error.code
        message.error.message = job.error.message
    if job.asset:
        message.asset.object_key = job.asset.object_key
        message.asset.duration_seconds = job.asset.duration_seconds
        message.asset.width = job.asset.width
        message.asset.height = job.asset.height
        message.asset.video_codec = job.asset.video_codec
        message.asset.size_bytes = job.asset.size_bytes
    return message


def _shown_status(job: Job, segment: Segment) -> SegmentStatus:
    # A clip cut short by the job's end (a cancel, say) is not still running.
    if job.stage.is_terminal and segment.status is SegmentStatus.IN_PROGRESS:
        return SegmentStatus.FAILED
    return segment.status


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp
