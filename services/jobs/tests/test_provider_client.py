"""The OpenAI Videos client's error handling, against a real HTTP server that misbehaves on cue."""

import asyncio
import time
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp import web

from services.jobs.domain.video_spec import VideoSpec
from services.jobs.provider import ProviderError, ProviderErrorKind, UpstreamStatus
from services.jobs.provider.openai_videos import OpenAIVideosProvider, classify, retry_after_seconds

SPEC = VideoSpec(model="sora-2", prompt="a cat", seconds=4, size="1280x720")
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


async def _nothing_claimed(upstream_id: str) -> bool:
    return False


def _client(base_url: str, session: aiohttp.ClientSession, *, timeout: float = 5, attempts: int = 4):
    return OpenAIVideosProvider(
        base_url=base_url, api_key="sk", session=session, timeout_seconds=timeout, max_attempts=attempts
    )


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, "moderation_blocked", ProviderErrorKind.CONTENT_POLICY),
        (429, "", ProviderErrorKind.RATE_LIMITED),
        (408, "", ProviderErrorKind.TRANSIENT),
        (409, "", ProviderErrorKind.TRANSIENT),
        (500, "", ProviderErrorKind.TRANSIENT),
        (503, "", ProviderErrorKind.TRANSIENT),
        (400, "invalid_value", ProviderErrorKind.INVALID_REQUEST),
        (401, "invalid_api_key", ProviderErrorKind.PERMANENT),
    ],
)
def test_errors_are_classified(status, code, kind):
    assert classify(status, code, "") is kind


def test_retry_after_ms_wins_over_retry_after():
    assert retry_after_seconds({"retry-after": "3", "retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after": "soon"}) is None


class FlakyProvider:
    """Answers 429 (with retry-after-ms) a set number of times, then behaves."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.creates: list[str] = []
        self.attempt_times: list[float] = []

    async def create(self, request: web.Request) -> web.Response:
        self.attempt_times.append(time.monotonic())
        if self.failures > 0:
            self.failures -= 1
            return web.json_response(
                {"error": {"message": "slow down", "type": "requests", "param": None, "code": None}},
                status=429,
                headers={"retry-after-ms": "200"},
            )
        self.creates.append(request.headers["Idempotency-Key"])
        return web.json_response(
            {"id": "video_up_1", "status": "queued", "progress": 0}, headers={"openai-poll-after-ms": "1500"}
        )


async def _serve(handler: FlakyProvider):
    app = web.Application()
    app.router.add_post("/v1/videos", handler.create)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/v1"


async def test_rate_limits_are_retried_after_the_hinted_delay():
    flaky = FlakyProvider(failures=2)
    runner, base_url = await _serve(flaky)
    try:
        async with aiohttp.ClientSession() as session:
            provider = _client(base_url, session)
            video = await provider.create(
                SPEC,
                model="sora-2",
                idempotency_key="video_job_1",
                not_before=LONG_AGO,
                claimed=_nothing_claimed,
            )
    finally:
        await runner.cleanup()
    assert video.id == "video_up_1"
    assert video.status is UpstreamStatus.QUEUED
    assert video.poll_after_seconds == 1.5
    assert flaky.creates == ["video_job_1"]
    gaps = [b - a for a, b in zip(flaky.attempt_times, flaky.attempt_times[1:], strict=False)]
    assert len(gaps) == 2 and all(gap >= 0.2 for gap in gaps)


async def test_retries_are_bounded():
    flaky = FlakyProvider(failures=10)
    runner, base_url = await _serve(flaky)
    try:
        async with aiohttp.ClientSession() as session:
            provider = _client(base_url, session, attempts=3)
            with pytest.raises(ProviderError) as raised:
                await provider.create(
                    SPEC,
                    model="sora-2",
                    idempotency_key="video_job_2",
                    not_before=LONG_AGO,
                    claimed=_nothing_claimed,
                )
    finally:
        await runner.cleanup()
    assert raised.value.kind is ProviderErrorKind.RATE_LIMITED
    assert len(flaky.attempt_times) == 3
    assert flaky.creates == []


async def test_unreachable_provider_is_a_transient_error():
    async with aiohttp.ClientSession() as session:
        # A port nobody listens on: bind then close to get one.
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        provider = _client(f"http://127.0.0.1:{port}/v1", session, timeout=2, attempts=2)
        with pytest.raises(ProviderError) as raised:
            await provider.retrieve("video_x")
    assert raised.value.kind is ProviderErrorKind.TRANSIENT


class LossyProvider:
    """Creates the video, then answers 500 the first time: the answer is lost, the video is not."""

    def __init__(self, existing: list[dict] | None = None) -> None:
        self.videos: list[dict] = list(existing or [])
        self.created = 0

    async def create(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.created += 1
        video = {
            "id": f"video_up_{self.created}",
            "status": "queued",
            "progress": 0,
            "created_at": int(time.time()),
            "prompt": body["prompt"],
            "model": body["model"],
            "size": body["size"],
            "seconds": body["seconds"],
        }
        self.videos.insert(0, video)
        if self.created == 1:
            return web.json_response({"error": {"message": "boom", "type": "server_error"}}, status=500)
        return web.json_response(video)

    async def list(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": self.videos, "has_more": False})


async def _serve_lossy(provider: LossyProvider):
    app = web.Application()
    app.router.add_post("/v1/videos", provider.create)
    app.router.add_get("/v1/videos", provider.list)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/v1"


async def test_a_create_whose_answer_was_lost_is_found_instead_of_made_twice():
    lossy = LossyProvider()
    runner, base_url = await _serve_lossy(lossy)
    try:
        async with aiohttp.ClientSession() as session:
            video = await _client(base_url, session).create(
                SPEC, model="sora-2", idempotency_key="job_1", not_before=LONG_AGO, claimed=_nothing_claimed
            )
    finally:
        await runner.cleanup()
    assert lossy.created == 1
    assert video.id == "video_up_1"


async def test_reconciling_never_adopts_a_video_another_job_owns():
    twin = {
        "id": "video_other_job",
        "status": "in_progress",
        "progress": 50,
        "created_at": int(time.time()),
        "prompt": SPEC.prompt,
        "model": "sora-2",
        "size": SPEC.size,
        "seconds": str(SPEC.seconds),
    }
    lossy = LossyProvider(existing=[twin])
    runner, base_url = await _serve_lossy(lossy)

    async def owned_elsewhere(upstream_id: str) -> bool:
        return upstream_id in {"video_other_job", "video_up_1"}  # video_up_1: pretend a third job got it

    try:
        async with aiohttp.ClientSession() as session:
            video = await _client(base_url, session).create(
                SPEC, model="sora-2", idempotency_key="job_2", not_before=LONG_AGO, claimed=owned_elsewhere
            )
    finally:
        await runner.cleanup()
    assert video.id == "video_up_2"
    assert lossy.created == 2
