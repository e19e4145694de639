"""Renditions, HLS and DeleteAssets over a real gRPC port, real PostgreSQL and real S3, with
sources made by the static ffmpeg."""

from __future__ import annotations

import asyncio
import struct
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import aiohttp
import av
import psycopg
import pytest
from minio import Minio
from servicekit.errors import ErrorKind, ServiceError
from servicekit.grpcclient import open_channel
from vidflow.render.v1 import render_pb2, render_service_pb2, render_service_pb2_grpc

from services.renderer.app import serve
from services.renderer.config import Settings
from services.renderer.tests.test_service import _ffmpeg, _tampered

pytestmark = pytest.mark.integration

SECONDS = 2
SIZE = "1280x720"


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("ladder-sources")
    video = ["-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate=24:duration={SECONDS}"]
    audio = ["-f", "lavfi", "-i", f"sine=frequency=440:duration={SECONDS}"]
    encode = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
    with_audio, silent = base / "with-audio.mp4", base / "silent.mp4"
    _ffmpeg(*video, *audio, *encode, "-c:a", "aac", str(with_audio))
    _ffmpeg(*video, *encode, str(silent))
    return {"audio": with_audio, "silent": silent}


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[render_service_pb2_grpc.RenderServiceStub]:
    async with serve(settings) as server:
        async with open_channel(f"127.0.0.1:{server.port}", tracer_name="test", default_timeout=60) as ch:
            yield render_service_pb2_grpc.RenderServiceStub(ch)


@pytest.fixture
async def stub(settings: Settings) -> AsyncIterator[render_service_pb2_grpc.RenderServiceStub]:
    async with running(settings) as stub:
        yield stub


def _ids() -> tuple[str, str]:
    return f"job_{uuid.uuid4().hex}", f"own_{uuid.uuid4().hex}"


async def _stage(s3: Minio, bucket: str, job_id: str, path: Path) -> None:
    await asyncio.to_thread(s3.fput_object, bucket, f"staging/{job_id}/video.mp4", str(path))


def _ingest(
    stub: render_service_pb2_grpc.RenderServiceStub, job_id: str, owner_id: str, **options: bool
) -> Awaitable[render_service_pb2.IngestVideoResponse]:
    return stub.IngestVideo(
        render_service_pb2.IngestVideoRequest(
            job_id=job_id,
            owner_id=owner_id,
            expected_seconds=SECONDS,
            expected_size=SIZE,
            renditions=render_pb2.RenditionOptions(**options),
        )
    )


async def _keys(s3: Minio, bucket: str, prefix: str) -> list[str]:
    return await asyncio.to_thread(
        lambda: sorted(o.object_name for o in s3.list_objects(bucket, prefix=prefix, recursive=True))
    )


async def _rendition_rows(database_url: str, job_id: str) -> list[str]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute("SELECT name FROM renderer.renditions WHERE job_id = %s", (job_id,))
        return sorted(row[0] for row in await cursor.fetchall())


def _top_level_atoms(data: bytes) -> list[str]:
    atoms, at = [], 0
    while at + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        atoms.append(kind.decode("latin-1"))
        if size == 1:
            size = struct.unpack(">Q", data[at + 8 : at + 16])[0]
        if size < 8:
            break
        at += size
    return atoms


def _video_params(data_path: Path) -> tuple[str, int, int, str, bytes]:
    with av.open(str(data_path)) as container:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        return (ctx.name, ctx.width, ctx.height, str(ctx.profile), bytes(ctx.extradata or b""))


async def test_ladder_remuxes_the_matching_rung_transcodes_lower_and_serves_signed_urls(
    stub: render_service_pb2_grpc.RenderServiceStub,
    s3: Minio,
    s3_bucket: str,
    settings: Settings,
    sources: dict[str, Path],
    tmp_path: Path,
) -> None:
    job_id, owner_id = _ids()
    await _stage(s3, s3_bucket, job_id, sources["audio"])

    response = await _ingest(stub, job_id, owner_id)

    by_name = {r.name: r for r in response.renditions}
    assert list(by_name) == ["720p", "480p"]  # 1080p is above the source and upscale is off
    assert (by_name["720p"].width, by_name["720p"].height, by_name["720p"].remuxed) == (1280, 720, True)
    assert (by_name["480p"].width, by_name["480p"].height, by_name["480p"].remuxed) == (854, 480, False)
    assert all(r.has_audio and r.bit_rate > 0 and r.content_type == "video/mp4" for r in response.renditions)
    prefix = f"media/{owner_id}/{job_id}/renditions/"
    assert await _keys(s3, s3_bucket, prefix) == [f"{prefix}480p.mp4", f"{prefix}720p.mp4"]

    listed = await stub.ListRenditions(
        render_service_pb2.ListRenditionsRequest(owner_id=owner_id, job_id=job_id)
    )
    assert [r.name for r in listed.renditions] == ["720p", "480p"]
    assert listed.hls_master_url == ""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        for rendition in listed.renditions:
            assert rendition.url_expire_time == listed.expire_time
            async with http.get(rendition.url) as got:
                assert got.status == 200
                data = await got.read()
            assert len(data) == rendition.size_bytes
            atoms = _top_level_atoms(data)
            assert atoms.index("moov") < atoms.index("mdat"), atoms  # faststart
            path = tmp_path / f"{rendition.name}.mp4"
            path.write_bytes(data)
            name, width, height, _, _ = _video_params(path)
            assert (name, width, height) == ("h264", rendition.width, rendition.height)
        # The remuxed rung carries the source's own H.264 stream: same parameter sets, same bit rate.
        assert _video_params(tmp_path / "720p.mp4") == _video_params(sources["audio"])
        assert by_name["720p"].bit_rate == pytest.approx(by_name["720p"].size_bytes * 8 / SECONDS, rel=0.1)
        for tampered in _tampered(listed.renditions[0].url, other_key=f"media/{owner_id}/{job_id}/video.mp4"):
            async with http.get(tampered) as refused:
                assert refused.status == 403

    # Re-ingest answers from the rows and makes nothing again.
    again = await _ingest(stub, job_id, owner_id)
    assert list(again.renditions) == list(response.renditions)
    assert await _rendition_rows(settings.database_url, job_id) == ["480p", "720p"]

    with pytest.raises(ServiceError) as caught:
        await stub.ListRenditions(
            render_service_pb2.ListRenditionsRequest(owner_id="own_intruder", job_id=job_id)
        )
    assert caught.value.kind is ErrorKind.NOT_FOUND


