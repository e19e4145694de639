"""Tracking 10,000 in-flight jobs against the simulator: upstream requests per minute against the
deployment's budget, the jobs service's CPU, and polls spent on videos whose webhook had arrived.

What runs:
- real PostgreSQL, NATS and S3 from `devstack.servers` (DATABASE_URL / NATS_URL / S3_ENDPOINT in
  the environment replace them), a fresh database per phase;
- the simulator in this process, with a placeholder renderer (three tiny files per video, no
  ffmpeg) and an hour-long generation time, so videos stay in flight; a chosen fraction is
  backdated so it completes during the window and its `video.completed` webhook fires;
- the gateway's real webhook intake (`services.gateway.provider_webhooks`: signature check, then
  `JobsService.RecordProviderEvent` over gRPC) on its own small aiohttp app in this process;
- the jobs service as a separate process (`python -m services.jobs`), so its CPU time is its own.

The jobs rows are inserted directly in stage `generating` (a fixture, not product code). The
pipeline stops after the provider: renderer and billing addresses point at a closed port, which
costs no provider requests; downloads of completed videos do use the provider budget.

Two phases share the infrastructure: "webhooks" (the deployment has webhooks on) and a shorter
"polling only" baseline with the same budget, for context.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import re
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import psycopg
from aiohttp import web
from servicekit.db import upgrade_schema
from servicekit.grpcclient import open_channel
from servicekit.webhooks import new_secret
from vidflow.jobs.v1 import jobs_service_pb2_grpc

from bench.harness import (
    LOOPBACK,
    STARTUP_TIMEOUT_SECONDS,
    SetupError,
    free_port,
    fresh_database,
    run_in_workdir,
    service_process,
)
from devstack.servers import Infrastructure, S3Endpoint, local_infrastructure, s3_client
from services.gateway.http_errors import Handler, errors_middleware
from services.gateway.keys import JOBS_STUB, PROVIDER_WEBHOOK_SECRETS
from services.gateway.provider_webhooks import routes as provider_webhook_routes
from services.jobs import app as jobs_app
from services.jobs.budget import burst_size
from services.jobs.domain.routing import Deployment
from simulator.app import STORE_KEY, make_app
from simulator.config import Settings as SimulatorSettings
from simulator.domain import Status, Video
from simulator.domain import VideoSpec as SimulatorSpec
from simulator.media import SPRITESHEET_FILE, THUMBNAIL_FILE, VIDEO_FILE

log = logging.getLogger("bench.provider_tracking")

NAME = "provider_tracking"
DEPLOYMENT = "default"
MODEL = "sora-2"
SLIDING_WINDOW_SECONDS = 60.0
CPU_GOAL_PERCENT = 20.0
# Seeded jobs become due over this many seconds after the rows are inserted.
DUE_SPREAD_SECONDS = 5.0
# Completions start this long after the videos are created, so every job row exists by then.
FIRST_COMPLETION_SECONDS = 15.0
_RETRIEVE = re.compile(r"^/v1/videos/(video_[0-9a-f]+)$")
_CONTENT = re.compile(r"^/v1/videos/(video_[0-9a-f]+)/content$")


# --- options ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    jobs: int = 10_000
    window_seconds: float = 75.0
    baseline_seconds: float = 40.0
    requests_per_minute: int = 600
    completing_fraction: float = 0.15
    worker_concurrency: int = 8
    keep_logs: bool = False


def parse_options(argv: list[str], environ: Mapping[str, str] = os.environ) -> Options:
    defaults = Options()
    parser = argparse.ArgumentParser(
        prog=f"python -m bench {NAME}",
        description="Track many in-flight jobs against the simulator and report budget, CPU and polls.",
    )

    def env(name: str, default: object) -> str:
        return environ.get(f"BENCH_{name}", str(default))

    parser.add_argument("--jobs", type=int, default=int(env("JOBS", defaults.jobs)), help="in-flight jobs")
    parser.add_argument(
        "--window",
        type=float,
        default=float(env("WINDOW_SECONDS", defaults.window_seconds)),
        help="measurement window with webhooks, in seconds (over 60 for a sliding-minute figure)",
    )
    parser.add_argument(
        "--baseline",
        type=float,
        default=float(env("BASELINE_SECONDS", defaults.baseline_seconds)),
        help="window of the polling-only baseline, in seconds; 0 skips it",
    )
    parser.add_argument(
        "--budget",
        type=int,
        default=int(env("REQUESTS_PER_MINUTE", defaults.requests_per_minute)),
        help="the deployment's requests_per_minute",
    )
    parser.add_argument(
        "--completing",
        type=float,
        default=float(env("COMPLETING_FRACTION", defaults.completing_fraction)),
        help="fraction of the videos that complete upstream during the window",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=int(env("WORKER_CONCURRENCY", defaults.worker_concurrency)),
        help="JOBS_WORKER_CONCURRENCY of the jobs service",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the work directory and its logs")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.window <= FIRST_COMPLETION_SECONDS or args.budget < 1:
        parser.error(f"need --jobs >= 1, --window > {FIRST_COMPLETION_SECONDS:.0f} and --budget >= 1")
    if not 0 <= args.completing <= 1 or args.baseline < 0 or args.concurrency < 1:
        parser.error("need 0 <= --completing <= 1, --baseline >= 0 and --concurrency >= 1")
    return Options(
        jobs=args.jobs,
        window_seconds=args.window,
        baseline_seconds=args.baseline,
        requests_per_minute=args.budget,
        completing_fraction=args.completing,
        worker_concurrency=args.concurrency,
        keep_logs=args.keep_logs,
    )


# --- what the simulator and the intake saw --------------------------------------------------------


@dataclass(frozen=True)
class UpstreamRequest:
    at: float  # wall clock when the simulator received it
    route: str  # create, list, retrieve, download, other
    video_id: str | None
    status: int


@dataclass
class RequestLog:
    requests: list[UpstreamRequest] = field(default_factory=list)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        at = time.time()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            route, video_id = _classify(request.method, request.path)
            self.requests.append(UpstreamRequest(at, route, video_id, status))


def _classify(method: str, path: str) -> tuple[str, str | None]:
    if method == "GET" and (match := _RETRIEVE.match(path)):
        return "retrieve", match.group(1)
    if method == "GET" and (match := _CONTENT.match(path)):
        return "download", match.group(1)
    if path == "/v1/videos":
        return ("create" if method == "POST" else "list"), None
    return "other", None


@dataclass
class IntakeLog:
    outcomes: Counter[str] = field(default_factory=Counter)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        outcome = f"HTTP {response.status}"
        if response.status == 200 and isinstance(response, web.Response) and isinstance(response.body, bytes):
            with contextlib.suppress(ValueError):
                outcome = str(json.loads(response.body).get("outcome", outcome))
        self.outcomes[outcome] += 1
        return response


class PlaceholderRenderer:
    """Three tiny files instead of an ffmpeg run, so 10,000 videos cost milliseconds. The jobs
    service may download them; it never gets further, as the renderer address leads nowhere."""

    async def render(self, spec: SimulatorSpec, directory: Path) -> None:
        await asyncio.to_thread(self._write, directory)

    @staticmethod
    def _write(directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name in (VIDEO_FILE, THUMBNAIL_FILE, SPRITESHEET_FILE):
            (directory / name).write_bytes(b"vidflow bench placeholder\n")


# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhaseResult:
    name: str
    webhooks: bool
    jobs: int
    window_seconds: float
    requests_by_route: dict[str, int]
    non_2xx: int
    requests_per_minute: float
    max_in_sliding_minute: int | None
    jobs_cpu_percent: float
    postgres_cpu_percent: float | None
    bench_cpu_percent: float
    polls: int
    polled_videos: int
    polls_per_job_per_minute: float
    completed_upstream: int
    noticed: int
    median_notice_seconds: float | None
    webhooks_recorded: int
    intake_outcomes: dict[str, int]
    polls_after_webhook: int
    # Seconds from the webhook's arrival to such polls: the 20 shortest, and the longest.
    polls_after_webhook_delays: list[float]
    polls_after_webhook_max_delay: float | None
    polls_after_completion: int
    stages: dict[str, int]

    @property
    def requests(self) -> int:
        return sum(self.requests_by_route.values())


def max_in_window(times: list[float], width: float) -> int:
    """Most events in any half-open interval [t, t + width)."""
    ordered = sorted(times)
    best = 0
    start = 0
    for end, at in enumerate(ordered):
        while ordered[start] <= at - width:
            start += 1
        best = max(best, end - start + 1)
    return best


def polls_after(retrieves: list[UpstreamRequest], since: Mapping[str, float]) -> list[float]:
    """For each retrieve of a video made after the given time for that video (its webhook or its
    completion), how many seconds after; shortest first."""
    return sorted(
        r.at - since[r.video_id]
        for r in retrieves
        if r.video_id is not None and r.video_id in since and r.at > since[r.video_id]
    )


def first_poll_after(retrieves: list[UpstreamRequest], since: Mapping[str, float]) -> dict[str, float]:
    found: dict[str, float] = {}
    for r in sorted(retrieves, key=lambda r: r.at):
        video = r.video_id
        if video is not None and video in since and video not in found and r.at >= since[video]:
            found[video] = r.at
    return found


# --- processes and servers ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running_simulator(
    settings: SimulatorSettings, requests: RequestLog
) -> AsyncIterator[web.AppRunner]:
    """`simulator.app.start_server`, with the request log as the outermost middleware."""
    app = make_app(settings, renderer=PlaceholderRenderer())
    app.middlewares.insert(0, requests.middleware)
    runner = web.AppRunner(app, shutdown_timeout=5.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, LOOPBACK, 0).start()
        yield runner
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def running_intake(
    port: int, secret: str, jobs_address: str, outcomes: IntakeLog
) -> AsyncIterator[None]:
    """The gateway's provider-webhook routes and error middleware, calling the jobs process."""
    channel = open_channel(jobs_address, tracer_name="vidflow.bench")
    app = web.Application(middlewares=[errors_middleware, outcomes.middleware])
    app[PROVIDER_WEBHOOK_SECRETS] = {DEPLOYMENT: secret}
    app[JOBS_STUB] = jobs_service_pb2_grpc.JobsServiceStub(channel)
    app.router.add_routes(provider_webhook_routes)
    runner = web.AppRunner(app, shutdown_timeout=5.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, LOOPBACK, port).start()
        yield
    finally:
        await runner.cleanup()
        await channel.close()


