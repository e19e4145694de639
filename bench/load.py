"""Load: 200 concurrent clients create a video and poll it until it is done, again and again, for
60 seconds, through the whole stack; then every accepted video is accounted for. Each figure is
also given as a ratio to one client doing the same in the same run.

What runs:
- real PostgreSQL, NATS and S3 from `devstack.servers` (DATABASE_URL / NATS_URL / S3_ENDPOINT in
  the environment replace them), one fresh database for the run;
- the whole stack as `make run` starts it (`devstack.stack.run_stack`): the provider simulator and
  the five services, each its own process (`python -m ...`), on free ports, with the simulator's
  webhooks to the gateway as `make run` has them. Changed from `make run`:
  - the simulator takes `--generation-seconds` (2) per video and renders one frame a second, so the
    pipeline (provider, download, probe, renditions, poster) is real but cheap;
  - the provider deployment takes `--provider-slots` (32) videos at once instead of its default 4
    (a `PROVIDER_REGISTRY` naming the simulator `default`), and the jobs worker drives as many;
- in this process: the users, one key each, credited through billing's `Credit` far beyond what the
  run can spend, and the clients (aiohttp, one connection each), 10 a key (`--clients` / `--keys`).

Each key has its own limits, set on purpose so that some 429s happen:
- `--max-jobs-per-key` (8) unfinished videos (`max_concurrent_jobs`): with 10 clients a key, two
  of them are always waiting for a slot (`429 concurrent_jobs_limit_exceeded`), whatever the speed
  of the machine;
- `--rpm` (100) requests a minute (`requests_per_minute`). A key's bucket holds a minute's worth
  and refills at that rate, so a 60 s window allows twice that; 10 clients polling every 2 s ask
  for about 300 a minute when answers are quick, so `429 rate_limit_exceeded` comes late in the
  window (on a machine too busy to answer quickly, the clients ask for less and it may not come).

A client's loop: `POST /v1/videos` (sora-2, 4 s, a unique prompt), then `GET /v1/videos/{id}` every
`openai-poll-after-ms` until `completed` or `failed`, then the next video. A 429 is waited out
(`Retry-After`) and the request sent again. New videos start only inside the window; the ones in
flight when it ends are polled on until done (the drain, at most `--drain` seconds).

Phases: the baseline (one client alone, `--baseline` seconds), then the load (`--clients` clients,
`--duration` seconds). Latencies are of 2xx answers to requests sent inside the window; a video's
turnaround (from its create being sent to the poll that saw it completed) counts every video that
completed, the drain's included.

At the end, goals, printed as met or not met (this is a benchmark, not a test): no answer other
than 2xx and 429 and no request without an answer; every accepted video completed or failed, and
each key's video list holds exactly the videos its clients made; the credits charged equal the
completed videos' price (a quote), and nothing is left held.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import psutil
from servicekit.db import make_engine
from vidflow.billing.v1 import billing_service_pb2, billing_service_pb2_grpc

from bench.gateway_throughput import quantile, stack_environ
from bench.harness import LOOPBACK, SetupError, fresh_database, python_command, run_in_workdir
from devstack.servers import local_infrastructure
from devstack.stack import run_stack
from services.gateway.identity import IdentityStore, KeyLimits

NAME = "load"
VIDEO = {"model": "sora-2", "seconds": "4"}
REQUEST_TIMEOUT_SECONDS = 60.0
DEFAULT_POLL_MS = 2000
# Far more than any run can spend: a 402 would be an error of the benchmark, not of the stack.
CREDITS_PER_USER = 1_000_000
TERMINAL = ("completed", "failed")


@dataclass(frozen=True)
class Options:
    clients: int = 200
    keys: int = 20
    rpm: int = 100
    max_jobs_per_key: int = 8
    duration_seconds: float = 60.0
    baseline_seconds: float = 10.0
    drain_seconds: float = 180.0
    generation_seconds: float = 2.0
    provider_slots: int = 32
    keep_logs: bool = False

    def command(self) -> str:
        """The command line that repeats this run."""
        python = python_command()
        return (
            f"{python} -m bench {NAME} --clients {self.clients} --keys {self.keys} --rpm {self.rpm} "
            f"--max-jobs-per-key {self.max_jobs_per_key} "
            f"--duration {self.duration_seconds:g} --baseline {self.baseline_seconds:g} "
            f"--generation-seconds {self.generation_seconds:g} --provider-slots {self.provider_slots}"
        )


def parse_options(argv: list[str], environ: Mapping[str, str] = os.environ) -> Options:
    defaults = Options()
    parser = argparse.ArgumentParser(
        prog=f"python -m bench {NAME}",
        description="Concurrent clients creating and polling videos through the whole stack.",
    )

    def env(name: str, default: object) -> str:
        return environ.get(f"BENCH_{name}", str(default))

    parser.add_argument("--clients", type=int, default=int(env("CLIENTS", defaults.clients)))
    parser.add_argument(
        "--keys", type=int, default=int(env("KEYS", defaults.keys)), help="API keys the clients share"
    )
    parser.add_argument(
        "--rpm", type=int, default=int(env("RPM", defaults.rpm)), help="requests per minute per key"
    )
    parser.add_argument(
        "--max-jobs-per-key",
        type=int,
        default=int(env("MAX_JOBS_PER_KEY", defaults.max_jobs_per_key)),
        help="unfinished videos a key may have (0: no limit)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=float(env("WINDOW_SECONDS", defaults.duration_seconds)),
        help="seconds during which clients start new videos",
    )
    parser.add_argument(
        "--baseline",
        type=float,
        default=float(env("BASELINE_SECONDS", defaults.baseline_seconds)),
        help="seconds of the one-client baseline",
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=float(env("DRAIN_SECONDS", defaults.drain_seconds)),
        help="longest wait after the window for the videos in flight",
    )
    parser.add_argument(
        "--generation-seconds",
        type=float,
        default=float(env("GENERATION_SECONDS", defaults.generation_seconds)),
        help="the simulator's time per video",
    )
    parser.add_argument(
        "--provider-slots",
        type=int,
        default=int(env("PROVIDER_SLOTS", defaults.provider_slots)),
        help="videos the provider deployment takes at once",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the work directory and its logs")
    args = parser.parse_args(argv)
    if min(args.clients, args.keys, args.rpm, args.provider_slots) < 1 or args.keys > args.clients:
        parser.error("need --clients >= --keys >= 1, --rpm >= 1 and --provider-slots >= 1")
    if args.max_jobs_per_key < 0:
        parser.error("--max-jobs-per-key must be 0 or more")
    if min(args.duration, args.baseline, args.drain, args.generation_seconds) <= 0:
        parser.error("--duration, --baseline, --drain and --generation-seconds must be > 0")
    return Options(
        clients=args.clients,
        keys=args.keys,
        rpm=args.rpm,
        max_jobs_per_key=args.max_jobs_per_key,
        duration_seconds=args.duration,
        baseline_seconds=args.baseline,
        drain_seconds=args.drain,
        generation_seconds=args.generation_seconds,
        provider_slots=args.provider_slots,
        keep_logs=args.keep_logs,
    )


# --- the clients ----------------------------------------------------------------------------------


@dataclass
class Phase:
    """What one phase's clients did. Latencies and statuses count requests sent inside the window;
    the drain's requests only settle the videos."""

    name: str
    clients: int
    window_seconds: float
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)  # (create|retrieve, status)
    refusals: Counter[str] = field(default_factory=Counter)  # error code of each non-2xx answer
    failures: Counter[str] = field(default_factory=Counter)  # no answer: exception name
    create_ms: list[float] = field(default_factory=list)
    retrieve_ms: list[float] = field(default_factory=list)
    turnaround_s: list[float] = field(default_factory=list)  # of every video completed
    completed_in_window: int = 0
    final: dict[str, str] = field(default_factory=dict)  # video id -> last status seen
    owner_of: dict[str, str] = field(default_factory=dict)  # video id -> user id
    drain_seconds: float = 0.0

    @property
    def accepted(self) -> int:
        return self.statuses[("create", 200)]

    def per_second(self, count: int) -> float:
        return count / self.window_seconds


