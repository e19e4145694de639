"""HTTP adapter: OpenAI Videos API routes over the video store, plus server start-up and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import math
import re
import signal
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import imageio_ffmpeg
from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from simulator.chaos import Chaos, ChaosConfigError, ChaosSettings, Fault, RequestPlan
from simulator.config import Settings
from simulator.domain import (
    MAX_REFERENCE_IMAGE_BYTES,
    FailedPrecondition,
    IdempotencyConflict,
    InvalidArgument,
    NotFound,
    Timing,
    Unauthenticated,
    Video,
    VideoError,
    parse_create_request,
    parse_list_params,
    parse_remix_request,
    require_downloadable,
    uploaded_image,
)
from simulator.media import FfmpegRenderer
from simulator.store import EventSink, Renderer, VideoStore
from simulator.webhooks import WebhookSender, WebhookSettings

log = logging.getLogger(__name__)

SETTINGS_KEY = web.AppKey("settings", Settings)
STORE_KEY = web.AppKey("store", VideoStore)
CHAOS_KEY = web.AppKey("chaos", Chaos)
SLEEP_KEY: web.AppKey[Callable[[float], Awaitable[None]]] = web.AppKey("sleep")
CHAOS_PATH = "/_chaos"
# Test control: what a video was asked for, as the provider received it (not part of the API).
INSPECT_PATH = "/_inspect/videos"

# JSON bodies may carry an image as a data: URL of up to 20 MiB characters.
MAX_JSON_BODY_BYTES = 24 * 1024 * 1024
# A 32,000-character prompt is at most 128 KiB of UTF-8.
MAX_TEXT_FIELD_BYTES = 256 * 1024
MAX_MULTIPART_PARTS = 16
POLL_AFTER_HEADER = "openai-poll-after-ms"
IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY_CHARS = 255
CONTENT_TYPES = {"video": "video/mp4", "thumbnail": "image/webp", "spritesheet": "image/jpeg"}

# The one table from domain error to HTTP status (see STYLE.md).
ERROR_STATUS: dict[type[VideoError], int] = {
    InvalidArgument: 400,
    FailedPrecondition: 400,
    Unauthenticated: 401,
    NotFound: 404,
    IdempotencyConflict: 409,
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Sleep = Callable[[float], Awaitable[None]]


# --- wiring -------------------------------------------------------------------------------------


def make_app(
    settings: Settings, *, renderer: Renderer | None = None, sleep: Sleep = asyncio.sleep
) -> web.Application:
    """The simulator as an aiohttp app.

    `renderer` swaps ffmpeg for another implementation; `sleep` is how chaos latency is waited
    for, so tests can observe it without waiting.
    """
    app = web.Application(
        middlewares=[openai_errors, authenticate, inject_faults], client_max_size=MAX_JSON_BODY_BYTES
    )
    app[SETTINGS_KEY] = settings
    app[CHAOS_KEY] = Chaos(settings.chaos)
    app[SLEEP_KEY] = sleep
    app.cleanup_ctx.append(_video_store(renderer))
    app.router.add_post("/v1/videos", create_video)
    app.router.add_get("/v1/videos", list_videos)
    app.router.add_get("/v1/videos/{video_id}", retrieve_video)
    app.router.add_delete("/v1/videos/{video_id}", delete_video)
    app.router.add_post("/v1/videos/{video_id}/remix", remix_video)
    app.router.add_get("/v1/videos/{video_id}/content", download_content)
    app.router.add_get("/healthz", healthz)
    app.router.add_get(CHAOS_PATH, get_chaos)
    app.router.add_get(INSPECT_PATH + "/{video_id}", inspect_video)
    app.router.add_put(CHAOS_PATH, put_chaos)
    return app


def _video_store(
    renderer: Renderer | None,
) -> Callable[[web.Application], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def video_store(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS_KEY]
        async with contextlib.AsyncExitStack() as stack:
            data_dir = settings.data_dir or Path(
                stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="vidflow-simulator-", ignore_cleanup_errors=True)
                )
            )
            data_dir.mkdir(parents=True, exist_ok=True)
            on_finished: EventSink | None = None
            if settings.webhook_url:
                sender = WebhookSender(
                    WebhookSettings(
                        url=settings.webhook_url,
                        secret=settings.webhook_secret,
                        max_attempts=settings.webhook_max_attempts,
                        retry_base_seconds=settings.webhook_retry_base_seconds,
                        timeout_seconds=settings.webhook_timeout_seconds,
                    )
                )
                stack.push_async_callback(sender.close)
                on_finished = sender.send
            store = VideoStore(
                renderer=renderer
                or FfmpegRenderer(
                    settings.ffmpeg_exe or imageio_ffmpeg.get_ffmpeg_exe(),
                    fps=settings.fps,
                    time_limit=settings.render_timeout_seconds,
                ),
                data_dir=data_dir,
                timing=Timing(settings.generation_seconds, settings.asset_ttl_seconds),
                max_concurrent_renders=settings.max_concurrent_renders,
                chaos=app[CHAOS_KEY],
                on_finished=on_finished,
            )
            app[STORE_KEY] = store
            # Unwound in reverse: renders stop (ffmpeg is killed, no new events), then webhook
            # deliveries are cancelled, then the temporary directory goes.
            stack.push_async_callback(store.close)
            yield

    return video_store


async def start_server(
    settings: Settings, *, renderer: Renderer | None = None, sleep: Sleep = asyncio.sleep
) -> tuple[web.AppRunner, int]:
    """Start listening (port 0 picks a free one); returns the runner (`cleanup()` stops it) and the port."""
    runner = web.AppRunner(make_app(settings, renderer=renderer, sleep=sleep), shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    port: int = runner.addresses[0][1]
    return runner, port


async def serve(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then stop accepting, cancel renders and clean up."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner, port = await start_server(settings)
    log.info("simulator listening", extra={"host": settings.host, "port": port})
    try:
        await stop.wait()
        log.info("simulator stopping")
    finally:
        await runner.cleanup()


# --- middlewares --------------------------------------------------------------------------------


@web.middleware
async def openai_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as an OpenAI error object; tracebacks go to the log only."""
    try:
        return await handler(request)
    except VideoError as exc:
        status = next(code for kind, code in ERROR_STATUS.items() if isinstance(exc, kind))
        return error_response(status, exc.message, param=exc.param, code=exc.code)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status in (404, 405):
            message = f"Invalid URL ({request.method} {request.path})"
        else:
            message = exc.reason
        error_type = "server_error" if exc.status >= 500 else "invalid_request_error"
        return error_response(exc.status, message, error_type=error_type)
    except Exception:
        log.exception("unhandled error", extra={"method": request.method, "path": request.path})
        return error_response(
            500, "The server had an error while processing your request.", error_type="server_error"
        )


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    expected = request.app[SETTINGS_KEY].api_key
    if expected and request.path.startswith(("/v1/", CHAOS_PATH, INSPECT_PATH)):
        token = _bearer_token(request)
        if token is None:
            raise Unauthenticated(
                "You didn't provide an API key. You need to provide your API key in an Authorization "
                "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                code="missing_api_key",
            )
        if not hmac.compare_digest(token.encode(), expected.encode()):
            raise Unauthenticated("Incorrect API key provided.", code="invalid_api_key")
    return await handler(request)


