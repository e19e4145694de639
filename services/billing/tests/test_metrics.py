"""The ledger reports each hold it places, captures or releases exactly once, after the commit: never
for a repeated call, and once for racing duplicates (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from servicekit.db import make_engine

from services.billing import domain
from services.billing.app import migrate
from services.billing.config import Settings
from services.billing.domain import DEFAULT_USD_PER_SECOND, Hold, HoldState, PriceTable, VideoSpec
from services.billing.metrics import HeldCredits
from services.billing.store import LedgerStore

pytestmark = pytest.mark.integration
SPEC = VideoSpec("sora-2", "1280x720", 4)
RATE = PriceTable(DEFAULT_USD_PER_SECOND, 100).rate("sora-2", "1280x720")


@pytest.fixture
async def engine(fresh_database_url, infrastructure):
    await asyncio.to_thread(
        migrate, Settings(database_url=fresh_database_url, nats_url=infrastructure.nats_url)
    )
    engine = make_engine(fresh_database_url, pool_size=4)
    yield engine
    await engine.dispose()


async def test_each_hold_change_is_reported_once_and_repeats_never(engine) -> None:
    changed: list[Hold] = []
    store = LedgerStore(engine, on_hold_changed=changed.append)
    account = f"acct_{uuid.uuid4().hex[:8]}"
    await store.credit(domain.credit(account, 1_000, reason="top-up", request_id="r1"), request_id="r1")

    for _ in range(2):
        await store.reserve(account, "job_kept", SPEC, RATE)
        await store.capture("job_kept", 4)
    await store.reserve(account, "job_dropped", SPEC, RATE)
    for _ in range(2):
        await store.release("job_dropped", "provider failed")
    await asyncio.gather(*(store.reserve(account, "job_raced", SPEC, RATE) for _ in range(4)))

    assert [(hold.job_id, hold.state) for hold in changed] == [
        ("job_kept", HoldState.HELD),
        ("job_kept", HoldState.CAPTURED),
        ("job_dropped", HoldState.HELD),
        ("job_dropped", HoldState.RELEASED),
        ("job_raced", HoldState.HELD),
    ]
    assert changed[1].captured_amount == 40


async def test_held_credits_sum_every_accounts_open_holds(engine) -> None:
    store = LedgerStore(engine)
    for account in ("acct_a", "acct_b"):
        await store.credit(
            domain.credit(account, 500, reason="top-up", request_id=account), request_id=account
        )
        await store.reserve(account, f"job_{account}", SPEC, RATE)
    await store.capture("job_acct_a", 4)
    held = HeldCredits(engine)

    await held.refresh()

    assert held.readings() == [(40.0, {"service": "billing"})]  # only acct_b's hold is still open
