"""The in-process fan-out hub: routing by owner and job, bounded mailboxes, clean-up, shutdown."""

from __future__ import annotations

import asyncio

import pytest

from services.gateway.fanout import (
    CloseReason,
    DeliveredSequences,
    FanoutHub,
    HubClosed,
    StatusEvent,
    SubscriptionClosed,
)


def event(owner: str, job: str, sequence: int, *, terminal: bool = False) -> StatusEvent:
    return StatusEvent(owner, job, sequence, terminal, f'{{"id":"{job}","seq":{sequence}}}')


def keys(events: list[StatusEvent]) -> list[tuple[str, str, int]]:
    return [(e.owner_id, e.job_id, e.sequence) for e in events]


def test_events_reach_the_owners_watchers_and_the_jobs_watchers_only():
    hub = FanoutHub(capacity=10)
    alice_all = hub.subscribe("alice")
    hub.watch_all(alice_all)
    alice_one = hub.subscribe("alice")
    hub.watch(alice_one, "video_1")
    bob_all = hub.subscribe("bob")
    hub.watch_all(bob_all)
    bob_same_id = hub.subscribe("bob")
    hub.watch(bob_same_id, "video_1")  # a job id alone never crosses owners

    assert hub.publish(event("alice", "video_1", 1)) == 2
    assert hub.publish(event("alice", "video_2", 1)) == 1
    assert hub.publish(event("carol", "video_9", 1)) == 0

    assert keys(alice_all.take()) == [("alice", "video_1", 1), ("alice", "video_2", 1)]
    assert keys(alice_one.take()) == [("alice", "video_1", 1)]
    assert bob_all.take() == [] and bob_same_id.take() == []


def test_a_subscriber_watching_everything_and_one_job_gets_each_event_once():
    hub = FanoutHub(capacity=10)
    both = hub.subscribe("alice")
    hub.watch_all(both)
    hub.watch(both, "video_1")
    hub.publish(event("alice", "video_1", 1))
    assert keys(both.take()) == [("alice", "video_1", 1)]


def test_a_slow_subscriber_is_dropped_and_the_others_get_every_event_in_order():
    hub = FanoutHub(capacity=3)
    slow = hub.subscribe("alice")
    hub.watch_all(slow)
    fast = hub.subscribe("alice")
    hub.watch_all(fast)
    quiet = hub.subscribe("alice")  # watches another job, which sends less than its capacity
    hub.watch(quiet, "video_2")

    fast_got: list[StatusEvent] = []
    for sequence in range(1, 11):
        hub.publish(event("alice", "video_1", sequence))  # never waits for anyone
        fast_got.extend(fast.take())
    hub.publish(event("alice", "video_2", 1))
    assert [e.sequence for e in fast_got] == list(range(1, 11))
    assert keys(quiet.take()) == [("alice", "video_2", 1)]

    assert slow.closed is CloseReason.TOO_SLOW
    with pytest.raises(SubscriptionClosed) as raised:
        slow.take()
    assert raised.value.reason is CloseReason.TOO_SLOW
    assert hub.dropped_too_slow == 1
    assert (fast.closed, quiet.closed) == (None, None)
    assert hub.subscriber_count == 2
    # Out of the hub at once: it is offered nothing more.
    assert hub.publish(event("alice", "video_1", 11)) == 1


async def test_a_waiting_subscriber_wakes_on_an_event_and_a_quiet_one_times_out():
    hub = FanoutHub(capacity=4)
    subscriber = hub.subscribe("alice")
    hub.watch(subscriber, "video_1")
    assert await subscriber.wait(quiet_seconds=0.01) is False

    waiter = asyncio.create_task(subscriber.wait())
    await asyncio.sleep(0)  # let it block on the empty mailbox
    assert not waiter.done()
    hub.publish(event("alice", "video_1", 1))
    assert await waiter is True
    assert keys(subscriber.take()) == [("alice", "video_1", 1)]


def test_unsubscribe_forgets_the_subscriber_everywhere_and_is_harmless_to_repeat():
    hub = FanoutHub(capacity=4)
    subscriber = hub.subscribe("alice")
    hub.watch_all(subscriber)
    hub.watch(subscriber, "video_1")
    hub.unsubscribe(subscriber)
    hub.unsubscribe(subscriber)
    assert hub.subscriber_count == 0
    assert hub.publish(event("alice", "video_1", 1)) == 0
    assert hub._by_owner == {} and hub._by_job == {}


