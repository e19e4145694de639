"""Live video status: Server-Sent Events for one video, and a WebSocket for many.

Both send the same events: the job's `sequence` (one more per event) and the video object exactly as
`GET /v1/videos/{id}` returns it. Each client first gets the current state, or on resume every
stored event after the id it names, then live events; replay and live meet with no gap and no
duplicate (see `event_feed`). A WebSocket remembers per video the highest sequence it sent
(`DeliveredSequences`), so a video it reaches through "all" and by id, subscribes twice or resumes
from an older id still gets each event once, in order. Another user's video answers as if it did
not exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import WSMsgType, web
from servicekit.errors import ErrorKind, ServiceError, openai_error_body
from vidflow.jobs.v1 import jobs_pb2, jobs_service_pb2, jobs_service_pb2_grpc

from services.gateway import api_schemas as api
from services.gateway.api_docs import Reply, Schema, documented, header, query
from services.gateway.auth import PRINCIPAL, authenticate_token, principal_of
from services.gateway.config import Settings
from services.gateway.event_feed import EventFeed, status_event_from_job, unavailable_error
from services.gateway.fanout import (
    CloseReason,
    DeliveredSequences,
    FanoutHub,
    HubClosed,
    StatusEvent,
    Subscriber,
    SubscriptionClosed,
)
from services.gateway.identity import Principal
from services.gateway.keys import EVENT_FEED, JOBS_STUB, LIVE_HUB, LIVE_SETTINGS
from services.gateway.openai_format import is_in_flight

log = logging.getLogger(__name__)
EVENT_TYPE = "video.status_changed"
# Sent on quiet SSE streams; a comment line, so EventSource ignores it.
SSE_KEEPALIVE = b": keepalive\n\n"
SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    # nginx and friends would otherwise buffer the stream.
    "X-Accel-Buffering": "no",
}
# WebSocket close codes (4000-4999 are for applications).
CLOSE_GOING_AWAY = 1001  # the gateway is shutting down: reconnect (to another replica) and resume
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TOO_SLOW = 4001  # fell too far behind: reconnect and resume with last_event_id
CLOSE_UNAUTHENTICATED = 4401  # no valid token in the first message
AUTH_TIMEOUT_SECONDS = 10.0
STARTUP_WAIT_SECONDS = 5.0
# How long a closing socket waits for the client's close frame (shutdown does not wait longer).
CLOSE_HANDSHAKE_SECONDS = 2.0
MAX_MESSAGE_BYTES = 64 * 1024
MAX_VIDEOS_PER_SUBSCRIBE = 100
MAX_VIDEOS_PER_SOCKET = 1000
# Videos whose last sent sequence a socket remembers (about 150 bytes each): all it may watch at once
# and room for those "all" brings. A socket that carried more forgets the least recently sent.
REMEMBERED_VIDEOS_PER_SOCKET = 4 * MAX_VIDEOS_PER_SOCKET
_MAX_ID_CHARS = 128  # the jobs service's id column
_MAX_EVENT_ID_DIGITS = 18

routes = web.RouteTableDef()

_EVENT_ID = {"type": "string", "pattern": "^[0-9]{1,18}$"}
STATUS_EVENT = Schema(
    "VideoStatusEvent",
    {
        "type": "object",
        "title": "Live status event",
        "description": "On the WebSocket, one per message; over SSE, `id` is the SSE `id:` and `data` "
        "the `data:` line. `sequence` 0 is a snapshot taken before the first event was stored.",
        "required": ["type", "id", "sequence", "data"],
        "properties": {
            "type": {"const": EVENT_TYPE},
            "id": {"type": "string", "description": "The video's id."},
            "sequence": {"type": "integer", "minimum": 0, "description": "One more per event of the video."},
            "data": api.VIDEO,
        },
    },
)


def live_events(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    """cleanup_ctx: the hub and the NATS feed behind it. Without a NATS URL the live routes answer 503."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        hub = FanoutHub(capacity=settings.live.queue_events)
        feed = EventFeed(settings.nats_url, hub)
        app[LIVE_HUB] = hub
        app[EVENT_FEED] = feed
        app[LIVE_SETTINGS] = settings.live
        if settings.nats_url:
            feed.start()
            # Ready on return when NATS and the stream are there; never holds start-up for long.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(feed.wait_subscribed(), timeout=STARTUP_WAIT_SECONDS)
        yield
        hub.close_all()
        await feed.stop()

    return context


