"""Token buckets in PostgreSQL, shared by every replica: one row per bucket, one statement per take.

The caller owns the table (in its own schema) and picks the policy (capacity and refill rate);
this module owns the arithmetic. A bucket row holds `tokens` as of `refreshed_at`; a take refills
it for the time elapsed, capped at the capacity, and spends one token only if one is there. The
row's lock serialises concurrent takes, so no replica can spend a token twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import Column, ColumnElement, DateTime, Float, MetaData, String, Table, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine


def bucket_table(name: str, metadata: MetaData, key_column: str, key_length: int = 64) -> Table:
    """The shape `TokenBuckets` expects: a string key, `tokens` and `refreshed_at`."""
    return Table(
        name,
        metadata,
        Column(key_column, String(key_length), primary_key=True),
        Column("tokens", Float, nullable=False),
        Column("refreshed_at", DateTime(timezone=True), nullable=False),
    )


@dataclass(frozen=True)
class Take:
    taken: bool
    # Whole or fractional tokens left after this take; when refused, what the bucket holds now.
    tokens: float
    capacity: float
    per_second: float

    @property
    def retry_after_seconds(self) -> float:
        """How long until the bucket holds a whole token again (0 when one is there)."""
        if self.tokens >= 1:
            return 0.0
        return (1.0 - self.tokens) / self.per_second if self.per_second > 0 else math.inf

    @property
    def seconds_to_full(self) -> float:
        if self.tokens >= self.capacity:
            return 0.0
        return (self.capacity - self.tokens) / self.per_second if self.per_second > 0 else math.inf

    @property
    def whole_tokens(self) -> int:
        return max(0, math.floor(self.tokens))


class TokenBuckets:
    """Every bucket in one table, keyed by `key_column`."""

    def __init__(self, engine: AsyncEngine, table: Table, key_column: str) -> None:
        self._engine = engine
        self._table = table
        self._key = table.c[key_column]

    async def take(self, key: str, *, capacity: float, per_second: float) -> Take:
        """Spend one token from `key`'s bucket if it holds one (a new bucket starts full)."""
        if capacity < 1 or per_second < 0:
            raise ValueError("a bucket needs a capacity of at least one token and a refill rate of 0 or more")
        table = self._table
        now = func.clock_timestamp()

        def refilled() -> ColumnElement[float]:
            elapsed = func.extract("epoch", now - table.c.refreshed_at)
            return func.least(capacity, table.c.tokens + elapsed * per_second)

        attempt = (
            insert(table)
            .values({self._key.name: key, "tokens": capacity - 1, "refreshed_at": now})
            .on_conflict_do_update(
                index_elements=[self._key],
                set_={"tokens": refilled() - 1, "refreshed_at": now},
                where=refilled() >= 1,
            )
            .returning(table.c.tokens)
            .cte("attempt")
        )
        # The outer SELECT sees the row as it was before this statement: when the take is refused
        # the row is untouched, so that is what the bucket holds now. One round trip either way.
        statement = select(
            select(attempt.c.tokens).scalar_subquery().label("left"),
            select(refilled()).where(self._key == key).scalar_subquery().label("available"),
        )
        async with self._engine.connect() as conn:
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            row = (await autocommit.execute(statement)).one()
        if row.left is not None:
            return Take(True, float(row.left), capacity, per_second)
        # Refused. `available` is None only when another replica created the bucket this instant.
        available = 0.0 if row.available is None else float(row.available)
        return Take(False, min(available, 1.0 - 1e-9), capacity, per_second)
