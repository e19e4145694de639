"""In-process fan-out of live status events to connected clients (SSE streams and WebSockets).

The gateway holds one NATS subscription for every status event; `FanoutHub.publish` hands each
event to the subscribers watching its owner (every job) or its job, and never waits: each
subscriber has a bounded mailbox, and one that falls `capacity` events behind is dropped
(`CloseReason.TOO_SLOW`) so a slow client cannot delay the others or grow memory. A dropped
client resumes from its last event id. Plain asyncio, no I/O: the NATS adapter feeds the hub and
the routes drain the subscribers.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from dataclasses import dataclass
from typing import TypeVar

K = TypeVar("K")


class CloseReason(enum.Enum):
    TOO_SLOW = "too_slow"
    SHUTDOWN = "shutdown"


class SubscriptionClosed(Exception):
    def __init__(self, reason: CloseReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


class HubClosed(Exception):
    """The gateway is shutting down and takes no new subscribers."""


@dataclass(frozen=True)
class StatusEvent:
    owner_id: str
    job_id: str
    # Per job, one more with each event; 0 for a snapshot taken before any event was stored.
    sequence: int
    # completed or failed: no event follows.
    terminal: bool
    # The video object as `GET /v1/videos/{id}` returns it, serialised once for every client.
    video_json: str


class Subscriber:
    """One connected client: what it watches, and its bounded mailbox of events."""

    def __init__(self, owner_id: str, capacity: int) -> None:
        self.owner_id = owner_id
        self.capacity = capacity
        self.all_jobs = False
        self.job_ids: set[str] = set()
        self.closed: CloseReason | None = None
        self._events: deque[StatusEvent] = deque()
        self._ready = asyncio.Event()

    async def wait(self, quiet_seconds: float | None = None) -> bool:
        """True once events wait or the subscription closed; False after `quiet_seconds` of quiet."""
        if not self._ready.is_set():
            try:
                async with asyncio.timeout(quiet_seconds):
                    await self._ready.wait()
            except TimeoutError:
                return False
        return True

    def take(self) -> list[StatusEvent]:
        """Every waiting event, oldest first. Raises SubscriptionClosed once the hub dropped it."""
        if self.closed is not None:
            raise SubscriptionClosed(self.closed)
        events = list(self._events)
        self._events.clear()
        self._ready.clear()
        return events

    def _offer(self, event: StatusEvent) -> bool:
        if len(self._events) >= self.capacity:
            return False
        self._events.append(event)
        self._ready.set()
        return True

    def _close(self, reason: CloseReason) -> None:
        if self.closed is None:
            self.closed = reason
            self._events.clear()
            self._ready.set()


class FanoutHub:
    def __init__(self, *, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._subscribers: set[Subscriber] = set()
        # Watching every job of an owner, and watching single jobs (keyed by owner too, so a job id
        # can only ever reach its owner's clients).
        self._by_owner: dict[str, set[Subscriber]] = {}
        self._by_job: dict[tuple[str, str], set[Subscriber]] = {}
        self._closed = False
        self.dropped_too_slow = 0

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def subscribe(self, owner_id: str) -> Subscriber:
        if self._closed:
            raise HubClosed
        subscriber = Subscriber(owner_id, self._capacity)
        self._subscribers.add(subscriber)
        return subscriber

    def watch_all(self, subscriber: Subscriber) -> None:
        if subscriber.closed is None:
            subscriber.all_jobs = True
            self._by_owner.setdefault(subscriber.owner_id, set()).add(subscriber)

    def watch(self, subscriber: Subscriber, job_id: str) -> None:
        if subscriber.closed is None:
            subscriber.job_ids.add(job_id)
            self._by_job.setdefault((subscriber.owner_id, job_id), set()).add(subscriber)

    def unwatch(self, subscriber: Subscriber, job_id: str) -> None:
        subscriber.job_ids.discard(job_id)
        _discard(self._by_job, (subscriber.owner_id, job_id), subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forget a client (it disconnected); harmless to repeat."""
        if subscriber.all_jobs:
            _discard(self._by_owner, subscriber.owner_id, subscriber)
        for job_id in subscriber.job_ids:
            _discard(self._by_job, (subscriber.owner_id, job_id), subscriber)
        self._subscribers.discard(subscriber)

    def publish(self, event: StatusEvent) -> int:
        """Hand `event` to every subscriber watching it; returns how many took it."""
        everything = self._by_owner.get(event.owner_id)
        this_job = self._by_job.get((event.owner_id, event.job_id))
        if everything and this_job:
            targets = list(everything | this_job)
        else:
            targets = list(everything or this_job or ())
        delivered = 0
        for subscriber in targets:
            if subscriber._offer(event):
                delivered += 1
            else:
                self.dropped_too_slow += 1
                self._drop(subscriber, CloseReason.TOO_SLOW)
        return delivered

    def close_all(self) -> None:
        """Shutdown: every subscriber ends with SHUTDOWN and no new one is taken."""
        self._closed = True
        for subscriber in list(self._subscribers):
            self._drop(subscriber, CloseReason.SHUTDOWN)

    def _drop(self, subscriber: Subscriber, reason: CloseReason) -> None:
        self.unsubscribe(subscriber)
        subscriber._close(reason)


class DeliveredSequences:
    """Per job, the highest sequence one client was sent, so that it gets each job's events once
    and in increasing order: replayed and live copies of an event overlap, a client may reach one
    job through "all" and through its id, and a resume never rewinds what was already sent.

    Holds one int for each of the `limit` jobs sent to most recently, so a socket that lives for
    days stays small; a job it forgot counts as never sent.
    """

    def __init__(self, *, limit: int = 1) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._limit = limit
        self._highest: dict[str, int] = {}  # least recently sent first

    def admit(self, event: StatusEvent) -> bool:
        """True, and recorded as sent, when the client has not had this event or a later one."""
        highest = self._highest.get(event.job_id)
        if highest is not None and event.sequence <= highest:
            return False
        self._remember(event.job_id, event.sequence)
        return True

    def resume_after(self, job_id: str, last_event_id: int | None) -> int | None:
        """Where a (re)subscription to `job_id` continues: after the client's `last_event_id` or
        after the last event it was sent here, whichever is later; None when neither is known (the
        client gets the current state). Events up to that point are not admitted any more."""
        highest = self._highest.get(job_id)
        if highest is None or (last_event_id is not None and last_event_id > highest):
            highest = last_event_id
        if highest is not None:
            self._remember(job_id, highest)
        return highest

    def _remember(self, job_id: str, sequence: int) -> None:
        self._highest.pop(job_id, None)
        self._highest[job_id] = sequence
        if len(self._highest) > self._limit:
            del self._highest[next(iter(self._highest))]


def _discard(index: dict[K, set[Subscriber]], key: K, subscriber: Subscriber) -> None:
    watchers = index.get(key)
    if watchers is not None:
        watchers.discard(subscriber)
        if not watchers:
            del index[key]
