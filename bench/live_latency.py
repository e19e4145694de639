"""Live status latency: with 1,000 WebSocket subscribers on one gateway, the time from a job's
status change to a subscribed client holding the event, against bare NATS subscribers timing the
same events in the same run.

What runs:
- real PostgreSQL and NATS JetStream from `devstack.servers` (DATABASE_URL / NATS_URL in the
  environment replace them), one fresh database;
- the gateway as its own process (`python -m services.gateway`), so its CPU is its own;
- in this process: the status changes, written as the jobs service writes them (an outbox row in
  the transaction that stamps `occur_time`, published to JetStream by servicekit's `OutboxRelay`,
  woken on commit), on the jobs service's subjects and stream; the WebSocket clients (1,000 by
  default: 10 per owner for 100 owners, each subscribed to all of its owner's videos); and the
  baselines.

What is measured, per delivered event: `occur_time` (the status change, stamped inside the writing
transaction) -> the moment a client has the parsed message. The same events are timed by
- a bare core NATS subscriber on `jobs.v1.video.status_changed.>`: the baseline, and the ratio;
- a bare JetStream ordered consumer, which is what the gateway itself subscribes with.
So the ratio shows what the gateway (decode, fan-out, WebSocket write, client parse) adds on top
of the commit -> relay -> NATS path both share. Not measured: the provider -> jobs service hop (a
poll or webhook, then download and rendering: seconds of pipeline work, not live delivery).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy
from servicekit.bus import connect_nats, ensure_stream
from servicekit.db import make_engine
from servicekit.outbox import OutboxRelay, outbox_insert, outbox_table
from sqlalchemy import MetaData, text
from vidflow.jobs.v1 import events_pb2, jobs_pb2

from bench.harness import LOOPBACK, free_port, fresh_database, http_service_process, run_in_workdir
from devstack.servers import local_infrastructure
from services.gateway.app import migrate
from services.gateway.config import Settings
from services.gateway.identity import IdentityStore
from services.jobs.subjects import ALL_STATUS_SUBJECTS, JOBS_STREAM, status_subject

NAME = "live_latency"
OUTBOX_SCHEMA = "bench_live"
CONNECT_CONCURRENCY = 50


@dataclass(frozen=True)
class Options:
    subscribers: int = 1000
    owners: int = 100
    events: int = 600
    warmup: int = 50
    interval_ms: float = 40.0
    keep_logs: bool = False


def parse_options(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(prog=f"python -m bench {NAME}")
    defaults = Options()
    parser.add_argument("--subscribers", type=int, default=defaults.subscribers, help="WebSocket clients")
    parser.add_argument("--owners", type=int, default=defaults.owners, help="users the clients spread over")
    parser.add_argument(
        "--events", type=int, default=defaults.events, help="status changes, warm-up included"
    )
    parser.add_argument("--warmup", type=int, default=defaults.warmup, help="first events not counted")
    parser.add_argument("--interval-ms", type=float, default=defaults.interval_ms, help="between changes")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)
    if args.owners < 1 or args.subscribers < args.owners or args.events <= args.warmup:
        parser.error("need subscribers >= owners >= 1 and events > warmup")
    return Options(args.subscribers, args.owners, args.events, args.warmup, args.interval_ms, args.keep_logs)


@dataclass
class Timings:
    """Receipt times (ns) per (job id, sequence), per path."""

    occurred: dict[tuple[str, int], int] = field(default_factory=dict)
    gateway: list[tuple[tuple[str, int], int]] = field(default_factory=list)
    core_nats: dict[tuple[str, int], int] = field(default_factory=dict)
    jetstream: dict[tuple[str, int], int] = field(default_factory=dict)
    out_of_order: int = 0


@dataclass(frozen=True)
class Result:
    options: Options
    latencies_ms: dict[str, list[float]]
    expected_deliveries: int
    delivered: int
    out_of_order: int
    gateway_cpu_percent: float


# --- the clients ----------------------------------------------------------------------------------


class Client:
    """One WebSocket subscribed to every video of its owner; checks order per video as it goes."""

    def __init__(
        self, ws: aiohttp.ClientWebSocketResponse, timings: Timings, on_delivery: Callable[[], None]
    ):
        self._ws = ws
        self._timings = timings
        self._on_delivery = on_delivery
        self._last: dict[str, int] = {}

    async def read(self) -> None:
        async for message in self._ws:
            received = time.time_ns()
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            body = json.loads(message.data)
            if body.get("type") != "video.status_changed":
                continue
            key = (body["id"], body["sequence"])
            if self._last.get(key[0], 0) + 1 != key[1]:
                self._timings.out_of_order += 1
            self._last[key[0]] = key[1]
            self._timings.gateway.append((key, received))
            self._on_delivery()


async def connect_clients(
    http: aiohttp.ClientSession, url: str, keys: list[str], timings: Timings, on_delivery: Callable[[], None]
) -> list[asyncio.Task[None]]:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def connect(key: str) -> asyncio.Task[None]:
        async with gate:
            ws = await http.ws_connect(url, headers={"Authorization": f"Bearer {key}"}, heartbeat=None)
            await ws.send_json({"type": "subscribe", "videos": "all"})
            answer = await ws.receive_json(timeout=30)
            if answer != {"type": "subscribed", "videos": "all"}:
                raise RuntimeError(f"subscribe answered {answer}")
            return asyncio.create_task(Client(ws, timings, on_delivery).read())

    return list(await asyncio.gather(*(connect(key) for key in keys)))


# --- the status changes ---------------------------------------------------------------------------


class StatusWriter:
    """Writes status changes as the jobs service does: outbox row + occur_time in one transaction,
    then wakes the relay."""

    def __init__(self, engine: Any, relay: OutboxRelay, table: Any, timings: Timings) -> None:
        self._engine = engine
        self._relay = relay
        self._table = table
        self._timings = timings

    async def change(self, owner: str, job_id: str, sequence: int) -> None:
        job = jobs_pb2.Job(
            id=job_id,
            owner_id=owner,
            model="sora-2",
            prompt="A calico cat playing a piano on stage",
            seconds=8,
            size="1280x720",
            status=jobs_pb2.JOB_STATUS_IN_PROGRESS,
            stage=jobs_pb2.JOB_STAGE_GENERATING,
            progress=sequence % 100,
        )
        job.create_time.GetCurrentTime()
        event = events_pb2.VideoStatusChangedEvent(event_id=uuid.uuid4().hex, sequence=sequence, job=job)
        async with self._engine.begin() as conn:
            occurred = time.time_ns()
            stamp = Timestamp()
            stamp.FromNanoseconds(occurred)
            event.occur_time.CopyFrom(stamp)
            await conn.execute(
                outbox_insert(
                    self._table,
                    subject=status_subject(owner, job_id),
                    payload=event.SerializeToString(),
                    msg_id=f"{job_id}:{sequence}",
                )
            )
        self._timings.occurred[(job_id, sequence)] = occurred
        self._relay.wake()


# --- the run --------------------------------------------------------------------------------------


def _key_of(message: Msg) -> tuple[str, int]:
    job_id, _, sequence = (message.headers or {}).get("Nats-Msg-Id", ":0").rpartition(":")
    return job_id, int(sequence)


async def run(options: Options, workdir: Path) -> Result:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * options.subscribers + 256)), hard))
    with local_infrastructure(workdir / "servers") as infrastructure, fresh_database(infrastructure) as url:
        await asyncio.to_thread(migrate, Settings(database_url=url))
        engine = make_engine(url, pool_size=4)
        try:
            owners, keys = await _users(engine, options)
            table = outbox_table(MetaData(schema=OUTBOX_SCHEMA))
            async with engine.begin() as conn:
                await conn.execute(text(f"CREATE SCHEMA {OUTBOX_SCHEMA}"))
                await conn.run_sync(table.metadata.create_all)
            nc = await connect_nats(infrastructure.nats_url, name="bench-live")
            try:
                js = nc.jetstream()
                await ensure_stream(js, JOBS_STREAM)
                port = free_port()
                env = {
                    **os.environ,
                    "DATABASE_URL": url,
                    "NATS_URL": infrastructure.nats_url,
                    "GATEWAY_HOST": LOOPBACK,
                    "GATEWAY_PORT": str(port),
                    "JOBS_ADDRESS": f"{LOOPBACK}:9",  # "all" subscriptions ask the jobs service nothing
                    "LOG_LEVEL": "WARNING",
                }
                _progress("starting the gateway")
                health = f"http://{LOOPBACK}:{port}/healthz"
                async with http_service_process("gateway", env, health, workdir / "gateway.log") as gateway:
                    return await _measure(options, engine, js, nc, table, owners, keys, port, gateway)
            finally:
                await nc.close()
        finally:
            await engine.dispose()


async def _users(engine: Any, options: Options) -> tuple[list[str], list[str]]:
    """`owners` users, and one key per subscriber: subscriber i belongs to owner i % owners."""
    identity = IdentityStore(engine)
    owners, owner_keys = [], []
    for index in range(options.owners):
        owner = f"user_bench_{index}_{uuid.uuid4().hex[:6]}"
        key = f"vf_bench_{uuid.uuid4().hex}"
        await identity.ensure_user_with_key(user_id=owner, name=owner, role="user", api_key=key)
        owners.append(owner)
        owner_keys.append(key)
    return owners, [owner_keys[index % options.owners] for index in range(options.subscribers)]


async def _measure(
    options: Options,
    engine: Any,
    js: Any,
    nc: Any,
    table: Any,
    owners: list[str],
    keys: list[str],
    port: int,
    gateway: psutil.Process,
) -> Result:
    timings = Timings()
    clients_of = [len(range(index, options.subscribers, options.owners)) for index in range(options.owners)]
    # Event i goes to owner i % owners, and so to every client of that owner.
    expected = sum(clients_of[index % options.owners] for index in range(options.events))
    all_in = asyncio.Event()
    delivered = 0

    def on_delivery() -> None:
        nonlocal delivered
        delivered += 1
        if delivered >= expected:
            all_in.set()

    async def on_core(message: Msg) -> None:
        timings.core_nats[_key_of(message)] = time.time_ns()

    async def on_jetstream(message: Msg) -> None:
        timings.jetstream[_key_of(message)] = time.time_ns()

    await nc.subscribe(ALL_STATUS_SUBJECTS, cb=on_core)
    await js.subscribe(
        ALL_STATUS_SUBJECTS, stream=JOBS_STREAM.name, cb=on_jetstream, ordered_consumer=True,
        deliver_policy=DeliverPolicy.NEW,
    )  # fmt: skip
    relay = OutboxRelay(engine, table, js)
    stop = asyncio.Event()
    relaying = asyncio.create_task(relay.run(stop))
    writer = StatusWriter(engine, relay, table, timings)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        _progress(f"connecting {options.subscribers} WebSocket clients over {options.owners} owners")
        readers = await _connect_with_retries(
            http, f"http://{LOOPBACK}:{port}/v1/ws", keys, timings, on_delivery
        )
        # This process is the measuring instrument: keep its own full garbage collections (which
        # would walk 1,000 clients' objects) out of the receipt times.
        gc.collect()
        gc.freeze()
        _progress(f"{options.events} status changes, one every {options.interval_ms:.0f} ms")
        gateway.cpu_percent()  # starts the CPU window
        jobs = {owner: [f"video_{uuid.uuid4().hex}" for _ in range(3)] for owner in owners}
        sequences: dict[str, int] = {}
        started = time.monotonic()
        for index in range(options.events):
            owner = owners[index % options.owners]
            job_id = jobs[owner][(index // options.owners) % 3]
            sequences[job_id] = sequences.get(job_id, 0) + 1
            await writer.change(owner, job_id, sequences[job_id])
            # Paced from the start, so a slow write does not stretch every later interval.
            pause = started + (index + 1) * options.interval_ms / 1000 - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_in.wait(), timeout=15)
        cpu = gateway.cpu_percent()
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    stop.set()
    await relaying
    counted = {key for key in timings.occurred if key in _counted_events(timings, options)}
    return Result(
        options=options,
        latencies_ms={
            "gateway": _latencies(((key, at) for key, at in timings.gateway if key in counted), timings),
            "core_nats": _latencies(
                ((key, at) for key, at in timings.core_nats.items() if key in counted), timings
            ),
            "jetstream": _latencies(
                ((key, at) for key, at in timings.jetstream.items() if key in counted), timings
            ),
        },
        expected_deliveries=expected,
        delivered=delivered,
        out_of_order=timings.out_of_order,
        gateway_cpu_percent=cpu,
    )


async def _connect_with_retries(
    http: aiohttp.ClientSession, url: str, keys: list[str], timings: Timings, on_delivery: Callable[[], None]
) -> list[asyncio.Task[None]]:
    """The gateway answers 503 on /v1/ws until its NATS subscription is up."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return await connect_clients(http, url, keys, timings, on_delivery)
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status != 503 or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)  # a readiness probe, not waiting for an outcome


