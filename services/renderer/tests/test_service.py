"""RenderService over a real gRPC port, against real PostgreSQL and a real S3 server (SeaweedFS).

Each test gets its own database and bucket; sample media is made once per module with the
static ffmpeg that imageio-ffmpeg ships.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import imageio_ffmpeg
import psycopg
import pytest
from minio import Minio
from minio.error import S3Error
from PIL import Image
from servicekit.errors import ErrorKind, ServiceError
from servicekit.grpcclient import open_channel
from vidflow.render.v1 import render_pb2, render_service_pb2, render_service_pb2_grpc

from services.renderer.app import serve
from services.renderer.config import Settings

pytestmark = pytest.mark.integration

SECONDS = 2
SIZE = "320x240"


@dataclass(frozen=True)
class Samples:
    video: Path
    truncated: Path  # cut short, so the index (written last) is gone
    truncated_faststart: Path  # index up front, but the frames stop early
    not_a_video: Path
    thumbnail: Path
    spritesheet: Path


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args],
        check=True,
        timeout=60,
    )


def _make_mp4(path: Path, *extra: str) -> None:
    _ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate=24:duration={SECONDS}",
        "-f", "lavfi", "-i", f"sine=frequency=440:duration={SECONDS}",
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", *extra, str(path),
    )  # fmt: skip


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Samples:
    base = tmp_path_factory.mktemp("renderer-media")
    video, faststart = base / "video.mp4", base / "faststart.mp4"
    _make_mp4(video)
    _make_mp4(faststart, "-movflags", "+faststart")
    truncated, truncated_faststart = base / "truncated.mp4", base / "truncated-faststart.mp4"
    truncated.write_bytes(video.read_bytes()[: video.stat().st_size // 3])
    truncated_faststart.write_bytes(faststart.read_bytes()[: faststart.stat().st_size // 3])
    not_a_video = base / "notes.mp4"
    not_a_video.write_text("this is a text file, not a video\n")
    thumbnail, spritesheet = base / "thumbnail.webp", base / "spritesheet.jpg"
    Image.new("RGB", (320, 240), "navy").save(thumbnail, "WEBP")
    Image.new("RGB", (640, 480), "teal").save(spritesheet, "JPEG")
    return Samples(video, truncated, truncated_faststart, not_a_video, thumbnail, spritesheet)


@dataclass
class Renderer:
    stub: render_service_pb2_grpc.RenderServiceStub
    s3: Minio
    bucket: str
    database_url: str

    async def stage(self, job_id: str, path: Path, name: str = "video.mp4") -> str:
        key = f"staging/{job_id}/{name}"
        await asyncio.to_thread(self.s3.fput_object, self.bucket, key, str(path))
        return key

    async def keys(self, prefix: str) -> list[str]:
        def listing() -> list[str]:
            return sorted(
                o.object_name for o in self.s3.list_objects(self.bucket, prefix=prefix, recursive=True)
            )

        return await asyncio.to_thread(listing)

    async def ingest(self, job_id: str, owner_id: str, *, size: str = SIZE) -> render_pb2.StoredAsset:
        response = await self.stub.IngestVideo(
            render_service_pb2.IngestVideoRequest(
                job_id=job_id,
                owner_id=owner_id,
                staging_key=f"staging/{job_id}/video.mp4",
                expected_seconds=SECONDS,
                expected_size=size,
            )
        )
        return response.asset

    async def refused(self, job_id: str, owner_id: str, *, size: str = SIZE) -> ServiceError:
        with pytest.raises(ServiceError) as caught:
            await self.ingest(job_id, owner_id, size=size)
        return caught.value

    async def asset_rows(self, job_id: str) -> list[tuple[str, str]]:
        async with await psycopg.AsyncConnection.connect(self.database_url) as conn:
            cursor = await conn.execute(
                "SELECT variant, owner_id FROM renderer.assets WHERE job_id = %s ORDER BY variant", (job_id,)
            )
            return [tuple(row) for row in await cursor.fetchall()]


@pytest.fixture
async def renderer(settings: Settings, s3: Minio) -> AsyncIterator[Renderer]:
    async with serve(settings) as running:
        async with open_channel(
            f"127.0.0.1:{running.port}", tracer_name="test", default_timeout=30
        ) as channel:
            yield Renderer(
                render_service_pb2_grpc.RenderServiceStub(channel),
                s3,
                settings.s3.bucket,
                settings.database_url,
            )


def _ids() -> tuple[str, str]:
    return f"job_{uuid.uuid4().hex}", f"own_{uuid.uuid4().hex}"


async def test_ingest_probes_stores_permanently_and_clears_staging(
    renderer: Renderer, samples: Samples
) -> None:
    job_id, owner_id = _ids()
    await renderer.stage(job_id, samples.video)
    await renderer.stage(job_id, samples.thumbnail, "thumbnail.webp")
    await renderer.stage(job_id, samples.spritesheet, "spritesheet.jpg")

    asset = await renderer.ingest(job_id, owner_id)

    assert asset.job_id == job_id
    assert asset.variant == render_pb2.ASSET_VARIANT_VIDEO
    assert asset.object_key == f"media/{owner_id}/{job_id}/video.mp4"
    assert asset.content_type == "video/mp4"
    probe = asset.probe
    assert probe.duration_seconds == pytest.approx(SECONDS, abs=0.1)
    assert (probe.width, probe.height) == (320, 240)
    assert (probe.video_codec, probe.audio_codec) == ("h264", "aac")
    assert probe.bit_rate > 0
    assert probe.size_bytes == samples.video.stat().st_size

    assert await renderer.keys(f"media/{owner_id}/{job_id}/") == [
        f"media/{owner_id}/{job_id}/{name}"
        for name in ("poster.jpg", "spritesheet.jpg", "thumbnail.webp", "video.mp4")
    ]
    for name, content_type in [
        ("video.mp4", "video/mp4"),
        ("thumbnail.webp", "image/webp"),
        ("poster.jpg", "image/jpeg"),
    ]:
        stat = await asyncio.to_thread(
            renderer.s3.stat_object, renderer.bucket, f"media/{owner_id}/{job_id}/{name}"
        )
        assert stat.content_type == content_type
    assert await renderer.keys(f"staging/{job_id}/") == []
    assert await renderer.asset_rows(job_id) == [
        ("poster", owner_id), ("spritesheet", owner_id), ("thumbnail", owner_id), ("video", owner_id)
    ]  # fmt: skip

    # Retrying after success (staging already gone) answers the same and adds nothing.
    assert await renderer.ingest(job_id, owner_id) == asset
    assert len(await renderer.asset_rows(job_id)) == 4


async def test_retry_after_a_crash_before_clean_up_finishes_it(renderer: Renderer, samples: Samples) -> None:
    job_id, owner_id = _ids()
    await renderer.stage(job_id, samples.video)
    asset = await renderer.ingest(job_id, owner_id)
    await renderer.stage(job_id, samples.video)  # as if the staging delete never happened

    assert await renderer.ingest(job_id, owner_id) == asset
    assert await renderer.keys(f"staging/{job_id}/") == []
    # No thumbnail was staged, so the renderer made one (with Pillow) beside its poster.
    assert await renderer.asset_rows(job_id) == [
        ("poster", owner_id),
        ("thumbnail", owner_id),
        ("video", owner_id),
    ]


async def test_another_owner_cannot_claim_an_ingested_job(renderer: Renderer, samples: Samples) -> None:
    job_id, owner_id = _ids()
    await renderer.stage(job_id, samples.video)
    await renderer.ingest(job_id, owner_id)
    error = await renderer.refused(job_id, "own_intruder")
    assert error.kind is ErrorKind.ALREADY_EXISTS


@pytest.mark.parametrize(
    ("sample", "reason"),
    [
        ("truncated", "not a readable video"),
        ("truncated_faststart", "truncated"),
        ("not_a_video", "not a readable video"),
    ],
)
async def test_broken_provider_files_are_refused(
    renderer: Renderer, samples: Samples, sample: str, reason: str
) -> None:
    job_id, owner_id = _ids()
    staged = await renderer.stage(job_id, getattr(samples, sample))

    error = await renderer.refused(job_id, owner_id)

    assert error.kind is ErrorKind.FAILED_PRECONDITION
    assert error.code == "invalid_provider_asset"
    assert reason in error.message
    # Nothing kept, nothing recorded, and staging left for inspection.
    assert await renderer.keys("media/") == []
    assert await renderer.asset_rows(job_id) == []
    assert await renderer.keys(f"staging/{job_id}/") == [staged]


async def test_size_mismatch_is_refused(renderer: Renderer, samples: Samples) -> None:
    job_id, owner_id = _ids()
    await renderer.stage(job_id, samples.video)
    error = await renderer.refused(job_id, owner_id, size="1280x720")
    assert error.kind is ErrorKind.FAILED_PRECONDITION
    assert error.code == "invalid_provider_asset"
    assert "320x240" in error.message and "1280x720" in error.message


async def test_a_broken_thumbnail_refuses_the_whole_ingest(renderer: Renderer, samples: Samples) -> None:
    job_id, owner_id = _ids()
    await renderer.stage(job_id, samples.video)
    await renderer.stage(job_id, samples.not_a_video, "thumbnail.webp")
    error = await renderer.refused(job_id, owner_id)
    assert error.kind is ErrorKind.FAILED_PRECONDITION
    assert "thumbnail.webp" in error.message
    assert await renderer.keys("media/") == []


async def test_missing_staging_object_is_not_found(renderer: Renderer) -> None:
    job_id, owner_id = _ids()
    error = await renderer.refused(job_id, owner_id)
    assert error.kind is ErrorKind.NOT_FOUND


async def test_staging_key_of_another_job_is_refused(renderer: Renderer, samples: Samples) -> None:
    job_id, owner_id = _ids()
    with pytest.raises(ServiceError) as caught:
        await renderer.stub.IngestVideo(
            render_service_pb2.IngestVideoRequest(
                job_id=job_id,
                owner_id=owner_id,
                staging_key="media/someone/else/video.mp4",
                expected_seconds=SECONDS,
                expected_size=SIZE,
            )
        )
    assert caught.value.kind is ErrorKind.INVALID_ARGUMENT
    assert caught.value.param == "staging_key"


async def test_asset_url_serves_the_stored_bytes_with_ranges(renderer: Renderer, samples: Samples) -> None:
    job_id, owner_id = _ids()
    await renderer.stage(job_id, samples.video)
    await renderer.stage(job_id, samples.thumbnail, "thumbnail.webp")
    asset = await renderer.ingest(job_id, owner_id)
    before = datetime.now(UTC)

    response = await renderer.stub.GetAssetUrl(
        render_service_pb2.GetAssetUrlRequest(owner_id=owner_id, job_id=job_id)  # UNSPECIFIED means video
    )

    assert response.asset == asset
    expire_time = response.expire_time.ToDatetime(tzinfo=UTC)
    assert before + timedelta(seconds=298) <= expire_time <= before + timedelta(seconds=302)
    original = samples.video.read_bytes()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        async with http.get(response.url) as whole:
            assert whole.status == 200
            assert await whole.read() == original
        async with http.get(response.url, headers={"Range": "bytes=0-99"}) as part:
            assert part.status == 206
            assert await part.read() == original[:100]

        thumbnail = await renderer.stub.GetAssetUrl(
            render_service_pb2.GetAssetUrlRequest(
                owner_id=owner_id, job_id=job_id, variant=render_pb2.ASSET_VARIANT_THUMBNAIL
            )
        )
        assert thumbnail.asset.content_type == "image/webp"
        assert (thumbnail.asset.probe.width, thumbnail.asset.probe.height) == (320, 240)
        async with http.get(thumbnail.url) as still:
            assert still.status == 200
            assert Image.open(io.BytesIO(await still.read())).format == "WEBP"

        for tampered in _tampered(response.url, other_key=f"media/{owner_id}/{job_id}/thumbnail.webp"):
            async with http.get(tampered) as refused:
                assert refused.status == 403


def _tampered(url: str, *, other_key: str) -> list[str]:
    """The URL pointed at another object, and with its signature altered."""
    parts = urlsplit(url)
    bucket = parts.path.split("/")[1]
    query = dict(parse_qsl(parts.query))
    signature = query["X-Amz-Signature"]
    query["X-Amz-Signature"] = ("0" if signature[0] != "0" else "1") + signature[1:]
    return [
        urlunsplit(parts._replace(path=f"/{bucket}/{other_key}")),
        urlunsplit(parts._replace(query=urlencode(query))),
    ]


async def test_asset_url_is_scoped_to_the_owner(renderer: Renderer, samples: Samples) -> None:
    job_id, owner_id = _ids()
    await renderer.stage(job_id, samples.video)
    await renderer.ingest(job_id, owner_id)

    for owner, job, variant in [
        ("own_someone_else", job_id, render_pb2.ASSET_VARIANT_VIDEO),
        (owner_id, "job_missing", render_pb2.ASSET_VARIANT_VIDEO),
        (owner_id, job_id, render_pb2.ASSET_VARIANT_SPRITESHEET),  # none was staged
    ]:
        with pytest.raises(ServiceError) as caught:
            await renderer.stub.GetAssetUrl(
                render_service_pb2.GetAssetUrlRequest(owner_id=owner, job_id=job, variant=variant)
            )
        assert caught.value.kind is ErrorKind.NOT_FOUND


async def test_staged_object_is_really_gone(renderer: Renderer, samples: Samples) -> None:
    job_id, owner_id = _ids()
    key = await renderer.stage(job_id, samples.video)
    await renderer.ingest(job_id, owner_id)
    with pytest.raises(S3Error) as caught:
        await asyncio.to_thread(renderer.s3.stat_object, renderer.bucket, key)
    assert caught.value.code in {"NoSuchKey", "NoSuchObject"}


async def test_delete_assets_removes_every_object_and_row_for_the_owner_only(
    renderer: Renderer, samples: Samples
) -> None:
    job_id, owner_id = _ids()
    await renderer.stage(job_id, samples.video)
    await renderer.stage(job_id, samples.thumbnail, "thumbnail.webp")
    await renderer.ingest(job_id, owner_id)
    prefix = f"media/{owner_id}/{job_id}/"
    stored = await renderer.keys(prefix)
    assert f"{prefix}video.mp4" in stored and f"{prefix}thumbnail.webp" in stored

    async def delete(owner: str, job: str) -> int:
        response = await renderer.stub.DeleteAssets(
            render_service_pb2.DeleteAssetsRequest(owner_id=owner, job_id=job)
        )
        return response.deleted_objects

    # Someone else's job, or one that does not exist: nothing deleted, and no error.
    assert await delete("own_intruder", job_id) == 0
    assert await delete(owner_id, "job_missing") == 0
    assert await renderer.keys(prefix) == stored

    assert await delete(owner_id, job_id) == len(stored)
    assert await renderer.keys(prefix) == []
    assert await renderer.asset_rows(job_id) == []
    assert await delete(owner_id, job_id) == 0  # idempotent
    with pytest.raises(ServiceError) as caught:
        await renderer.stub.GetAssetUrl(
            render_service_pb2.GetAssetUrlRequest(owner_id=owner_id, job_id=job_id)
        )
    assert caught.value.kind is ErrorKind.NOT_FOUND