async def close_live_clients(app: web.Application) -> None:
    """on_shutdown: end every stream and socket now, so shutdown does not wait on them; clients
    resume against another replica by their last event id."""
    if LIVE_HUB in app:
        app[LIVE_HUB].close_all()


@routes.get("/v1/videos/{video_id}/events")
@documented(
    "Stream video status",
    tags=["Videos"],
    description="Server-Sent Events: `id:` the event's sequence, `event: video.status_changed`, `data:` "
    "the video object as `GET /v1/videos/{video_id}` returns it. First the current state, or with "
    "`Last-Event-ID` every event after that one; then live events until `completed` or `failed`, "
    "after which the stream ends. `: keepalive` comments keep quiet streams open. A resume when "
    "nothing more will come answers 204, which stops EventSource reconnecting.",
    parameters=[
        header("Last-Event-ID", _EVENT_ID, "Resume: send every event after this one (EventSource sets it)."),
        query("last_event_id", _EVENT_ID, "The same, for EventSource polyfills; the header wins."),
    ],
    reply=[
        Reply({"text/event-stream": {"type": "string", "description": "`video.status_changed` events."}}),
        Reply({}, status=204, description="The video is finished and the caller has its last event."),
    ],
    errors=[400, 404],
    extension=True,
)
async def video_events(request: web.Request) -> web.StreamResponse:
    """SSE: `id:` the event sequence, `event: video.status_changed`, `data:` the video object.

    Resume with the `Last-Event-ID` header (or `?last_event_id=` for EventSource polyfills). The
    stream ends after `completed` or `failed`; a resume when nothing more will come answers 204,
    which makes EventSource stop reconnecting.
    """
    principal = principal_of(request)
    after = _last_event_id(request)
    feed, hub = _live(request)
    job = await owned_job(request.app[JOBS_STUB], principal.user_id, request.match_info["video_id"])
    subscriber = _subscribe(hub, principal.user_id)
    hub.watch(subscriber, job.id)
    try:
        caught_up = await feed.catch_up(job.owner_id, job.id, after)
        backlog = caught_up.events
        if after is None and caught_up.latest is None:
            # Nothing stored yet (the event is on its way): a snapshot, id 0 ("before any event").
            backlog = [status_event_from_job(job, 0)]
        if not backlog and after is not None and _nothing_more(job, caught_up.latest):
            return web.Response(status=204)
        sent = DeliveredSequences()
        # A lagging live feed may still bring the event the client named, or an older one.
        sent.resume_after(job.id, after)
        response = web.StreamResponse(headers=SSE_HEADERS)
        await response.prepare(request)
        await _stream_events(request, response, subscriber, backlog, sent)
        return response
    finally:
        hub.unsubscribe(subscriber)


async def _stream_events(
    request: web.Request,
    response: web.StreamResponse,
    subscriber: Subscriber,
    backlog: list[StatusEvent],
    sent: DeliveredSequences,
) -> None:
    live = request.app[LIVE_SETTINGS]

    async def write(data: bytes) -> None:
        async with asyncio.timeout(live.write_timeout_seconds):
            await response.write(data)

    try:
        events = backlog
        while True:
            for event in events:
                if sent.admit(event):
                    await write(sse_frame(event))
                    if event.terminal:
                        await response.write_eof()
                        return
            if await subscriber.wait(quiet_seconds=live.heartbeat_seconds):
                events = subscriber.take()
            else:
                events = []
                await write(SSE_KEEPALIVE)
    except SubscriptionClosed as closed:
        # TOO_SLOW or SHUTDOWN: EventSource reconnects by itself with Last-Event-ID.
        log.info("event stream closed", extra={"reason": closed.reason.value})
        with contextlib.suppress(ConnectionError, TimeoutError):
            await response.write_eof()
    except TimeoutError:
        _abort(request, "event stream write timed out")
    except ConnectionError:
        pass  # the client went away
    except Exception:
        # The stream is open: no HTTP error answer is possible any more; the client reconnects.
        log.exception("event stream failed")


