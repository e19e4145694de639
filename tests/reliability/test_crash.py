"""Crash: kill -9 of the jobs service, the renderer and billing at random moments while videos are
made, each started again at once (`cluster.py` runs every service as its own process). Afterwards:
- every video is completed or failed, and no client saw anything worse than a retryable 503;
- the provider made at most one video per job (each job's prompt is unique), one for each completed,
  and each with the client's reference image when it had one;
- every credit hold was settled exactly once (captured for completed, released for failed), the
  ledger audit finds nothing, and each user's balance is what their completed videos cost;
- a WebSocket client subscribed to all of one user's videos, dropped and resumed with the last
  event id of each video again and again, received every status event 1..N of each video exactly
  once, in order.

The chaos is drawn from a seeded `random.Random`; the seed is printed (RELIABILITY_SEED repeats
a run). CI: 6 videos created at once, then each service killed once. `make test-reliability`:
50 videos from clients arriving over 20 s, and each service killed four times, from the first
arrivals on (so some kills hit admission: moderation, reference images, the credit hold).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import io
import json
import os
import random
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from PIL import Image
from servicekit.db import make_engine
from servicekit.grpcclient import RECONNECT_BACKOFF_MAX_MS
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.billing.store import LedgerStore
from tests.helpers import balance, eventually
from tests.reliability.cluster import Cluster, running_cluster

pytestmark = [pytest.mark.reliability, pytest.mark.e2e]

USERS = ("user_ana", "user_ben", "user_chen")
LIVE_USER = USERS[0]
STARTING_CREDITS = 100_000
VICTIMS = ("jobs", "renderer", "billing")
# Stages whose work a kill of each service interrupts; the chaos waits (briefly) for one of them.
BUSY_STAGES = {
    "jobs": ("admitting", "submitting", "generating", "downloading"),
    "renderer": ("admitting", "rendering"),
    "billing": ("admitting", "capturing"),
}
TERMINAL = ("completed", "failed")
# Answers a client may get while a service is down: the platform's own "try again", never a 500.
RETRYABLE_STATUSES = (429, 502, 503, 504)
# A caller redials a peer that is back within its capped reconnect backoff; errors after that are late.
LATE_AFTER_SECONDS = RECONNECT_BACKOFF_MAX_MS / 1000 + 0.5


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=30, sock_connect=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        yield session


@pytest.fixture
async def engine_of() -> AsyncIterator[Callable[[str], AsyncEngine]]:
    engines: list[AsyncEngine] = []

    def make(url: str) -> AsyncEngine:
        engines.append(make_engine(url, pool_size=2))
        return engines[-1]

    yield make
    for engine in engines:
        await engine.dispose()


class ClientAnswers:
    """Every non-200 answer the test's clients got, to prove crashes surface as retryable errors."""

    def __init__(self) -> None:
        self.retried: collections.Counter[int] = collections.Counter()
        self.connection_errors = 0
        self.unexpected: list[tuple[int, str]] = []
        self.retried_at: list[float] = []  # monotonic
        self.messages: list[str] = []  # of each retried answer, in the same order

    async def note(self, response: aiohttp.ClientResponse) -> None:
        body = await response.text()
        if response.status in RETRYABLE_STATUSES and _is_openai_error(body):
            self.retried[response.status] += 1
            self.retried_at.append(time.monotonic())
            self.messages.append(json.loads(body)["error"]["message"])
        else:
            self.unexpected.append((response.status, body[:300]))


def _is_openai_error(body: str) -> bool:
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return False
    return isinstance(error, dict) and {"message", "type", "param", "code"} <= error.keys()


def reference_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (360, 640), (30, 90, 160)).save(buffer, format="PNG")
    return buffer.getvalue()


def create_body(prompt: str, reference: bytes | None) -> dict[str, Any]:
    """JSON, or multipart with the image as `input_reference` (a form is built per try: sending
    consumes it)."""
    fields = {"model": "sora-2", "prompt": prompt, "seconds": "4"}
    if reference is None:
        return {"json": fields}
    form = aiohttp.FormData(fields)
    form.add_field("input_reference", reference, filename="reference.png", content_type="image/png")
    return {"data": form}


