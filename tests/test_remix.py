"""Remix through the gateway with the official SDK: the provider that made the source remixes it,
with the source's model, size and length, and the remix is paid for like a create."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import openai
import pytest

from tests.helpers import balance, new_user

pytestmark = pytest.mark.e2e


async def _provider_video_with_prompt(stack, prompt: str) -> dict:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {stack.simulator_key}"}) as http:
        async with http.get(f"{stack.simulator_url}/videos", params={"limit": "100"}) as response:
            page = await response.json()
    [video] = [video for video in page["data"] if video["prompt"] == prompt]
    return video


async def test_a_completed_video_is_remixed_by_its_provider(stack):
    user = await new_user(stack, "remix", credits=1_000)
    client = openai.OpenAI(base_url=f"{stack.gateway_url}/v1", api_key=stack.key(user), max_retries=0)
    tag = uuid.uuid4().hex[:6]
    source = await asyncio.to_thread(
        client.videos.create_and_poll,
        prompt=f"A calico cat at a piano {tag}",
        size="1280x720",
        seconds="8",
        poll_interval_ms=200,
    )
    assert source.status == "completed", source.error
    spent_on_source = 1_000 - (await balance(stack.billing_address, user))[0]

    new_prompt = f"The cat takes a bow {tag}"
    remix = await asyncio.to_thread(client.videos.remix, source.id, prompt=new_prompt)
    assert remix.remixed_from_video_id == source.id
    assert (remix.size, remix.seconds, remix.model) == (source.size, source.seconds, source.model)
    remix = await asyncio.to_thread(client.videos.poll, remix.id, poll_interval_ms=200)
    assert remix.status == "completed", remix.error

    upstream_source = await _provider_video_with_prompt(stack, source.prompt)
    upstream_remix = await _provider_video_with_prompt(stack, new_prompt)
    assert upstream_remix["remixed_from_video_id"] == upstream_source["id"]
    available, held = await balance(stack.billing_address, user)
    assert (1_000 - available, held) == (2 * spent_on_source, 0)


async def test_remix_refuses_foreign_unfinished_and_overspecified_requests(stack):
    owner = await new_user(stack, "remixowner", credits=100)
    client = openai.OpenAI(base_url=f"{stack.gateway_url}/v1", api_key=stack.key(owner), max_retries=0)
    refused = await asyncio.to_thread(
        client.videos.create_and_poll, prompt="A b.e.h.e.a.d.i.n.g in close-up", poll_interval_ms=200
    )
    assert refused.status == "failed"
    with pytest.raises(openai.BadRequestError) as caught:
        await asyncio.to_thread(client.videos.remix, refused.id, prompt="something gentle")
    assert caught.value.code == "video_not_completed"

    stranger = openai.OpenAI(base_url=f"{stack.gateway_url}/v1", api_key=stack.key("user_bob"), max_retries=0)
    with pytest.raises(openai.NotFoundError):
        await asyncio.to_thread(stranger.videos.remix, refused.id, prompt="mine now")

    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{stack.gateway_url}/v1/videos/{refused.id}/remix",
            json={"prompt": "longer", "seconds": "12"},
            headers={"Authorization": f"Bearer {stack.key(owner)}"},
        ) as response:
            body = await response.json()
    assert (response.status, body["error"]["param"]) == (400, "prompt")
