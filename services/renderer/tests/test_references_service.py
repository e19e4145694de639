"""PrepareReferences over a real gRPC port, against real PostgreSQL and a real S3 server (SeaweedFS).

Each test gets its own database and bucket; images are made with Pillow in the test.
"""

from __future__ import annotations

import asyncio
import io
import random
import struct
import uuid
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule
from PIL import Image
from servicekit.db import make_engine
from servicekit.errors import ErrorKind, ServiceError
from servicekit.grpcclient import open_channel
from vidflow.render.v1 import render_pb2, render_service_pb2, render_service_pb2_grpc

from services.renderer.app import REFERENCE_RULE_ID, serve
from services.renderer.config import Settings
from services.renderer.media_store import MediaStore
from services.renderer.references import ReferenceSweeper
from services.renderer.store import ReferenceStore

pytestmark = pytest.mark.integration

CROP, PAD = render_pb2.REFERENCE_FIT_CROP, render_pb2.REFERENCE_FIT_PAD


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def photo(size: tuple[int, int] = (800, 600)) -> Image.Image:
    """Something with detail, so the encoders have work to do."""
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    image.paste((200, 40, 40), (size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2))
    return image


def upload(data: bytes, declared: str = "", filename: str = "") -> render_pb2.ReferenceImageUpload:
    return render_pb2.ReferenceImageUpload(data=data, declared_content_type=declared, filename=filename)


def _ids() -> tuple[str, str]:
    return f"job_{uuid.uuid4().hex}", f"own_{uuid.uuid4().hex}"


@dataclass
class Renderer:
    stub: render_service_pb2_grpc.RenderServiceStub
    health: health_pb2_grpc.HealthStub
    s3: Minio
    bucket: str
    database_url: str
    settings: Settings

    async def prepare(
        self,
        images: list[render_pb2.ReferenceImageUpload],
        *,
        job_id: str | None = None,
        owner_id: str | None = None,
        size: str = "1280x720",
        fit: render_pb2.ReferenceFit.ValueType = CROP,
    ) -> list[render_pb2.PreparedReference]:
        job, owner = _ids()
        response = await self.stub.PrepareReferences(
            render_service_pb2.PrepareReferencesRequest(
                job_id=job_id or job, owner_id=owner_id or owner, images=images, target_size=size, fit=fit
            )
        )
        return list(response.references)

    async def refused(self, images: list[render_pb2.ReferenceImageUpload], **kwargs: object) -> ServiceError:
        with pytest.raises(ServiceError) as caught:
            await self.prepare(images, **kwargs)  # type: ignore[arg-type]
        return caught.value

    async def keys(self, prefix: str = "references/") -> list[str]:
        def listing() -> list[str]:
            return sorted(
                o.object_name for o in self.s3.list_objects(self.bucket, prefix=prefix, recursive=True)
            )

        return await asyncio.to_thread(listing)

    async def rows(self, job_id: str | None = None) -> list[tuple[Any, ...]]:
        async with await psycopg.AsyncConnection.connect(self.database_url) as conn:
            cursor = await conn.execute(
                "SELECT job_id, image_index, owner_id, object_key, detected_format, original_width,"
                " original_height, width, height, created_at, expires_at"
                " FROM renderer.reference_images WHERE %(job)s::text IS NULL OR job_id = %(job)s"
                " ORDER BY job_id, image_index",
                {"job": job_id},
            )
            return [tuple(row) for row in await cursor.fetchall()]


@pytest.fixture
async def renderer(settings: Settings, s3: Minio) -> AsyncIterator[Renderer]:
    async with serve(settings) as running:
        async with open_channel(
            f"127.0.0.1:{running.port}", tracer_name="test", default_timeout=60
        ) as channel:
            yield Renderer(
                render_service_pb2_grpc.RenderServiceStub(channel),
                health_pb2_grpc.HealthStub(channel),
                s3,
                settings.s3.bucket,
                settings.database_url,
                settings,
            )