async def create_video(
    http: aiohttp.ClientSession,
    cluster: Cluster,
    user: str,
    prompt: str,
    answers: ClientAnswers,
    reference: bytes | None = None,
) -> str:
    """POST /v1/videos until it is accepted, always with the same Idempotency-Key: one video however
    many tries a crash costs."""
    headers = {"Authorization": f"Bearer {cluster.key(user)}", "Idempotency-Key": f"crash-{uuid.uuid4()}"}

    async def attempt() -> str | None:
        body = create_body(prompt, reference)
        try:
            async with http.post(f"{cluster.gateway_url}/v1/videos", headers=headers, **body) as answer:
                if answer.status == 200:
                    return str((await answer.json())["id"])
                await answers.note(answer)
                return None
        except (aiohttp.ClientError, TimeoutError):
            answers.connection_errors += 1
            return None

    return await eventually(attempt, deadline_seconds=120, interval=0.5)


async def video_status(
    http: aiohttp.ClientSession, cluster: Cluster, user: str, video_id: str, answers: ClientAnswers
) -> str | None:
    headers = {"Authorization": f"Bearer {cluster.key(user)}"}
    try:
        async with http.get(f"{cluster.gateway_url}/v1/videos/{video_id}", headers=headers) as answer:
            if answer.status == 200:
                return str((await answer.json())["status"])
            await answers.note(answer)
    except (aiohttp.ClientError, TimeoutError):
        answers.connection_errors += 1
    return None


