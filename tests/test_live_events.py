"""Live status through the gateway: Server-Sent Events per video and the WebSocket, for real videos.

Every stream is checked against what JetStream stored for the video (`status_events`): the events
a client sees, across a disconnect and a resume, are exactly the stored ones, in order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from vidflow.jobs.v1 import jobs_pb2

from tests.helpers import eventually, new_user, status_events

pytestmark = pytest.mark.e2e

STATUS_ORDER = {"queued": 0, "in_progress": 1, "completed": 2, "failed": 2}
DEADLINE_SECONDS = 90


@dataclass
class SseEvent:
    id: str | None
    event: str | None
    data: dict[str, Any]


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        yield session


def auth(stack, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.key(user)}"}


async def create_video(http: aiohttp.ClientSession, stack, user: str) -> str:
    body = {"model": "sora-2", "seconds": "4", "prompt": f"A paper boat on a pond {uuid.uuid4().hex[:6]}"}
    async with http.post(f"{stack.gateway_url}/v1/videos", json=body, headers=auth(stack, user)) as answer:
        assert answer.status == 200, await answer.text()
        return str((await answer.json())["id"])


async def read_sse(response: aiohttp.ClientResponse, *, stop_after: int | None = None) -> list[SseEvent]:
    """Events until the server ends the stream (or `stop_after` of them); comments are skipped."""
    events: list[SseEvent] = []
    fields: dict[str, str] = {}
    async with asyncio.timeout(DEADLINE_SECONDS):
        async for raw in response.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith(":"):
                continue
            if line:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
                continue
            if "data" in fields:
                events.append(SseEvent(fields.get("id"), fields.get("event"), json.loads(fields["data"])))
                if stop_after is not None and len(events) >= stop_after:
                    break
            fields = {}
    return events


async def stored_sequences(stack, video_id: str, final_status: str = "completed") -> list[int]:
    until = jobs_pb2.JOB_STATUS_COMPLETED if final_status == "completed" else jobs_pb2.JOB_STATUS_FAILED
    events = await status_events(stack.nats_url, video_id, until_status=until, deadline_seconds=60)
    return [event.sequence for event in events]


def assert_statuses_move_forward(statuses: list[str]) -> None:
    ranks = [STATUS_ORDER[status] for status in statuses]
    assert ranks == sorted(ranks), statuses


# --- Server-Sent Events -------------------------------------------------------------------------


async def test_sse_streams_a_real_video_from_queued_to_completed_in_order(http, stack):
    user = await new_user(stack, "live_sse")
    video_id = await create_video(http, stack, user)
    url = f"{stack.gateway_url}/v1/videos/{video_id}/events"

    # Last-Event-ID 0: every event from the first one.
    async with http.get(url, headers={**auth(stack, user), "Last-Event-ID": "0"}) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers["Cache-Control"] == "no-cache"
        events = await read_sse(response)  # returns when the server ends the stream

    ids = [int(event.id or -1) for event in events]
    assert ids == list(range(1, len(ids) + 1))
    assert ids == await stored_sequences(stack, video_id)
    assert {event.event for event in events} == {"video.status_changed"}
    assert {event.data["id"] for event in events} == {video_id}
    statuses = [event.data["status"] for event in events]
    assert statuses[0] == "queued" and "in_progress" in statuses and statuses[-1] == "completed"
    assert_statuses_move_forward(statuses)
    async with http.get(f"{stack.gateway_url}/v1/videos/{video_id}", headers=auth(stack, user)) as got:
        assert events[-1].data == await got.json()

    # Resuming from the last event: nothing more will come, so 204 stops EventSource reconnecting.
    async with http.get(url, headers={**auth(stack, user), "Last-Event-ID": str(ids[-1])}) as response:
        assert response.status == 204
    # A fresh connection gets the current state first (here the final one), then the stream ends.
    async with http.get(url, headers=auth(stack, user)) as response:
        assert response.status == 200
        current = await read_sse(response)
    assert [(event.id, event.data["status"]) for event in current] == [(str(ids[-1]), "completed")]


async def test_sse_resume_with_last_event_id_gets_exactly_the_rest(http, stack):
    user = await new_user(stack, "live_resume")
    video_id = await create_video(http, stack, user)
    url = f"{stack.gateway_url}/v1/videos/{video_id}/events"

    # The query parameter (for EventSource polyfills) from the start; leave after two events.
    async with http.get(f"{url}?last_event_id=0", headers=auth(stack, user)) as response:
        first = await read_sse(response, stop_after=2)
    async with http.get(url, headers={**auth(stack, user), "Last-Event-ID": str(first[-1].id)}) as response:
        assert response.status == 200
        rest = await read_sse(response)

    ids = [int(event.id or -1) for event in first + rest]
    assert ids == await stored_sequences(stack, video_id)  # no gap, no duplicate
    assert [event.id for event in first] == ["1", "2"]
    assert rest[-1].data["status"] == "completed"


async def test_sse_for_another_users_video_is_a_404_like_a_missing_one(http, stack):
    owner = await new_user(stack, "live_owner")
    other = await new_user(stack, "live_other")
    video_id = await create_video(http, stack, owner)

    async def error(path: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        async with http.get(f"{stack.gateway_url}{path}", headers=headers) as answer:
            assert answer.headers["Content-Type"].startswith("application/json")
            return answer.status, (await answer.json())["error"]

    status, foreign = await error(f"/v1/videos/{video_id}/events", auth(stack, other))
    assert (
        status == 404 and foreign["code"] == "video_not_found" and foreign["type"] == "invalid_request_error"
    )
    missing_id = f"video_{uuid.uuid4().hex}"
    status, missing = await error(f"/v1/videos/{missing_id}/events", auth(stack, other))
    assert status == 404
    assert foreign["message"].replace(video_id, "<id>") == missing["message"].replace(missing_id, "<id>")

    status, bad = await error(f"/v1/videos/{video_id}/events", {**auth(stack, owner), "Last-Event-ID": "²7"})
    assert (status, bad["param"], bad["code"]) == (400, "Last-Event-ID", "invalid_value")
    status, _ = await error(f"/v1/videos/{video_id}/events", {})
    assert status == 401


# --- WebSocket ----------------------------------------------------------------------------------


async def receive_json(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    async with asyncio.timeout(DEADLINE_SECONDS):
        message = await ws.receive()
    assert message.type is aiohttp.WSMsgType.TEXT, message
    return json.loads(message.data)


async def events_until_final(ws: aiohttp.ClientWebSocketResponse, video_id: str) -> list[dict[str, Any]]:
    """Every message up to and including the video's completed or failed event."""
    messages = []
    while True:
        message = await receive_json(ws)
        messages.append(message)
        if (
            message["type"] == "video.status_changed"
            and message["id"] == video_id
            and message["data"]["status"] in ("completed", "failed")
        ):
            return messages


