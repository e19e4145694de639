"""The OpenAI-compatible /v1/videos routes. Handlers translate HTTP to gRPC calls and back."""

from __future__ import annotations

import logging

import aiohttp
from aiohttp import web
from servicekit.errors import ErrorKind, ServiceError
from servicekit.storage import storage_unavailable_error
from vidflow.jobs.v1 import jobs_pb2, jobs_service_pb2, jobs_service_pb2_grpc
from vidflow.render.v1 import render_pb2, render_service_pb2, render_service_pb2_grpc

from services.gateway import api_schemas as api
from services.gateway import video_webhooks
from services.gateway.api_docs import Body, Reply, documented, header, json_reply, links_to, query
from services.gateway.auth import principal_of
from services.gateway.create_body import CreateVideoFields, read_create_body
from services.gateway.identity import Principal
from services.gateway.keys import HTTP_CLIENT, JOBS_STUB, RENDER_STUB, STORAGE_TIMEOUT
from services.gateway.openai_format import is_in_flight, video_resource

log = logging.getLogger(__name__)
POLL_AFTER_MS = "2000"
MAX_IDEMPOTENCY_KEY_CHARS = 128  # the jobs service's request_id column
_VARIANTS = {
    "video": render_pb2.ASSET_VARIANT_VIDEO,
    "thumbnail": render_pb2.ASSET_VARIANT_THUMBNAIL,
    "spritesheet": render_pb2.ASSET_VARIANT_SPRITESHEET,
    "poster": render_pb2.ASSET_VARIANT_POSTER,  # Vidflow extension: a full-size still
}
_PASSED_THROUGH_HEADERS = (
    "Content-Type",
    "Content-Length",
    "Content-Range",
    "Accept-Ranges",
    "ETag",
    "Last-Modified",
)

_MEDIA = {
    media_type: {"type": "string", "contentMediaType": media_type}
    for media_type in ("video/mp4", "image/webp", "image/jpeg")
}
_FITS = {"crop": jobs_service_pb2.REFERENCE_FIT_CROP, "pad": jobs_service_pb2.REFERENCE_FIT_PAD}
# Every answer that is a video links to what can be done with it next (OpenAPI links).
_ON_THE_VIDEO = links_to(
    [
        "retrieve_video",
        "download_content",
        "list_renditions",
        "video_events",
        "cancel_video",
        "retry_video",
        "remix_video",
        "delete_video",
    ],
    "video_id",
)

routes = web.RouteTableDef()


def _idempotency_key(request: web.Request) -> str:
    idempotency_key = request.headers.get("Idempotency-Key", "")
    if len(idempotency_key) > MAX_IDEMPOTENCY_KEY_CHARS:
        # Refused rather than cut short: two keys sharing a prefix must not name the same video.
        raise ServiceError(
            ErrorKind.INVALID_ARGUMENT,
            f"Idempotency-Key must be at most {MAX_IDEMPOTENCY_KEY_CHARS} characters.",
            param="Idempotency-Key",
            code="invalid_value",
        )
    return idempotency_key


def _job_response(job: jobs_pb2.Job) -> web.Response:
    response = web.json_response(video_resource(job))
    if is_in_flight(job):
        response.headers["openai-poll-after-ms"] = POLL_AFTER_MS
    return response


@routes.post("/v1/videos")
@documented(
    "Create video",
    tags=["Videos"],
    description="JSON or multipart. The prompt and reference images are moderated, then the price is "
    "held from the caller's credits (402 when short).",
    body=Body(
        {"application/json": api.CREATE_VIDEO_JSON, "multipart/form-data": api.CREATE_VIDEO_MULTIPART},
        example={"model": "sora-2", "prompt": "A calico cat playing a piano", "seconds": "4"},
    ),
    parameters=[api.IDEMPOTENCY_KEY],
    reply=json_reply(api.VIDEO, headers=[api.POLL_AFTER]),
    errors=[402, 409, 429],
    links=_ON_THE_VIDEO,
)
async def create_video(request: web.Request) -> web.Response:
    principal = principal_of(request)
    idempotency_key = _idempotency_key(request)
    fields = await read_create_body(request)
    if fields.webhook_url:
        await video_webhooks.checked_webhook_url(request.app, principal.user_id, fields.webhook_url)
    stub: jobs_service_pb2_grpc.JobsServiceStub = request.app[JOBS_STUB]
    response = await stub.CreateJob(create_job_request(principal, fields, request_id=idempotency_key))
    if fields.webhook_url:
        await video_webhooks.subscribe(request.app, response.job, fields.webhook_url)
    return _job_response(response.job)


