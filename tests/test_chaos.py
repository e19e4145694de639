"""Every chaos knob of the provider at once, from a seed: whatever the provider does, every job ends,
no upstream video is made twice, and every credit hold is captured or released exactly once."""

from __future__ import annotations

import asyncio
import collections
import uuid

import aiohttp
import openai
import pytest
from servicekit.db import make_engine
from sqlalchemy import text

from services.jobs.config import ProviderSettings
from simulator.chaos import ChaosSettings
from simulator.config import Settings as SimulatorSettings
from tests.conftest import running_stack
from tests.helpers import balance, credit, eventually

pytestmark = pytest.mark.e2e

CHAOS = ChaosSettings(
    seed=20261121,
    rate_limit=0.15,
    retry_after_ms=150,
    server_error=0.08,
    unavailable=0.08,
    slow=0.1,
    slow_ms=300,
    drop=0.05,
    fail_job=0.2,
    refuse_terms=("forbidden",),
    early_expiry=0.15,
)
JOBS = 12
STARTING_CREDITS = 5_000


def _resilient(url: str, key: str) -> ProviderSettings:
    return ProviderSettings.single(
        url, key, timeout_seconds=5, max_attempts=5, min_poll_seconds=0.3, max_poll_seconds=1.0
    )


async def _upstream_videos(stack) -> list[dict]:
    videos, after = [], None
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {stack.simulator_key}"}) as http:
        while True:
            params = {"limit": "100", **({"after": after} if after else {})}
            # The simulator's chaos applies to us too; retry what it throws at us.
            for _ in range(20):
                try:
                    async with http.get(f"{stack.simulator_url}/videos", params=params) as response:
                        if response.status == 200:
                            page = await response.json()
                            break
                except aiohttp.ClientError:
                    continue
            else:
                raise AssertionError("could not list the simulator's videos")
            videos.extend(page["data"])
            if not page["has_more"]:
                return videos
            after = page["last_id"]


async def test_every_job_ends_and_money_and_upstream_videos_stay_exact_under_chaos(infrastructure):
    async with running_stack(
        infrastructure,
        SimulatorSettings(generation_seconds=0.5, chaos=CHAOS),
        provider_settings=_resilient,
    ) as stack:
        await credit(
            stack.billing_address, "user_alice", STARTING_CREDITS, request_id=f"topup-{uuid.uuid4()}"
        )
        client = openai.OpenAI(
            base_url=f"{stack.gateway_url}/v1", api_key=stack.key("user_alice"), max_retries=0
        )
        prompts = [
            f"Chaos scene {n}" + (" with a forbidden symbol" if n % 6 == 0 else "") for n in range(JOBS)
        ]
        ids = [(await asyncio.to_thread(client.videos.create, model="sora-2", prompt=p)).id for p in prompts]

        async def all_finished():
            videos = [await asyncio.to_thread(client.videos.retrieve, video_id) for video_id in ids]
            return videos if all(video.status in ("completed", "failed") for video in videos) else None

        videos = await eventually(all_finished, deadline_seconds=240, interval=0.5)
        by_prompt = dict(zip(prompts, videos, strict=True))

        # Refused terms end as content-policy failures; chaos leaves both outcomes among the rest.
        for prompt, video in by_prompt.items():
            if "forbidden" in prompt:
                assert video.status == "failed" and video.error.code == "content_policy_violation", video
        statuses = collections.Counter(video.status for video in videos)
        assert statuses["completed"] >= 1 and statuses["failed"] >= 2, statuses

        # Never two upstream videos for one job (each prompt is unique to its job).
        upstream = collections.Counter(video["prompt"] for video in await _upstream_videos(stack))
        assert max(upstream.values()) == 1, upstream

        # Money: charged exactly for what completed, nothing left held, one settlement per job.
        engine = make_engine(stack.database_url, pool_size=1)
        async with engine.connect() as conn:
            jobs = {
                row.id: row
                for row in await conn.execute(
                    text("SELECT id, stage, cost_credits FROM jobs.jobs WHERE id = ANY(:ids)"), {"ids": ids}
                )
            }
            holds = {
                row.job_id: row.state
                for row in await conn.execute(
                    text("SELECT job_id, state FROM billing.holds WHERE job_id = ANY(:ids)"), {"ids": ids}
                )
            }
            settlements = collections.Counter(
                row.job_id
                for row in await conn.execute(
                    text(
                        "SELECT job_id FROM billing.transactions"
                        " WHERE job_id = ANY(:ids) AND kind IN ('capture', 'release')"
                    ),
                    {"ids": ids},
                )
            )
        await engine.dispose()
        for job_id, row in jobs.items():
            assert holds[job_id] == ("captured" if row.stage == "completed" else "released"), job_id
            assert settlements[job_id] == 1, job_id
        available, held = await balance(stack.billing_address, "user_alice")
        assert held == 0
        charged = sum(row.cost_credits for row in jobs.values() if row.stage == "completed")
        assert available == STARTING_CREDITS - charged