async def test_jpeg_png_and_webp_are_prepared_stored_and_recorded(renderer: Renderer) -> None:
    job_id, owner_id = _ids()
    source = photo()
    images = [
        upload(encode(source, "JPEG"), "image/jpeg", "a.jpg"),
        upload(encode(source, "PNG"), "image/png", "b.png"),
        upload(encode(source, "WEBP"), "", "c.webp"),  # no declaration is fine
    ]
    before = datetime.now(UTC)

    refs = await renderer.prepare(images, job_id=job_id, owner_id=owner_id, fit=CROP)

    assert [r.index for r in refs] == [0, 1, 2]
    assert [r.detected_format for r in refs] == ["jpeg", "png", "webp"]
    for ref in refs:
        assert ref.object_key == f"references/{owner_id}/{job_id}/{ref.index}.jpg"
        assert ref.content_type == "image/jpeg"
        assert (ref.original_width, ref.original_height, ref.width, ref.height) == (800, 600, 1280, 720)
        assert ref.size_bytes == len(ref.data)
        expire = ref.expire_time.ToDatetime(tzinfo=UTC)
        assert before + timedelta(hours=24) <= expire <= datetime.now(UTC) + timedelta(hours=24)
        out = Image.open(io.BytesIO(ref.data))
        assert (out.format, out.size) == ("JPEG", (1280, 720))
        stored = await asyncio.to_thread(renderer.s3.get_object, renderer.bucket, ref.object_key)
        try:
            assert stored.read() == ref.data
            assert stored.headers["Content-Type"] == "image/jpeg"
        finally:
            stored.close()
            stored.release_conn()
    rows = await renderer.rows(job_id)
    assert [(r[1], r[2], r[3], r[4]) for r in rows] == [
        (r.index, owner_id, r.object_key, r.detected_format) for r in refs
    ]
    for row in rows:
        created_at, expires_at = row[9], row[10]
        assert expires_at - created_at == timedelta(hours=24)


async def test_pad_fills_with_black_at_the_exact_size(renderer: Renderer) -> None:
    white_square = encode(Image.new("RGB", (600, 600), "white"), "PNG")
    (ref,) = await renderer.prepare([upload(white_square, "image/png")], size="1280x720", fit=PAD)
    out = Image.open(io.BytesIO(ref.data)).convert("RGB")
    assert out.size == (1280, 720) and (ref.width, ref.height) == (1280, 720)
    # 600x600 scaled to 720x720 sits in the middle: black bars of 280 pixels each side.
    for x in (0, 139, 275, 1004, 1140, 1279):
        for y in (0, 360, 719):
            assert max(out.getpixel((x, y))) <= 8, (x, y)  # type: ignore[arg-type]
    assert min(out.getpixel((640, 360))) >= 247  # type: ignore[arg-type]


async def test_portrait_target_and_crop(renderer: Renderer) -> None:
    (ref,) = await renderer.prepare([upload(encode(photo((1920, 1080)), "JPEG"))], size="720x1280", fit=CROP)
    assert Image.open(io.BytesIO(ref.data)).size == (720, 1280)
    assert (ref.original_width, ref.original_height) == (1920, 1080)


async def test_exif_orientation_is_honoured_and_metadata_stripped(renderer: Renderer) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "SecretCam"
    data = encode(photo((640, 480)), "JPEG", exif=exif.tobytes())
    assert Image.open(io.BytesIO(data)).getexif()  # the source really carries EXIF

    (ref,) = await renderer.prepare([upload(data, "image/jpeg")], fit=PAD)

    assert (ref.original_width, ref.original_height) == (480, 640)
    out = Image.open(io.BytesIO(ref.data))
    assert not out.getexif()
    assert "exif" not in out.info and "icc_profile" not in out.info and b"SecretCam" not in ref.data


def _png_bomb(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 4096))
        + chunk(b"IEND", b"")
    )


def _animated_webp() -> bytes:
    frames = [Image.new("RGB", (64, 64), colour) for colour in ("red", "green", "blue")]
    return encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100)