def sequences_of(messages: list[dict[str, Any]], video_id: str) -> list[int]:
    return [m["sequence"] for m in messages if m["type"] == "video.status_changed" and m["id"] == video_id]


async def test_websocket_subscribed_to_all_own_videos_receives_every_event(http, stack):
    user = await new_user(stack, "live_ws")
    async with http.ws_connect(f"{stack.gateway_url}/v1/ws", headers=auth(stack, user)) as ws:
        await ws.send_json({"type": "subscribe", "videos": "all"})
        assert await receive_json(ws) == {"type": "subscribed", "videos": "all"}
        video_id = await create_video(http, stack, user)  # after subscribing: nothing can be missed
        messages = await events_until_final(ws, video_id)

    assert sequences_of(messages, video_id) == await stored_sequences(stack, video_id)
    assert all(set(m) == {"type", "id", "sequence", "data"} for m in messages)
    statuses = [m["data"]["status"] for m in messages]
    assert statuses[0] == "queued" and statuses[-1] == "completed"
    assert_statuses_move_forward(statuses)


async def test_websocket_refuses_another_users_video_and_sends_none_of_its_events(http, stack, caplog):
    owner = await new_user(stack, "live_ws_owner")
    intruder = await new_user(stack, "live_ws_intruder")
    owners_video = await create_video(http, stack, owner)
    intruders_video = await create_video(http, stack, intruder)

    caplog.set_level(logging.DEBUG)
    async with http.ws_connect(f"{stack.gateway_url}/v1/ws") as ws:  # no header: the key in-band
        await ws.send_json({"type": "authenticate", "token": stack.key(intruder)})
        await ws.send_json({"type": "subscribe", "videos": [owners_video, {"id": intruders_video}]})
        refusal = await receive_json(ws)
        messages = await events_until_final(ws, intruders_video)

    assert refusal["type"] == "error" and refusal["id"] == owners_video
    assert refusal["error"]["code"] == "video_not_found"
    assert {"type": "subscribed", "videos": [intruders_video]} in messages
    events = [m for m in messages if m["type"] == "video.status_changed"]
    assert {m["id"] for m in events} == {intruders_video}
    assert len(events) == len(messages) - 1
    assert events[-1]["sequence"] == (await stored_sequences(stack, intruders_video))[-1]
    # The owner's video did change meanwhile (there was data to leak), and the key never hit a log.
    assert await stored_sequences(stack, owners_video)
    assert stack.key(intruder) not in caplog.text