def create_job_request(
    principal: Principal, fields: CreateVideoFields, *, request_id: str
) -> jobs_service_pb2.CreateJobRequest:
    """The CreateJob call for one create body (also each request of a batch)."""
    return jobs_service_pb2.CreateJobRequest(
        owner_id=principal.user_id,
        model=fields.model,
        prompt=fields.prompt,
        seconds=fields.seconds,
        size=fields.size,
        request_id=request_id,
        api_key_id=principal.api_key_id,
        max_concurrent_jobs=principal.max_concurrent_jobs,
        reference_images=[
            jobs_service_pb2.ReferenceImage(
                data=ref.data, content_type=ref.content_type, filename=ref.filename
            )
            for ref in fields.references
        ],
        reference_fit=_FITS[fields.reference_fit],
        segments=[
            jobs_service_pb2.SegmentRequest(prompt=prompt, seconds=seconds)
            for prompt, seconds in fields.segments
        ],
    )


@routes.delete("/v1/videos/{video_id}")
@documented(
    "Delete video",
    tags=["Videos"],
    description="Deletes a finished video and every stored file of it; cancel a running one first (400).",
    reply=api.DELETED_VIDEO,
    errors=[400, 404],
)
async def delete_video(request: web.Request) -> web.Response:
    """Deletes a finished video and every stored file of it (OpenAI's delete)."""
    principal = principal_of(request)
    video_id = _video_id(request)
    stub: jobs_service_pb2_grpc.JobsServiceStub = request.app[JOBS_STUB]
    await stub.DeleteJob(jobs_service_pb2.DeleteJobRequest(owner_id=principal.user_id, job_id=video_id))
    return web.json_response({"id": video_id, "object": "video.deleted", "deleted": True})


@routes.get("/v1/videos/{video_id}/renditions")
@documented(
    "List renditions",
    tags=["Videos"],
    description="The renditions ladder of a finished video, each with a short-lived presigned URL.",
    reply=api.RENDITION_LIST,
    errors=[404],
    extension=True,
)
async def list_renditions(request: web.Request) -> web.Response:
    """Vidflow extension: the renditions ladder, each with a short-lived presigned URL."""
    job = await _owned_job(request)
    render: render_service_pb2_grpc.RenderServiceStub = request.app[RENDER_STUB]
    answer = await render.ListRenditions(
        render_service_pb2.ListRenditionsRequest(owner_id=job.owner_id, job_id=job.id)
    )
    return web.json_response(
        {
            "object": "list",
            "video_id": job.id,
            "data": [
                {
                    "object": "video.rendition",
                    "name": rendition.name,
                    "width": rendition.width,
                    "height": rendition.height,
                    "bit_rate": rendition.bit_rate,
                    "has_audio": rendition.has_audio,
                    "content_type": rendition.content_type,
                    "size_bytes": rendition.size_bytes,
                    "url": rendition.url,
                    "expires_at": rendition.url_expire_time.seconds,
                }
                for rendition in answer.renditions
            ],
            "hls_master_url": answer.hls_master_url or None,
        }
    )


@routes.post("/v1/videos/{video_id}/cancel")
@documented(
    "Cancel video",
    tags=["Videos"],
    description="Stops a video that has not finished: it ends `failed` with error code `cancelled` and "
    "its credit hold is released. Repeating it is harmless; a finished video answers 400.",
    reply=api.VIDEO,
    errors=[400, 404, 409],
    extension=True,
    links=_ON_THE_VIDEO,
)
async def cancel_video(request: web.Request) -> web.Response:
    """Vidflow extension: stop a video that has not finished; its credit hold is released."""
    principal = principal_of(request)
    video_id = _video_id(request)
    stub: jobs_service_pb2_grpc.JobsServiceStub = request.app[JOBS_STUB]
    response = await stub.CancelJob(
        jobs_service_pb2.CancelJobRequest(owner_id=principal.user_id, job_id=video_id)
    )
    return _job_response(response.job)