@dataclass(frozen=True)
class Account:
    user_id: str
    key: str


class Client:
    """One client's create-and-poll loop, recording into its phase."""

    def __init__(
        self, http: aiohttp.ClientSession, base_url: str, account: Account, phase: Phase, ends: float
    ) -> None:
        self._http = http
        self._base_url = base_url
        self._account = account
        self._phase = phase
        self._ends = ends  # loop time after which no new video starts
        self._headers = {"Authorization": f"Bearer {account.key}"}

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while loop.time() < self._ends:
            sent = loop.time()
            video = await self._request("create", "POST", "/v1/videos", self._create_body())
            if video is None:
                return  # the window closed while a 429 was waited out
            self._phase.owner_of[video["id"]] = self._account.user_id
            await self._poll(video, sent)

    def _create_body(self) -> dict[str, str]:
        return {**VIDEO, "prompt": f"A lighthouse keeper's evening, take {uuid.uuid4().hex[:12]}"}

    async def _poll(self, video: dict[str, Any], sent: float) -> None:
        loop = asyncio.get_running_loop()
        self._phase.final[video["id"]] = video["status"]
        wait_ms = DEFAULT_POLL_MS
        while video["status"] not in TERMINAL:
            await asyncio.sleep(wait_ms / 1000)  # as the API asks (openai-poll-after-ms)
            answer = await self._request(
                "retrieve", "GET", f"/v1/videos/{video['id']}", None, keep_going=True
            )
            if answer is None:
                continue
            video, wait_ms = answer, answer.get("_poll_after_ms", DEFAULT_POLL_MS)
            self._phase.final[video["id"]] = video["status"]
        if video["status"] == "completed":
            self._phase.turnaround_s.append(loop.time() - sent)
            if loop.time() <= self._ends:
                self._phase.completed_in_window += 1

    async def _request(
        self, kind: str, method: str, path: str, body: dict[str, str] | None, *, keep_going: bool = False
    ) -> dict[str, Any] | None:
        """The 2xx answer's JSON (with the poll hint); None when there was none to wait for: a
        429 or a failure after the window closed, unless `keep_going` (polls in the drain)."""
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            in_window = began <= self._ends
            try:
                async with self._http.request(
                    method, f"{self._base_url}{path}", json=body, headers=self._headers
                ) as response:
                    payload = await response.read()
                    status = response.status
                    retry_after = response.headers.get("Retry-After", "1")
                    poll_after = response.headers.get("openai-poll-after-ms", str(DEFAULT_POLL_MS))
            except (aiohttp.ClientError, TimeoutError) as exc:
                if in_window:
                    self._phase.failures[type(exc).__name__] += 1
                if not keep_going and loop.time() > self._ends:
                    return None
                await asyncio.sleep(1)  # a client's back-off before trying again
                continue
            elapsed_ms = (loop.time() - began) * 1000
            if in_window:
                self._phase.statuses[(kind, status)] += 1
                if status >= 300:
                    self._phase.refusals[_error_code(payload)] += 1
            if 200 <= status < 300:
                if in_window:
                    (self._phase.create_ms if kind == "create" else self._phase.retrieve_ms).append(
                        elapsed_ms
                    )
                answer: dict[str, Any] = json.loads(payload)
                answer["_poll_after_ms"] = int(poll_after) if poll_after.isdigit() else DEFAULT_POLL_MS
                return answer
            if status == 429:
                await asyncio.sleep(int(retry_after) if retry_after.isdigit() else 1)
                if not keep_going and loop.time() > self._ends:
                    return None
                continue
            # Anything else is an error the goals count; a create is not retried, a poll is.
            if not keep_going:
                return None
            await asyncio.sleep(1)


