"""The gateway's NATS adapter for live status events: one live subscription, and replays.

Live: ONE subscription per gateway process to every status event (`jobs.v1.video.status_changed.>`),
handed to the `FanoutHub`, which fans out in-process by owner and job. It is a JetStream ordered
push consumer (ephemeral, in memory, no acks) rather than a core NATS subscription because:
- a message reaches it only after JetStream stored it. A client registers for live events first
  and then reads the stream, so every event is either in what it reads or arrives live after it
  registered: no gap, and duplicates are dropped by sequence (`DeliveredSequences`);
- after a NATS outage it resumes from the last stream sequence it saw, so connected clients miss
  nothing;
- when NATS comes back without its data, the stream is gone and nats-py would re-create the
  consumer past everything the new stream will hold. A check every few seconds compares the stream
  with the one subscribed to and, when it is missing or new, creates it if need be and subscribes
  from its first event: connected clients get every event published after the loss (those the
  lost stream held and had not yet delivered are gone).

Replay, per client when it connects or resumes: the job's last stored event (one request), and
only when the client is further behind, a short-lived ordered consumer filtered to that job's
subject (JetStream reads just that job's messages through its subject index). Replays read only
JetStream: after NATS lost its data, a job's earlier events are gone, so a client without a
`last_event_id` gets the job's current state (sequence 0) and one resuming gets what came after.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime

from google.protobuf.message import DecodeError
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from servicekit.bus import REPLAYED_HEADER, connect_nats
from servicekit.errors import ErrorKind, ServiceError
from servicekit.lifecycle import wait_for_signal
from vidflow.jobs.v1 import events_pb2, jobs_pb2

from services.gateway.fanout import FanoutHub, StatusEvent
from services.gateway.openai_format import video_resource
from services.jobs.subjects import ALL_STATUS_SUBJECTS, JOBS_STREAM, status_subject

log = logging.getLogger(__name__)
_TERMINAL = (jobs_pb2.JOB_STATUS_COMPLETED, jobs_pb2.JOB_STATUS_FAILED)
# A replay consumer left behind by a crash is removed by the server after this long.
_REPLAY_CONSUMER_TTL_SECONDS = 30.0
_REPLAY_MESSAGE_TIMEOUT_SECONDS = 5.0
_RETRY_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)
# How often the live subscription checks that its stream is still the one NATS holds.
_STREAM_CHECK_SECONDS = 2.0


def status_event_from_job(job: jobs_pb2.Job, sequence: int) -> StatusEvent:
    return StatusEvent(
        owner_id=job.owner_id,
        job_id=job.id,
        sequence=sequence,
        terminal=job.status in _TERMINAL,
        video_json=json.dumps(video_resource(job), separators=(",", ":")),
    )


def decode_status_event(data: bytes) -> StatusEvent | None:
    try:
        event = events_pb2.VideoStatusChangedEvent.FromString(data)
    except DecodeError:
        return None
    if not event.job.id or not event.job.owner_id:
        return None
    return status_event_from_job(event.job, event.sequence)


@dataclass(frozen=True)
class CatchUp:
    """What a client is sent before live events, and the job's last stored event (None: none yet)."""

    events: list[StatusEvent]
    latest: StatusEvent | None


