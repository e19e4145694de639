"""Routing through the gateway: failover past a dead deployment, and FIFO queueing within a limit."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid

import openai
import pytest
from servicekit.db import make_engine
from sqlalchemy import text

from services.jobs.config import ProviderSettings
from services.jobs.domain.routing import parse_registry
from simulator.config import Settings as SimulatorSettings
from tests.conftest import running_stack
from tests.helpers import credit, eventually

pytestmark = pytest.mark.e2e


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _registry(simulator_url: str, simulator_key: str, *, dead_first: bool, limit: int) -> ProviderSettings:
    deployments = {"sim": {"base_url": simulator_url, "api_key_env": "SIM_KEY", "max_concurrent": limit}}
    routes = ["sim"]
    if dead_first:
        deployments["dead"] = {"base_url": f"http://127.0.0.1:{_closed_port()}/v1", "api_key_env": "DEAD_KEY"}
        routes = ["dead", "sim"]
    return ProviderSettings(
        registry=parse_registry(json.dumps({"deployments": deployments, "routes": {"sora-2": routes}})),
        api_keys={"sim": simulator_key, "dead": "sk-dead"},
        timeout_seconds=5,
        max_attempts=2,
        min_poll_seconds=0.3,
        max_poll_seconds=1.0,
    )


async def _job_row(stack, job_id: str):
    engine = make_engine(stack.database_url, pool_size=1)
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT deployment, tried_deployments FROM jobs.jobs WHERE id = :id"), {"id": job_id}
            )
        ).one()
    await engine.dispose()
    return row


async def _wait_finished(client: openai.OpenAI, video_id: str):
    async def finished():
        video = await asyncio.to_thread(client.videos.retrieve, video_id)
        return video if video.status in ("completed", "failed") else None

    return await eventually(finished, deadline_seconds=90)


async def test_a_dead_deployment_hands_its_jobs_to_the_next_one(infrastructure):
    async with running_stack(
        infrastructure,
        SimulatorSettings(generation_seconds=0.5),
        provider_settings=lambda url, key: _registry(url, key, dead_first=True, limit=4),
    ) as stack:
        await credit(stack.billing_address, "user_alice", 1000, request_id=f"topup-{uuid.uuid4()}")
        client = openai.OpenAI(
            base_url=f"{stack.gateway_url}/v1", api_key=stack.key("user_alice"), max_retries=0
        )
        created = await asyncio.to_thread(
            client.videos.create, model="sora-2", prompt="A red balloon drifting"
        )
        video = await _wait_finished(client, created.id)
        assert video.status == "completed", video.error
        row = await _job_row(stack, created.id)
        assert row.deployment == "sim"
        assert row.tried_deployments == ["dead"]


async def test_jobs_beyond_a_deployments_limit_wait_in_line_with_visible_positions(infrastructure):
    async with running_stack(
        infrastructure,
        SimulatorSettings(generation_seconds=1.5),
        provider_settings=lambda url, key: _registry(url, key, dead_first=False, limit=1),
    ) as stack:
        await credit(stack.billing_address, "user_alice", 1000, request_id=f"topup-{uuid.uuid4()}")
        client = openai.OpenAI(
            base_url=f"{stack.gateway_url}/v1", api_key=stack.key("user_alice"), max_retries=0
        )
        ids = [
            (await asyncio.to_thread(client.videos.create, model="sora-2", prompt=f"Lantern number {n}")).id
            for n in range(3)
        ]
        views = [await asyncio.to_thread(client.videos.retrieve, video_id) for video_id in ids]
        positions = [(view.model_extra or {}).get("queue_position") for view in views]
        waiting = [p for p in positions if p]
        # With one slot, at most one runs; the rest queue in creation order, 1 then 2.
        assert len(waiting) >= 2
        assert waiting == sorted(waiting) and waiting[0] >= 1
        finished = [await _wait_finished(client, video_id) for video_id in ids]
        assert [video.status for video in finished] == ["completed"] * 3
        completion_order = sorted(finished, key=lambda video: video.completed_at or 0)
        assert [video.id for video in completion_order] == ids  # first in, first out
