"""PostgreSQL token buckets: a new bucket starts full, takes never overspend under concurrency from two
engines (two replicas), a refused take leaves the bucket as it was, and buckets refill with time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import MetaData, text

from servicekit.db import make_engine
from servicekit.token_bucket import Take, TokenBuckets, bucket_table

pytestmark = pytest.mark.integration

metadata = MetaData(schema="buckets_test")
buckets = bucket_table("buckets", metadata, "name")


@pytest.fixture
async def engines(fresh_database_url: str) -> AsyncIterator[tuple]:
    one, two = make_engine(fresh_database_url, pool_size=8), make_engine(fresh_database_url, pool_size=8)
    async with one.begin() as conn:
        await conn.execute(text("CREATE SCHEMA buckets_test"))
        await conn.run_sync(metadata.create_all)
    yield one, two
    await one.dispose()
    await two.dispose()


async def test_a_new_bucket_starts_full_and_refuses_when_empty(engines):
    store = TokenBuckets(engines[0], buckets, "name")
    takes = [await store.take("a", capacity=3, per_second=0.5) for _ in range(4)]
    assert [take.taken for take in takes] == [True, True, True, False]
    assert [round(take.tokens) for take in takes[:3]] == [2, 1, 0]
    refused = takes[3]
    assert 0 <= refused.tokens < 0.5  # whatever trickled in since the last take
    assert 1.0 < refused.retry_after_seconds <= 2.0  # one token every 2 s
    # Another key has its own bucket.
    assert (await store.take("b", capacity=3, per_second=0.5)).taken


async def test_two_replicas_never_spend_more_than_the_bucket_holds(engines):
    replicas = [TokenBuckets(engine, buckets, "name") for engine in engines]

    async def take(n: int) -> Take:
        return await replicas[n % 2].take("shared", capacity=5, per_second=0.001)

    takes = await asyncio.gather(*(take(n) for n in range(24)))
    assert sum(take.taken for take in takes) == 5


async def test_a_bucket_refills_with_elapsed_time_up_to_its_capacity(engines):
    store = TokenBuckets(engines[0], buckets, "name")
    for _ in range(4):
        await store.take("r", capacity=4, per_second=1)
    assert not (await store.take("r", capacity=4, per_second=1)).taken
    # Move the last refresh back in time instead of waiting for it.
    async with engines[0].begin() as conn:
        await conn.execute(
            text("UPDATE buckets_test.buckets SET refreshed_at = refreshed_at - interval '2.5 seconds'")
        )
    take = await store.take("r", capacity=4, per_second=1)
    assert take.taken and 1.5 <= take.tokens < 2.0
    async with engines[0].begin() as conn:
        await conn.execute(
            text("UPDATE buckets_test.buckets SET refreshed_at = refreshed_at - interval '1 hour'")
        )
    assert (await store.take("r", capacity=4, per_second=1)).tokens == pytest.approx(3.0)  # capped, minus one


async def test_a_bucket_must_hold_a_whole_token(engines):
    store = TokenBuckets(engines[0], buckets, "name")
    with pytest.raises(ValueError):
        await store.take("x", capacity=0.5, per_second=1)
