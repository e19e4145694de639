"""Webhooks to a real receiver on a loopback port that verifies every signature."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from servicekit.config import ConfigError
from servicekit.webhooks import WebhookVerificationError, new_secret, verify

from simulator.chaos import ChaosSettings
from simulator.config import Settings
from simulator.webhooks import WebhookSender, WebhookSettings, retry_delay, video_event

from .conftest import InstantRenderer, StartSimulator

DELIVERY_DEADLINE_SECONDS = 15.0


@dataclasses.dataclass(frozen=True)
class Delivery:
    webhook_id: str
    event: dict[str, Any]
    answered: int


@dataclasses.dataclass
class Receiver:
    """Answers 500 to the first `failures` deliveries, then 200; rejects bad signatures with 400."""

    secret: str
    failures: int = 0
    hang_first: bool = False
    url: str = ""
    deliveries: asyncio.Queue[Delivery] = dataclasses.field(default_factory=asyncio.Queue)
    rejected: list[str] = dataclasses.field(default_factory=list)
    seen: int = 0
    arrived: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify(self.secret, request.headers, body)
        except WebhookVerificationError as exc:
            self.rejected.append(str(exc))
            return web.Response(status=400)
        self.seen += 1
        self.arrived.set()
        if self.hang_first and self.seen == 1:
            await asyncio.Event().wait()
        status = 500 if self.seen <= self.failures else 200
        await self.deliveries.put(Delivery(request.headers["webhook-id"], json.loads(body), status))
        return web.Response(status=status)

    async def next(self) -> Delivery:
        async with asyncio.timeout(DELIVERY_DEADLINE_SECONDS):
            return await self.deliveries.get()


@contextlib.asynccontextmanager
async def running(receiver: Receiver) -> AsyncIterator[Receiver]:
    app = web.Application()
    app.router.add_post("/hooks", receiver.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hooks"
    try:
        yield receiver
    finally:
        await runner.cleanup()


def _webhook_settings(receiver: Receiver) -> dict[str, Any]:
    return {
        "webhook_url": receiver.url,
        "webhook_secret": receiver.secret,
        "webhook_retry_base_seconds": 0.01,
        "webhook_timeout_seconds": 5.0,
    }


async def test_completion_is_announced_and_retried_with_the_same_id_until_accepted(
    start_simulator: StartSimulator,
) -> None:
    async with (
        running(Receiver(secret=new_secret(), failures=2)) as receiver,
        start_simulator(
            renderer=InstantRenderer(), generation_seconds=0.3, **_webhook_settings(receiver)
        ) as simulator,
    ):
        created = await simulator.create()
        first = await receiver.next()
        # The event fires when the video is completed, not before: a poll agrees right away.
        async with simulator.http.get(f"/v1/videos/{created['id']}") as response:
            assert (await response.json())["status"] == "completed"
        attempts = [first, await receiver.next(), await receiver.next()]

    assert [attempt.answered for attempt in attempts] == [500, 500, 200]
    assert {attempt.webhook_id for attempt in attempts} == {first.event["id"]}
    assert {json.dumps(attempt.event, sort_keys=True) for attempt in attempts} == {
        json.dumps(first.event, sort_keys=True)
    }
    event = first.event
    assert event["id"].startswith("evt_")
    assert (event["object"], event["type"], event["data"]) == (
        "event",
        "video.completed",
        {"id": created["id"]},
    )
    assert event["created_at"] >= created["created_at"]
    assert receiver.rejected == []


async def test_failure_is_announced_as_video_failed(start_simulator: StartSimulator) -> None:
    async with (
        running(Receiver(secret=new_secret())) as receiver,
        start_simulator(
            renderer=InstantRenderer(),
            generation_seconds=0.2,
            chaos=ChaosSettings(fail_job=1.0),
            **_webhook_settings(receiver),
        ) as simulator,
    ):
        created = await simulator.create()
        delivery = await receiver.next()
        async with simulator.http.get(f"/v1/videos/{created['id']}") as response:
            assert (await response.json())["status"] == "failed"
    assert (delivery.event["type"], delivery.event["data"], delivery.answered) == (
        "video.failed",
        {"id": created["id"]},
        200,
    )
    assert receiver.rejected == []


async def test_a_receiver_with_another_secret_rejects_every_delivery() -> None:
    async with running(Receiver(secret=new_secret())) as receiver:
        sender = WebhookSender(
            WebhookSettings(url=receiver.url, secret=new_secret(), max_attempts=2, retry_base_seconds=0.0)
        )
        try:
            assert await sender.send("video.completed", "video_x") is False
        finally:
            await sender.close()
    assert receiver.rejected == ["no matching webhook signature"] * 2


async def test_delivery_gives_up_after_the_attempt_budget_with_exponential_backoff() -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    async with running(Receiver(secret=new_secret(), failures=100)) as receiver:
        sender = WebhookSender(
            WebhookSettings(url=receiver.url, secret=receiver.secret, max_attempts=4, retry_base_seconds=0.5),
            sleep=record,
        )
        try:
            assert await sender.send("video.completed", "video_x") is False
        finally:
            await sender.close()
    assert receiver.deliveries.qsize() == 4
    assert waits == [0.5, 1.0, 2.0]


async def test_every_attempt_has_a_timeout() -> None:
    async with running(Receiver(secret=new_secret(), hang_first=True)) as receiver:
        sender = WebhookSender(
            WebhookSettings(
                url=receiver.url, secret=receiver.secret, max_attempts=2, retry_base_seconds=0.0,
                timeout_seconds=0.2,
            )
        )  # fmt: skip
        try:
            assert await sender.send("video.completed", "video_x") is True
        finally:
            await sender.close()
    assert (await receiver.next()).answered == 200
    assert receiver.seen == 2


async def test_close_stops_deliveries_in_flight() -> None:
    async with running(Receiver(secret=new_secret(), hang_first=True)) as receiver:
        sender = WebhookSender(WebhookSettings(url=receiver.url, secret=receiver.secret))
        delivery = sender.send("video.completed", "video_x")
        await receiver.arrived.wait()
        await sender.close()
        assert delivery.cancelled()


def test_retry_delays_double_and_are_capped() -> None:
    assert [retry_delay(attempt, 1.0) for attempt in range(1, 6)] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert retry_delay(30, 1.0) == 300.0


def test_events_have_openais_shape() -> None:
    assert video_event("video.failed", "video_1", event_id="evt_1", created_at=1700000000.7) == {
        "id": "evt_1",
        "object": "event",
        "created_at": 1700000000,
        "type": "video.failed",
        "data": {"id": "video_1"},
    }


@pytest.mark.parametrize(
    ("secret", "message"), [("", "SECRET is required"), ("not-a-secret", "SECRET is required")]
)
def test_a_webhook_url_needs_a_valid_secret(secret: str, message: str) -> None:
    environ = {"SIMULATOR_WEBHOOK_URL": "http://127.0.0.1:9/hooks", "SIMULATOR_WEBHOOK_SECRET": secret}
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(environ)
