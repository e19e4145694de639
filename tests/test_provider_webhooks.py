"""Provider webhook intake at the gateway: signatures, tolerance, duplicates, and the fast path
from a provider's `video.completed` to a finished job without waiting for a poll."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import aiohttp
import openai
import pytest
from servicekit.webhooks import headers_for

from simulator.config import Settings as SimulatorSettings
from tests.conftest import running_stack
from tests.helpers import credit

pytestmark = pytest.mark.e2e


def _event(upstream_id: str, event_type: str = "video.completed") -> bytes:
    return json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "created_at": int(time.time()),
            "type": event_type,
            "data": {"id": upstream_id},
        }
    ).encode()


async def _deliver(stack, body: bytes, headers: dict[str, str], deployment: str = "default"):
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{stack.gateway_url}/webhooks/providers/{deployment}",
            data=body,
            headers={**headers, "Content-Type": "application/json"},
        ) as response:
            return response.status, await response.json()


async def test_a_signed_webhook_for_an_unknown_video_is_accepted_and_ignored(stack):
    body = _event("video_nobody_knows")
    status, answer = await _deliver(stack, body, headers_for(stack.provider_webhook_secret, "msg_1", body))
    assert (status, answer) == (200, {"received": True, "outcome": "ignored"})


async def test_a_retried_webhook_counts_once(stack):
    body = _event("video_retried")
    headers = headers_for(stack.provider_webhook_secret, f"msg_{uuid.uuid4().hex}", body)
    first = await _deliver(stack, body, headers)
    second = await _deliver(stack, body, headers)
    assert first[1]["outcome"] == "ignored"
    assert second == (200, {"received": True, "outcome": "duplicate"})


async def test_long_webhook_ids_sharing_a_beginning_are_different_events(stack):
    # Found while writing tests/reliability/test_abuse.py: ids were cut to 128 characters, so the
    # second of two long ids sharing those was dropped as a duplicate of the first.
    body = _event("video_long_ids")
    shared = f"msg_{uuid.uuid4().hex}" + "x" * 200
    outcomes = []
    for webhook_id in (shared + "1", shared + "2", shared + "2"):
        status, answer = await _deliver(
            stack, body, headers_for(stack.provider_webhook_secret, webhook_id, body)
        )
        assert status == 200, answer
        outcomes.append(answer["outcome"])
    assert outcomes == ["ignored", "ignored", "duplicate"]


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda h, b: ({**h, "webhook-signature": "v1,AAAA"}, b), "no matching webhook signature"),
        (lambda h, b: (h, b.replace(b"completed", b"failed")), "no matching webhook signature"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "webhook-id"}, b), "missing webhook header"),
    ],
)
async def test_tampered_or_incomplete_webhooks_are_refused(stack, tamper, reason):
    body = _event("video_x")
    headers, sent = tamper(headers_for(stack.provider_webhook_secret, "msg_t", body), body)
    status, answer = await _deliver(stack, sent, headers)
    assert status == 400
    assert answer["error"]["code"] == "invalid_signature"
    assert reason in answer["error"]["message"]


async def test_webhooks_older_than_five_minutes_are_refused(stack):
    body = _event("video_old")
    headers = headers_for(stack.provider_webhook_secret, "msg_old", body, now=time.time() - 301)
    status, answer = await _deliver(stack, body, headers)
    assert status == 400 and "too old" in answer["error"]["message"]


async def test_a_webhook_signed_with_another_secret_or_for_another_deployment_is_refused(stack):
    body = _event("video_y")
    foreign = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="
    status, _ = await _deliver(stack, body, headers_for(foreign, "msg_f", body))
    assert status == 400
    status, answer = await _deliver(
        stack, body, headers_for(stack.provider_webhook_secret, "m", body), "elsewhere"
    )
    assert status == 404 and answer["error"]["param"] == "deployment"


async def test_a_signed_body_that_is_not_an_event_gets_a_clear_400(stack):
    for body, param in ((b"not json", None), (b'{"type": "video.completed"}', "data.id"), (b"{}", "type")):
        status, answer = await _deliver(
            stack, body, headers_for(stack.provider_webhook_secret, "msg_b", body)
        )
        assert status == 400, body
        assert answer["error"]["param"] == param


@pytest.fixture(scope="module")
async def webhook_stack(infrastructure):
    # Polling is only a two-minute safety net once webhooks are on, so a job that finishes in
    # seconds can only have been finished by the provider's webhook.
    async with running_stack(
        infrastructure, SimulatorSettings(generation_seconds=2.0), provider_webhooks=True
    ) as s:
        yield s


async def test_the_providers_webhook_finishes_the_job_without_waiting_for_a_poll(webhook_stack):
    stack = webhook_stack
    await credit(stack.billing_address, "user_alice", 1000, request_id=f"topup-{uuid.uuid4()}")
    client = openai.OpenAI(base_url=f"{stack.gateway_url}/v1", api_key=stack.key("user_alice"), max_retries=0)
    started = time.monotonic()
    video = await asyncio.to_thread(
        client.videos.create_and_poll,
        model="sora-2",
        prompt="Snow falling on a lantern",
        poll_interval_ms=200,
    )
    assert video.status == "completed", video.error
    assert time.monotonic() - started < 60  # far below the 120 s safety-net poll interval
