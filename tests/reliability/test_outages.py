"""Outages of what the platform stands on: NATS, PostgreSQL, S3 and the video provider go away while
videos are being made, and come back. Nothing may be lost, made twice or paid twice.

The services run in this process (`running_stack`) against a PostgreSQL, NATS and S3 of this
module's own (`RestartableInfrastructure`), which a test stops and starts again on the same port
with the same data, as a real server restart looks to the services. The provider is taken away
with the simulator's chaos (every request answers 503) or cut off the network by a proxy.

Every scenario ends with the same audit: every video ended and completed, one upstream video per
job, each credit hold captured exactly once, the ledger recomputes to the balances, and the account
paid exactly what completed. Sizes and outage lengths are `scale.pick(CI, full)`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from servicekit.bus import MSG_ID_HEADER
from servicekit.db import make_engine
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.billing.store import LedgerStore
from services.gateway.tests.webhook_receiver import webhook_receiver
from services.jobs.config import ProviderSettings
from services.jobs.domain.routing import parse_registry
from simulator.app import start_server
from simulator.config import Settings as SimulatorSettings
from tests.conftest import Stack, running_stack
from tests.helpers import balance, eventually, new_user
from tests.reliability.outage_control import RestartableInfrastructure, Server, TcpProxy

pytestmark = [pytest.mark.reliability, pytest.mark.e2e]

STARTING_CREDITS = 10_000
# Videos per scenario: half made before the outage starts, half created during it (where possible).
JOBS_CI, JOBS_FULL = 4, 20
# Long enough that videos are still being made when an outage starts.
GENERATION_SECONDS = 3.0
# Backoff between tries of a create that answered 502/503/504 (a CPU-starved machine can make one
# exceed its deadline; the retry carries the same Idempotency-Key, so it never makes a second video).
CREATE_RETRY_PAUSES = (1.0, 2.0, 4.0, 8.0, 0.0)
# A video that waited out an outage may sit in a retry backoff of up to a minute before resuming.
FINISH_DEADLINE_SECONDS = 240


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def outage_stack(servers: RestartableInfrastructure) -> AsyncIterator[Stack]:
    """One deployment (the stack's simulator); each scenario has a tenant of its own."""
    async with running_stack(
        servers.infrastructure, SimulatorSettings(generation_seconds=GENERATION_SECONDS)
    ) as running:
        yield running


# --- the client's side ----------------------------------------------------------------------------


@dataclass
class Tenant:
    """One user's videos through the gateway's HTTP API."""

    http: aiohttp.ClientSession
    stack: Stack
    user: str
    label: str
    ids: list[str] = field(default_factory=list)
    prompts: dict[str, str] = field(default_factory=dict)  # video id -> its (unique) prompt

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.stack.key(self.user)}"}

    async def create(self, count: int) -> list[str]:
        """Create videos as a careful client does: a create that times out or meets a passing 5xx is
        sent again with the same Idempotency-Key (as the `openai` SDK does), so it makes one video."""
        created = []
        for _ in range(count):
            prompt, key = f"{self.label} scene {uuid.uuid4().hex[:10]}", uuid.uuid4().hex
            for pause in CREATE_RETRY_PAUSES:
                status, video = await self.try_create(prompt, idempotency_key=key)
                if status not in (502, 503, 504):
                    break
                await asyncio.sleep(pause)
            assert status == 200, video
            created.append(video["id"])
        return created

    async def try_create(self, prompt: str, *, idempotency_key: str = "") -> tuple[int, dict[str, Any]]:
        """One create; a video it made is remembered with its (unique) prompt."""
        body = {"model": "sora-2", "seconds": "4", "prompt": prompt}
        headers = {**self.headers, **({"Idempotency-Key": idempotency_key} if idempotency_key else {})}
        async with self.http.post(
            f"{self.stack.gateway_url}/v1/videos", json=body, headers=headers
        ) as answer:
            status, video = answer.status, await answer.json(content_type=None)
        if status == 200 and video["id"] not in self.prompts:
            self.ids.append(video["id"])
            self.prompts[video["id"]] = prompt
        return status, video

    async def get(self, video_id: str) -> tuple[int, dict[str, Any]]:
        async with self.http.get(
            f"{self.stack.gateway_url}/v1/videos/{video_id}", headers=self.headers
        ) as answer:
            return answer.status, await answer.json(content_type=None)

    async def wait_all_ended(self) -> dict[str, dict[str, Any]]:
        async def ended() -> dict[str, dict[str, Any]] | None:
            videos = {}
            for video_id in self.ids:
                status, video = await self.get(video_id)
                if status != 200 or video["status"] not in ("completed", "failed"):
                    return None
                videos[video_id] = video
            return videos

        return await eventually(ended, deadline_seconds=FINISH_DEADLINE_SECONDS, interval=0.5)


