"""One real video through every service, driven by the official openai SDK."""

from __future__ import annotations

import asyncio
import uuid

import openai
import pytest
from minio import Minio
from sqlalchemy import text
from vidflow.jobs.v1 import jobs_pb2

from tests.helpers import balance, credit, probe_mp4, status_events

pytestmark = pytest.mark.e2e

SORA_2_CREDITS_PER_SECOND = 10  # $0.10 per second at 100 credits per dollar


def sdk(stack, user_id: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.gateway_url}/v1", api_key=stack.key(user_id), max_retries=0)


async def test_openai_sdk_creates_polls_and_downloads_a_real_video(stack, span_exporter):
    await credit(stack.billing_address, "user_alice", 10_000, request_id=f"topup-{uuid.uuid4()}")
    available_before, _ = await balance(stack.billing_address, "user_alice")
    client = sdk(stack, "user_alice")

    video = await asyncio.to_thread(
        client.videos.create_and_poll,
        model="sora-2",
        prompt="A calico cat playing a piano on stage",
        seconds="4",
        size="1280x720",
        poll_interval_ms=300,
    )
    assert video.status == "completed", video.error
    assert video.progress == 100
    content = await asyncio.to_thread(client.videos.download_content, video.id)
    width, height, duration, codec = probe_mp4(content.read())
    assert (width, height, codec) == (1280, 720, "h264")
    assert duration == pytest.approx(4.0, abs=0.2)

    # Charged for exactly the four seconds delivered, and nothing left on hold.
    available_after, held_after = await balance(stack.billing_address, "user_alice")
    assert available_before - available_after == 4 * SORA_2_CREDITS_PER_SECOND
    assert held_after == 0

    # The job row, its events in JetStream, and the object in S3 all exist.
    from servicekit.db import make_engine

    engine = make_engine(stack.database_url, pool_size=1)
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT stage, owner_id, asset_key, cost_credits FROM jobs.jobs WHERE id = :id"),
                {"id": video.id},
            )
        ).one()
    await engine.dispose()
    assert (row.stage, row.owner_id, row.cost_credits) == ("completed", "user_alice", 40)
    assert row.asset_key == f"media/user_alice/{video.id}/video.mp4"

    events = await status_events(stack.nats_url, video.id, until_status=jobs_pb2.JOB_STATUS_COMPLETED)
    sequences = [event.sequence for event in events]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    statuses = [event.job.status for event in events]
    assert statuses[0] == jobs_pb2.JOB_STATUS_QUEUED
    assert jobs_pb2.JOB_STATUS_IN_PROGRESS in statuses
    assert statuses[-1] == jobs_pb2.JOB_STATUS_COMPLETED

    s3 = Minio(
        stack.s3.endpoint.split("://")[1],
        access_key=stack.s3.access_key,
        secret_key=stack.s3.secret_key,
        secure=False,
        region=stack.s3.region,
    )
    stored = await asyncio.to_thread(s3.stat_object, bucket_name=stack.s3.bucket, object_name=row.asset_key)
    assert stored.size > 0

    # One trace spans gateway -> jobs -> moderation -> billing -> renderer.
    spans = span_exporter.get_finished_spans()
    create_span = next(
        span
        for span in spans
        if span.name == "POST /v1/videos"
        and span.instrumentation_scope.name == "vidflow.gateway"
        and span.attributes.get("http.response.status_code") == 200
        and any(
            s.attributes.get("vidflow.job_id") == video.id and s.context.trace_id == span.context.trace_id
            for s in spans
        )
    )
    in_trace = [span for span in spans if span.context.trace_id == create_span.context.trace_id]
    scopes = {span.instrumentation_scope.name for span in in_trace}
    assert {
        "vidflow.gateway",
        "vidflow.jobs",
        "vidflow.moderation",
        "vidflow.billing",
        "vidflow.renderer",
    } <= scopes
    server_spans = {span.name for span in in_trace if span.kind.name == "SERVER"}
    assert "vidflow.render.v1.RenderService/IngestVideo" in server_spans
    assert "vidflow.billing.v1.BillingService/Capture" in server_spans


async def test_moderation_rejection_fails_the_job_and_costs_nothing(stack):
    await credit(stack.billing_address, "user_alice", 1_000, request_id=f"topup-{uuid.uuid4()}")
    before = await balance(stack.billing_address, "user_alice")
    client = sdk(stack, "user_alice")
    video = await asyncio.to_thread(
        client.videos.create_and_poll,
        model="sora-2",
        prompt="A b.e.h.e.a.d.i.n.g in close-up",
        poll_interval_ms=200,
    )
    assert video.status == "failed"
    assert video.error is not None and video.error.code == "moderation_blocked"
    assert "violence" in video.error.message
    assert await balance(stack.billing_address, "user_alice") == before


async def test_a_request_the_account_cannot_pay_for_gets_402_and_no_job(stack):
    client = sdk(stack, "user_broke")
    with pytest.raises(openai.APIStatusError) as raised:
        await asyncio.to_thread(client.videos.create, model="sora-2-pro", prompt="A lighthouse", seconds="12")
    assert raised.value.status_code == 402
    body = raised.value.body
    assert body["code"] == "insufficient_quota"
    assert body["needed"] == 12 * 30 and body["available"] == 0
    listing = await asyncio.to_thread(client.videos.list)
    assert listing.data == []