class LiveClient:
    """A WebSocket client of one user: subscribed to all of their videos, then dropped at random
    moments and resumed with the last event id it holds of each unfinished video."""

    def __init__(self, http: aiohttp.ClientSession, cluster: Cluster, user: str, rng: random.Random) -> None:
        self._http = http
        self._url = f"{cluster.gateway_url}/v1/ws"
        self._headers = {"Authorization": f"Bearer {cluster.key(user)}"}
        self._rng = rng
        self.sequences: dict[str, list[int]] = collections.defaultdict(list)
        self.finished: set[str] = set()
        self.videos: set[str] = set()
        # Drops start once every video of the user is known: a resume names them one by one.
        self.drops_allowed = asyncio.Event()
        self.subscribed_to_all = asyncio.Event()
        self.connections = 0
        self.refusals: list[dict[str, Any]] = []
        self.refused_at: list[float] = []  # monotonic

    def last_event_id(self, video_id: str) -> int:
        seen = self.sequences.get(video_id)
        return seen[-1] if seen else 0

    async def saw_every_end(self) -> bool | None:
        return True if self.videos <= self.finished else None

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with self._http.ws_connect(self._url, headers=self._headers) as ws:
                    self.connections += 1
                    if not self.subscribed_to_all.is_set():
                        await ws.send_json({"type": "subscribe", "videos": "all"})
                    else:
                        await self._resume(ws)
                    await self._read(ws, stop)
            except (aiohttp.ClientError, TimeoutError):
                pass  # the gateway is up throughout; a refused connect is retried like any drop
            # Offline for a moment: events keep happening, and the resume must bring them.
            await _quietly_wait(stop, self._rng.uniform(0.1, 1.5))

    async def _resume(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Each unfinished video from the last event held; nothing else, since every video is known.
        (Not "all" as well: "all" may send a video's newer event before the resume is read, and a
        socket never goes back to events older than one it sent, so the missed ones would not come.)"""
        unfinished = sorted(self.videos - self.finished)
        for start in range(0, len(unfinished), 100):
            await ws.send_json(
                {
                    "type": "subscribe",
                    "videos": [
                        {"id": video_id, "last_event_id": self.last_event_id(video_id)}
                        for video_id in unfinished[start : start + 100]
                    ],
                }
            )

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, stop: asyncio.Event) -> None:
        """Until the server closes, the test stops, or this connection's random lifetime is over."""
        lifetime = self._rng.uniform(0.5, 4.0)
        opened = time.monotonic()
        while not stop.is_set():
            if self.drops_allowed.is_set() and time.monotonic() - opened > lifetime:
                return  # the drop: closing unread events away, like a lost connection
            try:
                message = await ws.receive(timeout=0.25)
            except TimeoutError:
                continue
            if message.type is not WSMsgType.TEXT:
                return  # closed by the server (or broken): reconnect and resume
            await self._handle(ws, json.loads(message.data))

    async def _handle(self, ws: aiohttp.ClientWebSocketResponse, body: dict[str, Any]) -> None:
        if body["type"] == "subscribed":
            if body["videos"] == "all":
                self.subscribed_to_all.set()
        elif body["type"] == "video.status_changed":
            self.sequences[body["id"]].append(body["sequence"])
            if body["data"]["status"] in TERMINAL:
                self.finished.add(body["id"])
        elif body["type"] == "error" and body.get("id"):
            # A video the gateway could not look up right now (the jobs service was down): ask again.
            self.refusals.append(body)
            self.refused_at.append(time.monotonic())
            await asyncio.sleep(0.5)  # the client's pause before asking again
            video_id = body["id"]
            await ws.send_json(
                {
                    "type": "subscribe",
                    "videos": [{"id": video_id, "last_event_id": self.last_event_id(video_id)}],
                }
            )
        else:
            raise AssertionError(f"unexpected message on the live socket: {body}")


async def _quietly_wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def stages(engine: AsyncEngine, ids: list[str]) -> dict[str, str]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT id, stage FROM jobs.jobs WHERE id = ANY(:ids)"), {"ids": ids})
        return {row.id: row.stage for row in rows}


async def stages_in_use(engine: AsyncEngine) -> set[str]:
    """The stages some job is in now (the cluster's database holds only this test's jobs)."""
    async with engine.connect() as conn:
        return set((await conn.execute(text("SELECT DISTINCT stage FROM jobs.jobs"))).scalars())


class Chaos:
    """Kills each victim in turn at a random moment, while one of its busy stages has a job when
    that comes soon, and restarts it after a random outage."""

    def __init__(self, cluster: Cluster, engine: AsyncEngine, rng: random.Random) -> None:
        self._cluster = cluster
        self._engine = engine
        self._rng = rng
        self.story: list[str] = []
        # (service, killed, serving again), monotonic.
        self.outages: list[tuple[str, float, float]] = []
        self.creating = True

    async def run(self, victims: list[str], done: asyncio.Event) -> None:
        started = time.monotonic()
        for service in victims:
            # A random moment: these sleeps are the chaos itself, not a wait for an outcome.
            await _quietly_wait(done, self._rng.uniform(0.5, 3.0))
            if done.is_set():
                return
            wanted = [s for s in BUSY_STAGES[service] if self.creating or s != "admitting"]
            stage = self._rng.choice(wanted)

            async def busy(stage: str = stage) -> bool | None:
                return True if stage in await stages_in_use(self._engine) or done.is_set() else None

            with contextlib.suppress(AssertionError):  # no job reached that stage in time: kill anyway
                await eventually(busy, deadline_seconds=10, interval=0.05)
            await asyncio.sleep(self._rng.uniform(0, 0.2))
            killed = time.monotonic()
            await self._cluster.kill9(service)
            down = self._rng.uniform(0.2, 2.5)
            await asyncio.sleep(down)
            await self._cluster.restart(service)
            serving = time.monotonic()
            self.outages.append((service, killed, serving))
            self.story.append(
                f"{killed - started:5.1f}s kill -9 {service} (jobs {stage}): down {down:.1f}s, "
                f"serving again {serving - killed - down:.1f}s after its restart"
            )

    def late(self, moments: list[float], grace: float = LATE_AFTER_SECONDS) -> list[float]:
        """Of `moments`, those more than `grace` seconds after every killed service was serving again."""
        return [
            moment
            for moment in moments
            if not any(killed <= moment <= serving + grace for _, killed, serving in self.outages)
        ]


async def simulator_videos(http: aiohttp.ClientSession, cluster: Cluster) -> list[dict[str, Any]]:
    videos: list[dict[str, Any]] = []
    after: str | None = None
    headers = {"Authorization": f"Bearer {cluster.provider_key}"}
    while True:
        params = {"limit": "100", **({"after": after} if after else {})}
        async with http.get(f"{cluster.simulator_url}/videos", params=params, headers=headers) as answer:
            assert answer.status == 200, await answer.text()
            page = await answer.json()
        videos.extend(page["data"])
        if not page["has_more"]:
            return videos
        after = page["last_id"]


async def simulator_request(
    http: aiohttp.ClientSession, cluster: Cluster, upstream_id: str
) -> dict[str, Any]:
    """What the jobs service really sent the provider for one video."""
    headers = {"Authorization": f"Bearer {cluster.provider_key}"}
    inspect = f"{cluster.simulator_url.removesuffix('/v1')}/_inspect/videos/{upstream_id}"
    async with http.get(inspect, headers=headers) as answer:
        assert answer.status == 200, await answer.text()
        return dict(await answer.json())


async def test_kill_9_of_jobs_renderer_and_billing_loses_no_video_credit_or_event(
    infrastructure, scale, tmp_path, http, engine_of
):
    seed = int(os.environ.get("RELIABILITY_SEED") or secrets.randbits(32))
    print(f"\ncrash seed {seed} (RELIABILITY_SEED={seed} repeats this run)")
    rng = random.Random(seed)
    video_count = int(scale.pick(6, 50))
    victims = list(VICTIMS) * (4 if scale.full else 1)
    rng.shuffle(victims)
    deadline = scale.pick(240, 900)

    async with running_cluster(
        infrastructure,
        tmp_path,
        users=dict.fromkeys(USERS, STARTING_CREDITS),
        settings={"SIMULATOR_GENERATION_SECONDS": "2"},
    ) as cluster:
        engine = engine_of(cluster.database_url)
        answers = ClientAnswers()
        live = LiveClient(http, cluster, LIVE_USER, rng)
        everything_done = asyncio.Event()
        live_task = asyncio.create_task(live.run(everything_done))
        await asyncio.wait_for(live.subscribed_to_all.wait(), 30)

        owners = [USERS[n % len(USERS)] for n in range(video_count)]
        prompts = [
            f"Crash test scene {n}: a lighthouse in a storm ({uuid.uuid4().hex[:8]})"
            for n in range(video_count)
        ]
        # Every third video brings a reference image, which the renderer prepares during admission.
        png = reference_png()
        references = [png if n % 3 == 1 else None for n in range(video_count)]
        ids: list[str] = []
        chaos = Chaos(cluster, engine, rng)
        chaos_task: asyncio.Task[None] | None = None
        # At full size clients arrive over a while and the crashes start meanwhile, so some hit
        # admission (moderation, reference images, the credit hold); in CI they come at once and
        # the crashes after.
        arrivals = [rng.uniform(0, scale.pick(0, 20)) for _ in prompts]
        if scale.full:
            chaos_task = asyncio.create_task(chaos.run(victims, everything_done))

        async def arrive(after: float, owner: str, prompt: str, reference: bytes | None) -> str:
            await asyncio.sleep(after)  # the client's arrival time, drawn from the seed
            return await create_video(http, cluster, owner, prompt, answers, reference)

        created = await asyncio.gather(
            *(arrive(*client) for client in zip(arrivals, owners, prompts, references, strict=True))
        )
        ids.extend(created)
        owner_of = dict(zip(ids, owners, strict=True))
        live.videos = {video_id for video_id, owner in owner_of.items() if owner == LIVE_USER}
        live.drops_allowed.set()
        chaos.creating = False
        if chaos_task is None:
            chaos_task = asyncio.create_task(chaos.run(victims, everything_done))

        async def all_terminal() -> dict[str, str] | None:
            statuses = {}
            for video_id in ids:
                status = await video_status(http, cluster, owner_of[video_id], video_id, answers)
                if status not in TERMINAL:
                    return None
                statuses[video_id] = str(status)
            return statuses

        try:
            try:
                statuses = await eventually(all_terminal, deadline_seconds=deadline, interval=1.0)
            except AssertionError:
                stuck = {k: v for k, v in (await stages(engine, ids)).items() if v not in TERMINAL}
                raise AssertionError(
                    f"seed {seed}: not every video ended; stuck: {stuck}\n"
                    + "\n".join(f"--- {s}.log\n{cluster.log_tail(s)}" for s in VICTIMS)
                ) from None
            await eventually(live.saw_every_end, deadline_seconds=60)
        finally:
            everything_done.set()
            await chaos_task
            await live_task
        print("\n".join(chaos.story))
        print(
            f"{video_count} videos: {collections.Counter(statuses.values())}; kills {cluster.kills}; "
            f"client retries {dict(answers.retried)}, {len(chaos.late(answers.retried_at))} of them late "
            f"(over {LATE_AFTER_SECONDS} s after every service was serving again), "
            f"{answers.connection_errors} connection errors; live socket connections {live.connections}, "
            f"lookups refused {len(live.refusals)} ({len(chaos.late(live.refused_at))} late)"
        )
        late = set(chaos.late(answers.retried_at))
        if late:
            retried = zip(answers.retried_at, answers.messages, strict=True)
            print("late:", collections.Counter(message for moment, message in retried if moment in late))

        # Every service died at least once, and a crash reached the client as a retryable error at worst.
        assert set(cluster.kills) == set(VICTIMS), cluster.kills
        assert answers.unexpected == [], answers.unexpected

        # The provider made at most one video per job, and exactly one for each completed job.
        # Each was asked for with the client's reference image when it had one.
        upstream = await simulator_videos(http, cluster)
        made = collections.Counter(video["prompt"] for video in upstream)
        for video_id, prompt in zip(ids, prompts, strict=True):
            assert made[prompt] <= 1, (seed, video_id, made[prompt])
            if statuses[video_id] == "completed":
                assert made[prompt] == 1, (seed, video_id)
        for video in upstream:
            sent = await simulator_request(http, cluster, video["id"])
            wanted = references[prompts.index(sent["prompt"])] is not None
            assert (sent["input_reference"] is not None) == wanted, (seed, sent)

        # Money: one settlement per job, of the kind its end calls for; the ledger adds up.
        async with engine.connect() as conn:
            jobs = {
                row.id: row
                for row in await conn.execute(
                    text("SELECT id, owner_id, stage, cost_credits, event_sequence FROM jobs.jobs")
                )
            }
            holds = {
                row.job_id: row.state
                for row in await conn.execute(text("SELECT job_id, state FROM billing.holds"))
            }
            settlements = collections.Counter(
                row.job_id
                for row in await conn.execute(
                    text("SELECT job_id FROM billing.transactions WHERE kind IN ('capture', 'release')")
                )
            )
        # The cluster's database holds this test's jobs only: none was made beside the accepted ones.
        assert set(jobs) == set(ids) and set(holds) <= set(ids), (seed, set(jobs) ^ set(ids))
        for video_id, job in jobs.items():
            assert job.stage == statuses[video_id], (seed, video_id)
            if video_id in holds:
                assert holds[video_id] == ("captured" if job.stage == "completed" else "released"), (
                    seed,
                    video_id,
                )
                assert settlements[video_id] == 1, (seed, video_id, settlements[video_id])
            else:  # refused before any credit was held
                assert job.stage == "failed" and settlements[video_id] == 0, (seed, video_id)
        assert await LedgerStore(engine).audit() == []
        for user in USERS:
            available, held = await balance(cluster.billing_address, user)
            spent = sum(
                job.cost_credits for job in jobs.values() if job.owner_id == user and job.stage == "completed"
            )
            assert (available, held) == (STARTING_CREDITS - spent, 0), (seed, user)

        # The live client got every event of each of its videos exactly once, in order, across its drops.
        assert live.connections > 1
        for video_id in live.videos:
            expected = list(range(1, jobs[video_id].event_sequence + 1))
            assert live.sequences[video_id] == expected, (seed, video_id, live.sequences[video_id])