def _error_code(payload: bytes) -> str:
    try:
        return str(json.loads(payload)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "(not an OpenAI error body)"


async def run_phase(
    name: str, base_url: str, accounts: list[Account], clients: int, options: Options, seconds: float
) -> Phase:
    phase = Phase(name, clients, seconds)
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        loop = asyncio.get_running_loop()
        ends = loop.time() + seconds
        tasks = [
            asyncio.create_task(Client(http, base_url, accounts[number % len(accounts)], phase, ends).run())
            for number in range(clients)
        ]
        done, pending = await asyncio.wait(tasks, timeout=seconds + options.drain_seconds)
        phase.drain_seconds = max(0.0, loop.time() - ends)
        for task in pending:
            task.cancel()
        for task in done:
            task.result()  # a bug in the client is a setup failure, not a figure
    for values in (phase.create_ms, phase.retrieve_ms, phase.turnaround_s):
        values.sort()
    return phase


# --- accounting -----------------------------------------------------------------------------------


@dataclass
class Accounting:
    unsettled: int  # accepted videos neither completed nor failed after the drain
    listed_mismatch: int  # videos a key lists that its clients did not make, or missing from it
    completed: int
    failed: int
    charged: int  # credits captured over every user
    expected_charge: int  # completed videos x the quoted price
    held: int  # credits still held over every user

    @property
    def accounted(self) -> bool:
        return not self.unsettled and not self.listed_mismatch and self.charged == self.expected_charge

    @property
    def nothing_held(self) -> bool:
        return self.held == 0


async def account_for(base_url: str, accounts: list[Account], phases: list[Phase]) -> Accounting:
    final = {video: status for phase in phases for video, status in phase.final.items()}
    owner_of = {video: owner for phase in phases for video, owner in phase.owner_of.items()}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)) as http:

        async def get(account: Account, path: str) -> Any:
            while True:
                async with http.get(
                    f"{base_url}{path}", headers={"Authorization": f"Bearer {account.key}"}
                ) as answer:
                    if answer.status == 429:  # the same keys' buckets: wait like a client
                        await asyncio.sleep(int(answer.headers.get("Retry-After", "1")))
                        continue
                    if answer.status != 200:
                        raise SetupError(f"GET {path} answered {answer.status}: {await answer.text()}")
                    return await answer.json()

        async with http.post(
            f"{base_url}/v1/billing/quote",
            json={**VIDEO, "prompt": "a quote"},
            headers={"Authorization": f"Bearer {accounts[0].key}"},
        ) as answer:
            price = int((await answer.json())["amount"])
        mismatch, charged, held = 0, 0, 0
        for account in accounts:
            listed: dict[str, str] = {}
            after = ""
            while True:
                page = await get(
                    account, f"/v1/videos?limit=100&order=asc{'&after=' + after if after else ''}"
                )
                listed.update({video["id"]: video["status"] for video in page["data"]})
                if not page["has_more"]:
                    break
                after = page["last_id"]
            made = {video for video, owner in owner_of.items() if owner == account.user_id}
            mismatch += len(set(listed) ^ made)
            final.update({video: status for video, status in listed.items() if video in final})
            ledger_after = ""
            while True:
                page = await get(
                    account,
                    f"/v1/billing/ledger?limit=100{'&after=' + ledger_after if ledger_after else ''}",
                )
                # A charge takes from what was held (and any excess from what is available).
                charged -= sum(
                    entry["available_delta"] + entry["held_delta"]
                    for entry in page["data"]
                    if entry["type"] == "charge"
                )
                if not page["has_more"]:
                    break
                ledger_after = page["next_after"]
            held += int((await get(account, "/v1/billing/balance"))["held"])
    statuses = Counter(final.values())
    return Accounting(
        unsettled=sum(count for status, count in statuses.items() if status not in TERMINAL),
        listed_mismatch=mismatch,
        completed=statuses["completed"],
        failed=statuses["failed"],
        charged=charged,
        expected_charge=statuses["completed"] * price,
        held=held,
    )


