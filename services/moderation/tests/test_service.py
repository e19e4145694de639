"""ModerationService over a real gRPC port against a real PostgreSQL database (one per test)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from servicekit.errors import ErrorKind, ServiceError
from servicekit.grpcclient import open_channel
from vidflow.moderation.v1 import moderation_pb2, moderation_service_pb2, moderation_service_pb2_grpc

from services.moderation.app import migrate, serve
from services.moderation.config import ClassifierSettings, Settings
from services.moderation.domain import MAX_IMAGE_BYTES, Category, dhash, format_hash
from services.moderation.tests.fake_classifier import FakeClassifier, result, serve_fake
from services.moderation.tests.test_imagehash import altered, picture

pytestmark = pytest.mark.integration

APPROVED, REJECTED = moderation_pb2.VERDICT_APPROVED, moderation_pb2.VERDICT_REJECTED
Image = moderation_service_pb2.ImageToModerate


@dataclass
class Moderation:
    stub: moderation_service_pb2_grpc.ModerationServiceStub
    database_url: str

    async def prompt(self, prompt: str, job_id: str | None = None) -> moderation_pb2.ModerationDecision:
        response = await self.stub.ModeratePrompt(
            moderation_service_pb2.ModeratePromptRequest(
                job_id=_job() if job_id is None else job_id, owner_id="own_1", prompt=prompt
            )
        )
        return response.decision

    async def images(
        self, images: list[Any], job_id: str | None = None
    ) -> moderation_service_pb2.ModerateImagesResponse:
        return await self.stub.ModerateImages(
            moderation_service_pb2.ModerateImagesRequest(
                job_id=_job() if job_id is None else job_id, owner_id="own_1", images=images
            )
        )

    async def refused(self, call: Any) -> ServiceError:
        with pytest.raises(ServiceError) as caught:
            await call
        return caught.value

    async def rows(self, job_id: str) -> list[dict[str, Any]]:
        async with await psycopg.AsyncConnection.connect(self.database_url) as conn:
            cursor = await conn.execute(
                "SELECT id, owner_id, subject, image_index, verdict, category, reason, decided_at"
                " FROM moderation.decisions WHERE job_id = %s ORDER BY subject, image_index",
                (job_id,),
            )
            names = [column.name for column in cursor.description or []]
            return [dict(zip(names, row, strict=True)) for row in await cursor.fetchall()]


def _job() -> str:
    return f"job_{uuid.uuid4().hex}"


Start = Callable[..., AbstractAsyncContextManager[Moderation]]


@pytest.fixture
async def start(fresh_database_url: str) -> Start:
    """Start the service with settings overrides; migrations run once per database."""
    migrated = False

    @asynccontextmanager
    async def started(**overrides: Any) -> AsyncIterator[Moderation]:
        nonlocal migrated
        settings = replace(
            Settings(
                database_url=fresh_database_url, grpc_listen_address="127.0.0.1:0", grpc_drain_seconds=1
            ),
            **overrides,
        )
        if not migrated:
            await asyncio.to_thread(migrate, settings)
            migrated = True
        async with serve(settings) as running:
            async with open_channel(
                f"127.0.0.1:{running.port}", tracer_name="test", default_timeout=30
            ) as channel:
                yield Moderation(
                    moderation_service_pb2_grpc.ModerationServiceStub(channel), fresh_database_url
                )

    return started


@pytest.fixture
async def moderation(start: Start) -> AsyncIterator[Moderation]:
    async with start() as service:
        yield service


def _recent(moment: datetime) -> bool:
    return abs(datetime.now(UTC) - moment) < timedelta(minutes=5)


async def test_prompt_approved_and_stored(moderation: Moderation) -> None:
    job_id = _job()
    decision = await moderation.prompt("a cat playing the piano", job_id)

    assert decision.verdict == APPROVED
    assert (decision.job_id, decision.category, decision.reason, decision.image_index) == (job_id, "", "", -1)
    [row] = await moderation.rows(job_id)
    assert row["id"] == decision.id
    assert (row["owner_id"], row["subject"], row["image_index"], row["verdict"]) == (
        "own_1",
        "prompt",
        -1,
        "approved",
    )
    assert row["decided_at"] == decision.decide_time.ToDatetime(tzinfo=UTC)
    assert _recent(row["decided_at"])


async def test_prompt_rejected_with_category_and_reason(moderation: Moderation) -> None:
    job_id = _job()
    decision = await moderation.prompt("a g.o.r.e fest in the woods", job_id)

    assert decision.verdict == REJECTED
    assert decision.category == "graphic_violence"
    assert decision.reason == "Graphic violence and gore are not allowed."
    [row] = await moderation.rows(job_id)
    assert (row["verdict"], row["category"], row["reason"]) == (
        "rejected",
        decision.category,
        decision.reason,
    )


async def test_configured_categories_replace_the_defaults(start: Start) -> None:
    async with start(categories=(Category("spam", "No spam, please.", ("buy now",)),)) as service:
        assert (await service.prompt("B.U.Y N.O.W")).category == "spam"
        assert (await service.prompt("a gore fest")).verdict == APPROVED  # defaults replaced


async def test_images_each_get_a_decision_and_the_job_one_overall(start: Start) -> None:
    blocked = picture()
    async with start(image_blocklist=(dhash(blocked),)) as service:
        job_id = _job()
        response = await service.images(
            [
                Image(index=0, data=picture("gradient"), content_type="image/png", filename="holiday.png"),
                Image(index=1, data=altered(blocked), content_type="image/jpeg", filename="scan.jpg"),
                Image(index=2, data=picture("gradient"), content_type="image/png", filename="pikachu.png"),
            ],
            job_id,
        )

    verdicts = [(d.image_index, d.verdict, d.category) for d in response.image_decisions]
    assert verdicts == [
        (0, APPROVED, ""),
        (1, REJECTED, "blocked_image"),
        (2, REJECTED, "copyrighted_characters"),
    ]
    assert (
        response.image_decisions[1].reason == "Image 1 matches an image that is not allowed on this platform."
    )
    assert response.image_decisions[2].reason.startswith("The file name of image 2 was refused.")
    job = response.decision
    assert (job.verdict, job.category, job.image_index) == (REJECTED, "blocked_image", 1)
    assert job.reason == response.image_decisions[1].reason

    rows = await service.rows(job_id)
    assert [(r["subject"], r["image_index"], r["verdict"], r["category"]) for r in rows] == [
        ("image", 0, "approved", ""),
        ("image", 1, "rejected", "blocked_image"),
        ("image", 2, "rejected", "copyrighted_characters"),
        ("images", 1, "rejected", "blocked_image"),
    ]
    assert {r["id"] for r in rows} == {job.id, *(d.id for d in response.image_decisions)}
    assert len({r["decided_at"] for r in rows}) == 1 and _recent(rows[0]["decided_at"])
    assert rows[0]["decided_at"] == job.decide_time.ToDatetime(tzinfo=UTC)


async def test_blocklisted_image_and_its_altered_copy_rejected_a_different_one_approved(start: Start) -> None:
    blocked = picture()
    async with start(
        image_blocklist=(int(format_hash(dhash(blocked)), 16),), image_hash_distance=6
    ) as service:
        for data in (blocked, altered(blocked)):
            response = await service.images([Image(index=0, data=data)])
            assert response.decision.verdict == REJECTED
            assert response.decision.category == "blocked_image"
        response = await service.images([Image(index=0, data=picture("gradient"), filename="garden.png")])
        assert response.decision.verdict == APPROVED
        assert response.decision.image_index == -1
        assert [d.verdict for d in response.image_decisions] == [APPROVED]


async def test_all_images_approved(moderation: Moderation) -> None:
    job_id = _job()
    response = await moderation.images(
        [Image(index=i, data=picture("gradient"), filename=f"ref-{i}.png") for i in range(4)], job_id
    )
    assert response.decision.verdict == APPROVED
    assert [(d.image_index, d.verdict) for d in response.image_decisions] == [(i, APPROVED) for i in range(4)]
    assert len(await moderation.rows(job_id)) == 5


@pytest.mark.parametrize(
    ("job_id", "images", "param"),
    [
        ("", [Image(index=0, data=b"x")], "job_id"),
        ("job_1", [], "images"),
        ("job_1", [Image(index=i, data=b"x") for i in range(5)], "images"),
        ("job_1", [Image(index=0, data=b"")], "images[0].data"),
        ("job_1", [Image(index=0, data=b"x"), Image(index=0, data=b"y")], "images[1].index"),
        ("job_1", [Image(index=-1, data=b"x")], "images[0].index"),
        ("job_1", [Image(index=0, data=b"this is not an image")], "images[0].data"),
        (
            "job_1",
            [Image(index=0, data=b"x"), Image(index=1, data=b"\xff" * (MAX_IMAGE_BYTES + 1))],
            "images[1].data",
        ),
    ],
)
async def test_invalid_images_request(
    moderation: Moderation, job_id: str, images: list[Any], param: str
) -> None:
    error = await moderation.refused(moderation.images(images, job_id))
    assert error.kind is ErrorKind.INVALID_ARGUMENT
    assert error.param == param
    assert await moderation.rows(job_id) == []


async def test_prompt_without_job_id_is_invalid(moderation: Moderation) -> None:
    error = await moderation.refused(
        moderation.stub.ModeratePrompt(moderation_service_pb2.ModeratePromptRequest(prompt="a cat"))
    )
    assert (error.kind, error.param) == (ErrorKind.INVALID_ARGUMENT, "job_id")


async def test_classifier_flags_what_the_rules_miss_and_outages_fail_closed(start: Start) -> None:
    fake = FakeClassifier(script=[result(True, harassment=0.9), result(True, sexual=0.8)])
    async with serve_fake(fake):
        settings = ClassifierSettings(fake.base_url, timeout_seconds=5, max_attempts=2, backoff_seconds=0.01)
        async with start(classifier=settings) as service:
            job_id = _job()
            decision = await service.prompt("you are all idiots", job_id)
            assert (decision.verdict, decision.category) == (REJECTED, "harassment")
            images = await service.images(
                [Image(index=0, data=picture("gradient"), content_type="image/png")]
            )
            assert images.decision.category == "sexual"
            assert images.decision.reason == "Image 0: Sexual content is not allowed."
            assert [r["category"] for r in await service.rows(job_id)] == ["harassment"]

            fake.script.extend([503, 503])
            outage_job = _job()
            error = await service.refused(service.prompt("a cat", outage_job))
            assert (error.kind, error.code) == (ErrorKind.UNAVAILABLE, "moderation_unavailable")
            assert await service.rows(outage_job) == []  # nothing approved unchecked