def _counted_events(timings: Timings, options: Options) -> set[tuple[str, int]]:
    """Every event but the first `warmup` written."""
    ordered = sorted(timings.occurred, key=timings.occurred.__getitem__)
    return set(ordered[options.warmup :])


def _latencies(receipts: Any, timings: Timings) -> list[float]:
    return sorted((at - timings.occurred[key]) / 1e6 for key, at in receipts)


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


# --- report ---------------------------------------------------------------------------------------


def report(result: Result) -> list[str]:
    options = result.options
    lines = [
        f"{NAME}: {options.subscribers} WebSocket subscribers on one gateway ({options.owners} owners, "
        f"{options.subscribers // options.owners} clients each); {options.events - options.warmup} status "
        f"changes counted after {options.warmup} warm-up, one every {options.interval_ms:.0f} ms",
        "latency from occur_time (the status change, stamped in its transaction) to receipt",
        "",
        f"{'path':<34} {'receipts':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}",
    ]
    labels = {
        "gateway": "gateway -> WebSocket client",
        "core_nats": "bare core NATS subscriber (baseline)",
        "jetstream": "bare JetStream ordered consumer",
    }
    for path, values in result.latencies_ms.items():
        lines.append(
            f"{labels[path]:<34} {len(values):>9,} {_quantile(values, 0.5):>8.2f} "
            f"{_quantile(values, 0.9):>8.2f} {_quantile(values, 0.99):>8.2f} "
            f"{(values[-1] if values else float('nan')):>8.2f}"
        )
    ratios = _ratios(result)
    lines += [
        "",
        f"gateway / bare NATS: p50 {ratios['p50']:.2f}x, p99 {ratios['p99']:.2f}x "
        f"(the gateway adds {ratios['p50_added_ms']:.2f} ms at p50)",
        f"delivered {result.delivered:,} of {result.expected_deliveries:,} expected, "
        f"{result.out_of_order} out of order or duplicated; "
        f"gateway CPU {result.gateway_cpu_percent:.0f}% of one core",
    ]
    return lines