def _database(stack: Stack) -> AsyncEngine:
    return make_engine(stack.database_url, pool_size=1)


async def _stages(stack: Stack, ids: Sequence[str]) -> dict[str, Any]:
    engine = _database(stack)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT id, stage, deployment, tried_deployments, attempts FROM jobs.jobs"
                    " WHERE id = ANY(:ids)"
                ),
                {"ids": list(ids)},
            )
            return {row.id: row for row in rows}
    finally:
        await engine.dispose()


async def _wait_until(stack: Stack, ids: Sequence[str], condition: Callable[[Any], bool]) -> None:
    """Until the row of at least one of the jobs meets `condition`."""

    async def met() -> bool | None:
        return True if any(condition(row) for row in (await _stages(stack, ids)).values()) else None

    await eventually(met, deadline_seconds=90, interval=0.1)


async def _wait_until_stage(stack: Stack, ids: Sequence[str], stages: set[str], *, at_least: int) -> None:
    async def reached() -> bool | None:
        rows = await _stages(stack, ids)
        return True if sum(row.stage in stages for row in rows.values()) >= at_least else None

    await eventually(reached, deadline_seconds=90, interval=0.1)


async def _stage_of(stack: Stack, ids: Sequence[str]) -> dict[str, str]:
    return {row.id: row.stage for row in (await _stages(stack, ids)).values()}


# Stages of a video whose files have not been fetched from the provider and stored yet.
_BEFORE_DOWNLOAD = ("admitting", "queued", "submitting", "generating")


def assert_held_during_outage(before: dict[str, str], during: dict[str, str]) -> None:
    """Nothing failed during the outage, and no video that still needed what was down (it had not
    been downloaded when the outage began, or was created during it) completed."""
    assert "failed" not in during.values(), during
    waiting = [video_id for video_id in during if before.get(video_id, "queued") in _BEFORE_DOWNLOAD]
    assert waiting, (before, during)
    assert all(during[video_id] != "completed" for video_id in waiting), (before, during)


async def _upstream_prompts(simulator_url: str, simulator_key: str) -> collections.Counter[str]:
    """How many videos the provider made per prompt (its `GET /v1/videos` lists every one)."""
    prompts: collections.Counter[str] = collections.Counter()
    after = None
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {simulator_key}"}) as http:
        while True:
            params = {"limit": "100", **({"after": after} if after else {})}
            async with http.get(f"{simulator_url}/videos", params=params) as answer:
                assert answer.status == 200, await answer.text()
                page = await answer.json()
            prompts.update(video["prompt"] for video in page["data"])
            if not page["has_more"]:
                return prompts
            after = page["last_id"]


