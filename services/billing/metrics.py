"""The billing service's metrics: holds placed, captured and released, credits charged, and the
credits held right now (summed in PostgreSQL just before each scrape)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from servicekit.metrics import Reading, get_meter, observed_gauge
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.billing.domain import Hold, HoldState
from services.billing.store import accounts

SERVICE = "billing"
METER = "vidflow.billing"
# The verbs of the billing.v1.hold.* events.
_EVENTS = {HoldState.HELD: "placed", HoldState.CAPTURED: "captured", HoldState.RELEASED: "released"}

_meter = get_meter(METER)
_holds = _meter.create_counter(
    "vidflow_billing_holds", unit="1", description="Credit holds placed, captured and released, by model"
)
_captured = _meter.create_counter(
    "vidflow_billing_credits_captured", description="Credits charged for delivered videos, by model"
)
_held = observed_gauge(
    METER, "vidflow_billing_credits_held", description="Credits held for unfinished videos, all accounts"
)


def observe_hold(hold: Hold) -> None:
    """Count a hold that was just placed, captured or released (repeats never get here)."""
    labels = {"service": SERVICE, "model": hold.spec.model}
    _holds.add(1, {**labels, "event": _EVENTS[hold.state]})
    if hold.state is HoldState.CAPTURED and hold.captured_amount:
        _captured.add(hold.captured_amount, labels)


class HeldCredits:
    """The sum of every account's held credits, read before each scrape."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._readings: list[Reading] = []

    @contextlib.contextmanager
    def observed(self) -> Iterator[None]:
        with _held.fed_by(self.readings):
            yield

    def readings(self) -> list[Reading]:
        return self._readings

    async def refresh(self) -> None:
        self._readings = []  # should the query fail, no number beats a stale one
        async with self._engine.connect() as conn:
            held = await conn.scalar(select(func.coalesce(func.sum(accounts.c.held), 0)))
        self._readings = [(float(held or 0), {"service": SERVICE})]
