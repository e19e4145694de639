"""Shared by the service tests: a BillingService on a real port over a fresh database, and helpers.

The `billing` fixture (conftest.py) serves on 127.0.0.1:0 with a settable clock, and gives a
second view of the same database (`store`) for the ledger audit.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from servicekit.db import make_engine
from servicekit.errors import ServiceError
from servicekit.grpcclient import open_channel
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from vidflow.billing.v1 import billing_pb2
from vidflow.billing.v1 import billing_service_pb2 as pb
from vidflow.billing.v1.billing_service_pb2_grpc import BillingServiceStub

from services.billing.app import migrate, serve
from services.billing.config import Settings
from services.billing.store import LedgerStore, transactions


@dataclass
class SettableClock:
    """Real time until a test sets it; budgets count holds by this clock's reserve time."""

    now: datetime | None = None

    def __call__(self) -> datetime:
        return self.now or datetime.now(UTC)


SORA_2_8S = billing_pb2.VideoSpec(model="sora-2", size="1280x720", seconds=8)  # 80 credits
PRO_4S = billing_pb2.VideoSpec(model="sora-2-pro-2025-10-06", size="1792x1024", seconds=4)  # 200 credits


@dataclass
class Billing:
    stub: BillingServiceStub
    store: LedgerStore  # a second view of the same database, for the ledger audit
    engine: AsyncEngine
    nats_url: str
    clock: SettableClock = field(default_factory=SettableClock)

    async def credit(self, account: str, amount: int, request_id: str | None = None) -> billing_pb2.Balance:
        response = await self.stub.Credit(
            pb.CreditRequest(
                account_id=account,
                amount=amount,
                reason="test top-up",
                request_id=request_id or new_id("req"),
            )
        )
        return response.balance

    async def own_balance(self, account: str) -> tuple[int, int]:
        """The account's own credits (GetBalance answers for the paying account)."""
        balance = await self.store.balance(account)
        return balance.available, balance.held

    async def balance(self, account: str) -> tuple[int, int]:
        balance = (await self.stub.GetBalance(pb.GetBalanceRequest(account_id=account))).balance
        return balance.available, balance.held

    async def reserve(
        self, account: str, job: str, spec: billing_pb2.VideoSpec = SORA_2_8S, api_key: str = ""
    ) -> billing_pb2.Hold:
        request = pb.ReserveRequest(account_id=account, job_id=job, spec=spec, api_key_id=api_key)
        return (await self.stub.Reserve(request)).hold

    async def capture(self, job: str, seconds: int) -> billing_pb2.Hold:
        return (await self.stub.Capture(pb.CaptureRequest(job_id=job, delivered_seconds=seconds))).hold

    async def release(self, job: str, reason: str = "failed") -> billing_pb2.Hold:
        return (await self.stub.Release(pb.ReleaseRequest(job_id=job, reason=reason))).hold

    async def transaction_count(self) -> int:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(func.count()).select_from(transactions))).scalar_one()


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


@asynccontextmanager
async def running_billing(fresh_database_url: str, infrastructure: Any) -> AsyncIterator[Billing]:
    settings = Settings(
        database_url=fresh_database_url,
        nats_url=infrastructure.nats_url,
        grpc_listen_address="127.0.0.1:0",
        grpc_drain_seconds=1.0,
    )
    await asyncio.to_thread(migrate, settings)
    engine = make_engine(fresh_database_url, pool_size=2)
    clock = SettableClock()
    async with serve(settings, clock=clock) as running:
        channel = open_channel(f"127.0.0.1:{running.port}", tracer_name="test.billing")
        try:
            yield Billing(
                BillingServiceStub(channel),
                LedgerStore(engine, clock=clock),
                engine,
                infrastructure.nats_url,
                clock,
            )
        finally:
            await channel.close()
    await engine.dispose()


async def refused(call) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        await call
    return caught.value
