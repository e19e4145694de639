"""Video batches (a Vidflow extension): many create-video bodies in one request.

Each request of a batch is created as `POST /v1/videos` would create it, with its own
idempotency key `<batch id>:<index>`, so creating a batch again never makes a video twice. An
item that is refused (invalid, unfunded, over a limit) gets the OpenAI error it would have got on
its own, and the others go ahead. With an `Idempotency-Key`, repeating the request answers with
the same batch; items that failed for a passing reason (a 5xx or a 429) are tried again then.

Status and counts are defined in `batch_summary`. The videos are read from the jobs service on
every `GET`, so they are as current as `GET /v1/videos/{id}`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Coroutine, Iterable
from typing import Any

from aiohttp import web
from servicekit.errors import ErrorKind, ServiceError, openai_error_body
from vidflow.jobs.v1 import jobs_pb2, jobs_service_pb2

from services.gateway import api_schemas as api
from services.gateway import paging, video_webhooks
from services.gateway.api_docs import Schema, documented, json_body, links_to
from services.gateway.auth import principal_of
from services.gateway.batch_store import Batch, ItemOutcome
from services.gateway.batch_summary import (
    BatchStatus,
    ItemState,
    batch_status,
    counts,
    item_state,
)
from services.gateway.create_body import create_fields
from services.gateway.identity import Principal
from services.gateway.json_body import read_json_object
from services.gateway.keys import BATCH_STORE, JOBS_STUB
from services.gateway.openai_format import video_resource
from services.gateway.videos import MAX_IDEMPOTENCY_KEY_CHARS, create_job_request

routes = web.RouteTableDef()
MAX_REQUESTS = 100
# Items created at once: enough to hide CreateJob's latency, few enough not to crowd out other callers.
CREATE_CONCURRENCY = 4
READ_CONCURRENCY = 16
# Error types of failures that may pass: a replay of the batch tries those items again.
_PASSING_ERROR_TYPES = frozenset({"server_error", "rate_limit_error"})
_BATCH_ID = re.compile(r"^batch_[0-9a-f]{24}$")
_TAGS = ["Video batches"]

_ITEM_ERROR = Schema(
    "BatchItemError",
    {
        "type": "object",
        "description": "The `error` of the OpenAI error body the request would have got on its own.",
        "required": ["message", "type", "param", "code"],
        "properties": {
            "message": {"type": "string"},
            "type": {"type": "string"},
            "param": {"type": ["string", "null"]},
            "code": {"type": ["string", "null"]},
        },
    },
)
_COUNTS = {
    "type": "object",
    "required": ["total", *[state.value for state in ItemState]],
    "properties": {name: {"type": "integer", "minimum": 0} for name in ["total", *ItemState]},
    "description": "Items by state: their video's status, `rejected` (no video was made) or `deleted`.",
}
VIDEO_BATCH = Schema(
    "VideoBatch",
    {
        "type": "object",
        "required": ["id", "object", "created_at", "status", "counts", "data"],
        "properties": {
            "id": {"type": "string", "examples": ["batch_0123456789abcdef01234567"]},
            "object": {"const": "video_batch"},
            "created_at": api.UNIX_SECONDS,
            "status": {
                "type": "string",
                "enum": [status.value for status in BatchStatus],
                "description": "`in_progress` while any video is queued or in progress; then `completed` "
                "(nothing failed or was rejected), `failed` (nothing completed) or `partially_failed`.",
            },
            "counts": _COUNTS,
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["index", "video", "error"],
                    "properties": {
                        "index": {"type": "integer", "minimum": 0},
                        "video": api.VIDEO.nullable(),
                        "error": _ITEM_ERROR.nullable(),
                    },
                },
            },
        },
    },
)
VIDEO_BATCH_SUMMARY = Schema(
    "VideoBatchSummary",
    {
        "type": "object",
        "description": "A batch in a list; `GET /v1/video_batches/{batch_id}` has its status and videos.",
        "required": ["id", "object", "created_at", "total"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "video_batch"},
            "created_at": api.UNIX_SECONDS,
            "total": {"type": "integer", "minimum": 1, "description": "How many requests it has."},
        },
    },
)
CREATE_VIDEO_BATCH = Schema(
    "CreateVideoBatchBody",
    {
        "type": "object",
        "required": ["requests"],
        "additionalProperties": False,
        "properties": {
            "requests": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_REQUESTS,
                "items": api.CREATE_VIDEO_JSON,
                "description": "Create-video bodies, each as `POST /v1/videos` takes in JSON.",
            }
        },
    },
)


@routes.post("/v1/video_batches")
@documented(
    "Create video batch",
    tags=_TAGS,
    description=f"Up to {MAX_REQUESTS} create-video bodies at once. Each is created as `POST /v1/videos` "
    "would create it; one that is refused gets its error in its item and the others go ahead. With an "
    "`Idempotency-Key`, repeating the request answers with the same batch (a different body with the "
    "same key gets 409), and items that failed for a passing reason (5xx, 429) are tried again.",
    body=json_body(
        CREATE_VIDEO_BATCH,
        example={
            "requests": [
                {"model": "sora-2", "prompt": "A calico cat playing a piano", "seconds": "4"},
                {"model": "sora-2", "prompt": "A lighthouse in a storm", "seconds": "8"},
            ]
        },
    ),
    parameters=[api.IDEMPOTENCY_KEY],
    reply=VIDEO_BATCH,
    errors=[409],
    extension=True,
    links={
        **links_to(["retrieve_batch"], "batch_id"),
        # The first item's video (none when it was refused).
        **links_to(["retrieve_video"], "video_id", "$response.body#/data/0/video/id"),
    },
)
async def create_batch(request: web.Request) -> web.Response:
    principal = principal_of(request)
    idempotency_key = _idempotency_key(request)
    body = await read_json_object(request)
    unknown = sorted(set(body) - {"requests"})
    if unknown:
        raise _invalid(unknown[0], f'Unknown field {unknown[0]!r}; send {{"requests": [...]}}.')
    requests = body.get("requests")
    if not isinstance(requests, list) or not 1 <= len(requests) <= MAX_REQUESTS:
        raise _invalid("requests", f"requests must be a list of 1 to {MAX_REQUESTS} create-video bodies.")
    store = request.app[BATCH_STORE]
    request_hash = _request_hash(requests)
    batch, created = await store.open(
        owner_id=principal.user_id,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        total=len(requests),
    )
    if not created and batch.request_hash != request_hash:
        raise ServiceError(
            ErrorKind.ALREADY_EXISTS,
            "This Idempotency-Key was used for a batch with other requests.",
            param="Idempotency-Key",
            code="idempotency_key_reused",
        )
    outcomes = {} if created else await store.outcomes(batch.id)
    fresh: dict[int, jobs_pb2.Job] = {}
    slots = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def make(index: int) -> None:
        async with slots:
            outcome, job = await _create_item(request, principal, batch, index, requests[index])
            await store.record(batch.id, index, outcome)
        outcomes[index] = outcome
        if job is not None:
            fresh[index] = job

    to_make = [index for index in range(batch.total) if index not in outcomes or _passing(outcomes[index])]
    await _run_all(make(index) for index in to_make)
    return web.json_response(await _batch_resource(request, batch, outcomes, fresh))


@routes.get("/v1/video_batches")
@documented(
    "List video batches",
    tags=_TAGS,
    description="The caller's batches, newest first.",
    parameters=paging.PARAMETERS,
    reply=Schema("VideoBatchList", paging.list_schema("Video batches", VIDEO_BATCH_SUMMARY)),
    errors=[400],
    extension=True,
)
async def list_batches(request: web.Request) -> web.Response:
    limit, after = paging.page_of(request)
    batches = await request.app[BATCH_STORE].list_batches(
        principal_of(request).user_id, limit=limit + 1, after=after
    )
    return web.json_response(
        paging.list_body(
            [
                {"id": batch.id, "object": "video_batch", "created_at": _unix(batch), "total": batch.total}
                for batch in batches
            ],
            limit,
        )
    )


@routes.get("/v1/video_batches/{batch_id}")
@documented(
    "Retrieve video batch",
    tags=_TAGS,
    description="The batch's aggregate status and counts, and each item's video (as `GET /v1/videos/{id}` "
    "shows it now) or error.",
    reply=VIDEO_BATCH,
    errors=[404],
    extension=True,
)
async def retrieve_batch(request: web.Request) -> web.Response:
    principal = principal_of(request)
    batch_id = request.match_info["batch_id"]
    store = request.app[BATCH_STORE]
    batch = await store.get(principal.user_id, batch_id) if _BATCH_ID.match(batch_id) else None
    if batch is None:
        raise ServiceError(
            ErrorKind.NOT_FOUND,
            f"No video batch found with id '{batch_id[:64]}'.",
            param="batch_id",
            code="video_batch_not_found",
        )
    return web.json_response(await _batch_resource(request, batch, await store.outcomes(batch.id), {}))


async def _create_item(
    request: web.Request, principal: Principal, batch: Batch, index: int, raw: Any
) -> tuple[ItemOutcome, jobs_pb2.Job | None]:
    try:
        if not isinstance(raw, dict):
            raise _invalid(None, "Each request must be a create-video body (a JSON object).")
        fields = create_fields(raw)
        if fields.webhook_url:
            await video_webhooks.checked_webhook_url(request.app, principal.user_id, fields.webhook_url)
        response = await request.app[JOBS_STUB].CreateJob(
            create_job_request(principal, fields, request_id=f"{batch.id}:{index}")
        )
    except ServiceError as refused:
        return ItemOutcome(None, openai_error_body(refused)["error"]), None
    if fields.webhook_url:
        await video_webhooks.subscribe(request.app, response.job, fields.webhook_url)
    return ItemOutcome(response.job.id, None), response.job


async def _batch_resource(
    request: web.Request, batch: Batch, outcomes: dict[int, ItemOutcome], known: dict[int, jobs_pb2.Job]
) -> dict[str, Any]:
    """The batch as the API shows it; videos not in `known` are read from the jobs service."""
    videos = dict(known)
    slots = asyncio.Semaphore(READ_CONCURRENCY)

    async def read(index: int, video_id: str) -> None:
        async with slots:
            try:
                response = await request.app[JOBS_STUB].GetJob(
                    jobs_service_pb2.GetJobRequest(owner_id=batch.owner_id, job_id=video_id)
                )
            except ServiceError as error:
                if error.kind is not ErrorKind.NOT_FOUND:
                    raise
                return  # deleted since
        videos[index] = response.job

    await _run_all(
        read(index, outcome.video_id)
        for index, outcome in outcomes.items()
        if outcome.video_id is not None and index not in videos
    )
    data = [_item(index, outcomes.get(index), videos.get(index)) for index in range(batch.total)]
    tally = counts(state for _, state in data)
    return {
        "id": batch.id,
        "object": "video_batch",
        "created_at": _unix(batch),
        "status": batch_status(tally).value,
        "counts": tally,
        "data": [item for item, _ in data],
    }


def _item(
    index: int, outcome: ItemOutcome | None, job: jobs_pb2.Job | None
) -> tuple[dict[str, Any], ItemState]:
    if outcome is None:
        # Its creation was cut short (or is still under way in a concurrent replay).
        error: dict[str, Any] | None = {
            "message": "This request was not created yet; repeat the batch with the same Idempotency-Key.",
            "type": "server_error",
            "param": None,
            "code": "batch_item_not_created",
        }
        return {"index": index, "video": None, "error": error}, ItemState.REJECTED
    if outcome.video_id is None:
        return {"index": index, "video": None, "error": outcome.error}, item_state(None, rejected=True)
    if job is None:
        error = {
            "message": f"Video {outcome.video_id} was deleted.",
            "type": "invalid_request_error",
            "param": None,
            "code": "video_deleted",
        }
        return {"index": index, "video": None, "error": error}, item_state(None)
    video = video_resource(job)
    return {"index": index, "video": video, "error": None}, item_state(video["status"])


async def _run_all(work: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Runs them all; on a failure the rest are cancelled and the first error is raised as it is
    (not in an ExceptionGroup), so a ServiceError still becomes its own HTTP answer."""
    try:
        async with asyncio.TaskGroup() as group:
            for coroutine in work:
                group.create_task(coroutine)
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None


def _passing(outcome: ItemOutcome) -> bool:
    return outcome.error is not None and outcome.error.get("type") in _PASSING_ERROR_TYPES


def _request_hash(requests: list[Any]) -> str:
    canonical = json.dumps(requests, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key", "")
    if len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        raise _invalid(
            "Idempotency-Key", f"Idempotency-Key must be at most {MAX_IDEMPOTENCY_KEY_CHARS} characters."
        )
    return key or None


def _invalid(param: str | None, message: str) -> ServiceError:
    return ServiceError(
        ErrorKind.INVALID_ARGUMENT, message, param=param, code="invalid_value" if param else None
    )


def _unix(batch: Batch) -> int:
    return int(batch.created_at.timestamp())