def _ratios(result: Result) -> dict[str, float]:
    gateway, bare = result.latencies_ms["gateway"], result.latencies_ms["core_nats"]
    return {
        "p50": _quantile(gateway, 0.5) / _quantile(bare, 0.5),
        "p99": _quantile(gateway, 0.99) / _quantile(bare, 0.99),
        "p50_added_ms": _quantile(gateway, 0.5) - _quantile(bare, 0.5),
    }


def summary_json(result: Result) -> str:
    return json.dumps(
        {
            "benchmark": NAME,
            "options": {k: v for k, v in result.options.__dict__.items() if k != "keep_logs"},
            "latency_ms": {
                path: {
                    "receipts": len(values),
                    "p50": round(_quantile(values, 0.5), 3),
                    "p99": round(_quantile(values, 0.99), 3),
                    "mean": round(statistics.fmean(values), 3) if values else None,
                }
                for path, values in result.latencies_ms.items()
            },
            "gateway_over_bare_nats": {k: round(v, 3) for k, v in _ratios(result).items()},
            "delivered": result.delivered,
            "expected": result.expected_deliveries,
            "out_of_order": result.out_of_order,
            "gateway_cpu_percent": round(result.gateway_cpu_percent, 1),
        },
        separators=(",", ":"),
    )


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    options = parse_options(argv)
    return run_in_workdir(
        NAME,
        lambda workdir: run(options, workdir),
        lambda result: (*report(result), summary_json(result)),
        keep_logs=options.keep_logs,
    )