# --- set-up -----------------------------------------------------------------------------------------


def load_environ(
    infrastructure_environ: Mapping[str, str], database_url: str, options: Options
) -> dict[str, str]:
    """`make run`'s environment on free ports and the fresh database, with the changes above."""
    environ = stack_environ(infrastructure_environ, database_url)
    provider_key = f"sk-sim-bench-{uuid.uuid4().hex}"
    registry = {
        "deployments": {
            # Named `default`, as without a registry: the simulator's webhooks go to that intake.
            "default": {
                "base_url": f"http://{LOOPBACK}:{environ['SIMULATOR_PORT']}/v1",
                "api_key_env": "PROVIDER_API_KEY",
                "max_concurrent": options.provider_slots,
                "requests_per_minute": 60 * 1000,
                "webhooks": True,
            }
        },
        "routes": {"sora-2": ["default"], "sora-2-pro": ["default"]},
    }
    return {
        **environ,
        "GATEWAY_DEFAULT_RPM": "3000",  # make run's default; the bench's keys carry their own
        "SIMULATOR_GENERATION_SECONDS": str(options.generation_seconds),
        "SIMULATOR_FPS": "1",
        "PROVIDER_API_KEY": provider_key,
        "PROVIDER_REGISTRY": json.dumps(registry),
        "JOBS_WORKER_CONCURRENCY": str(options.provider_slots),
    }