async def assert_nothing_lost_or_doubled(
    tenant: Tenant, *, simulators: Sequence[tuple[str, str]] | None = None
) -> dict[str, dict[str, Any]]:
    """Every video completed, one upstream video each, its hold captured exactly once, the ledger
    consistent, and the account charged exactly what completed."""
    stack = tenant.stack
    videos = await tenant.wait_all_ended()
    failed = {
        video_id: video["error"] for video_id, video in videos.items() if video["status"] != "completed"
    }
    assert not failed, f"videos failed although the outage was survivable: {failed}"

    upstream: collections.Counter[str] = collections.Counter()
    for url, key in simulators or [(stack.simulator_url, stack.simulator_key)]:
        upstream.update(await _upstream_prompts(url, key))
    made = {video_id: upstream[prompt] for video_id, prompt in tenant.prompts.items()}
    assert set(made.values()) == {1}, f"upstream videos per job: {made}"

    engine = _database(stack)
    try:
        async with engine.connect() as conn:
            costs = {
                row.id: row.cost_credits
                for row in await conn.execute(
                    text("SELECT id, cost_credits FROM jobs.jobs WHERE id = ANY(:ids)"), {"ids": tenant.ids}
                )
            }
            holds = {
                row.job_id: row.state
                for row in await conn.execute(
                    text("SELECT job_id, state FROM billing.holds WHERE job_id = ANY(:ids)"),
                    {"ids": tenant.ids},
                )
            }
            settlements = collections.Counter(
                (row.job_id, row.kind)
                for row in await conn.execute(
                    text(
                        "SELECT job_id, kind FROM billing.transactions"
                        " WHERE job_id = ANY(:ids) AND kind IN ('capture', 'release')"
                    ),
                    {"ids": tenant.ids},
                )
            )
        problems = await LedgerStore(engine).audit()
    finally:
        await engine.dispose()
    assert holds == dict.fromkeys(tenant.ids, "captured")
    assert settlements == collections.Counter({(video_id, "capture"): 1 for video_id in tenant.ids})
    assert problems == []
    assert all(cost > 0 for cost in costs.values()), costs
    assert await balance(stack.billing_address, tenant.user) == (STARTING_CREDITS - sum(costs.values()), 0)
    return videos


async def new_tenant(http: aiohttp.ClientSession, stack: Stack, label: str) -> Tenant:
    user = await new_user(stack, label, credits=STARTING_CREDITS)
    return Tenant(http, stack, user, label)


# --- events ---------------------------------------------------------------------------------------


async def _outbox_msg_ids(stack: Stack, schema: str) -> list[str]:
    """A service's outbox in commit order, once its relay has published every row."""
    engine = _database(stack)
    try:

        async def all_published() -> list[str] | None:
            async with engine.connect() as conn:
                rows = (
                    await conn.execute(text(f"SELECT msg_id, published_at FROM {schema}.outbox ORDER BY id"))
                ).all()
            return [row.msg_id for row in rows] if all(row.published_at for row in rows) else None

        return await eventually(all_published, deadline_seconds=60)
    finally:
        await engine.dispose()


async def _unpublished(stack: Stack, schema: str) -> int:
    engine = _database(stack)
    try:
        async with engine.connect() as conn:
            return int(
                await conn.scalar(text(f"SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL"))
                or 0
            )
    finally:
        await engine.dispose()


async def _stream_msg_ids(nats_url: str, stream: str, subjects: str) -> list[str]:
    """Every message's Nats-Msg-Id in the stream, in stream order."""
    connection = await nats.connect(nats_url)
    try:
        js = connection.jetstream()
        last = (await js.stream_info(stream)).state.last_seq
        subscription = await js.pull_subscribe(
            subjects,
            stream=stream,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, inactive_threshold=30
            ),
        )
        found: list[str] = []
        seen = 0
        while seen < last:
            for message in await subscription.fetch(500, timeout=10):
                seen = message.metadata.sequence.stream
                found.append((message.headers or {}).get(MSG_ID_HEADER, ""))
        await subscription.unsubscribe()
        return found
    finally:
        await connection.close()


def _sequences_by_job(msg_ids: Sequence[str]) -> dict[str, list[int]]:
    """`<job id>:<sequence>` status-event ids, grouped by job in the order given."""
    by_job: dict[str, list[int]] = collections.defaultdict(list)
    for msg_id in msg_ids:
        job_id, _, sequence = msg_id.rpartition(":")
        by_job[job_id].append(int(sequence))
    return dict(by_job)


@dataclass
class LiveWatch:
    """A WebSocket client subscribed to all of a tenant's videos, recording every event it gets."""

    events: list[dict[str, Any]] = field(default_factory=list)
    closed: list[Any] = field(default_factory=list)

    def sequences(self, video_id: str) -> list[int]:
        return [event["sequence"] for event in self.events if event["id"] == video_id]

    def finished(self, ids: Sequence[str]) -> bool:
        ended = {event["id"] for event in self.events if event["data"]["status"] in ("completed", "failed")}
        return ended >= set(ids)


