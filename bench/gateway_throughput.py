"""Gateway throughput: video creates and retrieves per second through the whole stack, each as a
ratio to a bare aiohttp hello-world measured in the same run.

What runs:
- real PostgreSQL, NATS and S3 from `devstack.servers` (DATABASE_URL / NATS_URL / S3_ENDPOINT in
  the environment replace them), one fresh database for the run;
- the whole stack as `make run` starts it (`devstack.stack.run_stack`): the provider simulator and
  the five services, each its own process (`python -m ...`), on free ports. Changed from `make run`:
  no default rate limit in the gateway (`GATEWAY_DEFAULT_RPM=0`); the simulator takes an hour per
  video and renders one frame a second (see "The worker" below);
- the baseline: a bare aiohttp app answering `GET /` with `web.Response(text="ok")`, its own process,
  with no access log (the gateway has none either);
- in this process: one bench user (a `user`-role API key, credited through billing's `Credit` for
  far more creates than the run can make) and the load generator, an aiohttp client keeping
  `connections` requests in flight on as many keep-alive connections.

Phases, in order: bare `GET /`; `POST /v1/videos` (JSON, a unique prompt each, so moderation and
the credit hold are real work every time); `GET /v1/videos/{id}` over the ids the create phase made.
Each phase warms up, then counts the answers to requests that start and finish inside a fixed window.

The worker runs as in production. The provider deployment keeps its default `max_concurrent` (4):
before the first window the run creates four videos and waits until the simulator has them and has
rendered them, so in every window each new video waits in `queued`, and the provider is never the
bottleneck. What the worker still does per create is real: the create wakes it, and it looks for a
free provider slot. Taking the limit off instead would add a provider call, a render and polling for
every video: the simulator's and the worker's cost, not the API's.

One machine runs everything: client, gateway, services, PostgreSQL and NATS share its cores. The
report gives each process's CPU in each window and the CPU spent per answer, which depends less on
what else the machine is doing than requests per second do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import psutil
from servicekit.db import make_engine
from vidflow.billing.v1 import billing_service_pb2, billing_service_pb2_grpc

from bench.harness import (
    LOOPBACK,
    STARTUP_TIMEOUT_SECONDS,
    SetupError,
    free_port,
    fresh_database,
    python_command,
    run_in_workdir,
)
from devstack.servers import local_infrastructure
from devstack.stack import RunningStack, run_stack
from services.gateway.identity import IdentityStore
from services.jobs.domain.routing import DEFAULT_MAX_CONCURRENT

NAME = "gateway_throughput"
# sora-2 at its default size costs 0.10 USD a second, 100 credits a dollar: 40 credits for 4 seconds.
CREATE_CREDITS = 40
# Credits for this many creates a second over every phase: far more than two cores can make.
FUNDED_CREATES_PER_SECOND = 10_000
REQUEST_TIMEOUT_SECONDS = 30.0
# The simulator's time per video: longer than any run, so the videos it takes stay in flight.
GENERATION_SECONDS = 3600
MACHINE = "machine"
STACK_PROCESSES = ("gateway", "jobs", "moderation", "billing", "renderer", "simulator")

# The baseline, run as `python -c BARE_APP PORT`: what aiohttp does with no work behind it. No
# access log, as the gateway has none.
BARE_APP = """
import sys
from aiohttp import web

async def hello(request):
    return web.Response(text="ok")

app = web.Application()
app.router.add_get("/", hello)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


@dataclass(frozen=True)
class Options:
    connections: int = 32
    duration_seconds: float = 10.0
    warmup_seconds: float = 2.0
    keep_logs: bool = False

    def command(self) -> str:
        """The command line that repeats this run."""
        python = python_command()
        return (
            f"{python} -m bench {NAME} --connections {self.connections} "
            f"--duration {self.duration_seconds:g} --warmup {self.warmup_seconds:g}"
        )