async def make_accounts(database_url: str, billing_port: int, count: int, limits: KeyLimits) -> list[Account]:
    """`count` users, each with one `user`-role key with `limits`, credited through billing."""
    accounts = []
    engine = make_engine(database_url, pool_size=1)
    try:
        identity = IdentityStore(engine)
        for _ in range(count):
            user = await identity.create_user(name="load", role="user")
            if user is None:
                raise SetupError("could not create a user")
            _, key = await identity.create_api_key(user_id=user.id, name="load", limits=limits)
            accounts.append(Account(user.id, key))
    finally:
        await engine.dispose()
    async with grpc.aio.insecure_channel(f"{LOOPBACK}:{billing_port}") as channel:
        billing = billing_service_pb2_grpc.BillingServiceStub(channel)
        for account in accounts:
            await billing.Credit(
                billing_service_pb2.CreditRequest(
                    account_id=account.user_id,
                    amount=CREDITS_PER_USER,
                    reason="bench",
                    request_id=f"bench-{account.user_id}",
                ),
                timeout=10,
            )
    return accounts


# --- report ---------------------------------------------------------------------------------------


@dataclass
class Result:
    baseline: Phase
    load: Phase
    accounting: Accounting
    load_average: tuple[float, float, float]


def _errors(phase: Phase) -> int:
    unexpected = sum(count for (_, status), count in phase.statuses.items() if status not in (200, 429))
    return unexpected + sum(phase.failures.values())


def _ratio(loaded: float, alone: float) -> float:
    return loaded / alone if alone else float("nan")


def figures(phase: Phase) -> dict[str, float]:
    return {
        "creates_per_second": phase.per_second(phase.accepted),
        "completed_per_second": phase.per_second(phase.completed_in_window),
        "create_p50_ms": quantile(phase.create_ms, 0.50),
        "create_p99_ms": quantile(phase.create_ms, 0.99),
        "retrieve_p50_ms": quantile(phase.retrieve_ms, 0.50),
        "retrieve_p99_ms": quantile(phase.retrieve_ms, 0.99),
        "turnaround_p50_s": quantile(phase.turnaround_s, 0.50),
        "turnaround_p99_s": quantile(phase.turnaround_s, 0.99),
    }


def report(options: Options, result: Result) -> list[str]:
    base, load, accounting = result.baseline, result.load, result.accounting
    per_key = options.clients / options.keys
    lines = [
        f"{NAME}: {options.clients} clients on {options.keys} keys ({per_key:g} a key); a key may make "
        f"{options.rpm} requests/min and have {options.max_jobs_per_key or 'any number of'} unfinished "
        f"videos; {options.duration_seconds:g}s window; baseline: 1 client, {options.baseline_seconds:g}s",
        f"simulator {options.generation_seconds:g}s a video, {options.provider_slots} provider slots; "
        f"clients, stack, PostgreSQL, NATS and S3 share this machine's {os.cpu_count()} cores "
        f"(load average before the run: {result.load_average[0]:.1f})",
        "",
        f"{'':<28} {'baseline':>10} {'load':>10} {'load/base':>10}",
    ]
    base_figures, load_figures = figures(base), figures(load)
    labels = {
        "creates_per_second": "creates accepted /s",
        "completed_per_second": "videos completed /s",
        "create_p50_ms": "POST /v1/videos p50 ms",
        "create_p99_ms": "POST /v1/videos p99 ms",
        "retrieve_p50_ms": "GET /v1/videos/{id} p50 ms",
        "retrieve_p99_ms": "GET /v1/videos/{id} p99 ms",
        "turnaround_p50_s": "create -> completed p50 s",
        "turnaround_p99_s": "create -> completed p99 s",
    }
    for key, label in labels.items():
        lines.append(
            f"{label:<28} {base_figures[key]:>10.2f} {load_figures[key]:>10.2f} "
            f"{_ratio(load_figures[key], base_figures[key]):>10.2f}"
        )
    lines.append("")
    for phase in (base, load):
        statuses = ", ".join(
            f"{kind} {status}: {count:,}" for (kind, status), count in sorted(phase.statuses.items())
        )
        failures = ", ".join(f"{name}: {count}" for name, count in sorted(phase.failures.items())) or "none"
        lines.append(f"{phase.name} answers in the window: {statuses}; no answer: {failures}")
        if phase.refusals:
            codes = ", ".join(f"{code}: {count:,}" for code, count in phase.refusals.most_common())
            lines.append(f"    refused by code: {codes}")
    lines.append(
        f"drain after the load window: {load.drain_seconds:.1f}s; videos: {accounting.completed:,} "
        f"completed, {accounting.failed:,} failed, {accounting.unsettled:,} unsettled; "
        f"{len(load.turnaround_s) / (load.window_seconds + load.drain_seconds):.2f} completed/s "
        "over window and drain"
    )
    goals = [
        ("no answer other than 2xx and 429, no request unanswered", _errors(base) + _errors(load) == 0),
        (
            "some 429s, as the rate limit intends",
            load.statuses[("create", 429)] + load.statuses[("retrieve", 429)] > 0,
        ),
        (
            f"every accepted video accounted for ({accounting.completed + accounting.failed:,} settled, "
            f"{accounting.listed_mismatch} listed differently; charged {accounting.charged:,} credits "
            f"for {accounting.expected_charge:,} of completed videos)",
            accounting.accounted,
        ),
        (f"no credit left held ({accounting.held:,})", accounting.nothing_held),
    ]
    lines += ["", "goals:"]
    lines += [f"  {'met    ' if met else 'NOT MET'} {text}" for text, met in goals]
    lines += ["", f"command: {options.command()}"]
    return lines