def test_unwatch_stops_one_job_only():
    hub = FanoutHub(capacity=4)
    subscriber = hub.subscribe("alice")
    hub.watch(subscriber, "video_1")
    hub.watch(subscriber, "video_2")
    hub.unwatch(subscriber, "video_1")
    assert hub.publish(event("alice", "video_1", 1)) == 0
    assert hub.publish(event("alice", "video_2", 1)) == 1


async def test_shutdown_closes_every_subscriber_and_refuses_new_ones():
    hub = FanoutHub(capacity=4)
    first = hub.subscribe("alice")
    hub.watch_all(first)
    second = hub.subscribe("bob")
    hub.watch(second, "video_1")
    waiter = asyncio.create_task(second.wait())
    await asyncio.sleep(0)

    hub.close_all()

    assert await waiter is True
    for subscriber in (first, second):
        with pytest.raises(SubscriptionClosed) as raised:
            subscriber.take()
        assert raised.value.reason is CloseReason.SHUTDOWN
    assert hub.subscriber_count == 0
    with pytest.raises(HubClosed):
        hub.subscribe("alice")


def sequences(sent: DeliveredSequences, events: list[StatusEvent]) -> list[tuple[str, int]]:
    return [(e.job_id, e.sequence) for e in events if sent.admit(e)]


def test_delivered_sequences_let_each_event_through_once_in_order():
    sent = DeliveredSequences(limit=10)
    replay = [event("a", "video_1", n) for n in (3, 4, 5)]
    live = [event("a", "video_1", n) for n in (4, 5, 6)] + [event("a", "video_2", 1)]
    assert sequences(sent, replay + live) == [
        ("video_1", 3), ("video_1", 4), ("video_1", 5), ("video_1", 6), ("video_2", 1)
    ]  # fmt: skip
    # A late copy of an older event (a live feed lagging behind the replay) is not sent either.
    assert sequences(sent, [event("a", "video_1", 2), event("a", "video_2", 1)]) == []


def test_a_resume_continues_after_the_later_of_the_clients_id_and_what_was_sent():
    sent = DeliveredSequences(limit=10)
    assert sent.resume_after("video_1", None) is None  # nothing known: the current state
    assert sent.resume_after("video_1", 3) == 3  # the client holds 3 (from an earlier socket)
    assert sequences(sent, [event("a", "video_1", n) for n in (2, 3, 4, 5, 6)]) == [
        ("video_1", 4), ("video_1", 5), ("video_1", 6)
    ]  # fmt: skip

    # An older id, or none, on the socket that sent 6: continue after 6, never rewind.
    assert sent.resume_after("video_1", 1) == 6
    assert sent.resume_after("video_1", None) == 6
    assert sequences(sent, [event("a", "video_1", n) for n in (2, 5, 6, 7)]) == [("video_1", 7)]
    # A later id than sent here: the client has those, so they are not sent.
    assert sent.resume_after("video_1", 9) == 9
    assert sequences(sent, [event("a", "video_1", n) for n in (8, 9, 10)]) == [("video_1", 10)]


def test_a_snapshot_is_sequence_zero_and_goes_out_once():
    sent = DeliveredSequences(limit=10)
    assert sent.resume_after("video_1", None) is None
    assert sequences(sent, [event("a", "video_1", 0)]) == [("video_1", 0)]
    # Subscribed again before any event was stored: resumes after the snapshot, so none again.
    assert sent.resume_after("video_1", None) == 0
    assert sequences(sent, [event("a", "video_1", n) for n in (0, 1)]) == [("video_1", 1)]


def test_delivered_sequences_forget_the_least_recently_sent_video_past_the_limit():
    sent = DeliveredSequences(limit=2)
    assert sequences(sent, [event("a", "video_1", 5), event("a", "video_2", 5)]) == [
        ("video_1", 5), ("video_2", 5)
    ]  # fmt: skip
    assert sent.resume_after("video_1", None) == 5  # a resume counts as recent use too
    assert sequences(sent, [event("a", "video_3", 1)]) == [("video_3", 1)]
    # video_2 was forgotten, so it counts as never sent; video_1 and video_3 are still known.
    assert sent.resume_after("video_2", None) is None
    assert sequences(sent, [event("a", "video_1", 5), event("a", "video_3", 1)]) == []
    with pytest.raises(ValueError):
        DeliveredSequences(limit=0)


def test_capacity_must_be_positive():
    with pytest.raises(ValueError):
        FanoutHub(capacity=0)