def parse_options(argv: list[str], environ: Mapping[str, str] = os.environ) -> Options:
    defaults = Options()
    parser = argparse.ArgumentParser(
        prog=f"python -m bench {NAME}",
        description="Creates and retrieves per second through the gateway, against a bare aiohttp app.",
    )

    def env(name: str, default: object) -> str:
        return environ.get(f"BENCH_{name}", str(default))

    parser.add_argument(
        "--connections",
        type=int,
        default=int(env("CONNECTIONS", defaults.connections)),
        help="requests kept in flight, one connection each",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=float(env("WINDOW_SECONDS", defaults.duration_seconds)),
        help="measured seconds per phase",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=float(env("WARMUP_SECONDS", defaults.warmup_seconds)),
        help="unmeasured seconds before each window",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the work directory and its logs")
    args = parser.parse_args(argv)
    if args.connections < 1 or args.duration <= 0 or args.warmup < 0:
        parser.error("need --connections >= 1, --duration > 0 and --warmup >= 0")
    return Options(args.connections, args.duration, args.warmup, args.keep_logs)


# --- the load generator ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


# Cumulative CPU seconds of one process (tree).
CpuClock = Callable[[], float]
# One request of a phase: its sequence number -> (method, url, json body or None).
Request = Callable[[int], tuple[str, str, dict[str, Any] | None]]


@dataclass
class PhaseResult:
    name: str
    seconds: float
    latencies_ms: list[float]  # of the 2xx answers in the window, sorted
    refused: Counter[int] = field(default_factory=Counter)  # non-2xx status -> count, in the window
    failed: Counter[str] = field(default_factory=Counter)  # no answer (exception name) -> count
    cpu_percent: dict[str, float] = field(default_factory=dict)  # process -> % of one core
    machine_percent: float = 0.0  # every process on the machine, ours included

    @property
    def ok(self) -> int:
        return len(self.latencies_ms)

    @property
    def per_second(self) -> float:
        return self.ok / self.seconds

    @property
    def cpu_ms_per_answer(self) -> float:
        """CPU of every process in the table (client included) per 2xx answer."""
        if not self.ok:
            return float("nan")
        return 10 * sum(self.cpu_percent.values()) * self.seconds / self.ok

    @property
    def p50_ms(self) -> float:
        return quantile(self.latencies_ms, 0.50)

    @property
    def p99_ms(self) -> float:
        return quantile(self.latencies_ms, 0.99)


def quantile(ordered: list[float], q: float) -> float:
    """Nearest-rank quantile of already sorted values; NaN for none."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def measure(
    name: str,
    http: aiohttp.ClientSession,
    request: Request,
    options: Options,
    cpu_clocks: Mapping[str, CpuClock],
    on_answer: Callable[[Answer], None] = lambda answer: None,
) -> PhaseResult:
    """`connections` clients send requests back to back; only requests that start and finish
    inside the window count. Every answer, warm-up included, goes to `on_answer`."""
    loop = asyncio.get_running_loop()
    start = loop.time() + options.warmup_seconds
    end = start + options.duration_seconds
    result = PhaseResult(name, options.duration_seconds, [])
    sequence = itertools.count()

    async def client() -> None:
        while (began := loop.time()) < end:
            method, url, body = request(next(sequence))
            try:
                async with http.request(method, url, json=body) as response:
                    answer = Answer(response.status, await response.read())
            except (aiohttp.ClientError, TimeoutError) as exc:
                if began >= start:
                    result.failed[type(exc).__name__] += 1
                continue
            finished = loop.time()
            on_answer(answer)
            if start <= began and finished <= end:
                if 200 <= answer.status < 300:
                    result.latencies_ms.append(1000 * (finished - began))
                else:
                    result.refused[answer.status] += 1

    cpu = asyncio.create_task(_cpu_during(loop, start, end, {**cpu_clocks, MACHINE: machine_cpu}))
    await asyncio.gather(*(client() for _ in range(options.connections)))
    result.cpu_percent = await cpu
    result.machine_percent = result.cpu_percent.pop(MACHINE)
    result.latencies_ms.sort()
    return result


async def _cpu_during(
    loop: asyncio.AbstractEventLoop, start: float, end: float, cpu_clocks: Mapping[str, CpuClock]
) -> dict[str, float]:
    """Each clock's CPU between `start` and `end`, in % of one core."""
    await asyncio.sleep(max(0.0, start - loop.time()))  # a measuring window, not a synchronisation
    before = {name: clock() for name, clock in cpu_clocks.items()}
    began = loop.time()
    await asyncio.sleep(max(0.0, end - loop.time()))
    elapsed = loop.time() - began
    return {name: 100 * (clock() - before[name]) / elapsed for name, clock in cpu_clocks.items()}


def tree_cpu(process: psutil.Process) -> CpuClock:
    """CPU seconds of a process with its children (PostgreSQL's backends, the simulator's ffmpeg):
    the live ones, and those it has reaped."""

    def read() -> float:
        total = 0.0
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
            for child in process.children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    times = child.cpu_times()
                    total += times.user + times.system
        return total

    return read


def machine_cpu() -> float:
    """Busy CPU seconds of the whole machine, all cores."""
    times = psutil.cpu_times()
    return float(times.user + times.nice + times.system + times.irq + times.softirq + times.steal)


def own_cpu(process: psutil.Process) -> CpuClock:
    """CPU seconds of the process alone (this one starts the whole stack as its children)."""

    def read() -> float:
        times = process.cpu_times()
        return float(times.user + times.system)

    return read


def listening_process(port: int) -> psutil.Process | None:
    """The local process listening on `port`; None when the server is elsewhere."""
    for connection in psutil.net_connections(kind="tcp"):
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port and connection.pid:
            return psutil.Process(connection.pid)
    return None


# --- the phases -----------------------------------------------------------------------------------


async def fill_provider_slots(
    http: aiohttp.ClientSession, gateway_url: str, simulator: psutil.Process
) -> None:
    """Create as many videos as the provider deployment takes at once and wait until the simulator
    has them and has rendered them: from then on every create waits in `queued`, in every window."""
    ids = []
    for number in range(DEFAULT_MAX_CONCURRENT):
        body = {"prompt": f"A lighthouse in a storm, before the run {number}", "seconds": "4"}
        async with http.post(f"{gateway_url}/v1/videos", json=body) as answer:
            if answer.status != 200:
                raise SetupError(f"creating a video answered {answer.status}: {await answer.text()}")
            ids.append((await answer.json())["id"])
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while True:
        statuses = set()
        for video_id in ids:
            async with http.get(f"{gateway_url}/v1/videos/{video_id}") as answer:
                statuses.add((await answer.json())["status"])
        if statuses == {"in_progress"} and not simulator.children():
            return
        if statuses - {"queued", "in_progress"}:
            raise SetupError(f"the videos given to the provider became {statuses}")
        if time.monotonic() > deadline:
            raise SetupError(f"the provider's videos were {statuses} after {STARTUP_TIMEOUT_SECONDS:.0f}s")
        await asyncio.sleep(0.2)  # a readiness probe, not waiting for an outcome


async def run_phases(
    gateway_url: str,
    bare_url: str,
    api_key: str,
    options: Options,
    simulator: psutil.Process,
    cpu_clocks: Mapping[str, CpuClock],
) -> list[PhaseResult]:
    connector = aiohttp.TCPConnector(limit=options.connections)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    headers = {"Authorization": f"Bearer {api_key}"}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as http:
        _progress(f"giving the provider its {DEFAULT_MAX_CONCURRENT} videos")
        await fill_provider_slots(http, gateway_url, simulator)
        _progress(f"bare aiohttp GET /: {options.warmup_seconds:g}s warm-up, {options.duration_seconds:g}s")
        bare = await measure("bare", http, lambda _: ("GET", f"{bare_url}/", None), options, cpu_clocks)

        run_id = uuid.uuid4().hex[:8]
        created: list[str] = []

        def create(number: int) -> tuple[str, str, dict[str, Any] | None]:
            prompt = f"A calico cat playing a grand piano in a jazz bar, take {number} of run {run_id}"
            return "POST", f"{gateway_url}/v1/videos", {"prompt": prompt, "seconds": "4"}

        def keep_id(answer: Answer) -> None:
            if 200 <= answer.status < 300:
                created.append(json.loads(answer.body)["id"])

        _progress(f"POST /v1/videos: {options.warmup_seconds:g}s warm-up, {options.duration_seconds:g}s")
        creates = await measure("create", http, create, options, cpu_clocks, keep_id)
        if not created:
            raise SetupError(
                f"no create succeeded (answers: {dict(creates.refused)}, {dict(creates.failed)})"
            )

        def retrieve(number: int) -> tuple[str, str, dict[str, Any] | None]:
            return "GET", f"{gateway_url}/v1/videos/{created[number % len(created)]}", None

        _progress(
            f"GET /v1/videos/{{id}} over {len(created):,} videos: "
            f"{options.warmup_seconds:g}s warm-up, {options.duration_seconds:g}s"
        )
        retrieves = await measure("retrieve", http, retrieve, options, cpu_clocks)
    return [bare, creates, retrieves]


# --- servers --------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def bare_app(port: int, log_path: Path) -> AsyncIterator[psutil.Process]:
    """The hello-world baseline in its own process, yielded once it answers."""
    process = _spawn_bare_app(port, log_path)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as http:
            while True:
                if process.poll() is not None:
                    raise SetupError(f"the bare app exited with {process.returncode}; see {log_path}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(f"http://{LOOPBACK}:{port}/") as answer:
                        if answer.status == 200:
                            break
                if time.monotonic() > deadline:
                    raise SetupError("the bare app did not answer in time")
                await asyncio.sleep(0.2)  # a readiness probe, not waiting for an outcome
        yield psutil.Process(process.pid)
    finally:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 10)
        except subprocess.TimeoutExpired:
            process.kill()


def _spawn_bare_app(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-c", BARE_APP, str(port)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stack_environ(infrastructure_environ: Mapping[str, str], database_url: str) -> dict[str, str]:
    """`make run`'s environment on free ports and the fresh database, with the changes above."""
    names = (
        "GATEWAY_PORT",
        "SIMULATOR_PORT",
        "JOBS_GRPC_PORT",
        "MODERATION_GRPC_PORT",
        "BILLING_GRPC_PORT",
        "RENDERER_GRPC_PORT",
    )
    # Held open together, so no two of them can be the same port.
    with contextlib.ExitStack() as held:
        probes = [held.enter_context(socket.socket()) for _ in names]
        for probe in probes:
            probe.bind((LOOPBACK, 0))
        ports = {name: str(probe.getsockname()[1]) for name, probe in zip(names, probes, strict=True)}
    return {
        **os.environ,
        **infrastructure_environ,
        **ports,
        "DATABASE_URL": database_url,
        "METRICS_PORT": "0",
        "GATEWAY_DEFAULT_RPM": "0",
        "SIMULATOR_GENERATION_SECONDS": str(GENERATION_SECONDS),
        # One frame a second: the provider's few renders take half a second, not several.
        "SIMULATOR_FPS": "1",
    }


async def bench_user(database_url: str, billing_port: int, options: Options) -> str:
    """A `user`-role API key with credits for every create the run could make; returns the key."""
    user_id = f"user_bench_{uuid.uuid4().hex[:8]}"
    api_key = f"vf_bench_{uuid.uuid4().hex}"
    engine = make_engine(database_url, pool_size=1)
    try:
        await IdentityStore(engine).ensure_user_with_key(
            user_id=user_id, name="gateway_throughput", role="user", api_key=api_key
        )
    finally:
        await engine.dispose()
    phase_seconds = options.warmup_seconds + options.duration_seconds
    amount = int(CREATE_CREDITS * FUNDED_CREATES_PER_SECOND * (phase_seconds + 10))
    async with grpc.aio.insecure_channel(f"{LOOPBACK}:{billing_port}") as channel:
        await billing_service_pb2_grpc.BillingServiceStub(channel).Credit(
            billing_service_pb2.CreditRequest(
                account_id=user_id, amount=amount, reason="bench", request_id=f"bench-{user_id}"
            ),
            timeout=10,
        )
    return api_key


# --- report ---------------------------------------------------------------------------------------


LABELS = {
    "bare": "bare aiohttp GET / (baseline)",
    "create": "POST /v1/videos",
    "retrieve": "GET /v1/videos/{id}",
}


def ratios(phases: list[PhaseResult]) -> dict[str, float]:
    by = {p.name: p.per_second for p in phases}
    if not by.get("bare"):
        return {}
    return {f"{name}_over_bare": round(by[name] / by["bare"], 4) for name in ("create", "retrieve")}


def report(options: Options, phases: list[PhaseResult]) -> list[str]:
    lines = [
        f"{NAME}: {options.connections} connections, {options.duration_seconds:g}s window per phase "
        f"after {options.warmup_seconds:g}s warm-up",
        f"client, gateway, services, PostgreSQL and NATS share this machine's {os.cpu_count()} cores",
        "",
        f"{'phase':<31} {'answers':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} "
        f"{'errors':>7} {'CPU ms/answer':>14}",
    ]
    for p in phases:
        lines.append(
            f"{LABELS[p.name]:<31} {p.ok:>8,} {p.per_second:>8,.1f} {p.p50_ms:>8.1f} {p.p99_ms:>8.1f} "
            f"{sum(p.refused.values()):>8} {sum(p.failed.values()):>7} {p.cpu_ms_per_answer:>14.2f}"
        )
        if p.refused or p.failed:
            lines.append(f"    not 2xx: {dict(p.refused)}; no answer: {dict(p.failed)}")
    found = ratios(phases)
    lines += [
        "CPU ms/answer: the CPU of every process in the table below, client included, per 2xx answer",
        "",
        f"create / bare: {found.get('create_over_bare', float('nan')):.3f}   "
        f"retrieve / bare: {found.get('retrieve_over_bare', float('nan')):.3f}",
        "",
        "CPU during each window, % of one core ('others': the rest of the machine, not this run):",
        f"{'phase':<10} " + " ".join(f"{name:>10}" for name in [*phases[0].cpu_percent, "others"]),
    ]
    for p in phases:
        others = p.machine_percent - sum(p.cpu_percent.values())
        values = [*p.cpu_percent.values(), others]
        lines.append(f"{p.name:<10} " + " ".join(f"{value:>10.0f}" for value in values))
    lines += ["", f"command: {options.command()}"]
    return lines


def summary_json(options: Options, phases: list[PhaseResult]) -> str:
    return json.dumps(
        {
            "benchmark": NAME,
            "options": {k: v for k, v in options.__dict__.items() if k != "keep_logs"},
            "phases": [
                {
                    "name": p.name,
                    "answers": p.ok,
                    "per_second": round(p.per_second, 2),
                    "p50_ms": round(p.p50_ms, 2),
                    "p99_ms": round(p.p99_ms, 2),
                    "non_2xx": {str(status): count for status, count in p.refused.items()},
                    "errors": dict(p.failed),
                    "cpu_percent": {name: round(value, 1) for name, value in p.cpu_percent.items()},
                    "cpu_ms_per_answer": round(p.cpu_ms_per_answer, 3),
                    "machine_cpu_percent": round(p.machine_percent, 1),
                }
                for p in phases
            ],
            "ratios": ratios(phases),
            "command": options.command(),
        },
        separators=(",", ":"),
    )


def _port_of(url: str) -> int:
    return urllib.parse.urlsplit(url).port or 0


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- entry point ----------------------------------------------------------------------------------


async def run(options: Options, workdir: Path) -> list[PhaseResult]:
    with local_infrastructure(workdir / "servers") as infrastructure, fresh_database(infrastructure) as url:
        environ = stack_environ(infrastructure.as_environ(), url)
        _progress("starting the simulator and the five services as `make run` does")
        # run_stack blocks while it starts and stops the stack; nothing else runs here meanwhile.
        with run_stack(workdir / "stack", environ) as stack:
            api_key = await bench_user(url, int(environ["BILLING_GRPC_PORT"]), options)
            bare_port = free_port()
            async with bare_app(bare_port, workdir / "bare.log") as bare:
                clocks = cpu_clocks(stack, bare, (url, infrastructure.nats_url))
                simulator = psutil.Process(stack.processes["simulator"].pid)
                bare_url = f"http://{LOOPBACK}:{bare_port}"
                phases = await run_phases(stack.gateway_url, bare_url, api_key, options, simulator, clocks)
            if dead := stack.exited():
                raise SetupError(f"{', '.join(dead)} exited during the run; see {stack.log_dir}")
            return phases


def cpu_clocks(stack: RunningStack, bare: psutil.Process, servers: tuple[str, str]) -> dict[str, CpuClock]:
    """What the report shows CPU for: each service, PostgreSQL and NATS when they run here, the
    bare app and this process (the client)."""
    clocks = {name: tree_cpu(psutil.Process(stack.processes[name].pid)) for name in STACK_PROCESSES}
    for name, server_url in zip(("postgres", "nats"), servers, strict=True):
        if (server := listening_process(_port_of(server_url))) is not None:
            clocks[name] = tree_cpu(server)
    return clocks | {"bare": tree_cpu(bare), "client": own_cpu(psutil.Process())}


def main(argv: list[str]) -> int:
    options = parse_options(argv)
    return run_in_workdir(
        NAME,
        lambda workdir: run(options, workdir),
        lambda phases: (*report(options, phases), summary_json(options, phases)),
        keep_logs=options.keep_logs,
    )