def jobs_environment(
    infrastructure: Infrastructure,
    *,
    database_url: str,
    bucket: str,
    simulator_url: str,
    api_key: str,
    webhooks: bool,
    options: Options,
    grpc_port: int,
    nowhere: str,
) -> dict[str, str]:
    registry = {
        "deployments": {
            DEPLOYMENT: {
                "base_url": simulator_url,
                "api_key_env": "PROVIDER_API_KEY",
                "requests_per_minute": options.requests_per_minute,
                "max_concurrent": options.jobs,
                "webhooks": webhooks,
            }
        },
        "routes": {MODEL: [DEPLOYMENT]},
    }
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PROVIDER_", "JOBS_", "OTEL_", "BENCH_")) and key != "GRPC_LISTEN_ADDRESS"
    }
    return {
        **inherited,
        **infrastructure.as_environ(),
        "DATABASE_URL": database_url,
        "S3_BUCKET": bucket,
        "PROVIDER_REGISTRY": json.dumps(registry),
        "PROVIDER_API_KEY": api_key,
        "JOBS_WORKER_CONCURRENCY": str(options.worker_concurrency),
        "GRPC_LISTEN_ADDRESS": f"{LOOPBACK}:{grpc_port}",
        "GRPC_DRAIN_SECONDS": "1",
        "MODERATION_ADDRESS": nowhere,
        "BILLING_ADDRESS": nowhere,
        "RENDERER_ADDRESS": nowhere,
    }


