"""BillingService over a real gRPC port against real PostgreSQL and NATS JetStream.

Each test gets a fresh database; events are told apart by the uuid-named jobs and requests each
test uses, since every test's service publishes into the same BILLING stream.
"""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy
from servicekit.bus import MSG_ID_HEADER
from servicekit.errors import ErrorKind, ServiceError
from sqlalchemy import select, text
from vidflow.billing.v1 import billing_pb2, events_pb2
from vidflow.billing.v1 import billing_service_pb2 as pb

from services.billing.store import outbox
from services.billing.tests.harness import PRO_4S, SORA_2_8S, Billing, new_id, refused

pytestmark = pytest.mark.integration


async def test_quote_prices_specs_and_rejects_unknown_models(billing: Billing) -> None:
    assert (await billing.stub.Quote(pb.QuoteRequest(spec=SORA_2_8S))).amount == 80
    assert (await billing.stub.Quote(pb.QuoteRequest(spec=PRO_4S))).amount == 200
    error = await refused(
        billing.stub.Quote(
            pb.QuoteRequest(spec=billing_pb2.VideoSpec(model="sora-9", size="1280x720", seconds=4))
        )
    )
    assert (error.kind, error.param) == (ErrorKind.INVALID_ARGUMENT, "model")


async def test_credit_reserve_capture_and_release_move_the_balance(billing: Billing) -> None:
    account = new_id("acct")
    assert await billing.balance(account) == (0, 0)
    balance = await billing.credit(account, 1000)
    assert (balance.available, balance.held) == (1000, 0)

    captured_job, released_job = new_id("job"), new_id("job")
    hold = await billing.reserve(account, captured_job)
    assert (hold.amount, hold.state, hold.account_id) == (80, billing_pb2.HOLD_STATE_HELD, account)
    assert hold.HasField("create_time") and not hold.HasField("settle_time")
    assert await billing.balance(account) == (920, 80)

    await billing.reserve(account, released_job, PRO_4S)
    assert await billing.balance(account) == (720, 280)

    captured = await billing.capture(captured_job, 5)  # 5 of 8 seconds delivered
    assert (captured.state, captured.captured_amount, captured.amount) == (
        billing_pb2.HOLD_STATE_CAPTURED,
        50,
        80,
    )
    assert captured.HasField("settle_time")
    assert await billing.balance(account) == (750, 200)

    released = await billing.release(released_job, "moderation_blocked")
    assert (released.state, released.captured_amount) == (billing_pb2.HOLD_STATE_RELEASED, 0)
    assert await billing.balance(account) == (950, 0)
    assert await billing.store.audit() == []


async def test_capture_never_charges_more_than_the_hold(billing: Billing) -> None:
    account, job = new_id("acct"), new_id("job")
    await billing.credit(account, 100)
    await billing.reserve(account, job)
    hold = await billing.capture(job, 60)
    assert hold.captured_amount == 80
    assert await billing.balance(account) == (20, 0)
    assert await billing.store.audit() == []


async def test_every_money_call_is_idempotent_on_its_key(billing: Billing) -> None:
    account, job, request_id = new_id("acct"), new_id("job"), new_id("req")
    first = await billing.credit(account, 500, request_id)
    again = await billing.credit(account, 500, request_id)
    assert first.available == again.available == 500
    error = await refused(billing.credit(account, 700, request_id))
    assert (error.kind, error.param) == (ErrorKind.ALREADY_EXISTS, "request_id")

    hold = await billing.reserve(account, job)
    assert await billing.reserve(account, job) == hold
    assert await billing.balance(account) == (420, 80)
    error = await refused(billing.reserve(new_id("acct"), job))
    assert (error.kind, error.param) == (ErrorKind.ALREADY_EXISTS, "job_id")
    error = await refused(billing.reserve(account, job, PRO_4S))
    assert error.kind is ErrorKind.ALREADY_EXISTS

    captured = await billing.capture(job, 4)
    count = await billing.transaction_count()
    assert await billing.capture(job, 4) == captured
    assert await billing.capture(job, 8) == captured  # the first capture stands
    assert await billing.transaction_count() == count
    assert await billing.balance(account) == (460, 0)
    error = await refused(billing.release(job))
    assert error.kind is ErrorKind.FAILED_PRECONDITION

    other = new_id("job")
    await billing.reserve(account, other)
    released = await billing.release(other)
    count = await billing.transaction_count()
    assert await billing.release(other, "cancelled") == released
    assert await billing.transaction_count() == count
    error = await refused(billing.capture(other, 8))
    assert error.kind is ErrorKind.FAILED_PRECONDITION
    assert await billing.balance(account) == (460, 0)
    # credit, reserve, capture, reserve, release
    assert await billing.transaction_count() == 5
    assert await billing.store.audit() == []