@routes.post("/v1/videos/{video_id}/remix")
@documented(
    "Remix video",
    tags=["Videos"],
    description="A new video from a completed one with a new prompt, made by the provider that made "
    "the source, with the source's model, size and length. JSON or multipart with `prompt` only; "
    "moderated and paid for like a create.",
    body=Body(
        {"application/json": api.REMIX_VIDEO, "multipart/form-data": api.REMIX_VIDEO},
        example={"prompt": "Extend the scene with the cat taking a bow"},
    ),
    parameters=[api.IDEMPOTENCY_KEY],
    reply=json_reply(api.VIDEO, headers=[api.POLL_AFTER]),
    errors=[400, 402, 404, 409, 429],
    links=_ON_THE_VIDEO,
)
async def remix_video(request: web.Request) -> web.Response:
    principal = principal_of(request)
    idempotency_key = _idempotency_key(request)
    fields = await read_create_body(request)
    if fields.model or fields.seconds or fields.size or fields.references or fields.segments:
        raise ServiceError(
            ErrorKind.INVALID_ARGUMENT,
            "A remix takes only a prompt; it keeps the source video's model, size and length.",
            param="prompt",
            code="invalid_value",
        )
    if fields.webhook_url:
        await video_webhooks.checked_webhook_url(request.app, principal.user_id, fields.webhook_url)
    stub: jobs_service_pb2_grpc.JobsServiceStub = request.app[JOBS_STUB]
    response = await stub.CreateJob(
        jobs_service_pb2.CreateJobRequest(
            owner_id=principal.user_id,
            prompt=fields.prompt,
            request_id=idempotency_key,
            api_key_id=principal.api_key_id,
            remix_of_job_id=_video_id(request),
            max_concurrent_jobs=principal.max_concurrent_jobs,
        )
    )
    if fields.webhook_url:
        await video_webhooks.subscribe(request.app, response.job, fields.webhook_url)
    return _job_response(response.job)


@routes.post("/v1/videos/{video_id}/retry")
@documented(
    "Retry video",
    tags=["Videos"],
    description="Tries a failed video again: its price is held again from the caller's credits "
    "(402 when short) and, for a long video, only the clips that did not finish are made again. "
    "The video shows `retry_count` and `last_retried_at`. Videos refused by moderation, and "
    "videos that have not failed, answer 400.",
    reply=json_reply(api.VIDEO, headers=[api.POLL_AFTER]),
    errors=[400, 402, 404, 409],
    extension=True,
    links=_ON_THE_VIDEO,
)
async def retry_video(request: web.Request) -> web.Response:
    principal = principal_of(request)
    stub: jobs_service_pb2_grpc.JobsServiceStub = request.app[JOBS_STUB]
    response = await stub.RetryJob(
        jobs_service_pb2.RetryJobRequest(owner_id=principal.user_id, job_id=_video_id(request))
    )
    return _job_response(response.job)


@routes.get("/v1/videos")
@documented(
    "List videos",
    tags=["Videos"],
    parameters=[
        query(
            "limit", {"type": "integer", "minimum": 0, "maximum": 100, "default": 20}, "Page size (0: 20)."
        ),
        query("order", {"type": "string", "enum": ["asc", "desc"], "default": "desc"}, "By creation time."),
        query("after", {"type": "string"}, "The last id of the previous page."),
    ],
    reply=api.VIDEO_LIST,
    errors=[400],
)
async def list_videos(request: web.Request) -> web.Response:
    principal = principal_of(request)
    limit = _limit(request.query.get("limit"))
    order = request.query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise ServiceError(
            ErrorKind.INVALID_ARGUMENT, "order must be 'asc' or 'desc'", param="order", code="invalid_value"
        )
    after = request.query.get("after", "")[:128]
    if not after.isprintable():  # NUL, say, which no id holds and PostgreSQL text refuses
        raise ServiceError(
            ErrorKind.INVALID_ARGUMENT, "after must be a video id", param="after", code="invalid_value"
        )
    stub: jobs_service_pb2_grpc.JobsServiceStub = request.app[JOBS_STUB]
    response = await stub.ListJobs(
        jobs_service_pb2.ListJobsRequest(
            owner_id=principal.user_id,
            page_size=limit,
            page_token=after,
            order=jobs_pb2.SORT_ORDER_ASCENDING if order == "asc" else jobs_pb2.SORT_ORDER_DESCENDING,
        )
    )
    data = [video_resource(job) for job in response.jobs]
    return web.json_response(
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": bool(response.next_page_token),
        }
    )


@routes.get("/v1/videos/{video_id}")
@documented(
    "Retrieve video",
    tags=["Videos"],
    reply=json_reply(api.VIDEO, headers=[api.POLL_AFTER]),
    errors=[404],
    links=_ON_THE_VIDEO,
)
async def retrieve_video(request: web.Request) -> web.Response:
    job = await _owned_job(request)
    return _job_response(job)