async def test_websocket_resume_after_a_disconnect_gets_exactly_the_missed_events(http, stack):
    user = await new_user(stack, "live_ws_resume")
    video_id = await create_video(http, stack, user)
    async with http.ws_connect(f"{stack.gateway_url}/v1/ws", headers=auth(stack, user)) as ws:
        await ws.send_json({"type": "subscribe", "videos": [video_id]})
        current = await receive_json(ws)  # the current state comes first
    assert current["type"] == "video.status_changed" and current["id"] == video_id

    async def finished() -> bool | None:
        async with http.get(f"{stack.gateway_url}/v1/videos/{video_id}", headers=auth(stack, user)) as got:
            return True if (await got.json())["status"] == "completed" else None

    await eventually(finished, deadline_seconds=DEADLINE_SECONDS)  # everything after happened offline

    async with http.ws_connect(f"{stack.gateway_url}/v1/ws", headers=auth(stack, user)) as ws:
        resume = {"id": video_id, "last_event_id": current["sequence"]}
        await ws.send_json({"type": "subscribe", "videos": [resume]})
        missed = await events_until_final(ws, video_id)
        assert await receive_json(ws) == {"type": "subscribed", "videos": [video_id]}

    stored = await stored_sequences(stack, video_id)
    assert [current["sequence"], *sequences_of(missed, video_id)] == stored[
        stored.index(current["sequence"]) :
    ]
    assert missed[-1]["data"]["status"] == "completed"


async def test_websocket_sends_each_event_once_however_subscriptions_overlap(http, stack):
    """One socket: "all", a resume from an earlier event id, and the same ids subscribed again."""
    user = await new_user(stack, "live_ws_overlap")
    earlier = await create_video(http, stack, user)

    async def earlier_finished() -> bool | None:
        async with http.get(f"{stack.gateway_url}/v1/videos/{earlier}", headers=auth(stack, user)) as got:
            return True if (await got.json())["status"] == "completed" else None

    await eventually(earlier_finished, deadline_seconds=DEADLINE_SECONDS)  # all stored before the socket

    async with http.ws_connect(f"{stack.gateway_url}/v1/ws", headers=auth(stack, user)) as ws:
        await ws.send_json({"type": "subscribe", "videos": "all"})
        assert await receive_json(ws) == {"type": "subscribed", "videos": "all"}
        video_id = await create_video(http, stack, user)
        first = await receive_json(ws)  # through "all", so this socket has sent event 1
        assert (first["id"], first["sequence"]) == (video_id, 1)
        subscriptions = [
            [{"id": video_id, "last_event_id": 0}, {"id": earlier, "last_event_id": 1}],
            [video_id, earlier],
            [video_id],
        ]
        for videos in subscriptions:
            await ws.send_json({"type": "subscribe", "videos": videos})
        messages = [first]
        while sum(m["type"] == "subscribed" for m in messages) < len(subscriptions) or not any(
            m["type"] == "video.status_changed" and m["id"] == video_id and m["data"]["status"] == "completed"
            for m in messages
        ):
            messages.append(await receive_json(ws))

    assert [m["videos"] for m in messages if m["type"] == "subscribed"] == [
        [video_id, earlier], [video_id, earlier], [video_id]
    ]  # fmt: skip

    assert sequences_of(messages, video_id) == await stored_sequences(stack, video_id)
    # The earlier video: exactly what followed event 1, once, though subscribed again after it.
    assert sequences_of(messages, earlier) == (await stored_sequences(stack, earlier))[1:]


async def test_websocket_authentication_failures_and_bad_messages(http, stack):
    user = await new_user(stack, "live_ws_auth", credits=0)
    wrong_key = f"vf_wrong_{uuid.uuid4().hex}"
    async with http.ws_connect(f"{stack.gateway_url}/v1/ws") as ws:
        await ws.send_json({"type": "authenticate", "token": wrong_key})
        refusal = await receive_json(ws)
        async with asyncio.timeout(DEADLINE_SECONDS):
            closing = await ws.receive()
    assert refusal["error"]["code"] == "invalid_api_key" and wrong_key not in json.dumps(refusal)
    assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 4401

    # A key in the URL is refused before any upgrade: URLs end up in logs.
    async with http.get(f"{stack.gateway_url}/v1/ws?access_token={stack.key(user)}") as answer:
        assert answer.status == 400
        assert (await answer.json())["error"]["code"] == "token_in_url"
    # A wrong key in the header is a plain 401, like every route.
    async with http.get(
        f"{stack.gateway_url}/v1/ws", headers={"Authorization": f"Bearer {wrong_key}"}
    ) as answer:
        assert answer.status == 401

    async with http.ws_connect(f"{stack.gateway_url}/v1/ws", headers=auth(stack, user)) as ws:
        await ws.send_str("not json")
        assert (await receive_json(ws))["error"]["param"] == "message"
        await ws.send_json({"type": "subscribe", "videos": [{"id": "video_x", "last_event_id": -1}]})
        assert (await receive_json(ws))["error"]["param"] == "last_event_id"
        assert await receive_json(ws) == {"type": "subscribed", "videos": []}
        await ws.send_json({"type": "subscribe", "videos": []})
        assert (await receive_json(ws))["error"]["param"] == "videos"
        # Still open and working after the errors.
        await ws.send_json({"type": "subscribe", "videos": "all"})
        assert await receive_json(ws) == {"type": "subscribed", "videos": "all"}
