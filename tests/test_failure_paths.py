"""What happens when the provider fails a job: the job ends failed and the hold comes back whole."""

from __future__ import annotations

import asyncio
import uuid

import openai
import pytest

from simulator.config import Settings as SimulatorSettings
from tests.conftest import running_stack
from tests.helpers import balance, credit

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def failing_provider_stack(infrastructure):
    # An ffmpeg that always fails makes the simulator end every video `failed`, as a provider would.
    async with running_stack(
        infrastructure, SimulatorSettings(generation_seconds=0.5, ffmpeg_exe="/bin/false")
    ) as s:
        yield s


async def test_a_provider_failure_fails_the_job_and_releases_the_hold(failing_provider_stack):
    stack = failing_provider_stack
    await credit(stack.billing_address, "user_alice", 500, request_id=f"topup-{uuid.uuid4()}")
    client = openai.OpenAI(base_url=f"{stack.gateway_url}/v1", api_key=stack.key("user_alice"), max_retries=0)

    video = await asyncio.to_thread(
        client.videos.create, model="sora-2", prompt="A kite over a beach", seconds="8"
    )
    assert await balance(stack.billing_address, "user_alice") == (
        500 - 80,
        80,
    )  # the hold is placed at submit

    finished = await asyncio.to_thread(client.videos.poll, video.id, poll_interval_ms=200)
    assert finished.status == "failed"
    assert finished.error is not None and finished.error.code and finished.error.message
    assert await balance(stack.billing_address, "user_alice") == (500, 0)

    with pytest.raises(openai.BadRequestError) as raised:
        await asyncio.to_thread(client.videos.download_content, video.id)
    assert raised.value.body["code"] == "video_not_ready"


async def test_assets_that_expire_before_we_copy_them_fail_clearly_and_cost_nothing(infrastructure):
    from simulator.chaos import ChaosSettings

    expiring = SimulatorSettings(generation_seconds=0.5, chaos=ChaosSettings(seed=1, early_expiry=1.0))
    async with running_stack(infrastructure, expiring) as stack:
        await credit(stack.billing_address, "user_alice", 100, request_id=f"topup-{uuid.uuid4()}")
        client = openai.OpenAI(
            base_url=f"{stack.gateway_url}/v1", api_key=stack.key("user_alice"), max_retries=0
        )
        video = await asyncio.to_thread(
            client.videos.create_and_poll, model="sora-2", prompt="A melting clock", poll_interval_ms=200
        )
        assert video.status == "failed"
        assert video.error is not None and video.error.code == "asset_expired"
        assert await balance(stack.billing_address, "user_alice") == (100, 0)