async def test_unknown_jobs_and_bad_requests_are_refused(billing: Billing) -> None:
    for unknown in (billing.capture(new_id("job"), 4), billing.release(new_id("job"))):
        error = await refused(unknown)
        assert (error.kind, error.param) == (ErrorKind.NOT_FOUND, "job_id")
    account = new_id("acct")
    bad_calls = {
        "amount": lambda: billing.stub.Credit(
            pb.CreditRequest(account_id=account, amount=0, reason="x", request_id="r")
        ),
        "request_id": lambda: billing.stub.Credit(pb.CreditRequest(account_id=account, amount=5, reason="x")),
        "reason": lambda: billing.stub.Credit(pb.CreditRequest(account_id=account, amount=5, request_id="r")),
        "account_id": lambda: billing.stub.Reserve(pb.ReserveRequest(job_id="j", spec=SORA_2_8S)),
        "size": lambda: billing.reserve(
            account, new_id("job"), billing_pb2.VideoSpec(model="sora-2", size="1792x1024", seconds=4)
        ),
        "seconds": lambda: billing.reserve(
            account, new_id("job"), billing_pb2.VideoSpec(model="sora-2", size="1280x720", seconds=0)
        ),
        "delivered_seconds": lambda: billing.capture("j", -1),
        "job_id": lambda: billing.release("", "failed"),
    }
    for param, call in bad_calls.items():
        error = await refused(call())
        assert (error.kind, error.param) == (ErrorKind.INVALID_ARGUMENT, param)
    error = await refused(billing.release("j", ""))
    assert (error.kind, error.param) == (ErrorKind.INVALID_ARGUMENT, "reason")
    assert await billing.transaction_count() == 0


async def test_insufficient_funds_are_refused_with_the_numbers(billing: Billing) -> None:
    account, job = new_id("acct"), new_id("job")
    await billing.credit(account, 50)
    error = await refused(billing.reserve(account, job))
    assert error.kind is ErrorKind.INSUFFICIENT_QUOTA
    assert error.code == "insufficient_quota"
    assert error.metadata == {"needed": "80", "available": "50"}
    assert "80" in error.message and "50" in error.message
    assert await billing.balance(account) == (50, 0)
    error = await refused(billing.capture(job, 8))
    assert error.kind is ErrorKind.NOT_FOUND  # the refused reserve left no hold behind

    stranger = await refused(billing.reserve(new_id("acct"), new_id("job")))
    assert stranger.metadata == {"needed": "80", "available": "0"}


async def test_concurrent_reserves_never_overdraw(billing: Billing) -> None:
    account = new_id("acct")
    await billing.credit(account, 5 * 80)
    results = await asyncio.gather(
        *(billing.reserve(account, new_id("job")) for _ in range(50)), return_exceptions=True
    )
    holds = [r for r in results if isinstance(r, billing_pb2.Hold)]
    refusals = [r for r in results if isinstance(r, ServiceError)]
    assert len(holds) == 5
    assert len(refusals) == 45
    assert all(r.kind is ErrorKind.INSUFFICIENT_QUOTA for r in refusals)
    assert await billing.balance(account) == (0, 400)
    assert await billing.store.audit() == []


async def test_concurrent_repeats_of_one_reserve_charge_once(billing: Billing) -> None:
    account, job = new_id("acct"), new_id("job")
    await billing.credit(account, 1000)
    holds = await asyncio.gather(*(billing.reserve(account, job) for _ in range(20)))
    assert len({h.SerializeToString() for h in holds}) == 1
    assert await billing.balance(account) == (920, 80)
    settled = await asyncio.gather(*(billing.capture(job, 8) for _ in range(10)))
    assert {h.captured_amount for h in settled} == {80}
    assert await billing.balance(account) == (920, 0)
    assert await billing.transaction_count() == 3
    assert await billing.store.audit() == []


