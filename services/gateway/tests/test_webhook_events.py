"""Client webhook events: types, ids stable across repeats, payloads, backoff, signatures."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from servicekit.webhooks import WebhookVerificationError, new_secret, verify
from vidflow.jobs.v1 import jobs_pb2

from services.gateway.openai_format import video_resource
from services.gateway.webhook_delivery import is_status_subject, planned_deliveries, signed_headers
from services.gateway.webhook_events import (
    VIDEO_COMPLETED,
    VIDEO_FAILED,
    VIDEO_PROGRESS,
    RetryPolicy,
    delivery_id,
    event_type_of,
    payload,
)
from services.gateway.webhook_store import Target


def _job(status: jobs_pb2.JobStatus.ValueType, *, retry_count: int = 0) -> jobs_pb2.Job:
    return jobs_pb2.Job(
        id="video_1",
        owner_id="user_1",
        model="sora-2",
        status=status,
        prompt="a cat",
        size="720x1280",
        seconds=4,
        create_time=Timestamp(seconds=1_700_000_000),
        retry_count=retry_count,
    )


@pytest.mark.parametrize(
    ("status", "event_type"),
    [
        (jobs_pb2.JOB_STATUS_COMPLETED, VIDEO_COMPLETED),
        (jobs_pb2.JOB_STATUS_FAILED, VIDEO_FAILED),
        (jobs_pb2.JOB_STATUS_QUEUED, VIDEO_PROGRESS),
        (jobs_pb2.JOB_STATUS_IN_PROGRESS, VIDEO_PROGRESS),
    ],
)
def test_event_type_follows_the_status(status, event_type):
    assert event_type_of(_job(status)) == event_type


def test_a_final_event_has_one_id_per_run_whatever_the_sequence():
    failed = _job(jobs_pb2.JOB_STATUS_FAILED)
    first = delivery_id("we_1", failed, VIDEO_FAILED, sequence=7)
    assert first == delivery_id("we_1", failed, VIDEO_FAILED, sequence=9)  # a repeat of the same end
    assert first.startswith("msg_") and len(first) == 36
    retried = _job(jobs_pb2.JOB_STATUS_FAILED, retry_count=1)
    assert delivery_id("we_1", retried, VIDEO_FAILED, sequence=20) != first  # the next run's end
    assert delivery_id("we_2", failed, VIDEO_FAILED, sequence=7) != first  # another target


def test_progress_events_are_told_apart_by_sequence():
    running = _job(jobs_pb2.JOB_STATUS_IN_PROGRESS)
    assert delivery_id("we_1", running, VIDEO_PROGRESS, 3) != delivery_id("we_1", running, VIDEO_PROGRESS, 4)


def test_the_payload_is_the_event_type_its_time_and_the_video_object():
    job = _job(jobs_pb2.JOB_STATUS_COMPLETED)
    body = json.loads(payload(VIDEO_COMPLETED, job, datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)))
    assert body == {
        "type": "video.completed",
        "timestamp": "2025-01-02T03:04:05Z",
        "data": video_resource(job),
    }


def test_each_target_gets_its_own_delivery_of_the_same_body():
    job = _job(jobs_pb2.JOB_STATUS_COMPLETED)
    planned = planned_deliveries(
        job,
        sequence=5,
        occurred_at=datetime.now(UTC),
        targets=[Target("we_1", "https://a.example/hook"), Target(None, "https://b.example/hook")],
    )
    assert [(item.endpoint_id, item.url) for item in planned] == [
        ("we_1", "https://a.example/hook"),
        (None, "https://b.example/hook"),
    ]
    assert planned[0].id != planned[1].id and planned[0].payload == planned[1].payload
    assert {item.event_type for item in planned} == {VIDEO_COMPLETED}


def test_backoff_doubles_is_capped_and_jittered_within_its_step():
    policy = RetryPolicy(base_seconds=2, max_seconds=60, max_attempts=5)
    rng = random.Random(7)
    for attempt, step in [(1, 2), (2, 4), (3, 8), (6, 60), (40, 60)]:
        delays = [policy.delay_after(attempt, rng) for _ in range(200)]
        assert all(step / 2 <= delay <= step for delay in delays), attempt
        assert max(delays) - min(delays) > step / 4  # really spread out
    assert not policy.gives_up_after(4) and policy.gives_up_after(5)


def test_signed_headers_verify_with_every_secret_they_were_made_with():
    current, previous, other = new_secret(), new_secret(), new_secret()
    body = b'{"type":"video.completed"}'
    headers = signed_headers((current, previous), "msg_1", body, now=1_700_000_000)
    assert headers["webhook-id"] == "msg_1" and headers["webhook-timestamp"] == "1700000000"
    assert len(headers["webhook-signature"].split()) == 2
    for secret in (current, previous):
        verify(secret, headers, body, now=1_700_000_010)
    with pytest.raises(WebhookVerificationError):
        verify(other, headers, body, now=1_700_000_010)
    with pytest.raises(WebhookVerificationError):
        verify(current, headers, body + b" ", now=1_700_000_010)


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("jobs.v1.video.status_changed", True),  # the bare subject
        ("jobs.v1.video.status_changed.user_1.video_1", True),  # per owner and job
        ("jobs.v1.video.status_changed_v2", False),
        ("jobs.v1.video.deleted", False),
    ],
)
def test_status_subjects_old_and_new_are_recognised(subject, expected):
    assert is_status_subject(subject) is expected
