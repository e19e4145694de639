"""API keys end to end: a key made through the API drives the official openai SDK, stops working the
moment it is revoked, and an admin's concurrent-jobs limit on a key reaches the jobs service."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import openai
import pytest

from tests.helpers import credit, new_user

pytestmark = pytest.mark.e2e
CHEAP = {"model": "sora-2", "seconds": "4", "size": "720x1280"}


async def _post(stack, path: str, key: str, body: dict[str, Any]) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{stack.gateway_url}{path}", json=body, headers={"Authorization": f"Bearer {key}"}
        ) as response:
            assert response.status == 200, await response.text()
            return await response.json()


def _sdk(stack, key: str) -> openai.AsyncOpenAI:
    # The async client: the stack serves from this test's event loop, which a blocking call would stall.
    return openai.AsyncOpenAI(base_url=f"{stack.gateway_url}/v1", api_key=key, max_retries=0)


async def test_a_key_made_through_the_api_works_with_the_sdk_until_revoked(stack):
    user = await new_user(stack, "keys", credits=0)
    created = await _post(stack, "/v1/api_keys", stack.key(user), {"name": "sdk"})
    client = _sdk(stack, created["value"])
    assert (await client.videos.list()).data == []
    async with aiohttp.ClientSession() as http:
        async with http.delete(
            f"{stack.gateway_url}/v1/api_keys/{created['id']}",
            headers={"Authorization": f"Bearer {stack.key(user)}"},
        ) as response:
            assert response.status == 200
    with pytest.raises(openai.AuthenticationError) as refused:
        await client.videos.list()
    assert refused.value.code == "invalid_api_key"
    assert created["value"] not in str(refused.value)


async def test_a_keys_concurrent_jobs_limit_is_enforced_by_admission(stack):
    user = await new_user(stack, "concurrency", credits=0)
    await credit(stack.billing_address, user, 10_000, request_id=f"concurrency-{uuid.uuid4()}")
    limited = await _post(
        stack, f"/v1/admin/users/{user}/api_keys", stack.key("user_admin"), {"max_concurrent_jobs": 1}
    )
    client = _sdk(stack, limited["value"])
    first = await client.videos.create(prompt="A lighthouse at dusk", **CHEAP)
    assert first.status in ("queued", "in_progress")
    with pytest.raises(openai.RateLimitError) as refused:
        await client.videos.create(prompt="A second lighthouse", **CHEAP)
    assert refused.value.code == "concurrent_jobs_limit_exceeded"
    assert int(refused.value.response.headers["Retry-After"]) >= 1
    # The user's other key has no such limit.
    other = await _sdk(stack, stack.key(user)).videos.create(prompt="A third lighthouse", **CHEAP)
    assert other.id != first.id
