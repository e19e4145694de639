"""The client webhook worker in every gateway replica: status events in, signed POSTs out.

Two loops:
- **Intake**: a durable JetStream pull consumer (`GATEWAY_WEBHOOKS_CONSUMER`), the same one on every
  replica, so each status event is handled by one of them. An event becomes one delivery row per
  target (the owner's endpoints that want its type, and the video's own `webhook_url`), written
  before the event is acknowledged: a crash in between redelivers the event, and the derived
  delivery ids (`webhook_events.delivery_id`) make the second insert a no-op.
- **Sending**: due deliveries are leased from PostgreSQL (`FOR UPDATE SKIP LOCKED`, see
  `webhook_store`) and POSTed with the Standard Webhooks headers; the `webhook-id` is the delivery
  id, the same on every try. A 2xx ends it; anything else (a status, a timeout, a refused address)
  is tried again after an exponential, jittered wait, up to the configured number of tries.

The consumer filters `jobs.v1.video.>`, which holds both the bare `jobs.v1.video.status_changed`
subject and the per-owner, per-job subjects under it. URLs and secrets are never logged: a
delivery is named by its id and endpoint.

When NATS comes back without its data, the stream and the consumer are gone: the intake creates
the stream if the jobs service has not yet, and makes the consumer again, starting from when this
replica last fetched from the old one, so every event the new stream holds is handled (events the
lost stream held and no replica had handled are lost). A consumer made for the first time starts
when the replica did, so a gateway that starts before NATS misses nothing published after it.
Overlap is harmless: delivery ids de-duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import aiohttp
from aiohttp import web
from google.protobuf.message import DecodeError
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from servicekit.bus import connect_nats
from servicekit.lifecycle import wait_for_signal
from servicekit.metrics import get_meter
from servicekit.webhooks import ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from vidflow.jobs.v1 import events_pb2, jobs_pb2

from services.gateway.config import ClientWebhookSettings, Settings
from services.gateway.keys import WEBHOOK_STORE
from services.gateway.webhook_events import (
    VIDEO_WEBHOOK_TARGET,
    RetryPolicy,
    delivery_id,
    event_type_of,
    payload,
)
from services.gateway.webhook_store import ClaimedDelivery, NewDelivery, Target, WebhookStore
from services.gateway.webhook_urls import PublicAddressResolver, WebhookUrlError, check_webhook_url
from services.jobs.subjects import JOBS_STREAM, STATUS_SUBJECT_PREFIX

log = logging.getLogger(__name__)
# Every video event subject, old (bare) and new (per owner and job) alike.
VIDEO_EVENT_SUBJECTS = "jobs.v1.video.>"
USER_AGENT = "Vidflow-Webhooks/1"
_ACK_WAIT_SECONDS = 30.0
_FETCH_BATCH = 64
_FETCH_WAIT_SECONDS = 2.0
_NAK_DELAY_SECONDS = 2.0
_RETRY_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)
# A consumer made anew starts this much before the moment it must cover: JetStream stamps messages
# with the NATS server's clock, not ours.
_CLOCK_SKEW_ALLOWANCE = timedelta(seconds=5)
# Finished deliveries are kept a week (for support), then dropped.
_KEEP_FINISHED = timedelta(days=7)
_TIDY_EVERY_SECONDS = 600.0

_meter = get_meter("vidflow.gateway")
_attempts = _meter.create_counter(
    "vidflow_gateway_webhook_attempts",
    unit="1",
    description="Client webhook tries by outcome (delivered, retrying, failed)",
)


def planned_deliveries(
    job: jobs_pb2.Job, *, sequence: int, occurred_at: datetime, targets: list[Target]
) -> list[NewDelivery]:
    """One delivery per target for the event this job state is."""
    event_type = event_type_of(job)
    body = payload(event_type, job, occurred_at)
    return [
        NewDelivery(
            id=delivery_id(target.endpoint_id or VIDEO_WEBHOOK_TARGET, job, event_type, sequence),
            owner_id=job.owner_id,
            video_id=job.id,
            event_type=event_type,
            endpoint_id=target.endpoint_id,
            url=target.url,
            payload=body,
        )
        for target in targets
    ]


def signed_headers(
    secrets: tuple[str, ...], msg_id: str, body: bytes, *, now: float | None = None
) -> dict[str, str]:
    """Standard Webhooks headers with one `v1,` signature per secret (two while a secret rotates)."""
    timestamp = int(time.time() if now is None else now)
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets),
    }


def is_status_subject(subject: str) -> bool:
    return subject == STATUS_SUBJECT_PREFIX or subject.startswith(STATUS_SUBJECT_PREFIX + ".")


class WebhookWorker:
    def __init__(
        self,
        settings: ClientWebhookSettings,
        store: WebhookStore,
        nats_url: str,
        *,
        name: str = "vidflow-gateway",
        stream_name: str = JOBS_STREAM.name,
    ) -> None:
        self._settings = settings
        self._store = store
        self._nats_url = nats_url
        self._name = name
        self._stream_name = stream_name  # the jobs service's relay makes it; this waits for it
        self._policy = RetryPolicy(
            settings.retry_base_seconds, settings.retry_max_seconds, settings.max_attempts
        )
        # Long enough for a try to end on its own timeout before anyone else may take the row.
        self._lease_seconds = settings.timeout_seconds * 2 + 5
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._http: aiohttp.ClientSession | None = None
        self._nc: NatsClient | None = None
        # Where a consumer made anew must start so it misses nothing the stream holds: when the
        # worker started, then when the last fetch the consumer answered was sent.
        self._handled_until = datetime.now(UTC)

    def start(self) -> None:
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                resolver=PublicAddressResolver(allow_private=self._settings.allow_private),
                limit=self._settings.concurrency,
            ),
            headers={"User-Agent": USER_AGENT, "Content-Type": "application/json"},
            trust_env=False,  # never through a proxy from the environment
        )
        self._tasks.append(asyncio.create_task(self._send_loop(), name="webhook-sender"))
        if self._nats_url:
            self._tasks.append(asyncio.create_task(self._intake(), name="webhook-intake"))
        else:
            log.warning("client webhooks: no NATS_URL, so no deliveries are created from status events")

    def wake(self) -> None:
        """New deliveries are due: look now instead of at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        """Stops taking events and leases; tries in flight get their timeout to finish."""
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._in_flight:
            _, late = await asyncio.wait(self._in_flight, timeout=self._settings.timeout_seconds + 1)
            for task in late:
                task.cancel()  # its lease runs out and another replica tries again
            await asyncio.gather(*late, return_exceptions=True)
        if self._nc is not None:
            # Closed, not drained: unacknowledged events are redelivered to another replica anyway,
            # and draining waits on messages a cancelled fetch left behind.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nc.close(), timeout=5)
        if self._http is not None:
            await self._http.close()

    # --- intake: status events -> deliveries ---------------------------------------------------------

    async def handle_event(self, event: events_pb2.VideoStatusChangedEvent) -> int:
        """Writes the deliveries an event calls for; how many were new."""
        job = event.job
        if not job.id or not job.owner_id:
            return 0
        targets = await self._store.targets(
            owner_id=job.owner_id, video_id=job.id, event_type=event_type_of(job), api_key_id=job.api_key_id
        )
        if not targets:
            return 0
        occurred_at = (
            event.occur_time.ToDatetime(tzinfo=UTC) if event.HasField("occur_time") else datetime.now(UTC)
        )
        added = await self._store.enqueue(
            planned_deliveries(job, sequence=event.sequence, occurred_at=occurred_at, targets=targets)
        )
        if added:
            self.wake()
        return added

    async def _intake(self) -> None:
        attempt = 0
        while self._nc is None:
            if self._stopping.is_set():
                return
            try:
                self._nc = await connect_nats(self._nats_url, name=f"{self._name}-webhooks")
            except Exception as exc:
                attempt = await self._pause("client webhooks: nats unreachable", exc, attempt)
        js = self._nc.jetstream()
        attempt = 0
        while not self._stopping.is_set():
            try:
                subscription = await self._subscribe(js)
            except Exception as exc:
                # Typically the jobs service has not created the stream yet.
                attempt = await self._pause("client webhooks: status events not available", exc, attempt)
                continue
            attempt = 0
            log.info("client webhooks: consuming status events", extra={"consumer": self._settings.consumer})
            while not self._stopping.is_set():
                sent_at = datetime.now(UTC)
                try:
                    messages = await subscription.fetch(_FETCH_BATCH, timeout=_FETCH_WAIT_SECONDS)
                except TimeoutError:
                    # Also what a fetch sent while NATS is away ends in; it was sent before NATS
                    # came back, so before anything a stream made anew holds.
                    self._handled_until = sent_at
                    continue
                except Exception as exc:
                    attempt = await self._pause("client webhooks: fetching events failed", exc, attempt)
                    break  # subscribe again: the consumer may have gone with its stream
                for message in messages:
                    await self._on_message(message)
                self._handled_until = sent_at

    async def _subscribe(self, js: JetStreamContext) -> JetStreamContext.PullSubscription:
        return await js.pull_subscribe(
            VIDEO_EVENT_SUBJECTS,
            durable=self._settings.consumer,
            stream=self._stream_name,
            config=ConsumerConfig(
                # Applies only when the consumer is made (first deployment, or NATS lost it): an
                # existing one resumes where it stood.
                deliver_policy=DeliverPolicy.BY_START_TIME,
                opt_start_time=self._handled_until - _CLOCK_SKEW_ALLOWANCE,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=_ACK_WAIT_SECONDS,
            ),
        )

    async def _on_message(self, message: Msg) -> None:
        try:
            if is_status_subject(message.subject):
                try:
                    event = events_pb2.VideoStatusChangedEvent.FromString(message.data)
                except DecodeError:
                    log.warning("client webhooks: undecodable status event skipped")
                else:
                    await self.handle_event(event)
            await message.ack()
        except Exception as exc:
            # PostgreSQL is away, most likely: the event comes back and is handled again.
            log.warning("client webhooks: event not handled, will be redelivered", extra={"error": repr(exc)})
            with contextlib.suppress(Exception):
                await message.nak(delay=_NAK_DELAY_SECONDS)

    # --- sending -------------------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        tidy_at = 0.0
        while not self._stopping.is_set():
            self._wake.clear()
            free = self._settings.concurrency - len(self._in_flight)
            claimed: list[ClaimedDelivery] = []
            try:
                if free > 0:
                    claimed = await self._store.claim(
                        limit=free,
                        lease_seconds=self._lease_seconds,
                        max_attempts=self._settings.max_attempts,
                    )
                if time.monotonic() >= tidy_at:
                    await self._store.tidy(
                        max_attempts=self._settings.max_attempts, keep_finished=_KEEP_FINISHED
                    )
                    tidy_at = time.monotonic() + _TIDY_EVERY_SECONDS
            except Exception as exc:
                log.warning("client webhooks: cannot lease deliveries", extra={"error": repr(exc)})
            for delivery in claimed:
                task = asyncio.create_task(self._attempt(delivery), name=f"webhook-{delivery.id}")
                self._in_flight.add(task)
                task.add_done_callback(self._try_ended)
            if claimed and len(claimed) == free:
                continue  # more may be due
            await wait_for_signal(self._stopping, self._wake, seconds=self._settings.poll_seconds)

    def _try_ended(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._wake.set()  # a slot is free

    async def _attempt(self, delivery: ClaimedDelivery) -> None:
        try:
            status_code, error = await self._post(delivery)
            if status_code is not None and 200 <= status_code < 300:
                await self._store.record_delivered(delivery, status_code)
                outcome = "delivered"
            else:
                give_up = self._policy.gives_up_after(delivery.attempt) or not delivery.secrets
                retry_in = None if give_up else self._policy.delay_after(delivery.attempt)
                await self._store.record_failure(
                    delivery, status_code=status_code, error=error, retry_in=retry_in
                )
                outcome = "failed" if give_up else "retrying"
        except Exception:
            # The lease runs out and the delivery is tried again.
            log.exception("client webhooks: recording a try failed", extra={"delivery_id": delivery.id})
            return
        _attempts.add(1, {"service": "gateway", "outcome": outcome})
        log.info(
            "client webhook try",
            extra={
                "delivery_id": delivery.id,
                "endpoint_id": delivery.endpoint_id,
                "attempt": delivery.attempt,
                "status_code": status_code,
                "outcome": outcome,
                "error": error or None,
            },
        )

    async def _post(self, delivery: ClaimedDelivery) -> tuple[int | None, str]:
        """(status code, "") when the receiver answered, else (None or the code, what went wrong)."""
        if not delivery.secrets:
            return None, "no signing secret"
        try:
            check_webhook_url(delivery.url, allow_private=self._settings.allow_private)
        except WebhookUrlError as refused:
            return None, str(refused)
        assert self._http is not None
        headers = signed_headers(delivery.secrets, delivery.id, delivery.payload)
        try:
            async with self._http.post(
                delivery.url,
                data=delivery.payload,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self._settings.timeout_seconds),
                allow_redirects=False,
            ) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            # The class only: messages can quote the URL, which may carry a token.
            return None, type(exc).__name__
        return status, "" if 200 <= status < 300 else f"HTTP {status}"

    async def _pause(self, what: str, exc: Exception, attempt: int) -> int:
        delay = _RETRY_SECONDS[min(attempt, len(_RETRY_SECONDS) - 1)]
        log.warning(what, extra={"error": str(exc) or repr(exc), "retry_in": delay})
        await wait_for_signal(self._stopping, seconds=delay)
        return attempt + 1


def client_webhooks(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    """cleanup_ctx: the worker, after the database context has made the store."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        worker = WebhookWorker(settings.client_webhooks, app[WEBHOOK_STORE], settings.nats_url)
        worker.start()
        yield
        await worker.stop()

    return context
