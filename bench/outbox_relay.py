"""Outbox relay cost of owning its stream (noticing that NATS came back without its data, to make
the stream again and refill it): a relay given its `StreamSpec` against one that trusts its stream,
measured in the same run on the same servers. A lookup per batch once cost 1.22x at p50 for
one-row batches; the relay now looks only at start-up, after a failed publish, and when idle.

What runs: real PostgreSQL and NATS JetStream from `devstack.servers` (DATABASE_URL / NATS_URL in
the environment replace them), one fresh database, two outbox tables and two streams. Rounds
alternate between the two relays so the machine's noise falls on both alike. Two shapes:
- one row per batch, as at a low event rate (each event committed and relayed on its own);
- full batches of 200 rows, as under load, per row.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from servicekit.bus import StreamSpec, connect_nats, ensure_stream
from servicekit.db import make_engine
from servicekit.outbox import OutboxRelay, outbox_insert, outbox_table
from sqlalchemy import MetaData, Table, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.harness import fresh_database, python_command, run_in_workdir
from devstack.servers import local_infrastructure

NAME = "outbox_relay"
FULL_BATCH = 200


@dataclass(frozen=True)
class Options:
    rounds: int = 10
    singles_per_round: int = 100
    batches_per_round: int = 3
    keep_logs: bool = False


@dataclass
class Timings:
    single_ms: list[float]
    per_row_in_batch_ms: list[float]


def parse_options(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(prog=f"python -m bench {NAME}")
    parser.add_argument("--rounds", type=int, default=Options.rounds)
    parser.add_argument("--singles-per-round", type=int, default=Options.singles_per_round)
    parser.add_argument("--batches-per-round", type=int, default=Options.batches_per_round)
    parser.add_argument("--keep-logs", action="store_true")
    parsed = parser.parse_args(list(argv))
    return Options(parsed.rounds, parsed.singles_per_round, parsed.batches_per_round, parsed.keep_logs)


class Lane:
    """One outbox table, its stream and its relay."""

    def __init__(self, engine: AsyncEngine, relay: OutboxRelay, table: Table, subject: str) -> None:
        self.engine = engine
        self.relay = relay
        self._table = table
        self._subject = subject
        self.timings = Timings([], [])

    async def insert(self, count: int) -> None:
        async with self.engine.begin() as conn:
            for _ in range(count):
                row = outbox_insert(
                    self._table, subject=self._subject, payload=b"x" * 300, msg_id=uuid.uuid4().hex
                )
                await conn.execute(row)

    async def one_row(self) -> None:
        await self.insert(1)
        started = time.perf_counter()
        published = await self.relay.publish_pending()
        self.timings.single_ms.append((time.perf_counter() - started) * 1000)
        assert published == 1

    async def full_batch(self) -> None:
        await self.insert(FULL_BATCH)
        started = time.perf_counter()
        published = await self.relay.publish_pending()
        self.timings.per_row_in_batch_ms.append((time.perf_counter() - started) * 1000 / FULL_BATCH)
        assert published == FULL_BATCH


async def run(options: Options, workdir: Path) -> tuple[Timings, Timings]:
    with local_infrastructure(workdir / "servers") as infrastructure, fresh_database(infrastructure) as url:
        engine = make_engine(url, pool_size=2)
        nc = await connect_nats(infrastructure.nats_url, name="bench-outbox-relay")
        js = nc.jetstream()
        lanes: list[Lane] = []
        try:
            for checked in (False, True):
                schema = f"bench_{uuid.uuid4().hex[:8]}"
                metadata = MetaData(schema=schema)
                table = outbox_table(metadata)
                async with engine.begin() as conn:
                    await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
                    await conn.run_sync(metadata.create_all)
                name = f"BENCH_{uuid.uuid4().hex[:8].upper()}"
                spec = StreamSpec(name, (f"{name}.>",))
                await ensure_stream(js, spec)
                relay = OutboxRelay(engine, table, js, stream=spec if checked else None)
                lanes.append(Lane(engine, relay, table, f"{name}.event"))
            trusting, checking = lanes
            for lane in lanes:  # warm up: connections, prepared statements, the first stream lookup
                for _ in range(20):
                    await lane.one_row()
                lane.timings = Timings([], [])
            for round_number in range(options.rounds):
                order = (trusting, checking) if round_number % 2 == 0 else (checking, trusting)
                for lane in order:
                    for _ in range(options.singles_per_round):
                        await lane.one_row()
                    for _ in range(options.batches_per_round):
                        await lane.full_batch()
            return trusting.timings, checking.timings
        finally:
            await nc.close()
            await engine.dispose()


def _quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q * 100) - 1]


def report(options: Options, trusting: Timings, checking: Timings) -> list[str]:
    lines = [
        f"{NAME}: {options.rounds} alternating rounds; a relay that owns its stream against one that "
        "trusts it, same servers, same run",
        f"{'shape':<28}{'trusting p50':>14}{'checking p50':>14}{'ratio p50':>11}{'ratio p90':>11}",
    ]
    for label, base, measured in (
        ("one row per batch (ms)", trusting.single_ms, checking.single_ms),
        (
            f"per row, {FULL_BATCH}-row batches (ms)",
            trusting.per_row_in_batch_ms,
            checking.per_row_in_batch_ms,
        ),
    ):
        p50_base, p50 = statistics.median(base), statistics.median(measured)
        p90_base, p90 = _quantile(base, 0.9), _quantile(measured, 0.9)
        lines.append(
            f"{label:<28}{p50_base:>14.3f}{p50:>14.3f}{p50 / p50_base:>11.2f}{p90 / p90_base:>11.2f}"
        )
    lines.append(f"repeat: {python_command()} -m bench {NAME}")
    return lines


def main(argv: list[str]) -> int:
    options = parse_options(argv)
    return run_in_workdir(
        NAME,
        lambda workdir: run(options, workdir),
        lambda result: report(options, *result),
        keep_logs=options.keep_logs,
    )
