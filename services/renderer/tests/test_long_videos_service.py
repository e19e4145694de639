"""Long videos in the render service: CaptureLastFrame and stitching clips in IngestVideo, over a
real gRPC port, PostgreSQL, S3 and ffmpeg."""

from __future__ import annotations

import asyncio
import io
import uuid
from pathlib import Path

import av
import grpc
import pytest
from minio import Minio
from PIL import Image
from servicekit.errors import ServiceError
from vidflow.render.v1 import render_service_pb2

from services.renderer.config import Settings
from services.renderer.tests.test_renditions_service import running
from services.renderer.tests.test_service import _ffmpeg

pytestmark = pytest.mark.integration

SIZE = "720x1280"
ENCODE = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-r", "24"]


def _clip(
    path: Path, seconds: int, *, colour: str, audio: bool = True, size: str = SIZE, rate: int = 24
) -> Path:
    """A clip that is one flat colour, ending on a different flat colour for its last second."""
    video = [
        "-f", "lavfi", "-i", f"color=c={colour}:size={size}:rate={rate}:duration={seconds - 1}",
        "-f", "lavfi", "-i", f"color=c=white:size={size}:rate={rate}:duration=1",
    ]  # fmt: skip
    sound = ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"] if audio else []
    graph = "[0:v][1:v]concat=n=2:v=1:a=0[v]"
    maps = ["-map", "[v]", *(["-map", "2:a", "-c:a", "aac"] if audio else [])]
    _ffmpeg(*video, *sound, "-filter_complex", graph, *maps, *ENCODE[:-2], "-r", str(rate), str(path))
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("clips")
    (base / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 but then nothing")
    return {
        "red": _clip(base / "red.mp4", 4, colour="red"),
        "blue": _clip(base / "blue.mp4", 4, colour="blue"),
        "silent": _clip(base / "silent.mp4", 4, colour="green", audio=False),
        "other_rate": _clip(base / "other-rate.mp4", 4, colour="blue", rate=30),
        "corrupt": base / "corrupt.mp4",
    }


async def _stage(s3: Minio, bucket: str, job_id: str, name: str, path: Path) -> str:
    key = f"staging/{job_id}/{name}"
    await asyncio.to_thread(s3.fput_object, bucket, key, str(path))
    return key


def _ids() -> tuple[str, str]:
    return f"video_{uuid.uuid4().hex}", f"user_{uuid.uuid4().hex[:12]}"


async def test_the_last_frame_of_a_clip_is_its_final_picture(settings: Settings, s3, clips):
    job_id, owner = _ids()
    key = await _stage(s3, settings.s3.bucket, job_id, "segment-0.mp4", clips["red"])
    async with running(settings) as stub:
        answer = await stub.CaptureLastFrame(
            render_service_pb2.CaptureLastFrameRequest(job_id=job_id, owner_id=owner, staging_key=key)
        )
    assert (answer.content_type, answer.width, answer.height) == ("image/jpeg", 720, 1280)
    with Image.open(io.BytesIO(answer.image)) as image:
        assert image.format == "JPEG"
        pixel = image.convert("RGB").getpixel((360, 640))
    assert isinstance(pixel, tuple)
    red, green, blue = pixel[:3]
    # The clip turns white in its last second: the last frame is white, not the red before it.
    assert min(red, green, blue) > 230


async def test_capture_last_frame_refuses_missing_foreign_and_broken_clips(settings: Settings, s3, clips):
    job_id, owner = _ids()
    broken = await _stage(s3, settings.s3.bucket, job_id, "segment-0.mp4", clips["corrupt"])
    async with running(settings) as stub:
        for key, status in [
            (f"staging/{job_id}/segment-9.mp4", grpc.StatusCode.NOT_FOUND),
            (f"staging/video_{uuid.uuid4().hex}/segment-0.mp4", grpc.StatusCode.INVALID_ARGUMENT),
            (broken, grpc.StatusCode.FAILED_PRECONDITION),
        ]:
            with pytest.raises(ServiceError) as caught:
                await stub.CaptureLastFrame(
                    render_service_pb2.CaptureLastFrameRequest(job_id=job_id, owner_id=owner, staging_key=key)
                )
            assert caught.value.kind.value.grpc_code == status.name, key


async def _ingest(settings: Settings, s3, clips: list[Path], seconds: int):
    job_id, owner = _ids()
    keys = [
        await _stage(s3, settings.s3.bucket, job_id, f"segment-{index}.mp4", clip)
        for index, clip in enumerate(clips)
    ]
    async with running(settings) as stub:
        answer = await stub.IngestVideo(
            render_service_pb2.IngestVideoRequest(
                job_id=job_id,
                owner_id=owner,
                staging_key=f"staging/{job_id}/video.mp4",
                expected_seconds=seconds,
                expected_size=SIZE,
                segment_staging_keys=keys,
            )
        )
    stored = await asyncio.to_thread(s3.get_object, settings.s3.bucket, answer.asset.object_key)
    try:
        data = stored.read()
    finally:
        stored.close()
        stored.release_conn()
    left = [key for key in keys if _exists(s3, settings.s3.bucket, key)]
    return answer, data, left


def _exists(s3: Minio, bucket: str, key: str) -> bool:
    return any(True for _ in s3.list_objects(bucket, prefix=key))


def _frame_colours(data: bytes, times: list[float]) -> list[tuple[int, int, int]]:
    found: dict[float, tuple[int, int, int]] = {}
    with av.open(io.BytesIO(data), mode="r") as container:
        for frame in container.decode(container.streams.video[0]):
            for wanted in times:
                if wanted not in found and frame.time is not None and frame.time >= wanted:
                    pixel = frame.to_image().convert("RGB").getpixel((360, 640))
                    assert isinstance(pixel, tuple)
                    found[wanted] = (int(pixel[0]), int(pixel[1]), int(pixel[2]))
    return [found[wanted] for wanted in times]


async def test_alike_clips_are_stitched_by_stream_copy_in_order(settings: Settings, s3, clips):
    answer, data, left = await _ingest(settings, s3, [clips["red"], clips["blue"]], 8)
    assert answer.asset.probe.duration_seconds == pytest.approx(8.0, abs=0.2)
    assert answer.asset.probe.audio_codec == "aac"
    red, blue = _frame_colours(data, [1.0, 5.0])
    assert red[0] > 200 and red[2] < 60  # the first clip first
    assert blue[2] > 200 and blue[0] < 60
    assert left == []  # the staged clips are cleaned up once the video is stored
    with av.open(io.BytesIO(data)) as container:
        # Stream copy keeps the clips' own encoding: 24 fps as they were made.
        assert container.streams.video[0].average_rate == 24


async def test_unlike_clips_are_re_encoded_into_one_and_lose_audio_if_one_is_silent(
    settings: Settings, s3, clips
):
    answer, data, _ = await _ingest(settings, s3, [clips["red"], clips["other_rate"], clips["silent"]], 12)
    assert answer.asset.probe.duration_seconds == pytest.approx(12.0, abs=0.3)
    assert answer.asset.probe.video_codec == "h264"
    assert answer.asset.probe.audio_codec == ""  # one clip had no sound: the whole video is silent
    red, blue, green = _frame_colours(data, [1.0, 5.0, 9.0])
    assert red[0] > 200 and blue[2] > 200 and green[1] > 100


async def test_a_broken_clip_fails_the_ingest_with_a_clear_reason(settings: Settings, s3, clips):
    with pytest.raises(ServiceError) as caught:
        await _ingest(settings, s3, [clips["red"], clips["corrupt"]], 8)
    assert caught.value.kind.value.grpc_code == "FAILED_PRECONDITION"
    assert "clip 1" in caught.value.message