@routes.get("/v1/videos/{video_id}/content")
@documented(
    "Retrieve video content",
    tags=["Videos"],
    description="Streams a completed video's MP4 or a still; Range requests answer 206.",
    parameters=[
        query(
            "variant",
            {"type": "string", "enum": list(_VARIANTS), "default": "video"},
            "`poster` (a full-size JPEG still) is a Vidflow extension.",
        ),
        header("Range", {"type": "string", "examples": ["bytes=0-1023"]}, "A byte range, as in HTTP."),
    ],
    reply=[Reply(_MEDIA, description="The whole file."), Reply(_MEDIA, status=206, description="A range.")],
    errors=[400, 404],
)
async def download_content(request: web.Request) -> web.StreamResponse:
    variant_name = request.query.get("variant", "video")
    if variant_name not in _VARIANTS:
        raise ServiceError(
            ErrorKind.INVALID_ARGUMENT,
            "variant must be one of video, thumbnail, spritesheet, poster",
            param="variant",
            code="invalid_value",
        )
    job = await _owned_job(request)
    if job.status != jobs_pb2.JOB_STATUS_COMPLETED:
        raise ServiceError(
            ErrorKind.FAILED_PRECONDITION,
            f"Video {job.id} is not completed yet (status {video_resource(job)['status']}).",
            code="video_not_ready",
        )
    render: render_service_pb2_grpc.RenderServiceStub = request.app[RENDER_STUB]
    located = await render.GetAssetUrl(
        render_service_pb2.GetAssetUrlRequest(
            owner_id=job.owner_id, job_id=job.id, variant=_VARIANTS[variant_name]
        )
    )
    return await _relay_from_storage(request, located.url)


async def _relay_from_storage(request: web.Request, url: str) -> web.StreamResponse:
    """Stream the object through, passing Range along, so clients can seek and resume."""
    headers = {"Range": request.headers["Range"]} if "Range" in request.headers else {}
    session: aiohttp.ClientSession = request.app[HTTP_CLIENT]
    try:
        upstream = await session.get(url, headers=headers, timeout=request.app[STORAGE_TIMEOUT])
    except (aiohttp.ClientError, TimeoutError) as exc:
        # Storage is down, unreachable or not answering: a passing state, not a fault of ours or the
        # client's.
        raise storage_unavailable_error() from exc
    async with upstream:
        if upstream.status == 416:
            raise ServiceError(
                ErrorKind.INVALID_ARGUMENT, "The requested range is not satisfiable.", param="Range"
            )
        if upstream.status not in (200, 206):
            raise storage_unavailable_error()
        response = web.StreamResponse(status=upstream.status)
        for name in _PASSED_THROUGH_HEADERS:
            if name in upstream.headers:
                response.headers[name] = upstream.headers[name]
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_chunked(1 << 16):
                await response.write(chunk)
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Storage stalled or broke off mid-file. The status is sent and cannot change, and a
            # connection left open would keep the client waiting for the rest: cut it, so the
            # client sees a short body at once and can resume with Range.
            log.warning(
                "media storage broke off a download", extra={"path": request.path, "error": repr(exc)}
            )
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()
        return response


def _video_id(request: web.Request) -> str:
    """The path's video id. One no video can have (too long, or with a character such as NUL that
    PostgreSQL text refuses) answers like any missing id instead of reaching the jobs service."""
    video_id = request.match_info["video_id"]
    if len(video_id) > 128 or not video_id.isprintable():
        raise ServiceError(
            ErrorKind.NOT_FOUND,
            f"No video found with id {video_id[:128]!r}.",
            param="video_id",
            code="video_not_found",
        )
    return video_id


async def _owned_job(request: web.Request) -> jobs_pb2.Job:
    principal = principal_of(request)
    video_id = _video_id(request)
    stub: jobs_service_pb2_grpc.JobsServiceStub = request.app[JOBS_STUB]
    response = await stub.GetJob(jobs_service_pb2.GetJobRequest(owner_id=principal.user_id, job_id=video_id))
    return response.job


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return 20
    # ASCII digits only ('²' is a digit to str.isdigit) and short, so int() cannot fail.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 3 or int(raw) > 100:
        raise ServiceError(
            ErrorKind.INVALID_ARGUMENT,
            "limit must be an integer between 0 and 100",
            param="limit",
            code="invalid_value",
        )
    return int(raw) or 20
