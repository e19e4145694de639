"""vidflow.jobs.v1.Job -> the OpenAI VideoResource JSON, and request fields -> typed values."""

from __future__ import annotations

from typing import Any

from vidflow.jobs.v1 import jobs_pb2

_STATUS = {
    jobs_pb2.JOB_STATUS_QUEUED: "queued",
    jobs_pb2.JOB_STATUS_IN_PROGRESS: "in_progress",
    jobs_pb2.JOB_STATUS_COMPLETED: "completed",
    jobs_pb2.JOB_STATUS_FAILED: "failed",
}


_SEGMENT_STATUS = {
    jobs_pb2.SEGMENT_STATUS_PENDING: "pending",
    jobs_pb2.SEGMENT_STATUS_IN_PROGRESS: "in_progress",
    jobs_pb2.SEGMENT_STATUS_COMPLETED: "completed",
    jobs_pb2.SEGMENT_STATUS_FAILED: "failed",
}


def video_resource(job: jobs_pb2.Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "object": "video",
        "model": job.model,
        "status": _STATUS.get(job.status, "queued"),
        "progress": job.progress,
        "created_at": job.create_time.seconds,
        "completed_at": job.complete_time.seconds if job.HasField("complete_time") else None,
        # Our copy of the media does not expire, unlike a provider's download links.
        "expires_at": None,
        "prompt": job.prompt,
        "size": job.size,
        "seconds": str(job.seconds),
        "remixed_from_video_id": job.remixed_from_job_id or None,
        "error": {"code": job.error.code, "message": job.error.message} if job.error.code else None,
        # Vidflow extension: place in line among videos of the same model waiting for a provider.
        "queue_position": job.queue_position or None,
        # Vidflow extension: how many reference images the video was made from.
        "reference_images": job.reference_image_count,
        # Vidflow extension: a long video's clips and how far each has come.
        "segments": [segment_resource(segment) for segment in job.segments] or None,
        # Vidflow extension: POST /v1/videos/{id}/retry counts.
        "retry_count": job.retry_count,
        "last_retried_at": job.last_retry_time.seconds if job.HasField("last_retry_time") else None,
        # Vidflow extension: when the video will probably be ready (null once it has ended).
        "estimated_completed_at": job.estimated_complete_time.seconds
        if job.HasField("estimated_complete_time")
        else None,
    }


def segment_resource(segment: jobs_pb2.Segment) -> dict[str, Any]:
    return {
        "index": segment.index,
        "prompt": segment.prompt,
        "seconds": str(segment.seconds),
        "status": _SEGMENT_STATUS.get(segment.status, "pending"),
        "progress": segment.progress,
        "retry_count": segment.retry_count,
        "error": {"code": segment.error.code, "message": segment.error.message}
        if segment.error.code
        else None,
    }


def is_in_flight(job: jobs_pb2.Job) -> bool:
    return job.status in (jobs_pb2.JOB_STATUS_QUEUED, jobs_pb2.JOB_STATUS_IN_PROGRESS)
