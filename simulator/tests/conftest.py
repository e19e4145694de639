"""Simulators on real loopback ports, and an HTTP client that speaks to them as a provider client would."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from simulator.app import Sleep, start_server
from simulator.config import Settings
from simulator.store import Renderer

API_KEY = "sk-simulator-test"
# Short enough to keep the suite fast, long enough that "queued"/"in_progress" are observable.
GENERATION_SECONDS = 1.0
FINISH_DEADLINE_SECONDS = 30.0


class InstantRenderer:
    """A renderer that finishes at once without writing files: for lifecycle tests that never
    download content."""

    async def render(self, spec: object, directory: Path) -> None:
        return None


class StalledRenderer:
    """A renderer whose renders never finish: videos stay in progress for as long as a test needs."""

    async def render(self, spec: object, directory: Path) -> None:
        await asyncio.Event().wait()


@dataclasses.dataclass
class Simulator:
    base_url: str
    http: aiohttp.ClientSession

    async def create(self, **fields: Any) -> dict[str, Any]:
        async with self.http.post("/v1/videos", json={"prompt": "a test clip", **fields}) as response:
            assert response.status == 200, await response.text()
            body: dict[str, Any] = await response.json()
            return body

    async def wait_until_finished(self, video_id: str) -> dict[str, Any]:
        """Poll as a client would, at the pace the server asks for with openai-poll-after-ms."""
        async with asyncio.timeout(FINISH_DEADLINE_SECONDS):
            while True:
                async with self.http.get(f"/v1/videos/{video_id}") as response:
                    assert response.status == 200, await response.text()
                    video: dict[str, Any] = await response.json()
                    if video["status"] in ("completed", "failed"):
                        assert "openai-poll-after-ms" not in response.headers
                        return video
                    await asyncio.sleep(int(response.headers["openai-poll-after-ms"]) / 1000)


StartSimulator = Callable[..., AbstractAsyncContextManager[Simulator]]


@pytest.fixture(scope="session")
def start_simulator() -> StartSimulator:
    """Start a simulator with some settings changed; used as `async with start_simulator(...) as sim`."""

    @contextlib.asynccontextmanager
    async def start(
        renderer: Renderer | None = None, sleep: Sleep = asyncio.sleep, **changes: Any
    ) -> AsyncIterator[Simulator]:
        defaults: dict[str, Any] = {"api_key": API_KEY, "generation_seconds": GENERATION_SECONDS}
        settings = Settings(host="127.0.0.1", port=0, **{**defaults, **changes})
        runner, port = await start_server(settings, renderer=renderer, sleep=sleep)
        base_url = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession(
                base_url=base_url,
                headers={"Authorization": f"Bearer {API_KEY}"},
                timeout=aiohttp.ClientTimeout(total=30),
            ) as http:
                yield Simulator(base_url=base_url, http=http)
        finally:
            await runner.cleanup()

    return start


@pytest.fixture(scope="session")
async def simulator(start_simulator: StartSimulator) -> AsyncIterator[Simulator]:
    """One simulator with real ffmpeg renders, shared by the tests that need finished videos."""
    async with start_simulator() as running:
        yield running


@pytest.fixture
async def stalled_simulator(start_simulator: StartSimulator) -> AsyncIterator[Simulator]:
    """A fresh simulator whose videos never finish: deterministic in-progress states and an empty list."""
    async with start_simulator(renderer=StalledRenderer()) as running:
        yield running


@pytest.fixture(scope="session")
async def openai_client(simulator: Simulator) -> AsyncIterator[openai.AsyncOpenAI]:
    # No retries: a failing request should fail the test, not be papered over.
    client = openai.AsyncOpenAI(base_url=f"{simulator.base_url}/v1", api_key=API_KEY, max_retries=0)
    async with client:
        yield client
