"""Creates that fail mid-admission because a peer is down (crashed, restarting), and their retries.

Found by the crash test (tests/reliability/test_crash.py), which kills billing and the renderer
while videos are being created:
- a create retried with its Idempotency-Key is admitted by the retry, at once; it used to answer
  with the half-admitted job, left 'queued' until the worker's admission grace period (a minute);
- a create whose reference images cannot be prepared leaves no job behind; it used to leave one
  without its images, which the worker admitted a minute later and had made (and charged) without
  them, though the client had been told 503.

Real parts: PostgreSQL, S3, and the moderation, billing and renderer services, each started only
when the test says (a peer that is not started yet is an empty port, as while it restarts).
"""

from __future__ import annotations

import asyncio
import io
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace

import pytest
from PIL import Image
from servicekit.db import make_engine, upgrade_schema
from servicekit.errors import ErrorKind, ServiceError
from servicekit.grpcclient import open_channel
from servicekit.storage import S3Settings

from services.billing import app as billing_app
from services.billing.config import Settings as BillingSettings
from services.jobs import app as jobs_app
from services.jobs.admission import Admission, JobRequest
from services.jobs.domain.job import Job
from services.jobs.domain.lifecycle import Stage
from services.jobs.peers import BillingClient, ModerationClient, ReferenceImage, RendererClient
from services.jobs.store import JobStore
from services.moderation import app as moderation_app
from services.moderation.config import Settings as ModerationSettings
from services.renderer import app as renderer_app
from services.renderer.config import Settings as RendererSettings
from tests.helpers import balance, credit, eventually

pytestmark = pytest.mark.integration

CREDITS = 1_000


def _free_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


async def _nothing_staged(key: str) -> bytes:
    raise AssertionError(f"a first admission is handed its prepared images, never reads {key}")


@dataclass
class Rig:
    """Admission as the jobs service wires it, against peers started on demand."""

    admission: Admission
    store: JobStore
    billing_address: str
    renderer_address: str
    exits: AsyncExitStack
    database_url: str
    nats_url: str
    s3: S3Settings
    admitted: list[str]

    async def start_billing(self) -> None:
        await self.exits.enter_async_context(
            billing_app.serve(
                BillingSettings(
                    database_url=self.database_url,
                    nats_url=self.nats_url,
                    grpc_listen_address=self.billing_address,
                )
            )
        )
        await credit(self.billing_address, "user_retry", CREDITS, request_id="start")

    async def start_renderer(self) -> None:
        await self.exits.enter_async_context(
            renderer_app.serve(
                RendererSettings(
                    database_url=self.database_url, s3=self.s3, grpc_listen_address=self.renderer_address
                )
            )
        )

    async def create_once_peers_answer(self, request: JobRequest) -> Job:
        """The client's retries: the same request until no peer is UNAVAILABLE (a channel redials
        a peer that came back within a couple of seconds)."""

        async def attempt() -> Job | None:
            try:
                return await self.admission.create(request)
            except ServiceError as error:
                if error.kind is ErrorKind.UNAVAILABLE:
                    return None
                raise

        return await eventually(attempt, deadline_seconds=15)


@pytest.fixture
async def rig(fresh_database_url, infrastructure, s3_bucket) -> AsyncIterator[Rig]:
    for module in (moderation_app, billing_app, renderer_app, jobs_app):
        await asyncio.to_thread(upgrade_schema, fresh_database_url, module.MIGRATIONS, module.SCHEMA)
    s3 = S3Settings(
        endpoint=infrastructure.s3_endpoint,
        access_key=infrastructure.s3_access_key,
        secret_key=infrastructure.s3_secret_key,
        region=infrastructure.s3_region,
        bucket=s3_bucket,
    )
    async with AsyncExitStack() as exits:
        moderation = await exits.enter_async_context(
            moderation_app.serve(
                ModerationSettings(database_url=fresh_database_url, grpc_listen_address="127.0.0.1:0")
            )
        )
        engine = make_engine(fresh_database_url, pool_size=2)
        exits.push_async_callback(engine.dispose)
        billing_address, renderer_address = _free_address(), _free_address()
        channels = [
            open_channel(address, tracer_name="test")
            for address in (f"127.0.0.1:{moderation.port}", billing_address, renderer_address)
        ]
        for channel in channels:
            exits.push_async_callback(channel.close)
        store = JobStore(engine)
        admitted: list[str] = []
        admission = Admission(
            store,
            ModerationClient(channels[0]),
            BillingClient(channels[1]),
            RendererClient(channels[2]),
            _nothing_staged,
            on_admitted=lambda: admitted.append("woken"),
        )
        yield Rig(
            admission,
            store,
            billing_address,
            renderer_address,
            exits,
            fresh_database_url,
            infrastructure.nats_url,
            s3,
            admitted,
        )