@contextlib.asynccontextmanager
async def jobs_process(
    env: Mapping[str, str], log_path: Path, grpc_port: int
) -> AsyncIterator[psutil.Process]:
    async with service_process("jobs", env, grpc_port, log_path) as process:
        yield process


class CpuMeter:
    """CPU seconds of the jobs process, PostgreSQL servers we started, and this process."""

    def __init__(self, jobs: psutil.Process) -> None:
        self._jobs = jobs
        self._me = psutil.Process()

    def sample(self) -> tuple[float, float, dict[int, float], float]:
        jobs = self._jobs.cpu_times()
        me = self._me.cpu_times()
        return time.monotonic(), jobs.user + jobs.system, self._postgres(), me.user + me.system

    def _postgres(self) -> dict[int, float]:
        seconds: dict[int, float] = {}
        for child in self._me.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if child.pid != self._jobs.pid and "postgres" in child.name():
                    times = child.cpu_times()
                    seconds[child.pid] = times.user + times.system
        return seconds


# --- seeding ------------------------------------------------------------------------------------


def create_videos(runner: web.AppRunner, options: Options, generation_seconds: float) -> list[Video]:
    """Straight into the simulator's store. A fraction is backdated so that it completes during the
    window; the rest stay in progress for the whole run."""
    store = runner.app[STORE_KEY]
    rng = random.Random(1)
    completing = round(options.jobs * options.completing_fraction)
    now = time.time()
    videos = []
    for index in range(options.jobs):
        video = store.create(
            SimulatorSpec(prompt=f"bench video {index}", model=MODEL), owner="bench", idempotency_key=None
        )
        if index < completing:
            # The render task reads created_at once rendering is done, so this sets its due time.
            done_in = rng.uniform(FIRST_COMPLETION_SECONDS, options.window_seconds - 5.0)
            video.created_at = now + done_in - generation_seconds
        videos.append(video)
    rng.shuffle(videos)  # completing videos are not the first or last to be polled
    return videos