def sse_frame(event: StatusEvent) -> bytes:
    return f"id: {event.sequence}\nevent: {EVENT_TYPE}\ndata: {event.video_json}\n\n".encode()


def ws_message(event: StatusEvent) -> str:
    return (
        f'{{"type":"{EVENT_TYPE}","id":{json.dumps(event.job_id)},'
        f'"sequence":{event.sequence},"data":{event.video_json}}}'
    )


@routes.get("/v1/ws")
@documented(
    "Live status socket",
    tags=["Videos"],
    description="A WebSocket for many videos. Authenticate with the Authorization header, or send "
    '`{"type": "authenticate", "token": "..."}` first (browsers cannot set headers; a key in the URL '
    'is refused). Then `{"type": "subscribe", "videos": "all"}` for every video of the caller from now '
    'on, or `{"type": "subscribe", "videos": ["video_1", {"id": "video_2", "last_event_id": 3}]}` for '
    "the current state of each, or every event after `last_event_id`, then live events. Messages: "
    "`video.status_changed` events (`VideoStatusEvent`), `subscribed` once a subscription's backlog is "
    "sent, and `error` (an OpenAI error body, with the video `id` it concerns; another user's video "
    "gets `video_not_found`). Each video's events arrive once each, in increasing `sequence`, however "
    "its subscriptions overlap: a resume or repeated subscribe of a video this socket already sent "
    "continues after the later of `last_event_id` and the last event sent here, and never replays "
    "(a new socket does). Send resumes before `all`: once `all` has sent a video's event, older "
    "ones are not sent. Close codes: 1001 server shutting down, 4001 fell too far behind, 4401 "
    "unauthenticated; reconnect and resume with `last_event_id`.",
    reply=[
        Reply({}, status=101, description="Switching Protocols: the socket is open."),
        # OpenAPI has no WebSocket frames; this documents their shape where tools show it.
        Reply(
            {"application/json": STATUS_EVENT},
            description="Not an HTTP answer: the shape of each `video.status_changed` message on the socket.",
        ),
    ],
    errors=[400],
    extension=True,
)
async def live_socket(request: web.Request) -> web.StreamResponse:
    """WebSocket: authenticate with the Authorization header, or with a first message
    `{"type": "authenticate", "token": "..."}` (browsers cannot set headers). Then:
    `{"type": "subscribe", "videos": "all"}` for every video of the caller from now on, or
    `{"type": "subscribe", "videos": ["video_1", {"id": "video_2", "last_event_id": 3}]}`.
    """
    if "access_token" in request.query:
        raise ServiceError(
            ErrorKind.INVALID_ARGUMENT,
            "Do not put keys in URLs (logs keep them). Send the Authorization header, or the first "
            'message {"type": "authenticate", "token": "..."}.',
            param="access_token",
            code="token_in_url",
        )
    feed, hub = _live(request)
    live = request.app[LIVE_SETTINGS]
    ws = web.WebSocketResponse(
        heartbeat=live.heartbeat_seconds,
        max_msg_size=MAX_MESSAGE_BYTES,
        # Each event is serialised once for every client; per-socket deflate would redo it per client.
        compress=False,
        timeout=CLOSE_HANDSHAKE_SECONDS,
    )
    if not ws.can_prepare(request).ok:
        raise ServiceError(
            ErrorKind.INVALID_ARGUMENT,
            "This route speaks WebSocket; send an Upgrade request.",
            code="websocket_required",
        )
    await ws.prepare(request)
    principal = request.get(PRINCIPAL) or await _authenticate_in_band(request, ws)
    if principal is None:
        return ws
    try:
        subscriber = _subscribe(hub, principal.user_id)
    except ServiceError as error:
        with contextlib.suppress(ConnectionError, TimeoutError):
            await _send(ws, live.write_timeout_seconds, _error_message(error, None))
            async with asyncio.timeout(live.write_timeout_seconds):
                await ws.close(code=CLOSE_GOING_AWAY, message=_CLOSE_MESSAGES[CLOSE_GOING_AWAY])
        return ws
    socket = LiveSocket(request, ws, principal, subscriber, feed, hub)
    try:
        close_code = await socket.run()
    except Exception:
        # The socket is open: no HTTP error answer is possible any more, so close it instead.
        log.exception("live socket failed")
        close_code = CLOSE_INTERNAL_ERROR
    finally:
        hub.unsubscribe(subscriber)
    if close_code is not None and not ws.closed:
        with contextlib.suppress(ConnectionError, TimeoutError):
            async with asyncio.timeout(live.write_timeout_seconds):
                await ws.close(code=close_code, message=_CLOSE_MESSAGES[close_code])
    return ws