class EventFeed:
    def __init__(
        self,
        nats_url: str,
        hub: FanoutHub,
        *,
        name: str = "vidflow-gateway",
        stream_name: str = JOBS_STREAM.name,
    ) -> None:
        self._nats_url = nats_url
        self._hub = hub
        self._name = name
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._stream = stream_name  # the jobs service's relay makes it; this waits for it
        # When the subscribed stream was made: a different time means NATS made it anew.
        self._stream_created: datetime | None = None
        self._live: JetStreamContext.PushSubscription | None = None
        # Highest stream sequence handed to the hub: an ordered consumer that restarts before its
        # first message starts over from the stream's beginning, and those repeats are skipped.
        self._last_stream_seq = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._subscribed = asyncio.Event()

    @property
    def ready(self) -> bool:
        """Subscribed and connected: replays can be served and live events flow."""
        return self._live is not None and self._nc is not None and self._nc.is_connected

    def start(self) -> None:
        """Connect and subscribe in the background, retrying until NATS and the stream are there:
        the REST API does not wait for live events."""
        if self._nats_url and self._task is None:
            self._task = asyncio.create_task(self._connect_and_subscribe(), name="event-feed")

    async def wait_subscribed(self) -> None:
        """For start-up checks: returns once the live subscription exists."""
        if self._task is None:
            raise RuntimeError("the event feed was not started (no NATS URL)")
        await self._subscribed.wait()

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._drop_live()
        if self._nc is not None:
            # close, not drain: this connection publishes nothing, and with every client already
            # gone there is no one left to hand a message still in flight to.
            with contextlib.suppress(Exception):
                await self._nc.close()
            self._nc = None

    async def catch_up(self, owner_id: str, job_id: str, after: int | None) -> CatchUp:
        """With `after` None, the job's current state (its last stored event); else every stored
        event with a sequence above `after`, oldest first."""
        js = self._jetstream()
        subject = status_subject(owner_id, job_id)
        try:
            last = await js.get_last_msg(self._stream, subject)
        except NotFoundError:
            return CatchUp([], None)
        except Exception as exc:
            raise unavailable_error() from exc
        latest = decode_status_event(last.data or b"")
        if latest is None:
            return CatchUp([], None)
        if after is None or latest.sequence == after + 1:
            return CatchUp([latest], latest)
        if latest.sequence <= after:
            return CatchUp([], latest)
        return CatchUp(await self._replay(js, subject, after, until_stream_seq=last.seq or 0), latest)

    async def _replay(
        self, js: JetStreamContext, subject: str, after: int, until_stream_seq: int
    ) -> list[StatusEvent]:
        try:
            subscription = await js.subscribe(
                subject,
                stream=self._stream,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.ALL,
                inactive_threshold=_REPLAY_CONSUMER_TTL_SECONDS,
            )
        except Exception as exc:
            raise unavailable_error() from exc
        events: list[StatusEvent] = []
        try:
            while True:
                message = await subscription.next_msg(timeout=_REPLAY_MESSAGE_TIMEOUT_SECONDS)
                event = decode_status_event(message.data)
                if event is not None and event.sequence > after:
                    events.append(event)
                # Caught up with the last event seen before the replay, or with the stream itself.
                if message.metadata.sequence.stream >= until_stream_seq or message.metadata.num_pending == 0:
                    return events
        except TimeoutError as exc:
            raise unavailable_error() from exc
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    def _jetstream(self) -> JetStreamContext:
        if self._js is None or not self.ready:
            raise unavailable_error()
        return self._js

    async def _connect_and_subscribe(self) -> None:
        attempt = 0
        while self._nc is None:
            if self._stopping.is_set():
                return
            try:
                self._nc = await connect_nats(self._nats_url, name=self._name)
            except Exception as exc:
                attempt = await self._pause("nats unreachable", exc, attempt)
        self._js = self._nc.jetstream()
        await self._subscribe_live(self._js, from_start=False)
        if self._stopping.is_set():
            return
        self._subscribed.set()
        log.info("live status events subscribed", extra={"stream": self._stream})
        await self._watch_stream(self._js)

    async def _subscribe_live(self, js: JetStreamContext, *, from_start: bool) -> None:
        attempt = 0
        # Stopping ends the retries: a pause then returns at once, and a cancel may be swallowed
        # by a NATS request in flight.
        while self._live is None and not self._stopping.is_set():
            try:
                self._live = await self._subscribe(js, from_start=from_start)
            except Exception as exc:
                attempt = await self._pause("status events stream not available", exc, attempt)

    async def _subscribe(
        self, js: JetStreamContext, *, from_start: bool
    ) -> JetStreamContext.PushSubscription:
        """From the next event, or with `from_start` from the stream's first (a stream made anew
        holds only events no client has had)."""
        info = await js.stream_info(self._stream)
        self._stream_created = info.created
        self._last_stream_seq = 0 if from_start else info.state.last_seq
        return await js.subscribe(
            ALL_STATUS_SUBJECTS,
            stream=self._stream,
            cb=self._on_message,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            config=ConsumerConfig(opt_start_seq=self._last_stream_seq + 1),
        )

    async def _watch_stream(self, js: JetStreamContext) -> None:
        """Until stopped: when the stream is missing or was made anew, subscribe to it afresh."""
        while not self._stopping.is_set():
            await wait_for_signal(self._stopping, seconds=_STREAM_CHECK_SECONDS)
            if self._stopping.is_set():
                return
            delivered = self._last_stream_seq  # read first: events may arrive during the request
            try:
                info = await js.stream_info(self._stream)
            except NotFoundError:
                replaced = True
            except Exception:
                continue  # NATS is away: nothing to compare until it is back
            else:
                replaced = info.created != self._stream_created or info.state.last_seq < delivered
            if replaced:
                log.warning("status events stream lost with NATS's data; subscribing to it anew")
                await self._drop_live()
                await self._subscribe_live(js, from_start=True)

    async def _drop_live(self) -> None:
        if self._live is not None:
            live, self._live = self._live, None
            with contextlib.suppress(Exception):
                await live.unsubscribe()

    async def _on_message(self, message: Msg) -> None:
        stream_seq = message.metadata.sequence.stream
        if stream_seq <= self._last_stream_seq:
            return
        self._last_stream_seq = stream_seq
        if message.headers and REPLAYED_HEADER in message.headers:
            return  # history refilled into a stream made anew: for resumes, not for live clients
        event = decode_status_event(message.data)
        if event is None:
            log.warning("undecodable status event skipped", extra={"stream_seq": stream_seq})
            return
        self._hub.publish(event)

    async def _pause(self, what: str, exc: Exception, attempt: int) -> int:
        delay = _RETRY_SECONDS[min(attempt, len(_RETRY_SECONDS) - 1)]
        log.warning(what, extra={"error": str(exc) or repr(exc), "retry_in": delay})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)
        return attempt + 1


def unavailable_error() -> ServiceError:
    """What a live route answers while NATS or the stream is out of reach."""
    return ServiceError(
        ErrorKind.UNAVAILABLE,
        "Live status events are unavailable right now; retry shortly or poll GET /v1/videos/{id}.",
        code="live_events_unavailable",
    )
