"""Client webhooks end to end: status events from the jobs service travel through JetStream to the
gateway's worker, which POSTs them signed (Standard Webhooks) to receivers run by the test."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any

import aiohttp
import psycopg
import pytest
from servicekit.webhooks import verify

from services.gateway import app as gateway_app
from services.gateway.tests.webhook_receiver import Received, WebhookReceiver, webhook_receiver
from tests.helpers import new_user

pytestmark = pytest.mark.e2e

CHEAP = {"model": "sora-2", "seconds": "4"}
BLOCKED_PROMPT = "A b.e.h.e.a.d.i.n.g in close-up"  # refused by moderation inside CreateJob


async def _call(stack, user: str, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    return await _call_at(stack.gateway_url, stack.key(user), method, path, **kwargs)


async def _call_at(base_url: str, key: str, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as http:
        async with http.request(method, f"{base_url}{path}", headers=headers, **kwargs) as response:
            return response.status, await response.json()


def _events_about(receiver: WebhookReceiver, video_id: str, event_type: str) -> list[Received]:
    return [
        item
        for item in receiver.received
        if (body := json.loads(item.body))["type"] == event_type and body["data"]["id"] == video_id
    ]


async def _create_video(stack, user: str, **fields: Any) -> dict[str, Any]:
    status, video = await _call(stack, user, "POST", "/v1/videos", json={**CHEAP, **fields})
    assert status == 200, video
    return video


async def test_an_endpoint_receives_the_signed_completed_event_of_each_video(stack, caplog):
    caplog.set_level(logging.DEBUG)
    user = await new_user(stack, "hooks", credits=100)
    async with webhook_receiver() as receiver:
        url = receiver.url("/vidflow?token=do-not-log-me")
        status, endpoint = await _call(stack, user, "POST", "/v1/webhook_endpoints", json={"url": url})
        assert status == 200, endpoint
        secret = endpoint["secret"]
        assert endpoint["object"] == "webhook_endpoint" and endpoint["id"].startswith("we_")
        assert endpoint["events"] == ["video.completed", "video.failed"] and secret.startswith("whsec_")

        video = await _create_video(stack, user, prompt="A heron in the reeds")
        await receiver.wait_until(lambda: bool(_events_about(receiver, video["id"], "video.completed")))
    (delivered,) = _events_about(receiver, video["id"], "video.completed")
    verify(secret, delivered.headers, delivered.body)
    body = json.loads(delivered.body)
    assert set(body) == {"type", "timestamp", "data"} and body["timestamp"].endswith("Z")
    status, current = await _call(stack, user, "GET", f"/v1/videos/{video['id']}")
    assert body["data"]["status"] == "completed" and body["data"]["id"] == current["id"]
    assert body["data"]["progress"] == 100 and body["data"]["prompt"] == "A heron in the reeds"
    assert not _events_about(receiver, video["id"], "video.progress")  # not asked for
    logged = " ".join(str(record.__dict__) for record in caplog.records)
    assert secret not in logged and "do-not-log-me" not in logged

    status, listed = await _call(stack, user, "GET", f"/v1/webhook_endpoints/{endpoint['id']}")
    assert status == 200 and "secret" not in listed and listed["url"] == url


async def test_a_videos_own_webhook_is_retried_with_the_same_id_until_it_is_accepted(stack):
    user = await new_user(stack, "videohook", credits=100)
    async with webhook_receiver(fail_first=2) as receiver:
        status, refused = await _call(
            stack,
            user,
            "POST",
            "/v1/videos",
            json={**CHEAP, "prompt": "A comet", "webhook_url": receiver.url()},
        )
        assert status == 400 and refused["error"]["code"] == "webhook_secret_required"
        assert refused["error"]["param"] == "webhook_url"
        status, listing = await _call(stack, user, "GET", "/v1/videos")
        assert listing["data"] == []  # refused before anything was made

        status, made = await _call(stack, user, "POST", "/v1/webhook_secret")
        assert status == 200 and made["secret"].startswith("whsec_")
        status, shown = await _call(stack, user, "GET", "/v1/webhook_secret")
        assert status == 200 and "secret" not in shown and shown["created_at"] == made["created_at"]

        video = await _create_video(stack, user, prompt="A comet over hills", webhook_url=receiver.url())
        await receiver.wait_until(lambda: len(receiver.accepted()) == 1)
    tries = receiver.received
    assert [item.status for item in tries] == [500, 500, 204]
    assert len({item.webhook_id for item in tries}) == 1
    assert len({item.body for item in tries}) == 1  # byte for byte the same event on every try
    for item in tries:
        verify(made["secret"], item.headers, item.body)
    body = json.loads(tries[0].body)
    assert body["type"] == "video.completed" and body["data"]["id"] == video["id"]


async def test_a_video_refused_at_creation_still_calls_its_webhook(stack):
    # Moderation ends the video inside CreateJob, before the gateway has stored its webhook.
    user = await new_user(stack, "refusedhook", credits=100)
    status, made = await _call(stack, user, "POST", "/v1/webhook_secret")
    assert status == 200
    async with webhook_receiver() as receiver:
        video = await _create_video(stack, user, prompt=BLOCKED_PROMPT, webhook_url=receiver.url())
        assert video["status"] == "failed"
        await receiver.wait_until(lambda: bool(_events_about(receiver, video["id"], "video.failed")))
    (delivered,) = receiver.received
    verify(made["secret"], delivered.headers, delivered.body)
    assert json.loads(delivered.body)["data"]["error"]["code"] == "moderation_blocked"


async def test_progress_events_reach_endpoints_that_ask_for_them(stack):
    user = await new_user(stack, "progresshook", credits=100)
    async with webhook_receiver() as receiver:
        status, _ = await _call(
            stack,
            user,
            "POST",
            "/v1/webhook_endpoints",
            json={"url": receiver.url(), "events": ["video.progress", "video.completed"]},
        )
        assert status == 200
        video = await _create_video(stack, user, prompt="A spinning top")
        await receiver.wait_until(lambda: bool(_events_about(receiver, video["id"], "video.completed")))
        await receiver.wait_until(lambda: bool(_events_about(receiver, video["id"], "video.progress")))
    statuses = {
        json.loads(item.body)["data"]["status"]
        for item in _events_about(receiver, video["id"], "video.progress")
    }
    assert statuses <= {"queued", "in_progress"}
    assert len({item.webhook_id for item in receiver.received}) == len(receiver.received)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"url": "ftp://example.com/hook"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": 42}, "url"),
        ({}, "url"),
        ({"url": "https://example.com/hook", "events": ["video.exploded"]}, "events"),
        ({"url": "https://example.com/hook", "events": []}, "events"),
        ({"url": "https://example.com/hook", "secret": "mine"}, "secret"),
    ],
)
async def test_a_bad_endpoint_is_a_400_naming_the_field(stack, body, param):
    status, answer = await _call(stack, "user_broke", "POST", "/v1/webhook_endpoints", json=body)
    assert status == 400 and answer["error"]["param"] == param


async def test_a_bad_webhook_url_on_a_video_is_a_400_and_makes_no_video(stack):
    user = await new_user(stack, "badhook", credits=100)
    await _call(stack, user, "POST", "/v1/webhook_secret")
    status, answer = await _call(
        stack, user, "POST", "/v1/videos", json={**CHEAP, "prompt": "A cat", "webhook_url": "gopher://x"}
    )
    assert status == 400 and answer["error"]["code"] == "invalid_webhook_url"
    status, listing = await _call(stack, user, "GET", "/v1/videos")
    assert listing["data"] == []


async def test_endpoints_belong_to_their_owner(stack):
    owner = await new_user(stack, "hookowner", credits=0)
    other = await new_user(stack, "hookother", credits=0)
    created = []
    for index in range(3):
        status, endpoint = await _call(
            stack, owner, "POST", "/v1/webhook_endpoints", json={"url": f"https://example.com/{index}"}
        )
        assert status == 200
        created.append(endpoint["id"])
    for method in ("GET", "DELETE"):
        status, answer = await _call(stack, other, method, f"/v1/webhook_endpoints/{created[0]}")
        assert status == 404 and answer["error"]["code"] == "webhook_endpoint_not_found"
    status, listing = await _call(stack, other, "GET", "/v1/webhook_endpoints")
    assert listing["data"] == []
    status, page = await _call(stack, owner, "GET", "/v1/webhook_endpoints?limit=2")
    assert [item["id"] for item in page["data"]] == created[::-1][:2] and page["has_more"] is True
    assert all("secret" not in item for item in page["data"])
    status, rest = await _call(stack, owner, "GET", f"/v1/webhook_endpoints?limit=2&after={page['last_id']}")
    assert [item["id"] for item in rest["data"]] == [created[0]] and rest["has_more"] is False
    status, deleted = await _call(stack, owner, "DELETE", f"/v1/webhook_endpoints/{created[0]}")
    assert status == 200 and deleted == {
        "id": created[0],
        "object": "webhook_endpoint.deleted",
        "deleted": True,
    }
    status, _ = await _call(stack, owner, "GET", f"/v1/webhook_endpoints/{created[0]}")
    assert status == 404
    status, _ = await _call(stack, owner, "GET", "/v1/webhook_secret")
    assert status == 404  # none made yet


async def test_an_endpoint_scoped_to_an_api_key_gets_only_that_keys_videos(stack):
    user = await new_user(stack, "keyhooks", credits=100)
    status, other_key = await _call(stack, user, "POST", "/v1/api_keys", json={"name": "second"})
    assert status == 200, other_key
    _, keys = await _call(stack, user, "GET", "/v1/api_keys")
    [first_key_id] = [key["id"] for key in keys["data"] if key["id"] != other_key["id"]]
    async with webhook_receiver() as scoped_receiver, webhook_receiver() as all_receiver:
        status, scoped = await _call(
            stack,
            user,
            "POST",
            "/v1/webhook_endpoints",
            json={"url": scoped_receiver.url(), "api_key_id": first_key_id},
        )
        assert status == 200 and scoped["api_key_id"] == first_key_id, scoped
        status, everything = await _call(
            stack, user, "POST", "/v1/webhook_endpoints", json={"url": all_receiver.url()}
        )
        assert status == 200 and everything["api_key_id"] is None
        mine = await _create_video(stack, user, prompt="A kingfisher diving")
        status, theirs = await _call_at(
            stack.gateway_url, other_key["value"], "POST", "/v1/videos", json={**CHEAP, "prompt": "An otter"}
        )
        assert status == 200, theirs
        for video in (mine, theirs):
            await all_receiver.wait_until(
                lambda video=video: bool(_events_about(all_receiver, video["id"], "video.completed"))
            )
        await scoped_receiver.wait_until(
            lambda: bool(_events_about(scoped_receiver, mine["id"], "video.completed"))
        )
    async with await psycopg.AsyncConnection.connect(stack.database_url) as db:
        rows = await db.execute(
            "SELECT video_id FROM gateway.webhook_deliveries WHERE endpoint_id = %s", (scoped["id"],)
        )
        scoped_videos = {row[0] for row in await rows.fetchall()}
    # Deliveries of one event are written together: the other key's video has none for this endpoint.
    assert scoped_videos == {mine["id"]}

    status, foreign = await _call(
        stack,
        "user_bob",
        "POST",
        "/v1/webhook_endpoints",
        json={"url": "https://example.com/x", "api_key_id": first_key_id},
    )
    assert (status, foreign["error"]["code"]) == (404, "api_key_not_found")


async def test_two_gateway_replicas_deliver_each_event_once(stack):
    """A second gateway shares the database and the durable consumer: events are split between the
    replicas, deliveries are leased, and every event arrives exactly once."""
    user = await new_user(stack, "replicas", credits=400)
    assert stack.gateway_settings is not None
    second_settings = replace(stack.gateway_settings, port=0, metrics_port=0)
    async with webhook_receiver() as receiver, gateway_app.serve(second_settings) as second:
        second_url = f"http://127.0.0.1:{second.port}"
        status, _ = await _call(stack, user, "POST", "/v1/webhook_endpoints", json={"url": receiver.url()})
        assert status == 200
        videos = []
        for index in range(4):
            base_url = stack.gateway_url if index % 2 else second_url
            status, video = await _call_at(
                base_url,
                stack.key(user),
                "POST",
                "/v1/videos",
                json={**CHEAP, "prompt": f"A tide pool {index}"},
            )
            assert status == 200, video
            videos.append(video["id"])
        await receiver.wait_until(
            lambda: all(_events_about(receiver, video_id, "video.completed") for video_id in videos),
            deadline_seconds=90,
        )
        async with await psycopg.AsyncConnection.connect(stack.database_url) as db:
            rows = await (
                await db.execute(
                    "SELECT id, status, attempts FROM gateway.webhook_deliveries WHERE video_id = ANY(%s)",
                    (videos,),
                )
            ).fetchall()
    assert sorted((status, attempts) for _, status, attempts in rows) == [("delivered", 1)] * len(videos)
    received_ids = [item.webhook_id for item in receiver.received]
    assert sorted(received_ids) == sorted(row[0] for row in rows)  # each once, none twice


async def test_an_endpoint_url_cannot_be_private_when_the_gateway_forbids_it(stack):
    assert stack.gateway_settings is not None
    strict = replace(
        stack.gateway_settings,
        port=0,
        metrics_port=0,
        client_webhooks=replace(stack.gateway_settings.client_webhooks, allow_private=False),
    )
    async with gateway_app.serve(strict) as running:
        base_url = f"http://127.0.0.1:{running.port}"
        for url in ("http://127.0.0.1:9/hook", "http://169.254.169.254/latest", "http://localhost/hook"):
            status, answer = await _call_at(
                base_url, stack.key("user_broke"), "POST", "/v1/webhook_endpoints", json={"url": url}
            )
            assert status == 400 and answer["error"]["code"] == "invalid_webhook_url", url
