"""Wiring only: database engine, NATS and the outbox relay, gRPC server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from servicekit.bus import nats_connection
from servicekit.db import make_engine, upgrade_schema
from servicekit.grpcserver import RunningServer, create_server
from servicekit.metrics import listen_host, serve_metrics
from servicekit.outbox import OutboxRelay
from vidflow.billing.v1 import billing_service_pb2, billing_service_pb2_grpc

from services.billing import events
from services.billing.api import BillingApi
from services.billing.config import Settings
from services.billing.metrics import HeldCredits, observe_hold
from services.billing.store import SCHEMA, LedgerStore, outbox, utc_now

MIGRATIONS = Path(__file__).with_name("migrations")
SERVICE_NAME = billing_service_pb2.DESCRIPTOR.services_by_name["BillingService"].full_name


def migrate(settings: Settings) -> None:
    upgrade_schema(settings.database_url, MIGRATIONS, SCHEMA)


@asynccontextmanager
async def serve(
    settings: Settings, *, clock: Callable[[], datetime] = utc_now
) -> AsyncIterator[RunningServer]:
    """`clock` is the reserve time budgets count by; tests pass a settable one."""
    prices = settings.price_table()
    async with AsyncExitStack() as stack:
        engine = make_engine(settings.database_url, pool_size=10)
        stack.push_async_callback(engine.dispose)
        # Start-up does not wait for NATS: events wait in the outbox until the relay reaches it.
        nc = await stack.enter_async_context(nats_connection(settings.nats_url, name="vidflow-billing"))
        relay = OutboxRelay(
            engine,
            outbox,
            nc.jetstream(),
            stream=replace(events.STREAM, replicas=settings.nats_stream_replicas),
        )
        stop_relay = asyncio.Event()
        relay_task = asyncio.create_task(relay.run(stop_relay), name="billing-outbox-relay")

        async def stop_relay_task() -> None:
            stop_relay.set()
            await relay_task

        stack.push_async_callback(stop_relay_task)
        api = BillingApi(
            prices, LedgerStore(engine, on_commit=relay.wake, clock=clock, on_hold_changed=observe_hold)
        )
        running = await create_server(
            settings.grpc_listen_address,
            service_names=[SERVICE_NAME],
            register=lambda server: billing_service_pb2_grpc.add_BillingServiceServicer_to_server(
                api, server
            ),
            tracer_name="vidflow.billing",
        )
        stack.push_async_callback(running.stop_gracefully, settings.grpc_drain_seconds)
        held = HeldCredits(engine)
        stack.enter_context(held.observed())
        metrics_host = listen_host(settings.grpc_listen_address)
        await stack.enter_async_context(
            serve_metrics(metrics_host, settings.metrics_port, refresh=[held.refresh])
        )
        yield running
