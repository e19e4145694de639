"""A video's own webhook: the `webhook_url` a create body may carry (a Vidflow extension).

It receives `video.completed` or `video.failed` for that video, signed with the owner's webhook
secret (`POST /v1/webhook_secret`), so a create naming a webhook_url before the owner has one is
refused: there would be no way to check the signatures.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from servicekit.errors import ErrorKind, ServiceError
from vidflow.jobs.v1 import jobs_pb2, jobs_service_pb2

from services.gateway.keys import CLIENT_WEBHOOK_SETTINGS, JOBS_STUB, WEBHOOK_STORE
from services.gateway.webhook_delivery import planned_deliveries
from services.gateway.webhook_store import Target
from services.gateway.webhook_urls import WebhookUrlError, check_webhook_host, check_webhook_url

PARAM = "webhook_url"
_FINAL = (jobs_pb2.JOB_STATUS_COMPLETED, jobs_pb2.JOB_STATUS_FAILED)


async def checked_webhook_url(app: web.Application, owner_id: str, url: str) -> str:
    """`url` when the owner may have videos call it back there; else a 400 saying why."""
    allow_private = app[CLIENT_WEBHOOK_SETTINGS].allow_private
    try:
        check_webhook_url(url, allow_private=allow_private)
        await check_webhook_host(url, allow_private=allow_private)
    except WebhookUrlError as refused:
        raise ServiceError(
            ErrorKind.INVALID_ARGUMENT, str(refused), param=PARAM, code="invalid_webhook_url"
        ) from None
    if await app[WEBHOOK_STORE].secret_info(owner_id) is None:
        raise ServiceError(
            ErrorKind.FAILED_PRECONDITION,
            "Create your webhook signing secret first (POST /v1/webhook_secret): webhooks to "
            "webhook_url are signed with it.",
            param=PARAM,
            code="webhook_secret_required",
        )
    return url


async def subscribe(app: web.Application, job: jobs_pb2.Job, url: str) -> None:
    """Records the video's webhook. A video can finish before that (a moderation refusal ends it
    inside CreateJob) and its final event may then have found no subscription; so the video is
    looked at once more after the write, and a final state is queued here (the delivery id is the
    one the event would have made, so it is never sent twice)."""
    store = app[WEBHOOK_STORE]
    kept_url = await store.subscribe_video(owner_id=job.owner_id, video_id=job.id, url=url)
    current = (
        await app[JOBS_STUB].GetJob(jobs_service_pb2.GetJobRequest(owner_id=job.owner_id, job_id=job.id))
    ).job
    if current.status in _FINAL:
        occurred_at = (
            current.complete_time.ToDatetime(tzinfo=UTC) if current.HasField("complete_time") else None
        )
        await store.enqueue(
            planned_deliveries(
                current,
                sequence=0,  # final events are keyed by run, not by sequence
                occurred_at=occurred_at or datetime.now(UTC),
                targets=[Target(None, kept_url)],
            )
        )