async def test_audit_finds_a_cached_balance_that_drifted_from_the_ledger(billing: Billing) -> None:
    account = new_id("acct")
    await billing.credit(account, 100)
    await billing.reserve(account, new_id("job"))
    assert await billing.store.audit() == []
    async with billing.engine.begin() as conn:
        await conn.execute(
            text("UPDATE billing.accounts SET available = available + 1 WHERE id = :id"), {"id": account}
        )
    problems = await billing.store.audit()
    assert len(problems) == 1 and account in problems[0]


async def test_the_database_refuses_ledger_edits(billing: Billing) -> None:
    account = new_id("acct")
    await billing.credit(account, 100)
    for statement in ("UPDATE billing.ledger_entries SET amount = 1", "DELETE FROM billing.transactions"):
        with pytest.raises(Exception, match="not allowed"):
            async with billing.engine.begin() as conn:
                await conn.execute(text(statement))
    assert await billing.store.audit() == []


async def test_events_go_through_the_outbox_to_jetstream(billing: Billing) -> None:
    account, captured_job, released_job, request_id = (
        new_id("acct"),
        new_id("job"),
        new_id("job"),
        new_id("req"),
    )
    await billing.credit(account, 1000, request_id)
    await billing.credit(account, 1000, request_id)  # a repeat publishes nothing new
    await billing.reserve(account, captured_job)
    await billing.capture(captured_job, 8)
    await billing.capture(captured_job, 8)
    await billing.reserve(account, released_job)
    await billing.release(released_job)
    expected = {
        f"credit:{request_id}": "billing.v1.account.credited",
        f"hold:{captured_job}:placed": "billing.v1.hold.placed",
        f"hold:{captured_job}:captured": "billing.v1.hold.captured",
        f"hold:{released_job}:placed": "billing.v1.hold.placed",
        f"hold:{released_job}:released": "billing.v1.hold.released",
    }
    async with billing.engine.connect() as conn:
        rows = (await conn.execute(select(outbox.c.msg_id, outbox.c.subject))).all()
    assert dict(rows) == expected

    seen = await _messages_on_stream(billing.nats_url, set(expected), within=10.0)
    assert {msg_id: subject for msg_id, (subject, _) in seen.items()} == expected
    credited = events_pb2.AccountCreditedEvent.FromString(seen[f"credit:{request_id}"][1])
    assert (credited.account_id, credited.amount, credited.event_id) == (
        account,
        1000,
        f"credit:{request_id}",
    )
    captured = events_pb2.HoldChangedEvent.FromString(seen[f"hold:{captured_job}:captured"][1])
    assert (captured.hold.state, captured.hold.captured_amount) == (billing_pb2.HOLD_STATE_CAPTURED, 80)
    assert captured.HasField("occur_time")
    released = events_pb2.HoldChangedEvent.FromString(seen[f"hold:{released_job}:released"][1])
    assert (released.hold.job_id, released.hold.state) == (released_job, billing_pb2.HOLD_STATE_RELEASED)


async def _messages_on_stream(
    nats_url: str, wanted: set[str], *, within: float
) -> dict[str, tuple[str, bytes]]:
    """Read the BILLING stream from the start until every wanted msg id has arrived."""
    nc = await nats.connect(nats_url)
    seen: dict[str, tuple[str, bytes]] = {}
    try:
        js = nc.jetstream()
        subscription = await js.pull_subscribe(
            "billing.v1.>", stream="BILLING", config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        )
        deadline = asyncio.get_running_loop().time() + within
        while not wanted <= seen.keys():
            remaining = deadline - asyncio.get_running_loop().time()
            assert remaining > 0, f"missing events: {sorted(wanted - seen.keys())}"
            try:
                batch = await subscription.fetch(100, timeout=min(remaining, 1.0))
            except nats.errors.TimeoutError:
                continue
            for message in batch:
                msg_id = (message.headers or {}).get(MSG_ID_HEADER, "")
                if msg_id in wanted:
                    assert msg_id not in seen, f"{msg_id} delivered twice"
                    seen[msg_id] = (message.subject, message.data)
                await message.ack()
        await subscription.unsubscribe()
    finally:
        await nc.close()
    return seen
