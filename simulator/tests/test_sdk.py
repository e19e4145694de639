"""The official openai SDK against the simulator: what our jobs service and users will actually run."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator

import av
import openai
import pytest
from openai.types import Video
from PIL import Image

from .conftest import API_KEY, Simulator

# The SDK marks the Sora endpoints deprecated; that is OpenAI's product news, not a test problem.
pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")

FPS = 24


@pytest.fixture
async def stalled_client(stalled_simulator: Simulator) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=f"{stalled_simulator.base_url}/v1", api_key=API_KEY, max_retries=0)
    async with client:
        yield client


async def test_create_and_poll_yields_a_real_h264_clip(openai_client: openai.AsyncOpenAI) -> None:
    video = await openai_client.videos.create_and_poll(
        model="sora-2", prompt="A lighthouse in a storm, cinematic", seconds="4", size="1280x720"
    )
    assert video.status == "completed", video.error
    assert (video.progress, video.size, video.seconds, video.model) == (100, "1280x720", "4", "sora-2")
    assert video.completed_at is not None and video.expires_at is not None

    mp4 = (await openai_client.videos.download_content(video.id)).content
    with av.open(io.BytesIO(mp4), mode="r") as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 1280, 720)
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert container.duration is not None
        assert abs(container.duration / av.time_base - 4.0) <= 2 / FPS
        assert [audio.codec_context.name for audio in container.streams.audio] == ["aac"]
        frames = [frame.to_image() for frame in container.decode(stream)]
    assert abs(len(frames) - 4 * FPS) <= 2
    assert frames[0].tobytes() != frames[-1].tobytes(), "the picture should move over time"

    thumbnail = await openai_client.videos.download_content(video.id, variant="thumbnail")
    with Image.open(io.BytesIO(thumbnail.content)) as image:
        assert (image.format, image.size) == ("WEBP", (1280, 720))
    spritesheet = await openai_client.videos.download_content(video.id, variant="spritesheet")
    with Image.open(io.BytesIO(spritesheet.content)) as image:
        assert image.format == "JPEG"
        assert image.width > image.height, "a grid of landscape tiles"

    remix = await openai_client.videos.remix(video.id, prompt="The same lighthouse at dawn")
    assert remix.remixed_from_video_id == video.id
    remix = await openai_client.videos.poll(remix.id)
    assert (remix.status, remix.size, remix.seconds) == ("completed", "1280x720", "4")


async def test_reference_images_upload_as_file_or_reference_object(
    stalled_client: openai.AsyncOpenAI,
) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (720, 1280), (10, 120, 200)).save(buffer, format="PNG")
    uploaded = await stalled_client.videos.create(
        prompt="bring this to life", input_reference=("ref.png", buffer.getvalue(), "image/png")
    )
    assert uploaded.status == "queued"
    # videos.create always sends multipart and (in this SDK version) refuses a dict for
    # input_reference, so the JSON form of the reference object goes through the generic post.
    by_url = await stalled_client.post(
        "/videos",
        body={
            "prompt": "bring this to life",
            "input_reference": {"image_url": "https://example.com/ref.png"},
        },
        cast_to=Video,
    )
    assert by_url.status == "queued"
    with pytest.raises(openai.BadRequestError) as refused:
        await stalled_client.post(
            "/videos",
            body={"prompt": "x", "input_reference": {"image_url": "https://e.x/a.png", "file_id": "file-1"}},
            cast_to=Video,
        )
    assert refused.value.param == "input_reference"


async def test_list_auto_paging_and_delete(stalled_client: openai.AsyncOpenAI) -> None:
    created = [(await stalled_client.videos.create(prompt=f"clip {n}")).id for n in range(5)]
    first_page = await stalled_client.videos.list(limit=2)
    assert [v.id for v in first_page.data] == created[::-1][:2]
    assert first_page.has_more is True
    assert [v.id async for v in stalled_client.videos.list(limit=2, order="asc")] == created

    deleted = await stalled_client.videos.delete(created[0])
    assert (deleted.id, deleted.deleted, deleted.object) == (created[0], True, "video.deleted")
    with pytest.raises(openai.NotFoundError):
        await stalled_client.videos.retrieve(created[0])
    assert [v.id async for v in stalled_client.videos.list(order="asc")] == created[1:]


async def test_idempotency_key_header_dedupes_creates(stalled_client: openai.AsyncOpenAI) -> None:
    headers = {"Idempotency-Key": f"job-{uuid.uuid4()}"}
    first = await stalled_client.videos.create(prompt="once", extra_headers=headers)
    again = await stalled_client.videos.create(prompt="once", extra_headers=headers)
    assert again.id == first.id


@pytest.mark.parametrize(
    ("arguments", "param"),
    [
        ({"model": "sora-3"}, "model"),
        ({"seconds": "7"}, "seconds"),
        ({"size": "1x1"}, "size"),
        ({"size": "1920x1080"}, "size"),
        ({"prompt": ""}, "prompt"),
    ],
)
async def test_validation_errors_surface_as_bad_request(
    stalled_client: openai.AsyncOpenAI, arguments: dict[str, str], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await stalled_client.videos.create(**{"prompt": "p", **arguments})  # type: ignore[arg-type]
    assert refused.value.param == param
    assert refused.value.type == "invalid_request_error"


async def test_bad_api_key_is_an_authentication_error(stalled_simulator: Simulator) -> None:
    async with openai.AsyncOpenAI(
        base_url=f"{stalled_simulator.base_url}/v1", api_key="sk-wrong", max_retries=0
    ) as client:
        with pytest.raises(openai.AuthenticationError) as refused:
            await client.videos.create(prompt="p")
    assert refused.value.code == "invalid_api_key"


async def test_content_before_completion_is_a_client_error(stalled_client: openai.AsyncOpenAI) -> None:
    video = await stalled_client.videos.create(prompt="not yet")
    with pytest.raises(openai.BadRequestError) as refused:
        await stalled_client.videos.download_content(video.id)
    assert refused.value.code == "video_not_ready"