async def wait_rendered(videos: list[Video]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while any(video.rendered_at is None and video.failure is None for video in videos):
        if time.monotonic() > deadline:
            raise SetupError("the simulator did not finish the placeholder renders")
        await asyncio.sleep(0.1)  # waiting for background renders that signal nothing


async def insert_jobs(database_url: str, videos: list[Video]) -> float:
    """Bulk-insert one `generating` job per upstream video; returns when the rows are committed."""
    columns = (
        "id, owner_id, model, prompt, seconds, size, stage, progress, upstream_id, deployment, "
        "upstream_model, next_attempt_at, created_at, updated_at, queued_at, submitted_at, last_progress_at"
    )
    now = datetime.now(UTC)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        async with conn.cursor() as cursor, cursor.copy(f"COPY jobs.jobs ({columns}) FROM STDIN") as copy:
            for index, video in enumerate(videos):
                due = now + timedelta(seconds=DUE_SPREAD_SECONDS * index / len(videos))
                await copy.write_row(
                    (
                        f"video_{uuid.uuid4().hex}",
                        "user_bench",
                        MODEL,
                        video.spec.prompt,
                        int(video.spec.seconds),
                        video.spec.size,
                        "generating",
                        0,
                        video.id,
                        DEPLOYMENT,
                        MODEL,
                        due,
                        now,
                        now,
                        now,
                        now,
                        now,
                    )
                )
        await conn.commit()
    return time.time()


async def read_outcome(database_url: str) -> tuple[dict[str, float], dict[str, int]]:
    """Webhook arrival per upstream id (when the intake recorded it) and jobs per stage."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        events = await (
            await conn.execute(
                "SELECT upstream_id, min(extract(epoch FROM received_at))::float8 "
                "FROM jobs.provider_events GROUP BY upstream_id"
            )
        ).fetchall()
        stages = await (await conn.execute("SELECT stage, count(*) FROM jobs.jobs GROUP BY stage")).fetchall()
    return {row[0]: float(row[1]) for row in events}, {row[0]: int(row[1]) for row in stages}


def remove_bucket(infrastructure: Infrastructure, bucket: str) -> None:
    client = s3_client(
        S3Endpoint(
            infrastructure.s3_endpoint,
            infrastructure.s3_access_key,
            infrastructure.s3_secret_key,
            infrastructure.s3_region,
        )
    )
    with contextlib.suppress(Exception):
        if client.bucket_exists(bucket):
            for item in client.list_objects(bucket, recursive=True):
                if item.object_name is not None:
                    client.remove_object(bucket, item.object_name)
            client.remove_bucket(bucket)


# --- one phase ----------------------------------------------------------------------------------


async def run_phase(
    infrastructure: Infrastructure, options: Options, workdir: Path, *, webhooks: bool, window: float
) -> PhaseResult:
    name = "webhooks" if webhooks else "polling only"
    phase_options = replace(options, window_seconds=window)
    generation_seconds = max(3600.0, 10 * window)
    api_key = f"sk-bench-{uuid.uuid4().hex}"
    secret = new_secret()
    intake_port, grpc_port, nowhere_port = free_port(), free_port(), free_port()
    bucket = f"bench-{uuid.uuid4().hex[:20]}"
    requests, outcomes = RequestLog(), IntakeLog()
    simulator_settings = SimulatorSettings(
        host=LOOPBACK,
        port=0,
        api_key=api_key,
        generation_seconds=generation_seconds,
        data_dir=workdir / f"simulator-{'webhooks' if webhooks else 'polling'}",
        webhook_url=f"http://{LOOPBACK}:{intake_port}/webhooks/providers/{DEPLOYMENT}" if webhooks else "",
        webhook_secret=secret if webhooks else "",
        webhook_retry_base_seconds=0.5,
    )
    _progress(f"[{name}] database, simulator{', webhook intake' if webhooks else ''}, jobs service")
    with fresh_database(infrastructure) as database_url:
        await asyncio.to_thread(upgrade_schema, database_url, jobs_app.MIGRATIONS, jobs_app.SCHEMA)
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(remove_bucket, infrastructure, bucket)
            runner = await stack.enter_async_context(running_simulator(simulator_settings, requests))
            simulator_url = f"http://{LOOPBACK}:{runner.addresses[0][1]}/v1"
            if webhooks:
                await stack.enter_async_context(
                    running_intake(intake_port, secret, f"{LOOPBACK}:{grpc_port}", outcomes)
                )
            env = jobs_environment(
                infrastructure,
                database_url=database_url,
                bucket=bucket,
                simulator_url=simulator_url,
                api_key=api_key,
                webhooks=webhooks,
                options=phase_options,
                grpc_port=grpc_port,
                nowhere=f"{LOOPBACK}:{nowhere_port}",
            )
            jobs = await stack.enter_async_context(
                jobs_process(env, workdir / f"jobs-{'webhooks' if webhooks else 'polling'}.log", grpc_port)
            )
            meter = CpuMeter(jobs)

            _progress(f"[{name}] seeding {options.jobs:,} in-flight videos and jobs")
            videos = create_videos(runner, phase_options, generation_seconds)
            await wait_rendered(videos)
            started = meter.sample()
            window_start = await insert_jobs(database_url, videos)
            _progress(f"[{name}] measuring for {window:.0f}s")
            deadline = window_start + window
            while (remaining := deadline - time.time()) > 0:
                await asyncio.sleep(min(15.0, remaining))
                seen = [r for r in requests.requests if r.at >= window_start]
                _progress(
                    f"[{name}] {time.time() - window_start:5.0f}s: {len(seen)} upstream requests, "
                    f"{sum(outcomes.outcomes.values())} webhooks"
                )
            ended = meter.sample()
            window_end = time.time()
            completed_at = {}
            store = runner.app[STORE_KEY]
            for video in videos:
                state = store.state(video)
                if state.status is Status.COMPLETED and state.completed_at is not None:
                    completed_at[video.id] = state.completed_at
            webhook_at, stages = await read_outcome(database_url)
            _progress(f"[{name}] stopping")
    return summarize(
        name,
        webhooks,
        phase_options,
        [r for r in requests.requests if window_start <= r.at < window_end],
        started,
        ended,
        {k: v for k, v in completed_at.items() if v < window_end},
        webhook_at,
        stages,
        dict(outcomes.outcomes),
    )


def summarize(
    name: str,
    webhooks: bool,
    options: Options,
    requests: list[UpstreamRequest],
    started: tuple[float, float, dict[int, float], float],
    ended: tuple[float, float, dict[int, float], float],
    completed_at: dict[str, float],
    webhook_at: dict[str, float],
    stages: dict[str, int],
    intake_outcomes: dict[str, int],
) -> PhaseResult:
    wall = ended[0] - started[0]
    window = options.window_seconds
    retrieves = [r for r in requests if r.route == "retrieve"]
    postgres = sum(seconds - started[2].get(pid, 0.0) for pid, seconds in ended[2].items())
    noticed_at = webhook_at if webhooks else first_poll_after(retrieves, completed_at)
    noticed = {video: at for video, at in noticed_at.items() if video in completed_at}
    delays = [at - completed_at[video] for video, at in noticed.items()]
    return PhaseResult(
        name=name,
        webhooks=webhooks,
        jobs=options.jobs,
        window_seconds=window,
        requests_by_route=dict(Counter(r.route for r in requests)),
        non_2xx=sum(1 for r in requests if not 200 <= r.status < 300),
        requests_per_minute=len(requests) * 60 / window,
        max_in_sliding_minute=(
            max_in_window([r.at for r in requests], SLIDING_WINDOW_SECONDS)
            if window >= SLIDING_WINDOW_SECONDS
            else None
        ),
        jobs_cpu_percent=100 * (ended[1] - started[1]) / wall,
        postgres_cpu_percent=100 * postgres / wall if ended[2] else None,
        bench_cpu_percent=100 * (ended[3] - started[3]) / wall,
        polls=len(retrieves),
        polled_videos=len({r.video_id for r in retrieves}),
        polls_per_job_per_minute=len(retrieves) / options.jobs * 60 / window,
        completed_upstream=len(completed_at),
        noticed=len(noticed),
        median_notice_seconds=statistics.median(delays) if delays else None,
        webhooks_recorded=len(webhook_at),
        intake_outcomes=intake_outcomes,
        polls_after_webhook=len(late := polls_after(retrieves, webhook_at)),
        polls_after_webhook_delays=[round(delay, 3) for delay in late[:20]],
        polls_after_webhook_max_delay=late[-1] if late else None,
        polls_after_completion=len(polls_after(retrieves, completed_at)),
        stages=stages,
    )


# --- report -------------------------------------------------------------------------------------


def burst_size_for(requests_per_minute: int) -> float:
    return burst_size(
        Deployment(name="bench", base_url="", api_key_env="", requests_per_minute=requests_per_minute)
    )


def goals(options: Options, main: PhaseResult) -> dict[str, dict[str, Any]]:
    # The bucket starts full and refills at (budget - burst)/min, so any 60 s stays within budget.
    rate = options.requests_per_minute
    if main.max_in_sliding_minute is not None:
        budget = {
            "measured": f"{main.max_in_sliding_minute} in the busiest 60 s",
            "goal": f"<= {rate}",
            "met": main.max_in_sliding_minute <= rate,
        }
    else:  # a window shorter than a minute: at most a full bucket plus its share of the refill
        allowed = burst_size_for(rate) + (rate - burst_size_for(rate)) * main.window_seconds / 60
        budget = {
            "measured": f"{main.requests} in {main.window_seconds:.0f} s",
            "goal": f"<= {allowed:.0f}",
            "met": main.requests <= allowed,
        }
    return {
        "requests_within_budget": budget,
        "jobs_cpu_under_20_percent": {
            "measured": round(main.jobs_cpu_percent, 1),
            "goal": f"< {CPU_GOAL_PERCENT:.0f}% of one core",
            "met": main.jobs_cpu_percent < CPU_GOAL_PERCENT,
        },
        "no_polls_after_webhook": {
            "measured": main.polls_after_webhook,
            "goal": "0",
            "met": main.polls_after_webhook == 0,
        },
    }


def report(options: Options, phases: list[PhaseResult]) -> str:
    def cell(value: object) -> str:
        if value is None:
            return "n/a"
        if isinstance(value, float):
            return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    def share(part: int, whole: int) -> str:
        return f"{part:,} ({100 * part / whole:.0f}%)" if whole else f"{part:,}"

    rows: list[tuple[str, list[str]]] = [
        ("window (s)", [cell(p.window_seconds) for p in phases]),
        ("upstream requests", [cell(p.requests) for p in phases]),
        (
            "  by route",
            [", ".join(f"{k} {v:,}" for k, v in sorted(p.requests_by_route.items())) for p in phases],
        ),
        ("  not 2xx", [cell(p.non_2xx) for p in phases]),
        ("upstream requests / min", [cell(p.requests_per_minute) for p in phases]),
        ("  most in any 60 s", [cell(p.max_in_sliding_minute) for p in phases]),
        ("jobs service CPU, % of a core", [cell(p.jobs_cpu_percent) for p in phases]),
        ("PostgreSQL CPU, % of a core", [cell(p.postgres_cpu_percent) for p in phases]),
        ("simulator+intake CPU, % of a core", [cell(p.bench_cpu_percent) for p in phases]),
        ("polls (GET /v1/videos/{id})", [cell(p.polls) for p in phases]),
        ("  distinct videos polled", [cell(p.polled_videos) for p in phases]),
        ("  polls per job per minute", [f"{p.polls_per_job_per_minute:.4f}" for p in phases]),
        ("videos completed upstream", [cell(p.completed_upstream) for p in phases]),
        ("  noticed in the window", [share(p.noticed, p.completed_upstream) for p in phases]),
        ("  median time to notice (s)", [cell(p.median_notice_seconds) for p in phases]),
        ("webhooks recorded", [cell(p.webhooks_recorded) if p.webhooks else "-" for p in phases]),
        (
            "  intake outcomes",
            [", ".join(f"{k} {v:,}" for k, v in sorted(p.intake_outcomes.items())) or "-" for p in phases],
        ),
        (
            "polls after the webhook arrived",
            [_late_polls(p) for p in phases],
        ),
        ("polls after upstream completion", [cell(p.polls_after_completion) for p in phases]),
        (
            "jobs by stage at the end",
            [", ".join(f"{k} {v:,}" for k, v in sorted(p.stages.items())) for p in phases],
        ),
    ]
    label_width = max(len(label) for label, _ in rows)
    widths = [max(len(p.name), *(len(values[i]) for _, values in rows)) for i, p in enumerate(phases)]
    lines = [
        f"{NAME}: {options.jobs:,} in-flight jobs, budget {options.requests_per_minute}/min "
        f"(burst {burst_size_for(options.requests_per_minute):.0f}), "
        f"worker concurrency {options.worker_concurrency}",
        "",
        " " * label_width + "  " + "  ".join(p.name.rjust(w) for p, w in zip(phases, widths, strict=True)),
    ]
    for label, values in rows:
        lines.append(
            label.ljust(label_width)
            + "  "
            + "  ".join(v.rjust(w) for v, w in zip(values, widths, strict=True))
        )
    lines.append("")
    for goal, verdict in goals(options, phases[0]).items():
        lines.append(
            f"goal {goal}: {verdict['measured']} (goal {verdict['goal']}): "
            f"{'met' if verdict['met'] else 'NOT met'}"
        )
    if len(phases) > 1 and phases[0].noticed and phases[1].polls:
        main, base = phases
        main_share = main.noticed / max(1, main.completed_upstream)
        base_share = base.noticed / max(1, base.completed_upstream)
        lines.append(
            f"context: same budget, webhooks notice {100 * main_share:.0f}% of completions in the window, "
            f"polling alone {100 * base_share:.0f}%"
        )
    return "\n".join(lines)


def _late_polls(phase: PhaseResult) -> str:
    if not phase.webhooks:
        return "-"
    if phase.polls_after_webhook_max_delay is None:
        return str(phase.polls_after_webhook)
    shortest = phase.polls_after_webhook_delays[0]
    return f"{phase.polls_after_webhook:,} ({shortest:.2f}-{phase.polls_after_webhook_max_delay:.2f} s after)"


def summary_json(options: Options, phases: list[PhaseResult]) -> str:
    def phase(p: PhaseResult) -> dict[str, Any]:
        values = dict(p.__dict__)
        for key, value in values.items():
            if isinstance(value, float):
                values[key] = round(value, 3)
        return values

    return json.dumps(
        {
            "benchmark": NAME,
            "options": {k: v for k, v in options.__dict__.items() if k != "keep_logs"},
            "goals": goals(options, phases[0]),
            "phases": [phase(p) for p in phases],
        },
        separators=(",", ":"),
    )


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- entry point --------------------------------------------------------------------------------


async def run(options: Options, workdir: Path) -> list[PhaseResult]:
    with local_infrastructure(workdir / "servers") as infrastructure:
        phases = [
            await run_phase(infrastructure, options, workdir, webhooks=True, window=options.window_seconds)
        ]
        if options.baseline_seconds > 0:
            phases.append(
                await run_phase(
                    infrastructure, options, workdir, webhooks=False, window=options.baseline_seconds
                )
            )
        return phases


def main(argv: list[str]) -> int:
    options = parse_options(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run_in_workdir(
        NAME,
        lambda workdir: run(options, workdir),
        lambda phases: (report(options, phases), summary_json(options, phases)),
        keep_logs=options.keep_logs,
    )