async def test_silent_source_upscaled_with_hls(
    stub: render_service_pb2_grpc.RenderServiceStub,
    s3: Minio,
    s3_bucket: str,
    settings: Settings,
    sources: dict[str, Path],
) -> None:
    job_id, owner_id = _ids()
    await _stage(s3, s3_bucket, job_id, sources["silent"])

    response = await _ingest(stub, job_id, owner_id, upscale=True, hls=True)

    assert [(r.name, r.width, r.height, r.remuxed) for r in response.renditions] == [
        ("1080p", 1920, 1080, False), ("720p", 1280, 720, True), ("480p", 854, 480, False)
    ]  # fmt: skip
    assert not any(r.has_audio for r in response.renditions)
    listed = await stub.ListRenditions(
        render_service_pb2.ListRenditionsRequest(owner_id=owner_id, job_id=job_id)
    )
    assert listed.hls_master_url
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        async with http.get(listed.hls_master_url) as got:
            assert got.status == 200
            master = (await got.text()).splitlines()
    assert master[0] == "#EXTM3U"
    variants = [line for line in master if line and not line.startswith("#")]
    assert sorted(variants) == ["1080p/index.m3u8", "480p/index.m3u8", "720p/index.m3u8"]
    assert sum(line.startswith("#EXT-X-STREAM-INF:") for line in master) == 3
    hls = f"media/{owner_id}/{job_id}/hls/"
    stored = await _keys(s3, s3_bucket, hls)
    for variant in variants:
        playlist = await asyncio.to_thread(s3.get_object, s3_bucket, hls + variant)
        lines = playlist.read().decode().splitlines()
        playlist.close()
        segments = [line for line in lines if line and not line.startswith("#")]
        assert "#EXT-X-ENDLIST" in lines and segments
        directory = variant.rsplit("/", 1)[0]
        assert all(f"{hls}{directory}/{segment}" in stored for segment in segments)

    # DeleteAssets takes the source, every rendition and every HLS file, and the rows.
    everything = await _keys(s3, s3_bucket, f"media/{owner_id}/{job_id}/")
    deleted = await stub.DeleteAssets(
        render_service_pb2.DeleteAssetsRequest(owner_id=owner_id, job_id=job_id)
    )
    assert deleted.deleted_objects == len(everything) > 3 + len(stored) - 1
    assert await _keys(s3, s3_bucket, f"media/{owner_id}/{job_id}/") == []
    assert await _rendition_rows(settings.database_url, job_id) == []


async def test_a_render_killed_part_way_leaves_nothing_and_the_retry_completes(
    s3: Minio, s3_bucket: str, settings: Settings, sources: dict[str, Path]
) -> None:
    job_id, owner_id = _ids()
    await _stage(s3, s3_bucket, job_id, sources["audio"])
    renditions = f"media/{owner_id}/{job_id}/renditions/"

    async with running(replace(settings, transcode_timeout_seconds=0.05)) as stub:
        with pytest.raises(ServiceError) as caught:
            await _ingest(stub, job_id, owner_id, upscale=True, hls=True)
    assert caught.value.kind is ErrorKind.UNAVAILABLE
    assert caught.value.code == "render_timeout"
    assert await _keys(s3, s3_bucket, renditions) == []
    assert await _keys(s3, s3_bucket, f"media/{owner_id}/{job_id}/hls/") == []
    assert await _rendition_rows(settings.database_url, job_id) == []

    async with running(settings) as stub:
        response = await _ingest(stub, job_id, owner_id, upscale=True)
    assert [r.name for r in response.renditions] == ["1080p", "720p", "480p"]
    assert len(await _keys(s3, s3_bucket, renditions)) == 3
    assert await _rendition_rows(settings.database_url, job_id) == ["1080p", "480p", "720p"]


async def test_a_failing_transcode_is_a_clear_failed_precondition(
    s3: Minio, s3_bucket: str, settings: Settings, sources: dict[str, Path]
) -> None:
    job_id, owner_id = _ids()
    await _stage(s3, s3_bucket, job_id, sources["audio"])
    # An ffmpeg that cannot encode stands in for a source libavcodec decodes at probe time only.
    async with running(replace(settings, ffmpeg="false")) as stub:
        with pytest.raises(ServiceError) as caught:
            await _ingest(stub, job_id, owner_id)
    assert caught.value.kind is ErrorKind.FAILED_PRECONDITION
    assert caught.value.code == "render_failed"
    assert await _keys(s3, s3_bucket, f"media/{owner_id}/{job_id}/renditions/") == []