def summary_json(options: Options, result: Result) -> str:
    def phase_json(phase: Phase) -> dict[str, Any]:
        return {
            "clients": phase.clients,
            "window_seconds": phase.window_seconds,
            **{name: round(value, 3) for name, value in figures(phase).items()},
            "statuses": {
                f"{kind} {status}": count for (kind, status), count in sorted(phase.statuses.items())
            },
            "refused_by_code": dict(phase.refusals),
            "no_answer": dict(phase.failures),
            "drain_seconds": round(phase.drain_seconds, 2),
        }

    accounting = result.accounting
    return json.dumps(
        {
            "benchmark": NAME,
            "options": {k: v for k, v in options.__dict__.items() if k != "keep_logs"},
            "baseline": phase_json(result.baseline),
            "load": phase_json(result.load),
            "accounting": {**accounting.__dict__, "accounted": accounting.accounted},
            "command": options.command(),
        },
        separators=(",", ":"),
    )


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- entry point ----------------------------------------------------------------------------------


async def run(options: Options, workdir: Path) -> Result:
    load_average = psutil.getloadavg()
    with local_infrastructure(workdir / "servers") as infrastructure, fresh_database(infrastructure) as url:
        environ = load_environ(infrastructure.as_environ(), url, options)
        _progress("starting the simulator and the five services as `make run` does")
        with run_stack(workdir / "stack", environ) as stack:
            limits = KeyLimits(requests_per_minute=options.rpm, max_concurrent_jobs=options.max_jobs_per_key)
            accounts = await make_accounts(url, int(environ["BILLING_GRPC_PORT"]), options.keys + 1, limits)
            alone, shared = accounts[:1], accounts[1:]
            _progress(f"baseline: 1 client for {options.baseline_seconds:g}s")
            baseline = await run_phase(
                "baseline", stack.gateway_url, alone, 1, options, options.baseline_seconds
            )
            _progress(f"load: {options.clients} clients for {options.duration_seconds:g}s, then the drain")
            started = time.monotonic()
            load = await run_phase(
                "load", stack.gateway_url, shared, options.clients, options, options.duration_seconds
            )
            _progress(f"load done after {time.monotonic() - started:.0f}s; accounting for every video")
            accounting = await account_for(stack.gateway_url, accounts, [baseline, load])
            if dead := stack.exited():
                raise SetupError(f"{', '.join(dead)} exited during the run; see {stack.log_dir}")
    return Result(baseline, load, accounting, load_average)


def main(argv: list[str]) -> int:
    options = parse_options(argv)
    return run_in_workdir(
        NAME,
        lambda workdir: run(options, workdir),
        lambda result: (*report(options, result), summary_json(options, result)),
        keep_logs=options.keep_logs,
    )