@web.middleware
async def inject_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Chaos for /v1 routes: latency, then maybe a 429/500/503 or a dropped connection.

    A POST to /v1 creates a video; a 500/503/drop there may come after the video was created.
    """
    if not request.path.startswith("/v1/"):
        return await handler(request)
    plan = request.app[CHAOS_KEY].plan_request(creates_video=request.method == "POST")
    if plan.delay_ms:
        await request.app[SLEEP_KEY](plan.delay_ms / 1000)
    if plan.fault is None:
        return await handler(request)
    if plan.after_handler:
        # The work is done and kept; only the answer is lost.
        await handler(request)
    log.info(
        "chaos fault",
        extra={
            "fault": plan.fault.value,
            "after_handler": plan.after_handler,
            "method": request.method,
            "path": request.path,
        },
    )
    return _fault_response(request, plan)


def _fault_response(request: web.Request, plan: RequestPlan) -> web.StreamResponse:
    if plan.fault is Fault.RATE_LIMIT:
        response = error_response(
            429,
            "Rate limit reached for requests. Please try again later.",
            code="rate_limit_exceeded",
            error_type="requests",
        )
        response.headers["retry-after"] = str(math.ceil(plan.retry_after_ms / 1000))
        response.headers["retry-after-ms"] = str(plan.retry_after_ms)
        return response
    if plan.fault is Fault.UNAVAILABLE:
        return error_response(
            503,
            "The server is overloaded or not ready yet.",
            code="service_unavailable",
            error_type="server_error",
        )
    if plan.fault is Fault.DROP:
        # Close the connection without a byte of response: the client sees a disconnect.
        if request.transport is not None:
            request.transport.abort()
        return web.Response()
    return error_response(
        500, "The server had an error while processing your request.", error_type="server_error"
    )


async def get_chaos(request: web.Request) -> web.Response:
    return web.json_response(request.app[CHAOS_KEY].settings.as_dict())


async def put_chaos(request: web.Request) -> web.Response:
    """Replace every knob (absent ones are off) and restart the random sequence from the seed."""
    try:
        settings = ChaosSettings.from_dict(await _read_json(request))
    except ChaosConfigError as exc:
        raise InvalidArgument(str(exc), code="invalid_chaos_settings") from exc
    request.app[CHAOS_KEY].replace(settings)
    log.warning("chaos settings replaced", extra={"chaos": settings.as_dict()})
    return web.json_response(settings.as_dict())


async def inspect_video(request: web.Request) -> web.Response:
    """The create request behind a video, including the reference image's fingerprint: how tests
    see what a client of the provider really sent."""
    video = request.app[STORE_KEY].get(request.match_info["video_id"])
    reference = video.spec.input_reference
    return web.json_response(
        {
            "id": video.id,
            "prompt": video.spec.prompt,
            "model": video.spec.model,
            "seconds": video.spec.seconds,
            "size": video.spec.size,
            "input_reference": dataclasses.asdict(reference) if reference is not None else None,
        }
    )


async def healthz(request: web.Request) -> web.Response:
    """Liveness for process supervisors; needs no key."""
    return web.json_response({"status": "ok"})


def error_response(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    error_type: str = "invalid_request_error",
) -> web.Response:
    body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    return web.json_response(body, status=status)


# --- handlers -----------------------------------------------------------------------------------


async def create_video(request: web.Request) -> web.Response:
    spec = parse_create_request(await _read_body(request))
    store = request.app[STORE_KEY]
    video = store.create(spec, owner=_caller(request), idempotency_key=_idempotency_key(request))
    return _video_response(store, video)


async def list_videos(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    page = store.list(parse_list_params(request.query))
    data = [_video_resource(store, video) for video in page.videos]
    return web.json_response(
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": page.has_more,
        }
    )


async def retrieve_video(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    return _video_response(store, store.get(request.match_info["video_id"]))


async def delete_video(request: web.Request) -> web.Response:
    video_id = request.match_info["video_id"]
    await request.app[STORE_KEY].delete(video_id)
    return web.json_response({"id": video_id, "object": "video.deleted", "deleted": True})


async def remix_video(request: web.Request) -> web.Response:
    prompt = parse_remix_request(await _read_body(request))
    store = request.app[STORE_KEY]
    video = store.remix(
        request.match_info["video_id"],
        prompt,
        owner=_caller(request),
        idempotency_key=_idempotency_key(request),
    )
    return _video_response(store, video)


async def download_content(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE_KEY]
    video = store.get(request.match_info["video_id"])
    variant = request.query.get("variant", "video")
    if variant not in CONTENT_TYPES:
        raise InvalidArgument(
            f"Invalid value: '{variant}'. Supported values are: 'video', 'thumbnail', and 'spritesheet'.",
            param="variant",
            code="invalid_value",
        )
    require_downloadable(video, store.state(video), store.now())
    path = getattr(store.files(video), variant)
    # FileResponse streams from disk and answers Range requests.
    return web.FileResponse(path, headers={"Content-Type": CONTENT_TYPES[variant]})


def _video_response(store: VideoStore, video: Video) -> web.Response:
    response = web.json_response(_video_resource(store, video))
    if not store.state(video).finished:
        response.headers[POLL_AFTER_HEADER] = str(store.poll_after_ms(video))
    return response


def _video_resource(store: VideoStore, video: Video) -> dict[str, Any]:
    """The VideoResource schema: every required field present, null where not set."""
    state = store.state(video)
    return {
        "id": video.id,
        "object": "video",
        "model": video.spec.model,
        "status": state.status.value,
        "progress": state.progress,
        "created_at": int(video.created_at),
        "completed_at": _unix(state.completed_at),
        "expires_at": _unix(state.expires_at),
        "prompt": video.spec.prompt,
        "size": video.spec.size,
        "seconds": video.spec.seconds,
        "remixed_from_video_id": video.remixed_from_video_id,
        "error": {"code": state.error.code, "message": state.error.message} if state.error else None,
    }


def _unix(timestamp: float | None) -> int | None:
    return None if timestamp is None else int(timestamp)


# --- request parsing ----------------------------------------------------------------------------


def _bearer_token(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _caller(request: web.Request) -> str:
    """Whom idempotency keys belong to: a digest of the bearer token, so no secret is kept."""
    return hashlib.sha256((_bearer_token(request) or "").encode()).hexdigest()


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER, "").strip()
    if len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        raise InvalidArgument(
            f"Idempotency-Key must be at most {MAX_IDEMPOTENCY_KEY_CHARS} characters.",
            code="invalid_idempotency_key",
        )
    return key or None


async def _read_body(request: web.Request) -> dict[str, object]:
    content_type = request.content_type
    if content_type == "application/json":
        return await _read_json(request)
    if content_type == "multipart/form-data":
        return await _read_multipart(request)
    if content_type == "application/x-www-form-urlencoded":
        # No binary parts are possible here, so aiohttp's form parser is safe to use.
        return _form_fields(list((await request.post()).items()))
    raise InvalidArgument(
        f"Unsupported Content-Type '{content_type}': send application/json or multipart/form-data.",
        code="unsupported_content_type",
    )


async def _read_json(request: web.Request) -> dict[str, object]:
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(
            f"We could not parse the JSON body of your request: {exc}", code="invalid_json"
        ) from exc
    if not isinstance(body, dict):
        raise InvalidArgument("The JSON body of your request must be an object.", code="invalid_json")
    return body


_NESTED_FIELD = re.compile(r"(?P<outer>\w+)\[(?P<inner>\w+)\]")


def _form_fields(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """Fold form pairs into a body; `input_reference[image_url]=...` (the SDK's encoding of an
    object in a form) becomes `{"input_reference": {"image_url": ...}}`."""
    fields: dict[str, object] = {}
    for name, value in pairs:
        match = _NESTED_FIELD.fullmatch(name)
        if match is None:
            if name in fields:
                raise _duplicate(name)
            fields[name] = value
            continue
        nested = fields.setdefault(match["outer"], {})
        if not isinstance(nested, dict) or match["inner"] in nested:
            raise _duplicate(name)
        nested[match["inner"]] = value
    return fields


def _duplicate(name: str) -> InvalidArgument:
    return InvalidArgument(f"Duplicate parameter: '{name}'.", param=name, code="duplicate_parameter")


async def _read_multipart(request: web.Request) -> dict[str, object]:
    """Collect multipart fields, reading each part with a size bound."""
    pairs: list[tuple[str, object]] = []
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if len(pairs) == MAX_MULTIPART_PARTS:
                raise InvalidArgument(f"Too many multipart parts (at most {MAX_MULTIPART_PARTS}).")
            if not isinstance(part, BodyPartReader) or not part.name:
                raise InvalidArgument("Malformed multipart body: every part needs a field name.")
            if part.name == "input_reference" and part.filename is not None:
                pairs.append((part.name, uploaded_image(await _read_part(part, MAX_REFERENCE_IMAGE_BYTES))))
            else:
                pairs.append((part.name, (await _read_part(part)).decode()))
    except (ValueError, AssertionError, HttpProcessingError) as exc:
        # aiohttp's multipart reader signals malformed input with these (UnicodeDecodeError is a
        # ValueError; a part header that is not valid HTTP raises InvalidHeader, found by
        # schemathesis).
        raise InvalidArgument(f"Malformed multipart body: {exc}", code="invalid_multipart") from exc
    return _form_fields(pairs)


async def _read_part(part: BodyPartReader, limit: int = MAX_TEXT_FIELD_BYTES) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk():
        data.extend(chunk)
        if len(data) > limit:
            raise InvalidArgument(
                f"Parameter '{part.name}' is too large (at most {limit} bytes).",
                param=part.name,
                code="payload_too_large",
            )
    return bytes(data)