_CLOSE_MESSAGES = {
    CLOSE_GOING_AWAY: b"server shutting down; reconnect and resume",
    CLOSE_INTERNAL_ERROR: b"internal error; reconnect and resume",
    CLOSE_TOO_SLOW: b"too far behind; reconnect and resume with last_event_id",
}
_CLOSE_CODES = {CloseReason.SHUTDOWN: CLOSE_GOING_AWAY, CloseReason.TOO_SLOW: CLOSE_TOO_SLOW}


class LiveSocket:
    """One WebSocket: client messages and hub events handled by one task, so replayed and live
    events for a job go out in order."""

    def __init__(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        principal: Principal,
        subscriber: Subscriber,
        feed: EventFeed,
        hub: FanoutHub,
    ) -> None:
        self._request = request
        self._ws = ws
        self._principal = principal
        self._subscriber = subscriber
        self._feed = feed
        self._hub = hub
        self._write_timeout = request.app[LIVE_SETTINGS].write_timeout_seconds
        self._sent = DeliveredSequences(limit=REMEMBERED_VIDEOS_PER_SOCKET)

    async def run(self) -> int | None:
        """Until the client leaves (None) or the hub drops it (the close code to send)."""
        receiving = asyncio.ensure_future(self._ws.receive())
        waiting = asyncio.ensure_future(self._subscriber.wait())
        try:
            while True:
                await asyncio.wait({receiving, waiting}, return_when=asyncio.FIRST_COMPLETED)
                if waiting.done():
                    await self._send_events(self._subscriber.take())
                    waiting = asyncio.ensure_future(self._subscriber.wait())
                if receiving.done():
                    message = receiving.result()
                    if message.type in (
                        WSMsgType.CLOSE,
                        WSMsgType.CLOSING,
                        WSMsgType.CLOSED,
                        WSMsgType.ERROR,
                    ):
                        return None
                    await self._handle(message.type, message.data)
                    receiving = asyncio.ensure_future(self._ws.receive())
        except SubscriptionClosed as closed:
            log.info("live socket dropped", extra={"reason": closed.reason.value})
            return _CLOSE_CODES[closed.reason]
        except TimeoutError:
            _abort(self._request, "live socket write timed out")
            return None
        except ConnectionError:
            return None
        finally:
            for task in (receiving, waiting):
                task.cancel()
            await asyncio.gather(receiving, waiting, return_exceptions=True)

    async def _send_events(self, events: list[StatusEvent]) -> None:
        for event in events:
            if self._sent.admit(event):
                await _send_text(self._ws, self._write_timeout, ws_message(event))
                if event.terminal and event.job_id in self._subscriber.job_ids:
                    self._hub.unwatch(self._subscriber, event.job_id)

    async def _handle(self, kind: WSMsgType, data: Any) -> None:
        body = _json_object(data) if kind is WSMsgType.TEXT else None
        if body is None:
            await self._error(_invalid("Send JSON objects as text messages.", "message"), None)
        elif body.get("type") == "subscribe":
            await self._subscribe(body.get("videos"))
        elif body.get("type") == "authenticate":
            await self._error(_invalid("This socket is already authenticated.", "type"), None)
        else:
            await self._error(_invalid("Unknown message type; send 'subscribe'.", "type"), None)

    async def _subscribe(self, videos: Any) -> None:
        if videos == "all":
            self._hub.watch_all(self._subscriber)
            await self._reply({"type": "subscribed", "videos": "all"})
            return
        if not isinstance(videos, list) or not 1 <= len(videos) <= MAX_VIDEOS_PER_SUBSCRIBE:
            await self._error(
                _invalid(
                    f"videos must be 'all' or a list of 1 to {MAX_VIDEOS_PER_SUBSCRIBE} videos.", "videos"
                ),
                None,
            )
            return
        wanted: dict[str, int | None] = {}
        for entry in videos:
            parsed = _subscription_entry(entry)
            if isinstance(parsed, ServiceError):
                await self._error(parsed, entry.get("id") if isinstance(entry, dict) else None)
            else:
                wanted[parsed[0]] = parsed[1]
        if len(self._subscriber.job_ids | wanted.keys()) > MAX_VIDEOS_PER_SOCKET:
            await self._error(
                _invalid(f"At most {MAX_VIDEOS_PER_SOCKET} videos per socket.", "videos", "too_many_videos"),
                None,
            )
            return
        stub = self._request.app[JOBS_STUB]
        owner = self._principal.user_id
        found = await asyncio.gather(
            *(owned_job(stub, owner, video_id) for video_id in wanted), return_exceptions=True
        )
        jobs: list[jobs_pb2.Job] = []
        for video_id, job in zip(wanted, found, strict=True):
            if isinstance(job, ServiceError):
                await self._error(job, video_id)
            elif isinstance(job, BaseException):
                raise job
            else:
                self._hub.watch(self._subscriber, job.id)
                jobs.append(job)
        # A video this socket already sent continues after the later of its last event here and
        # the client's last_event_id: a repeated or older resume never sends an event twice.
        resume_after = {job.id: self._sent.resume_after(job.id, wanted[job.id]) for job in jobs}
        # Registered for live events first, then read the stream: nothing falls between the two.
        caught_up = await asyncio.gather(
            *(self._feed.catch_up(owner, job.id, resume_after[job.id]) for job in jobs),
            return_exceptions=True,
        )
        accepted = []
        for job, catch_up in zip(jobs, caught_up, strict=True):
            if isinstance(catch_up, ServiceError):
                self._hub.unwatch(self._subscriber, job.id)
                await self._error(catch_up, job.id)
                continue
            if isinstance(catch_up, BaseException):
                raise catch_up
            backlog = catch_up.events
            if resume_after[job.id] is None and catch_up.latest is None:
                backlog = [status_event_from_job(job, 0)]
            await self._send_events(backlog)
            if _nothing_more(job, catch_up.latest):
                # Its final event went out now or earlier on this socket: nothing left to wait for.
                self._hub.unwatch(self._subscriber, job.id)
            accepted.append(job.id)
        await self._reply({"type": "subscribed", "videos": accepted})

    async def _reply(self, message: dict[str, Any]) -> None:
        await _send(self._ws, self._write_timeout, message)

    async def _error(self, error: ServiceError, video_id: str | None) -> None:
        await self._reply(_error_message(error, video_id))


