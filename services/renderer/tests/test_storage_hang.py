"""A media store that hangs (accepts connections, never answers) makes the renderer answer UNAVAILABLE
within its S3 timeouts, not hold the call until the caller's deadline; download URLs, signed
locally, are still handed out meanwhile; and once the store answers again the same process ingests.

The renderer reaches the real S3 (SeaweedFS) through a proxy the test stalls.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import imageio_ffmpeg
import pytest
from minio import Minio
from servicekit.storage import STORAGE_UNAVAILABLE_MESSAGE, S3Timeouts
from vidflow.render.v1 import render_pb2, render_service_pb2, render_service_pb2_grpc

from services.renderer.app import serve
from services.renderer.config import Settings
from tests.reliability.outage_control import TcpProxy

pytestmark = pytest.mark.integration

SECONDS, SIZE = 2, "320x240"
# The call's deadline: far beyond the renderer's S3 timeouts, far below minio's own five minutes a
# read. A renderer that waited on the hung store would answer DEADLINE_EXCEEDED instead.
DEADLINE_SECONDS = 30


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("renderer-hang") / "video.mp4"
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate=24:duration={SECONDS}",
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(path),
        ],
        check=True,
        timeout=60,
    )  # fmt: skip
    return path


def _ingest_request(job_id: str, owner_id: str) -> render_service_pb2.IngestVideoRequest:
    return render_service_pb2.IngestVideoRequest(
        job_id=job_id,
        owner_id=owner_id,
        staging_key=f"staging/{job_id}/video.mp4",
        expected_seconds=SECONDS,
        expected_size=SIZE,
    )


async def test_a_hung_store_answers_unavailable_and_the_renderer_recovers(
    settings: Settings, s3: Minio, video: Path
) -> None:
    storage = urlsplit(settings.s3.endpoint)
    proxy = TcpProxy(storage.port or 80, storage.hostname or "127.0.0.1")
    await proxy.restore()
    hung_settings = replace(
        settings,
        s3=replace(settings.s3, endpoint=proxy.url, timeouts=S3Timeouts(connect_seconds=2, read_seconds=0.5)),
    )
    bucket = settings.s3.bucket
    owner_id = f"own_{uuid.uuid4().hex}"
    stored, waiting = f"job_{uuid.uuid4().hex}", f"job_{uuid.uuid4().hex}"
    for job_id in (stored, waiting):
        await asyncio.to_thread(s3.fput_object, bucket, f"staging/{job_id}/video.mp4", str(video))
    try:
        async with (
            serve(hung_settings) as running,
            grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
        ):
            stub = render_service_pb2_grpc.RenderServiceStub(channel)
            await stub.IngestVideo(_ingest_request(stored, owner_id), timeout=DEADLINE_SECONDS)

            await proxy.stall()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.IngestVideo(_ingest_request(waiting, owner_id), timeout=DEADLINE_SECONDS)
            assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
            assert caught.value.details() == STORAGE_UNAVAILABLE_MESSAGE
            # Signed locally: handing out a download URL needs no answer from the store.
            located = await stub.GetAssetUrl(
                render_service_pb2.GetAssetUrlRequest(
                    owner_id=owner_id, job_id=stored, variant=render_pb2.ASSET_VARIANT_VIDEO
                ),
                timeout=DEADLINE_SECONDS,
            )
            assert located.url.startswith(f"{proxy.url}/{bucket}/media/{owner_id}/{stored}/video.mp4?")

            await proxy.restore()
            answer = await stub.IngestVideo(_ingest_request(waiting, owner_id), timeout=DEADLINE_SECONDS)
            assert answer.asset.object_key == f"media/{owner_id}/{waiting}/video.mp4"
            assert answer.asset.probe.duration_seconds == pytest.approx(SECONDS, abs=0.1)
    finally:
        await proxy.cut()
