"""Small test-side tools for the end-to-end suite."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import av
import grpc
import nats
import psycopg
from nats.js.api import ConsumerConfig, DeliverPolicy
from vidflow.billing.v1 import billing_service_pb2, billing_service_pb2_grpc
from vidflow.jobs.v1 import events_pb2

T = TypeVar("T")


def probe_mp4(data: bytes) -> tuple[int, int, float, str]:
    """(width, height, duration seconds, codec) of an MP4 held in memory."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        duration = float(container.duration / av.time_base) if container.duration else 0.0
        return stream.codec_context.width, stream.codec_context.height, duration, stream.codec_context.name


async def credit(billing_address: str, account_id: str, amount: int, request_id: str) -> None:
    async with grpc.aio.insecure_channel(billing_address) as channel:
        await billing_service_pb2_grpc.BillingServiceStub(channel).Credit(
            billing_service_pb2.CreditRequest(
                account_id=account_id, amount=amount, reason="test", request_id=request_id
            ),
            timeout=10,
        )


async def balance(billing_address: str, account_id: str) -> tuple[int, int]:
    async with grpc.aio.insecure_channel(billing_address) as channel:
        answer = await billing_service_pb2_grpc.BillingServiceStub(channel).GetBalance(
            billing_service_pb2.GetBalanceRequest(account_id=account_id), timeout=10
        )
    return answer.balance.available, answer.balance.held


async def status_events(
    nats_url: str, job_id: str, *, until_status: int, deadline_seconds: float = 20.0
) -> list[events_pb2.VideoStatusChangedEvent]:
    """Read the job's events from JetStream from the start until one has `until_status`."""
    connection = await nats.connect(nats_url)
    try:
        js = connection.jetstream()
        subscription = await js.pull_subscribe(
            "jobs.v1.video.status_changed.>",
            durable=None,
            stream="JOBS",
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        found: list[events_pb2.VideoStatusChangedEvent] = []
        ends = time.monotonic() + deadline_seconds
        while time.monotonic() < ends:
            try:
                messages = await subscription.fetch(100, timeout=1)
            except TimeoutError:
                continue
            for message in messages:
                await message.ack()
                event = events_pb2.VideoStatusChangedEvent.FromString(message.data)
                if event.job.id == job_id:
                    found.append(event)
            if any(event.job.status == until_status for event in found):
                return found
        return found
    finally:
        await connection.close()


async def eventually(
    check: Callable[[], Awaitable[T | None]], *, deadline_seconds: float = 30.0, interval: float = 0.2
) -> T:
    """Re-run `check` until it returns a value; fails with the deadline. For polling an API."""
    ends = time.monotonic() + deadline_seconds
    while True:
        result = await check()
        if result is not None:
            return result
        if time.monotonic() > ends:
            raise AssertionError(f"condition not met within {deadline_seconds}s")
        await asyncio.sleep(interval)


async def new_user(stack, label: str, credits: int = 1_000) -> str:
    """A funded tenant of its own, for tests that count videos, credits or budget."""
    from servicekit.db import make_engine

    from services.gateway.identity import IdentityStore

    user = f"user_{label}_{uuid.uuid4().hex[:8]}"
    key = f"vf_test_{uuid.uuid4().hex}"
    engine = make_engine(stack.database_url, pool_size=1)
    await IdentityStore(engine).ensure_user_with_key(user_id=user, name=user, role="user", api_key=key)
    await engine.dispose()
    stack.api_keys[user] = key
    if credits:
        await credit(stack.billing_address, user, credits, request_id=f"{label}-{uuid.uuid4()}")
    return user


# Port 9 (discard) on loopback: where a webhook URL the test did not choose itself may point.
LOOPBACK_SINK = "http://127.0.0.1:9/sink"
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]*")


def loopback_urls(value: Any) -> Any:
    """`value` with every URL in it (in any string, however nested) pointed at LOOPBACK_SINK.
    Bodies taken from the API document's examples or made by a fuzzer can register webhook
    targets, and deliveries must never leave this machine."""
    if isinstance(value, str):
        return _URL.sub(LOOPBACK_SINK, value)
    if isinstance(value, bytes):
        return _URL.sub(LOOPBACK_SINK, value.decode("latin-1")).encode("latin-1")
    if isinstance(value, dict):
        return {loopback_urls(key): loopback_urls(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(loopback_urls(item) for item in value)
    return value


@contextlib.contextmanager
def database_away(admin_url: str, database_url: str) -> Iterator[None]:
    """The database at `database_url` takes no connections and its open ones are cut until the block
    ends, as a PostgreSQL restart or failover looks to the services using it. `admin_url` is another
    database on the same server (the session's `infrastructure.database_url`)."""
    name = database_url.rpartition("/")[2]
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        try:
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