async def owned_job(
    stub: jobs_service_pb2_grpc.JobsServiceStub, owner_id: str, video_id: str
) -> jobs_pb2.Job:
    """The caller's video; NOT_FOUND for a missing one and for another user's alike."""
    # NUL and other unprintable characters cannot be in an id (and PostgreSQL text refuses NUL).
    if not video_id or len(video_id) > _MAX_ID_CHARS or not video_id.isprintable():
        raise ServiceError(
            ErrorKind.NOT_FOUND,
            f"No video found with id '{video_id[:_MAX_ID_CHARS]}'.",
            param="video_id",
            code="video_not_found",
        )
    response = await stub.GetJob(jobs_service_pb2.GetJobRequest(owner_id=owner_id, job_id=video_id))
    return response.job


async def _authenticate_in_band(request: web.Request, ws: web.WebSocketResponse) -> Principal | None:
    """The first message must be {"type": "authenticate", "token": ...}; the token is never logged."""
    write_timeout = request.app[LIVE_SETTINGS].write_timeout_seconds
    try:
        async with asyncio.timeout(AUTH_TIMEOUT_SECONDS):
            message = await ws.receive()
    except TimeoutError:
        message = None
    body = _json_object(message.data) if message is not None and message.type is WSMsgType.TEXT else None
    token = body.get("token") if body is not None and body.get("type") == "authenticate" else None
    error = ServiceError(
        ErrorKind.UNAUTHENTICATED,
        "Authenticate first: send the Authorization header, or the first message "
        '{"type": "authenticate", "token": "YOUR_KEY"}.',
        code="missing_api_key",
    )
    if isinstance(token, str) and token:
        try:
            return await authenticate_token(request.app, token)
        except ServiceError as refused:
            error = refused
    if not ws.closed:
        with contextlib.suppress(ConnectionError, TimeoutError):
            await _send(ws, write_timeout, _error_message(error, None))
            async with asyncio.timeout(write_timeout):
                await ws.close(code=CLOSE_UNAUTHENTICATED, message=b"unauthenticated")
    return None