@contextlib.asynccontextmanager
async def live_watch(tenant: Tenant) -> AsyncIterator[LiveWatch]:
    watch = LiveWatch()
    async with tenant.http.ws_connect(
        f"{tenant.stack.gateway_url}/v1/ws", headers=tenant.headers, heartbeat=5
    ) as ws:
        await ws.send_json({"type": "subscribe", "videos": "all"})
        assert json.loads((await ws.receive(timeout=10)).data) == {"type": "subscribed", "videos": "all"}

        async def record() -> None:
            async for message in ws:
                if message.type is aiohttp.WSMsgType.TEXT:
                    event = json.loads(message.data)
                    if event["type"] == "video.status_changed":
                        watch.events.append(event)
            watch.closed.append(ws.close_code)

        reader = asyncio.create_task(record())
        try:
            yield watch
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


# --- 1. NATS --------------------------------------------------------------------------------------


async def test_events_written_while_nats_is_down_all_reach_jetstream_in_order_afterwards(
    servers: RestartableInfrastructure, outage_stack: Stack, http: aiohttp.ClientSession, scale
) -> None:
    stack = outage_stack
    tenant = await new_tenant(http, stack, "nats_outage")
    jobs = int(scale.pick(JOBS_CI, JOBS_FULL))
    async with webhook_receiver() as receiver, live_watch(tenant) as live:
        async with http.post(
            f"{stack.gateway_url}/v1/webhook_endpoints", json={"url": receiver.url()}, headers=tenant.headers
        ) as answer:
            assert answer.status == 200, await answer.text()
        await tenant.create(jobs // 2)
        async with servers.down(Server.NATS):
            # Creating needs no NATS; the videos go on being made and their events wait in the outbox.
            await tenant.create(jobs - jobs // 2)
            await asyncio.sleep(scale.pick(8, 30))
            held_back = await _unpublished(stack, "jobs")
            assert held_back > 0, "no status event was written during the outage"
        await assert_nothing_lost_or_doubled(tenant)

        # Every outbox row is in JetStream exactly once, in the order it was committed.
        for schema, stream, subjects in (
            ("jobs", "JOBS", "jobs.v1.>"),
            ("billing", "BILLING", "billing.v1.>"),
        ):
            written = await _outbox_msg_ids(stack, schema)
            ours = set(written)
            stored = [
                msg_id for msg_id in await _stream_msg_ids(stack.nats_url, stream, subjects) if msg_id in ours
            ]
            assert stored == written, f"{stream}: JetStream differs from the outbox"
        # ...and each video's events are numbered 1, 2, 3... with none missing.
        by_job = _sequences_by_job(await _outbox_msg_ids(stack, "jobs"))
        for video_id in tenant.ids:
            assert by_job[video_id] == list(range(1, len(by_job[video_id]) + 1)), video_id

        # A client that stayed connected across the outage got every one of them, in order.
        await eventually(lambda: _true_if(live.finished(tenant.ids)), deadline_seconds=30)
        assert live.closed == []
        for video_id in tenant.ids:
            assert live.sequences(video_id) == by_job[video_id], video_id

        # The webhook endpoint was told of every video's completion (the gateway's durable consumer
        # carried on after the restart).
        def completions() -> set[str]:
            events = [json.loads(item.body) for item in receiver.accepted()]
            return {event["data"]["id"] for event in events if event["type"] == "video.completed"}

        await receiver.wait_until(lambda: completions() >= set(tenant.ids), deadline_seconds=60)


async def _true_if(condition: bool) -> bool | None:
    return True if condition else None


# --- 2. PostgreSQL --------------------------------------------------------------------------------


async def test_services_ride_out_a_postgres_restart_mid_flight(
    servers: RestartableInfrastructure, outage_stack: Stack, http: aiohttp.ClientSession, scale
) -> None:
    stack = outage_stack
    tenant = await new_tenant(http, stack, "postgres_restart")
    jobs = int(scale.pick(JOBS_CI, JOBS_FULL))
    await tenant.create(jobs)
    await _wait_until_stage(stack, tenant.ids, {"generating"}, at_least=1)
    retried_prompt, retried_key = f"postgres_restart retried {uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    async with servers.down(Server.POSTGRES):
        answers = [
            await tenant.get(tenant.ids[0]),
            await tenant.try_create(retried_prompt, idempotency_key=retried_key),
        ]
        await asyncio.sleep(scale.pick(3, 15))
    # While the database is away, the API says so: 503 with an OpenAI error body, never a 500.
    for status, body in answers:
        assert status == 503, body
        assert set(body["error"]) == {"message", "type", "param", "code"}
    # The same processes carry on: the refused create goes through when the client retries it, once.
    retries = [await tenant.try_create(retried_prompt, idempotency_key=retried_key) for _ in range(2)]
    assert [status for status, _ in retries] == [200, 200], retries
    assert retries[0][1]["id"] == retries[1][1]["id"]
    await assert_nothing_lost_or_doubled(tenant)


# --- 3. S3 ----------------------------------------------------------------------------------------


async def test_downloads_and_renders_wait_for_s3_and_complete_once_it_is_back(
    servers: RestartableInfrastructure, outage_stack: Stack, http: aiohttp.ClientSession, scale
) -> None:
    stack = outage_stack
    tenant = await new_tenant(http, stack, "s3_outage")
    (finished,) = await tenant.create(1)
    await tenant.wait_all_ended()
    jobs = int(scale.pick(JOBS_CI, JOBS_FULL))
    await tenant.create(jobs // 2)
    await _wait_until_stage(stack, tenant.ids, {"generating"}, at_least=1)
    before = await _stage_of(stack, tenant.ids)
    async with servers.down(Server.S3):
        outage_ends = asyncio.get_running_loop().time() + scale.pick(8, 30)
        async with http.get(
            f"{stack.gateway_url}/v1/videos/{finished}/content", headers=tenant.headers
        ) as answer:
            download_status, download_body = answer.status, await answer.json(content_type=None)
        # Admission needs no storage.
        await tenant.create(jobs - jobs // 2)
        # A video the provider finished cannot be stored: it waits in `downloading`...
        await _wait_until_stage(stack, tenant.ids, {"downloading"}, at_least=1)
        await asyncio.sleep(max(0.0, outage_ends - asyncio.get_running_loop().time()))
        during = await _stage_of(stack, tenant.ids)
    # ...and none fails, nor completes unless its files were stored before the outage began.
    assert_held_during_outage(before, during)
    assert download_status == 503, download_body
    assert set(download_body["error"]) == {"message", "type", "param", "code"}

    await assert_nothing_lost_or_doubled(tenant)
    for video_id in tenant.ids:
        async with http.get(
            f"{stack.gateway_url}/v1/videos/{video_id}/content", headers=tenant.headers
        ) as answer:
            assert answer.status == 200
            assert (await answer.read())[4:8] == b"ftyp"  # an MP4 as stored, whole


# --- 4. The provider ------------------------------------------------------------------------------


async def _set_chaos(stack: Stack, knobs: dict[str, Any]) -> None:
    simulator_root = stack.simulator_url.removesuffix("/v1")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {stack.simulator_key}"}) as http:
        async with http.put(f"{simulator_root}/_chaos", json=knobs) as answer:
            assert answer.status == 200, await answer.text()


async def test_videos_wait_for_a_provider_that_answers_503_and_resume(
    outage_stack: Stack, http: aiohttp.ClientSession, scale
) -> None:
    stack = outage_stack
    tenant = await new_tenant(http, stack, "provider_outage")
    jobs = int(scale.pick(JOBS_CI, JOBS_FULL))
    await tenant.create(jobs // 2)
    await _wait_until_stage(stack, tenant.ids, {"generating"}, at_least=1)
    before = await _stage_of(stack, tenant.ids)
    await _set_chaos(stack, {"seed": 7, "unavailable": 1.0})
    try:
        outage_ends = asyncio.get_running_loop().time() + scale.pick(10, 60)
        # Admission needs no provider: these wait in line for it.
        await tenant.create(jobs - jobs // 2)
        await _wait_until(stack, tenant.ids, lambda row: row.attempts > 0)  # a poll failed: backing off
        await asyncio.sleep(max(0.0, outage_ends - asyncio.get_running_loop().time()))
        during = await _stage_of(stack, tenant.ids)
    finally:
        await _set_chaos(stack, {})
    assert_held_during_outage(before, during)
    await assert_nothing_lost_or_doubled(tenant)


@dataclass
class TwoDeployments:
    stack: Stack
    primary: TcpProxy
    simulators: list[tuple[str, str]]  # (url, key) of the primary's and the secondary's simulator


@pytest.fixture(scope="module")
async def two_deployments(servers: RestartableInfrastructure) -> AsyncIterator[TwoDeployments]:
    """`sora-2` routes to `primary` (behind a proxy the test can cut), then to `secondary`."""
    keys = {"primary": f"sk-{uuid.uuid4().hex}", "secondary": f"sk-{uuid.uuid4().hex}"}
    settings = SimulatorSettings(generation_seconds=GENERATION_SECONDS * 2)
    async with contextlib.AsyncExitStack() as exits:
        ports = {}
        for name, key in keys.items():
            runner, ports[name] = await start_server(replace(settings, port=0, api_key=key))
            exits.push_async_callback(runner.cleanup)
        proxy = TcpProxy(ports["primary"])
        await proxy.restore()
        exits.push_async_callback(proxy.cut)
        urls = {"primary": f"{proxy.url}/v1", "secondary": f"http://127.0.0.1:{ports['secondary']}/v1"}

        def registry(_url: str, _key: str) -> ProviderSettings:
            deployments = {
                name: {"base_url": urls[name], "api_key_env": f"{name.upper()}_KEY", "max_concurrent": 16}
                for name in keys
            }
            routes = {"sora-2": ["primary", "secondary"]}
            return ProviderSettings(
                registry=parse_registry(json.dumps({"deployments": deployments, "routes": routes})),
                api_keys=keys,
                timeout_seconds=5,
                max_attempts=2,
                min_poll_seconds=0.3,
                max_poll_seconds=1.0,
            )

        stack = await exits.enter_async_context(
            running_stack(servers.infrastructure, settings, provider_settings=registry)
        )
        yield TwoDeployments(
            stack,
            proxy,
            [(f"http://127.0.0.1:{ports[name]}/v1", key) for name, key in keys.items()],
        )


@pytest.mark.full_size_only  # CI keeps failover in tests/test_routing.py
async def test_a_cut_off_deployment_hands_new_videos_to_the_other_and_resumes_its_own(
    two_deployments: TwoDeployments, http: aiohttp.ClientSession, scale
) -> None:
    stack = two_deployments.stack
    tenant = await new_tenant(http, stack, "provider_failover")
    jobs = int(scale.pick(JOBS_CI, JOBS_FULL))
    await tenant.create(jobs // 2)
    await _wait_until_stage(stack, tenant.ids, {"generating"}, at_least=1)
    await two_deployments.primary.cut()
    try:
        before = await _stage_of(stack, tenant.ids)
        waiting = await tenant.create(jobs - jobs // 2)
        await asyncio.sleep(scale.pick(10, 60))
    finally:
        await two_deployments.primary.restore()
    await assert_nothing_lost_or_doubled(tenant, simulators=two_deployments.simulators)

    rows = await _stages(stack, tenant.ids)
    # What the primary was making when it was cut off waited for it and finished there...
    generating = [video_id for video_id, stage in before.items() if stage == "generating"]
    assert generating and {rows[video_id].deployment for video_id in generating} == {"primary"}
    # ...what came during the outage went to the secondary...
    assert {rows[video_id].deployment for video_id in waiting} == {"secondary"}
    # ...and the first to be sent to the primary after the cut was handed over once it failed there
    # (the primary then cools down, and later ones go straight to the secondary).
    handed_over = [row for row in rows.values() if row.tried_deployments == ["primary"]]
    assert handed_over and {row.deployment for row in handed_over} == {"secondary"}
