"""Billing throughput: reserve-then-capture pairs per second against real PostgreSQL, with every
client on ONE account (all serialised by that account's row lock) against every client on its
OWN account, measured in the same run so the ratio compares like with like.

What runs:
- real PostgreSQL and NATS from `devstack.servers` (DATABASE_URL / NATS_URL in the environment
  replace them), one fresh database for the run;
- the billing service as a separate process (`python -m services.billing`, outbox relay to
  JetStream included), so its CPU is its own; the clients are in this process, on one channel;
- optionally `LedgerStore` directly in this process (the same SQL without gRPC), for context.

A pair is Reserve (8 s of sora-2, 80 credits) then Capture of all 8 seconds, for a fresh job id.
Each phase warms up, then counts the pairs that finish inside a fixed window. At the end the
ledger audit must come back clean.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servicekit.db import make_engine
from servicekit.grpcclient import open_channel
from vidflow.billing.v1 import billing_pb2
from vidflow.billing.v1 import billing_service_pb2 as pb
from vidflow.billing.v1.billing_service_pb2_grpc import BillingServiceStub

from bench.harness import LOOPBACK, free_port, fresh_database, run_in_workdir, service_process
from devstack.servers import local_infrastructure
from services.billing import domain
from services.billing.app import migrate
from services.billing.config import Settings
from services.billing.domain import DEFAULT_USD_PER_SECOND, PriceTable, VideoSpec
from services.billing.store import LedgerStore

NAME = "billing_throughput"
SPEC = billing_pb2.VideoSpec(model="sora-2", size="1280x720", seconds=8)
PAIR_CREDITS = 80


@dataclass(frozen=True)
class Options:
    clients: int = 32
    window_seconds: float = 10.0
    warmup_seconds: float = 2.0
    store: bool = True
    keep_logs: bool = False


def parse_options(argv: list[str], environ: Mapping[str, str] = os.environ) -> Options:
    defaults = Options()
    parser = argparse.ArgumentParser(
        prog=f"python -m bench {NAME}",
        description="Reserve+capture pairs per second on one contended account versus many accounts.",
    )

    def env(name: str, default: object) -> str:
        return environ.get(f"BENCH_{name}", str(default))

    parser.add_argument(
        "--clients", type=int, default=int(env("CLIENTS", defaults.clients)), help="concurrent clients"
    )
    parser.add_argument(
        "--window",
        type=float,
        default=float(env("WINDOW_SECONDS", defaults.window_seconds)),
        help="measured seconds per phase",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=float(env("WARMUP_SECONDS", defaults.warmup_seconds)),
        help="unmeasured seconds before each window",
    )
    parser.add_argument("--no-store", action="store_true", help="skip the direct LedgerStore phases")
    parser.add_argument("--keep-logs", action="store_true", help="keep the work directory and its logs")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.window <= 0 or args.warmup < 0:
        parser.error("need --clients >= 1, --window > 0 and --warmup >= 0")
    return Options(args.clients, args.window, args.warmup, not args.no_store, args.keep_logs)


@dataclass(frozen=True)
class PhaseResult:
    path: str  # grpc or store
    accounts: str  # one or many
    clients: int
    pairs: int
    seconds: float
    errors: int
    median_pair_ms: float
    p99_pair_ms: float

    @property
    def pairs_per_second(self) -> float:
        return self.pairs / self.seconds


Pair = Callable[[str, str], Awaitable[None]]  # (account, job) -> reserve then capture


async def measure(path: str, pair: Pair, accounts: list[str], options: Options) -> PhaseResult:
    """Every client runs pairs back to back; only pairs that finish inside the window count."""
    loop = asyncio.get_running_loop()
    start = loop.time() + options.warmup_seconds
    end = start + options.window_seconds
    latencies: list[float] = []
    errors = 0

    async def client(account: str) -> None:
        nonlocal errors
        while (began := loop.time()) < end:
            try:
                await pair(account, f"job_{uuid.uuid4().hex}")
            except Exception:
                errors += 1
                continue
            finished = loop.time()
            if start <= began and finished <= end:
                latencies.append(finished - began)

    await asyncio.gather(*(client(accounts[i % len(accounts)]) for i in range(options.clients)))
    latencies.sort()
    return PhaseResult(
        path=path,
        accounts="one" if len(accounts) == 1 else "many",
        clients=options.clients,
        pairs=len(latencies),
        seconds=options.window_seconds,
        errors=errors,
        median_pair_ms=1000 * statistics.median(latencies) if latencies else 0.0,
        p99_pair_ms=1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else 0.0,
    )


def credits_needed(options: Options, accounts: int) -> int:
    """Enough for every pair at a very generous rate, so no reserve is refused for money."""
    return 2_000 * PAIR_CREDITS * max(1, options.clients // accounts) * int(options.window_seconds + 10)


async def run_grpc(target: str, options: Options) -> list[PhaseResult]:
    channel = open_channel(target, tracer_name="bench.billing")
    stub = BillingServiceStub(channel)

    async def pair(account: str, job: str) -> None:
        await stub.Reserve(pb.ReserveRequest(account_id=account, job_id=job, spec=SPEC))
        await stub.Capture(pb.CaptureRequest(job_id=job, delivered_seconds=SPEC.seconds))

    async def fund(accounts: list[str]) -> None:
        amount = credits_needed(options, len(accounts))
        for account in accounts:
            await stub.Credit(
                pb.CreditRequest(account_id=account, amount=amount, reason="bench", request_id=account)
            )

    try:
        return await run_both(pair, fund, "grpc", options)
    finally:
        await channel.close()


async def run_store(database_url: str, options: Options) -> list[PhaseResult]:
    # The service's own pool size, so both paths get the same connections.
    engine = make_engine(database_url, pool_size=10)
    store = LedgerStore(engine)
    prices = PriceTable(DEFAULT_USD_PER_SECOND, credits_per_dollar=100)
    spec = VideoSpec(SPEC.model, SPEC.size, SPEC.seconds)
    rate = prices.rate(spec.model, spec.size)

    async def pair(account: str, job: str) -> None:
        await store.reserve(account, job, spec, rate)
        await store.capture(job, spec.seconds)

    async def fund(accounts: list[str]) -> None:
        amount = credits_needed(options, len(accounts))
        for account in accounts:
            credit = domain.credit(account, amount, reason="bench", request_id=account)
            await store.credit(credit, request_id=account)

    try:
        return await run_both(pair, fund, "store", options)
    finally:
        await engine.dispose()


async def run_both(
    pair: Pair, fund: Callable[[list[str]], Awaitable[None]], path: str, options: Options
) -> list[PhaseResult]:
    results = []
    for shape in ("one", "many"):
        count = 1 if shape == "one" else options.clients
        accounts = [f"bench_{path}_{shape}_{i}_{uuid.uuid4().hex[:8]}" for i in range(count)]
        await fund(accounts)
        _progress(f"[{path}] {options.clients} clients on {shape} account(s): {options.window_seconds:.0f}s")
        results.append(await measure(path, pair, accounts, options))
    return results


# --- servers --------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def billing_process(database_url: str, nats_url: str, port: int, log_path: Path) -> AsyncIterator[None]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "NATS_URL": nats_url,
        "GRPC_LISTEN_ADDRESS": f"{LOOPBACK}:{port}",
        "LOG_LEVEL": "WARNING",
    }
    async with service_process("billing", env, port, log_path):
        yield


# --- report ---------------------------------------------------------------------------------------


def ratios(phases: list[PhaseResult]) -> dict[str, float]:
    by = {(p.path, p.accounts): p.pairs_per_second for p in phases}
    return {
        path: round(by[(path, "one")] / by[(path, "many")], 3)
        for path in ("grpc", "store")
        if by.get((path, "many"))
    }


def report(options: Options, phases: list[PhaseResult], problems: list[str]) -> str:
    lines = [
        f"{NAME}: reserve+capture pairs, {options.clients} concurrent clients, "
        f"{options.window_seconds:.0f}s window after {options.warmup_seconds:.0f}s warm-up",
        "",
        f"{'path':<6} {'accounts':<9} {'pairs':>7} {'pairs/s':>9} "
        f"{'median ms':>10} {'p99 ms':>8} {'errors':>7}",
    ]
    for p in phases:
        lines.append(
            f"{p.path:<6} {p.accounts:<9} {p.pairs:>7,} {p.pairs_per_second:>9,.1f} "
            f"{p.median_pair_ms:>10.1f} {p.p99_pair_ms:>8.1f} {p.errors:>7}"
        )
    lines.append("")
    for path, ratio in ratios(phases).items():
        lines.append(
            f"{path}: one contended account runs at {ratio:.2f}x the pairs/s of one account per client"
        )
    lines.append(f"ledger audit after the run: {'clean' if not problems else f'{len(problems)} problems'}")
    return "\n".join(lines)


def summary_json(options: Options, phases: list[PhaseResult], problems: list[str]) -> str:
    def phase(p: PhaseResult) -> dict[str, Any]:
        values = {k: round(v, 3) if isinstance(v, float) else v for k, v in p.__dict__.items()}
        values["pairs_per_second"] = round(p.pairs_per_second, 2)
        return values

    return json.dumps(
        {
            "benchmark": NAME,
            "options": {k: v for k, v in options.__dict__.items() if k != "keep_logs"},
            "phases": [phase(p) for p in phases],
            "one_over_many": ratios(phases),
            "audit_problems": len(problems),
        },
        separators=(",", ":"),
    )


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- entry point ----------------------------------------------------------------------------------


async def run(options: Options, workdir: Path) -> tuple[list[PhaseResult], list[str]]:
    with local_infrastructure(workdir / "servers") as infrastructure, fresh_database(infrastructure) as url:
        settings = Settings(database_url=url, nats_url=infrastructure.nats_url)
        await asyncio.to_thread(migrate, settings)
        port = free_port()
        _progress("starting the billing service")
        async with billing_process(url, infrastructure.nats_url, port, workdir / "billing.log"):
            phases = await run_grpc(f"{LOOPBACK}:{port}", options)
        if options.store:
            phases += await run_store(url, options)
        engine = make_engine(url, pool_size=1)
        try:
            problems = await LedgerStore(engine).audit()
        finally:
            await engine.dispose()
        return phases, problems


def main(argv: list[str]) -> int:
    options = parse_options(argv)
    return run_in_workdir(
        NAME,
        lambda workdir: run(options, workdir),
        lambda result: (report(options, *result), summary_json(options, *result)),
        keep_logs=options.keep_logs,
    )