def _live(request: web.Request) -> tuple[EventFeed, FanoutHub]:
    feed = request.app[EVENT_FEED]
    if not feed.ready:
        raise unavailable_error()
    return feed, request.app[LIVE_HUB]


def _subscribe(hub: FanoutHub, owner_id: str) -> Subscriber:
    try:
        return hub.subscribe(owner_id)
    except HubClosed:
        raise ServiceError(
            ErrorKind.UNAVAILABLE, "The server is shutting down; reconnect.", code="shutting_down"
        ) from None


def _nothing_more(job: jobs_pb2.Job, latest: StatusEvent | None) -> bool:
    """The job is finished and its last event, if any was stored, is the final one."""
    return not is_in_flight(job) and (latest is None or latest.terminal)


def _last_event_id(request: web.Request) -> int | None:
    if "Last-Event-ID" in request.headers:
        raw, param = request.headers["Last-Event-ID"].strip(), "Last-Event-ID"
    else:
        raw, param = request.query.get("last_event_id", ""), "last_event_id"
    if raw == "":
        return None
    return _event_id(raw, param)


def _event_id(raw: str, param: str) -> int:
    # ASCII digits only ('²' is a digit to str.isdigit) and short, so int() cannot fail.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > _MAX_EVENT_ID_DIGITS:
        raise _invalid(f"{param} must be an event id: a whole number of at most 18 digits.", param)
    return int(raw)


def _subscription_entry(entry: Any) -> tuple[str, int | None] | ServiceError:
    if isinstance(entry, str):
        video_id, last = entry, None
    elif isinstance(entry, dict) and isinstance(entry.get("id"), str):
        video_id, last = entry["id"], entry.get("last_event_id")
    else:
        return _invalid('Each video is an id or {"id": ..., "last_event_id": ...}.', "videos")
    if last is None:
        return video_id, None
    if isinstance(last, int) and not isinstance(last, bool) and last >= 0:
        return video_id, last
    if isinstance(last, str):
        try:
            return video_id, _event_id(last, "last_event_id")
        except ServiceError as error:
            return error
    return _invalid("last_event_id must be a whole number.", "last_event_id")


def _json_object(data: Any) -> dict[str, Any] | None:
    try:
        body = json.loads(data)
    except (TypeError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def _invalid(message: str, param: str, code: str = "invalid_value") -> ServiceError:
    return ServiceError(ErrorKind.INVALID_ARGUMENT, message, param=param, code=code)


def _error_message(error: ServiceError, video_id: str | None) -> dict[str, Any]:
    return {"type": "error", "id": video_id, **openai_error_body(error)}


async def _send(ws: web.WebSocketResponse, write_seconds: float, message: dict[str, Any]) -> None:
    await _send_text(ws, write_seconds, json.dumps(message, separators=(",", ":")))


async def _send_text(ws: web.WebSocketResponse, write_seconds: float, text: str) -> None:
    async with asyncio.timeout(write_seconds):
        await ws.send_str(text)


def _abort(request: web.Request, why: str) -> None:
    """A client that takes no bytes: drop the connection without waiting on it any longer."""
    log.info(why)
    if request.transport is not None:
        request.transport.abort()