def _bad_inputs() -> list[tuple[str, render_pb2.ReferenceImageUpload, str]]:
    jpeg = encode(photo(), "JPEG")
    eleven_mb = b"\xff\xd8\xff\xe0" + b"\x00" * (11 * 1024 * 1024) + b"\xff\xd9"
    return [
        ("truncated jpeg", upload(jpeg[: len(jpeg) * 2 // 3], "image/jpeg"), "truncated"),
        ("png bomb", upload(_png_bomb(100_000, 100_000), "image/png"), "too many pixels"),
        ("png over the pixel cap", upload(_png_bomb(8000, 6000), "image/png"), "too many pixels"),
        (
            "jpeg+zip polyglot",
            upload(jpeg + b"PK\x03\x04" + bytes(64), "image/jpeg"),
            "followed by other data",
        ),
        ("html+jpeg", upload(b"<html><body>" + jpeg, "image/jpeg"), "not a recognised image"),
        ("mime mismatch", upload(jpeg, "image/png"), "declared image/png but the bytes are JPEG"),
        ("zero bytes", upload(b"", "image/jpeg"), "empty"),
        ("11 MB", upload(eleven_mb, "image/jpeg"), f"more than the {10 * 1024 * 1024}-byte limit"),
        ("svg", upload(b'<svg xmlns="http://www.w3.org/2000/svg"/>', "image/svg+xml"), "format SVG"),
        ("gif", upload(encode(photo(), "GIF"), "image/gif"), "unsupported image format GIF"),
        ("animated webp", upload(_animated_webp(), "image/webp"), "animated WebP"),
    ]


@pytest.mark.parametrize(("name", "bad", "problem"), _bad_inputs(), ids=[case[0] for case in _bad_inputs()])
async def test_bad_images_are_invalid_arguments_naming_the_image(
    renderer: Renderer, name: str, bad: render_pb2.ReferenceImageUpload, problem: str
) -> None:
    good = upload(encode(photo(), "PNG"), "image/png")
    job_id, owner_id = _ids()

    error = await renderer.refused([good, bad], job_id=job_id, owner_id=owner_id)

    assert error.kind is ErrorKind.INVALID_ARGUMENT
    assert error.code == "invalid_image"
    assert error.param == "input_reference[1]"
    assert error.message.startswith("reference image 1: ")
    assert problem in error.message
    # All or nothing: the good image before it was not kept either.
    assert await renderer.keys() == []
    assert await renderer.rows(job_id) == []


@pytest.mark.parametrize("count", [0, 5])
async def test_one_to_four_images(renderer: Renderer, count: int) -> None:
    image = upload(encode(photo((64, 48)), "PNG"))
    error = await renderer.refused([image] * count)
    assert error.kind is ErrorKind.INVALID_ARGUMENT
    assert error.param == "input_reference"
    assert f"got {count}" in error.message


async def test_four_ten_megabyte_images_fit_in_one_request(renderer: Renderer) -> None:
    # Random pixels barely compress: a ~9.6 MB PNG each, 38 MB in one request.
    noise = Image.frombytes("RGB", (1850, 1730), random.Random(7).randbytes(1850 * 1730 * 3))
    data = encode(noise, "PNG", compress_level=0)
    assert 9 * 1024 * 1024 < len(data) <= 10 * 1024 * 1024
    refs = await renderer.prepare([upload(data, "image/png")] * 4, size="640x360")
    assert [(r.index, r.width, r.height) for r in refs] == [(i, 640, 360) for i in range(4)]


async def test_retries_are_idempotent_and_another_owner_is_refused(renderer: Renderer) -> None:
    job_id, owner_id = _ids()
    images = [upload(encode(photo(), "PNG")), upload(encode(photo(), "JPEG"))]
    first = await renderer.prepare(images, job_id=job_id, owner_id=owner_id)
    again = await renderer.prepare(images, job_id=job_id, owner_id=owner_id)

    assert [r.object_key for r in again] == [r.object_key for r in first]
    assert [r.data for r in again] == [r.data for r in first]  # deterministic output
    assert len(await renderer.rows(job_id)) == 2
    assert await renderer.keys() == sorted(r.object_key for r in first)

    error = await renderer.refused(images, job_id=job_id, owner_id="own_intruder")
    assert error.kind is ErrorKind.ALREADY_EXISTS
    assert {row[2] for row in await renderer.rows(job_id)} == {owner_id}
    assert not [key for key in await renderer.keys() if "own_intruder" in key]


async def test_sweeper_removes_expired_rows_and_objects_only(renderer: Renderer) -> None:
    image = upload(encode(photo((160, 90)), "PNG"))
    for _ in range(3):
        await renderer.prepare([image, image, image])  # nine images over three jobs
    rows = await renderer.rows()
    assert len(rows) == 9 and len(await renderer.keys()) == 9
    created: datetime = min(row[9] for row in rows)
    engine = make_engine(renderer.settings.database_url, pool_size=4)
    try:
        media = MediaStore(renderer.s3, renderer.bucket)
        # Two replicas, with small batches so several passes and row locks come into play.
        sweepers = [ReferenceSweeper(media, ReferenceStore(engine), batch_size=2) for _ in range(2)]

        assert await sweepers[0].sweep(now=created + timedelta(hours=23, minutes=59)) == 0
        assert len(await renderer.rows()) == 9

        later = created + timedelta(hours=24, minutes=1)
        removed = await asyncio.gather(*(sweeper.sweep(now=later) for sweeper in sweepers))
        assert sum(removed) == 9
        assert await renderer.rows() == []
        assert await renderer.keys() == []
        assert await sweepers[1].sweep(now=later) == 0  # nothing left, nothing fails
    finally:
        await engine.dispose()


async def test_fuzzed_uploads_are_refused_cleanly_and_the_service_stays_healthy(renderer: Renderer) -> None:
    rng = random.Random(1234)
    seeds = [encode(photo((96, 64)), fmt) for fmt in ("JPEG", "PNG", "WEBP")]
    outcomes = {"prepared": 0, "refused": 0}
    for _ in range(120):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(1, 12)):
            data[rng.randrange(len(data) - 12)] ^= 1 << rng.randrange(8)  # keep the end: decode must run
        if rng.random() < 0.3:
            del data[rng.randrange(1, len(data)) :]
        try:
            await renderer.prepare([upload(bytes(data))], size="64x36")
            outcomes["prepared"] += 1
        except ServiceError as error:
            assert (error.kind, error.code, error.param) == (
                ErrorKind.INVALID_ARGUMENT,
                "invalid_image",
                "input_reference[0]",
            ), error
            outcomes["refused"] += 1
    assert outcomes["refused"] > 10, outcomes

    status = await renderer.health.Check(
        health_pb2.HealthCheckRequest(service="vidflow.render.v1.RenderService")
    )
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    (ref,) = await renderer.prepare([upload(encode(photo(), "JPEG"), "image/jpeg")])
    assert Image.open(io.BytesIO(ref.data)).size == (1280, 720)


async def test_start_up_sets_a_one_day_lifecycle_rule_on_references(renderer: Renderer) -> None:
    config = await asyncio.to_thread(renderer.s3.get_bucket_lifecycle, renderer.bucket)
    assert config is not None
    assert [(r.rule_id, _prefix(r), r.expiration and r.expiration.days) for r in config.rules] == [
        (REFERENCE_RULE_ID, "references/", 1)
    ]


async def test_lifecycle_rule_keeps_other_rules_and_a_refusal_is_not_fatal(s3: Minio, s3_bucket: str) -> None:
    other = Rule(ENABLED, rule_filter=Filter(prefix="tmp/"), rule_id="other", expiration=Expiration(days=7))
    await asyncio.to_thread(s3.set_bucket_lifecycle, s3_bucket, LifecycleConfig([other]))
    media = MediaStore(s3, s3_bucket)

    assert await media.expire_prefix("references/", days=1, rule_id=REFERENCE_RULE_ID)
    assert await media.expire_prefix("references/", days=1, rule_id=REFERENCE_RULE_ID)  # replaces, not adds

    config = await asyncio.to_thread(s3.get_bucket_lifecycle, s3_bucket)
    assert config is not None
    assert sorted((r.rule_id or "", _prefix(r)) for r in config.rules) == [
        ("other", "tmp/"),
        (REFERENCE_RULE_ID, "references/"),
    ]
    # A store that refuses (here: no such bucket) is logged and reported, not raised.
    assert not await MediaStore(s3, f"missing-{uuid.uuid4().hex}").expire_prefix(
        "references/", days=1, rule_id=REFERENCE_RULE_ID
    )


def _prefix(rule: Rule) -> str | None:
    return rule.rule_filter.prefix if rule.rule_filter else None
