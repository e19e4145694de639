"""Long videos end to end: clips planned or sent by the client, each started from the previous
clip's last frame, stitched into one video, billed as the sum of the clips; a failed clip is
retried alone."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import av
import pytest
from servicekit.errors import ServiceError
from servicekit.grpcclient import open_channel
from vidflow.jobs.v1 import jobs_pb2, jobs_service_pb2, jobs_service_pb2_grpc

from services.renderer.frames import jpeg_bytes
from tests.helpers import balance, eventually, new_user, probe_mp4, status_events

pytestmark = pytest.mark.e2e


async def _call(stack, user: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.request(
            method,
            f"{stack.gateway_url}{path}",
            json=body,
            headers={"Authorization": f"Bearer {stack.key(user)}"},
        ) as response:
            return response.status, await response.json()


async def _finished(stack, user: str, video_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        _, video = await _call(stack, user, "GET", f"/v1/videos/{video_id}")
        return video if video["status"] in ("completed", "failed") else None

    return await eventually(check, deadline_seconds=180, interval=0.5)


async def _content(stack, user: str, video_id: str) -> bytes:
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{stack.gateway_url}/v1/videos/{video_id}/content",
            headers={"Authorization": f"Bearer {stack.key(user)}"},
        ) as response:
            assert response.status == 200
            return await response.read()


async def _provider_requests(stack, prompt: str) -> list[dict[str, Any]]:
    """What the provider was asked for with this prompt, oldest first."""
    base = stack.simulator_url.removesuffix("/v1")
    headers = {"Authorization": f"Bearer {stack.simulator_key}"}
    found = []
    async with aiohttp.ClientSession(headers=headers) as http:
        after = None
        while True:
            params = {"limit": "100", "order": "asc", **({"after": after} if after else {})}
            async with http.get(f"{stack.simulator_url}/videos", params=params) as response:
                page = await response.json()
            for video in page["data"]:
                if video["prompt"] == prompt:
                    async with http.get(f"{base}/_inspect/videos/{video['id']}") as response:
                        found.append(await response.json())
            if not page["has_more"]:
                return found
            after = page["last_id"]


@contextlib.asynccontextmanager
async def _provider_refuses(stack, term: str) -> AsyncIterator[None]:
    base = stack.simulator_url.removesuffix("/v1")
    headers = {"Authorization": f"Bearer {stack.simulator_key}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(f"{base}/_chaos") as response:
            before = await response.json()
        async with http.put(f"{base}/_chaos", json={**before, "refuse_terms": [term]}) as response:
            assert response.status == 200
        try:
            yield
        finally:
            async with http.put(f"{base}/_chaos", json=before) as response:
                assert response.status == 200


async def _quote(stack, user: str, seconds: int) -> int:
    status, quote = await _call(
        stack, user, "POST", "/v1/billing/quote", {"prompt": "price", "seconds": str(seconds)}
    )
    assert status == 200, quote
    return int(quote["amount"])


def _last_frame_before(video: bytes, seconds: float) -> bytes:
    """The last frame shown before `seconds`, as the renderer encodes a reference frame."""
    with av.open(io.BytesIO(video)) as container:
        last = None
        for frame in container.decode(container.streams.video[0]):
            if frame.time is not None and frame.time < seconds - 1e-3:
                last = frame
        assert last is not None
        return jpeg_bytes(last.to_image().convert("RGB"))


async def test_a_long_video_is_planned_made_clip_by_clip_and_stitched(stack):
    user = await new_user(stack, "long", credits=2_000)
    tag = uuid.uuid4().hex[:6]
    first, second = f"A fox wakes at dawn in the snow {tag}.", f"It trots down to the frozen river {tag}."
    status, created = await _call(
        stack, user, "POST", "/v1/videos", {"prompt": f"{first} {second}", "seconds": "24"}
    )
    assert status == 200, created
    assert [(s["prompt"], s["seconds"], s["status"]) for s in created["segments"]] == [
        (first, "12", "pending"),
        (second, "12", "pending"),
    ]

    assert created["estimated_completed_at"] >= created["created_at"]
    video = await _finished(stack, user, created["id"])
    assert video["status"] == "completed", video["error"]
    assert video["progress"] == 100
    assert video["estimated_completed_at"] is None
    assert [(s["status"], s["progress"]) for s in video["segments"]] == [("completed", 100)] * 2

    data = await _content(stack, user, video["id"])
    width, height, duration, codec = probe_mp4(data)
    assert (width, height, codec) == (720, 1280, "h264")
    assert duration == pytest.approx(24.0, abs=0.5)

    # Continuity: the second clip was asked for with the first clip's last frame as its reference.
    [clip_one] = await _provider_requests(stack, first)
    [clip_two] = await _provider_requests(stack, second)
    assert clip_one["input_reference"] is None
    assert clip_two["input_reference"]["format"] == "jpeg"
    expected = hashlib.sha256(_last_frame_before(data, 12.0)).hexdigest()
    assert clip_two["input_reference"]["sha256"] == expected

    # Billed once, for the sum of the clips.
    available, held = await balance(stack.billing_address, user)
    assert held == 0
    assert 2_000 - available == await _quote(stack, user, 24) == 2 * await _quote(stack, user, 12)

    # Progress was reported per clip, each clip's progress never going back.
    events = await status_events(stack.nats_url, video["id"], until_status=jobs_pb2.JOB_STATUS_COMPLETED)
    for index in (0, 1):
        seen = [event.job.segments[index].progress for event in events]
        assert seen == sorted(seen)
        assert any(0 < progress < 100 for progress in seen) or seen.count(100) >= 1
    overall = [event.job.progress for event in events]
    assert overall == sorted(overall)
    assert any(
        event.job.segments[0].status == jobs_pb2.SEGMENT_STATUS_COMPLETED
        and event.job.segments[1].status == jobs_pb2.SEGMENT_STATUS_IN_PROGRESS
        for event in events
    )


async def test_a_failed_clip_is_retried_alone_and_the_video_is_billed_once(stack):
    user = await new_user(stack, "retryclip", credits=1_000)
    tag = uuid.uuid4().hex[:6]
    calm, storm = f"A quiet beach at dawn {tag}", f"A thunderstorm rolls over the beach {tag}"
    async with _provider_refuses(stack, "thunderstorm"):
        status, created = await _call(
            stack,
            user,
            "POST",
            "/v1/videos",
            {"segments": [{"prompt": calm, "seconds": 4}, {"prompt": storm, "seconds": "4"}]},
        )
        assert status == 200, created
        assert created["seconds"] == "8"
        failed = await _finished(stack, user, created["id"])
    assert failed["status"] == "failed"
    assert [s["status"] for s in failed["segments"]] == ["completed", "failed"]
    assert failed["segments"][1]["error"]["code"] == failed["error"]["code"]
    assert await balance(stack.billing_address, user) == (1_000, 0)  # the hold went back

    status, retried = await _call(stack, user, "POST", f"/v1/videos/{created['id']}/retry")
    assert status == 200, retried
    assert retried["retry_count"] == 1 and retried["last_retried_at"] is not None
    assert retried["status"] in ("queued", "in_progress") and retried["error"] is None

    video = await _finished(stack, user, created["id"])
    assert video["status"] == "completed", video["error"]
    assert [(s["status"], s["retry_count"]) for s in video["segments"]] == [
        ("completed", 0),
        ("completed", 1),
    ]
    # The finished clip was not made again; the refused clip (refused at create, so no video then)
    # was made by the retry.
    assert len(await _provider_requests(stack, calm)) == 1
    assert len(await _provider_requests(stack, storm)) == 1
    _, _, duration, _ = probe_mp4(await _content(stack, user, video["id"]))
    assert duration == pytest.approx(8.0, abs=0.5)
    available, held = await balance(stack.billing_address, user)
    assert (1_000 - available, held) == (await _quote(stack, user, 8), 0)

    status, again = await _call(stack, user, "POST", f"/v1/videos/{video['id']}/retry")
    assert (status, again["error"]["code"]) == (400, "video_not_failed")
    status, foreign = await _call(stack, "user_bob", "POST", f"/v1/videos/{video['id']}/retry")
    assert (status, foreign["error"]["code"]) == (404, "video_not_found")


async def test_a_video_refused_by_moderation_cannot_be_retried(stack):
    user = await new_user(stack, "noretry", credits=100)
    status, created = await _call(
        stack, user, "POST", "/v1/videos", {"prompt": "A b.e.h.e.a.d.i.n.g in close-up"}
    )
    assert status == 200, created
    video = await _finished(stack, user, created["id"])
    assert video["error"]["code"] == "moderation_blocked"
    status, answer = await _call(stack, user, "POST", f"/v1/videos/{video['id']}/retry")
    assert (status, answer["error"]["code"]) == (400, "video_not_retryable")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "x", "seconds": "22"}, "seconds"),
        ({"prompt": "x", "seconds": "124"}, "seconds"),
        ({"segments": [{"prompt": "a", "seconds": 5}]}, "segments[0].seconds"),
        ({"segments": [{"prompt": " ", "seconds": 4}]}, "segments[0].prompt"),
        ({"segments": "not json"}, "segments"),
        ({"segments": [{"prompt": "a", "seconds": 4, "extra": 1}]}, "segments[0]"),
        ({"segments": [{"prompt": "a", "seconds": 4}], "seconds": "8"}, "seconds"),
    ],
)
async def test_bad_long_video_requests_get_a_clear_400_and_cost_nothing(stack, body, param):
    status, answer = await _call(stack, "user_alice", "POST", "/v1/videos", body)
    assert status == 400, answer
    assert answer["error"]["param"] == param


async def test_an_api_key_cannot_have_more_unfinished_videos_than_its_limit(stack):
    """The jobs service counts a key's unfinished videos under a per-key lock, so of concurrent
    creates exactly the allowed number get through."""
    user = await new_user(stack, "concurrency", credits=1_000)
    key_id = f"key_{uuid.uuid4().hex[:16]}"
    async with open_channel(stack.jobs_address, tracer_name="test", default_timeout=30) as channel:
        jobs = jobs_service_pb2_grpc.JobsServiceStub(channel)

        async def create(index: int) -> str:
            try:
                await jobs.CreateJob(
                    jobs_service_pb2.CreateJobRequest(
                        owner_id=user,
                        prompt=f"A paper boat on a pond, take {index}",
                        api_key_id=key_id,
                        max_concurrent_jobs=2,
                    )
                )
            except ServiceError as error:
                return error.code or ""
            return "created"

        outcomes = await asyncio.gather(*(create(index) for index in range(6)))
    assert sorted(outcomes) == ["concurrent_jobs_limit_exceeded"] * 4 + ["created"] * 2
