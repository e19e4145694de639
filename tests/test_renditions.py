"""Renditions and deletion through the gateway: the ladder with presigned URLs that storage
enforces, and a delete that removes every stored file."""

from __future__ import annotations

import asyncio
import io
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import av
import openai
import pytest
from minio import Minio
from PIL import Image

from simulator.config import Settings as SimulatorSettings
from tests.conftest import running_stack
from tests.helpers import new_user

pytestmark = pytest.mark.e2e


async def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers=headers or {}) as response:
            return response.status, await response.read()


async def _api(stack, user: str, method: str, path: str):
    async with aiohttp.ClientSession() as http:
        async with http.request(
            method, f"{stack.gateway_url}{path}", headers={"Authorization": f"Bearer {stack.key(user)}"}
        ) as response:
            return response.status, await response.json()


@pytest.fixture(scope="module")
async def finished_video(stack):
    user = await new_user(stack, "ladder", credits=1_000)
    client = openai.OpenAI(base_url=f"{stack.gateway_url}/v1", api_key=stack.key(user), max_retries=0)
    video = await asyncio.to_thread(
        client.videos.create_and_poll, prompt="A harbour at night", size="1280x720", poll_interval_ms=200
    )
    assert video.status == "completed", video.error
    return user, video.id


async def test_the_ladder_lists_renditions_below_the_source_with_working_urls(stack, finished_video):
    user, video_id = finished_video
    status, body = await _api(stack, user, "GET", f"/v1/videos/{video_id}/renditions")
    assert status == 200
    by_name = {rendition["name"]: rendition for rendition in body["data"]}
    assert set(by_name) == {"720p", "480p"}  # 1080p would be an upscale of a 720p source
    assert (by_name["720p"]["width"], by_name["720p"]["height"]) == (1280, 720)
    assert by_name["480p"]["height"] == 480
    status, data = await _get(by_name["480p"]["url"])
    assert status == 200
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.height) == ("h264", 480)


async def test_the_poster_is_a_full_size_still_served_like_any_variant(stack, finished_video):
    user, video_id = finished_video
    status, data = await _get(
        f"{stack.gateway_url}/v1/videos/{video_id}/content?variant=poster",
        headers={"Authorization": f"Bearer {stack.key(user)}"},
    )
    assert status == 200
    with Image.open(io.BytesIO(data)) as poster:
        assert (poster.format, poster.size) == ("JPEG", (1280, 720))


async def test_storage_refuses_tampered_rendition_urls(stack, finished_video):
    user, video_id = finished_video
    _, body = await _api(stack, user, "GET", f"/v1/videos/{video_id}/renditions")
    url = body["data"][0]["url"]
    parts = urlsplit(url)
    forged_path = (
        parts.path.replace("720p", "480p") if "720p" in parts.path else parts.path.replace("480p", "720p")
    )
    forged = urlunsplit(parts._replace(path=forged_path))
    status, _ = await _get(forged)
    assert status == 403


async def test_another_user_gets_404_for_renditions_and_delete(stack, finished_video):
    _, video_id = finished_video
    stranger = await new_user(stack, "stranger", credits=0)
    assert (await _api(stack, stranger, "GET", f"/v1/videos/{video_id}/renditions"))[0] == 404
    assert (await _api(stack, stranger, "DELETE", f"/v1/videos/{video_id}"))[0] == 404


async def test_deleting_a_video_removes_every_stored_file(stack, finished_video):
    user, video_id = finished_video
    s3 = Minio(
        urlsplit(stack.s3.endpoint).netloc,
        access_key=stack.s3.access_key,
        secret_key=stack.s3.secret_key,
        secure=False,
        region=stack.s3.region,
    )
    prefix = f"media/{user}/{video_id}/"
    stored = await asyncio.to_thread(
        lambda: list(s3.list_objects(stack.s3.bucket, prefix=prefix, recursive=True))
    )
    assert len(stored) >= 3  # the source and at least two renditions
    status, body = await _api(stack, user, "DELETE", f"/v1/videos/{video_id}")
    assert (status, body) == (200, {"id": video_id, "object": "video.deleted", "deleted": True})
    left = await asyncio.to_thread(
        lambda: list(s3.list_objects(stack.s3.bucket, prefix=prefix, recursive=True))
    )
    assert left == []
    assert (await _api(stack, user, "GET", f"/v1/videos/{video_id}"))[0] == 404
    assert (await _api(stack, user, "DELETE", f"/v1/videos/{video_id}"))[0] == 404


async def test_an_unfinished_video_cannot_be_deleted(infrastructure):
    # A provider that takes a minute: the video is certainly still running when we ask.
    async with running_stack(infrastructure, SimulatorSettings(generation_seconds=60)) as slow:
        user = await new_user(slow, "impatient", credits=100)
        client = openai.OpenAI(base_url=f"{slow.gateway_url}/v1", api_key=slow.key(user), max_retries=0)
        video = await asyncio.to_thread(client.videos.create, prompt="A slow tide")
        status, body = await _api(slow, user, "DELETE", f"/v1/videos/{video.id}")
        assert status == 400 and body["error"]["code"] == "video_not_finished"
        assert (await _api(slow, user, "GET", f"/v1/videos/{video.id}"))[0] == 200