def _request(request_id: str, references: tuple[ReferenceImage, ...] = ()) -> JobRequest:
    return JobRequest(
        owner_id="user_retry",
        model="sora-2",
        prompt="A kite over a windy beach",
        seconds=4,
        size="720x1280",
        request_id=request_id,
        references=references,
    )


def _png() -> ReferenceImage:
    buffer = io.BytesIO()
    Image.new("RGB", (360, 640), (200, 120, 40)).save(buffer, format="PNG")
    return ReferenceImage(buffer.getvalue(), "image/png", "kite.png")


async def test_a_retried_create_finishes_the_admission_its_first_try_left_half_done(rig: Rig):
    request = _request("create-after-a-crash")

    # Billing is down: moderation passes, the credit hold cannot be placed, the client gets a 503.
    with pytest.raises(ServiceError) as first_try:
        await rig.admission.create(request)
    assert first_try.value.kind is ErrorKind.UNAVAILABLE
    stalled = await rig.store.find_by_request_id("user_retry", "create-after-a-crash")
    assert stalled is not None and stalled.stage is Stage.ADMITTING

    await rig.start_billing()
    job = await rig.create_once_peers_answer(request)
    assert (job.id, job.stage) == (stalled.id, Stage.QUEUED)
    assert job.cost_credits > 0 and rig.admitted == ["woken"]
    assert await balance(rig.billing_address, "user_retry") == (CREDITS - job.cost_credits, job.cost_credits)

    # Another retry answers with the same job and holds nothing more.
    again = await rig.admission.create(request)
    assert (again.id, again.stage) == (job.id, Stage.QUEUED)
    assert await balance(rig.billing_address, "user_retry") == (CREDITS - job.cost_credits, job.cost_credits)

    # Tries of one request that overlap (a client retrying a slow first try) admit it once: the
    # later ones resume the same job, and whichever moves it first wins; none of them fails.
    overlapping = replace(request, request_id="overlapping-tries")
    tries = await asyncio.gather(*(rig.admission.create(overlapping) for _ in range(4)))
    assert len({each.id for each in tries}) == 1
    queued = await rig.store.get(tries[0].id)
    assert queued is not None and queued.stage is Stage.QUEUED
    held = job.cost_credits + queued.cost_credits
    assert await balance(rig.billing_address, "user_retry") == (CREDITS - held, held)


async def test_a_create_whose_images_cannot_be_prepared_leaves_no_job_to_be_made_without_them(rig: Rig):
    await rig.start_billing()
    request = _request(f"with-an-image-{uuid.uuid4().hex[:8]}", references=(_png(),))

    # The renderer is down: the image cannot be prepared, the client gets a 503, and no job exists
    # that the worker could later admit (and have made, and charge for) without its image.
    with pytest.raises(ServiceError) as first_try:
        await rig.admission.create(request)
    assert first_try.value.kind is ErrorKind.UNAVAILABLE
    assert await rig.store.find_by_request_id("user_retry", request.request_id) is None
    assert await balance(rig.billing_address, "user_retry") == (CREDITS, 0)

    await rig.start_renderer()
    job = await rig.create_once_peers_answer(request)
    assert job.stage is Stage.QUEUED and len(job.reference_keys) == 1
    stored = await rig.store.get(job.id)
    assert stored is not None and stored.reference_keys == job.reference_keys
