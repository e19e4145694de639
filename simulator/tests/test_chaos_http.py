"""Chaos knobs over a real loopback port: what a provider client actually sees."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from simulator.chaos import Chaos, ChaosSettings

from .conftest import API_KEY, InstantRenderer, Simulator, StalledRenderer, StartSimulator

AUTH = {"Authorization": f"Bearer {API_KEY}"}


async def _status(simulator: Simulator, method: str = "GET", path: str = "/v1/videos", **kwargs: Any) -> int:
    async with simulator.http.request(method, path, **kwargs) as response:
        await response.read()
        return response.status


async def _put_chaos(simulator: Simulator, knobs: dict[str, Any]) -> dict[str, Any]:
    async with simulator.http.put("/_chaos", json=knobs) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


async def _fresh_connection_request(
    simulator: Simulator, method: str, path: str, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    """One request on its own connection, so a dropped connection is not retried by pooling."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(simulator.base_url, headers=AUTH, connector=connector) as http,
        http.request(method, path, **kwargs) as response,
    ):
        body: dict[str, Any] = await response.json()
        return response.status, body


async def test_rate_limit_answers_429_with_retry_hints(start_simulator: StartSimulator) -> None:
    chaos = ChaosSettings(rate_limit=1.0, retry_after_ms=2500)
    async with start_simulator(renderer=StalledRenderer(), chaos=chaos) as simulator:
        async with simulator.http.get("/v1/videos") as response:
            assert response.status == 429
            assert (response.headers["retry-after"], response.headers["retry-after-ms"]) == ("3", "2500")
            error = (await response.json())["error"]
        assert (error["code"], error["type"]) == ("rate_limit_exceeded", "requests")
        # Only /v1 routes are affected: health checks and the chaos control itself still answer.
        assert await _status(simulator, path="/healthz") == 200
        assert await _status(simulator, path="/_chaos") == 200


@pytest.mark.parametrize(
    ("knob", "status", "code"),
    [("server_error", 500, None), ("unavailable", 503, "service_unavailable")],
)
async def test_server_faults_answer_openai_server_errors(
    start_simulator: StartSimulator, knob: str, status: int, code: str | None
) -> None:
    async with start_simulator(
        renderer=StalledRenderer(), chaos=ChaosSettings.from_dict({knob: 1.0})
    ) as simulator:
        async with simulator.http.get("/v1/videos") as response:
            assert response.status == status
            error = (await response.json())["error"]
        assert (error["type"], error["code"]) == ("server_error", code)


async def test_slow_requests_wait_the_configured_delay_before_answering(
    start_simulator: StartSimulator,
) -> None:
    delays: list[float] = []
    sleeping = asyncio.Event()
    release = asyncio.Event()

    async def gated_sleep(seconds: float) -> None:
        delays.append(seconds)
        sleeping.set()
        await release.wait()

    chaos = ChaosSettings(slow=1.0, slow_ms=1234)
    async with start_simulator(renderer=StalledRenderer(), sleep=gated_sleep, chaos=chaos) as simulator:
        request = asyncio.create_task(_status(simulator))
        await sleeping.wait()
        # The handler is parked in the chaos delay: no answer can have been sent yet.
        assert delays == [1.234]
        assert not request.done()
        release.set()
        assert await request == 200


async def test_dropped_connections_close_without_a_response(start_simulator: StartSimulator) -> None:
    async with start_simulator(renderer=StalledRenderer(), chaos=ChaosSettings(drop=1.0)) as simulator:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await _fresh_connection_request(simulator, "GET", "/v1/videos")


@pytest.mark.parametrize("knob", ["server_error", "unavailable", "drop"])
async def test_failed_creates_sometimes_created_the_video_anyway(
    start_simulator: StartSimulator, knob: str
) -> None:
    knobs = ChaosSettings.from_dict({"seed": 2024, knob: 1.0})
    attempts = 12
    # The same seed and request sequence replayed without a server predicts which creates "took".
    replay = Chaos(knobs)
    expected_created = sum(replay.plan_request(creates_video=True).after_handler for _ in range(attempts))
    assert 0 < expected_created < attempts

    async with start_simulator(renderer=StalledRenderer(), chaos=knobs) as simulator:
        for index in range(attempts):
            try:
                status, _ = await _fresh_connection_request(
                    simulator, "POST", "/v1/videos", json={"prompt": f"attempt {index}"}
                )
            except aiohttp.ServerDisconnectedError:
                assert knob == "drop"
            else:
                assert status == {"server_error": 500, "unavailable": 503}[knob]
        await _put_chaos(simulator, {})
        async with simulator.http.get("/v1/videos", params={"limit": 100}) as response:
            listed = (await response.json())["data"]
    assert len(listed) == expected_created


async def test_fail_job_makes_videos_end_failed(start_simulator: StartSimulator) -> None:
    chaos = ChaosSettings(fail_job=1.0)
    async with start_simulator(renderer=InstantRenderer(), chaos=chaos, generation_seconds=0.2) as simulator:
        created = await simulator.create()
        finished = await simulator.wait_until_finished(created["id"])
    assert finished["status"] == "failed"
    assert finished["error"]["code"] == "video_generation_failed"
    assert (finished["completed_at"], finished["expires_at"]) == (None, None)


async def test_prompts_with_refused_terms_get_a_moderation_block(start_simulator: StartSimulator) -> None:
    chaos = ChaosSettings(refuse_terms=("forbidden dance",))
    async with start_simulator(renderer=InstantRenderer(), chaos=chaos, generation_seconds=0.1) as simulator:
        async with simulator.http.post(
            "/v1/videos", json={"prompt": "A FORBIDDEN DANCE at noon"}
        ) as response:
            assert response.status == 400
            error = (await response.json())["error"]
        assert (error["code"], error["type"], error["param"]) == (
            "moderation_blocked",
            "invalid_request_error",
            "prompt",
        )
        allowed = await simulator.create(prompt="a permitted dance")
        assert (await simulator.wait_until_finished(allowed["id"]))["status"] == "completed"
        async with simulator.http.post(
            f"/v1/videos/{allowed['id']}/remix", json={"prompt": "now a forbidden dance"}
        ) as response:
            assert response.status == 400
            assert (await response.json())["error"]["code"] == "moderation_blocked"
        async with simulator.http.get("/v1/videos") as response:
            assert [video["id"] for video in (await response.json())["data"]] == [allowed["id"]]


async def test_early_expiry_makes_assets_expire_at_completion(start_simulator: StartSimulator) -> None:
    chaos = ChaosSettings(early_expiry=1.0)
    async with start_simulator(renderer=InstantRenderer(), chaos=chaos, generation_seconds=0.1) as simulator:
        created = await simulator.create()
        finished = await simulator.wait_until_finished(created["id"])
        assert finished["status"] == "completed"
        assert finished["expires_at"] == finished["completed_at"]
        async with simulator.http.get(f"/v1/videos/{created['id']}/content") as response:
            assert response.status == 400
            assert (await response.json())["error"]["code"] == "video_expired"


async def test_the_same_seed_and_requests_give_the_same_outcomes(start_simulator: StartSimulator) -> None:
    chaos = ChaosSettings(seed=123, rate_limit=0.25, server_error=0.25, unavailable=0.2)

    async def statuses() -> list[int]:
        async with start_simulator(renderer=StalledRenderer(), chaos=chaos) as simulator:
            return [await _status(simulator) for _ in range(30)]

    first = await statuses()
    assert set(first) == {200, 429, 500, 503}
    assert await statuses() == first


async def test_chaos_control_reads_and_replaces_the_knobs(stalled_simulator: Simulator) -> None:
    async with stalled_simulator.http.get("/_chaos") as response:
        assert response.status == 200
        assert await response.json() == ChaosSettings().as_dict()

    # The provider "goes down" ...
    outage = await _put_chaos(stalled_simulator, {"unavailable": 1.0, "refuse_terms": ["x"]})
    assert (outage["unavailable"], outage["refuse_terms"], outage["rate_limit"]) == (1.0, ["x"], 0.0)
    async with stalled_simulator.http.get("/_chaos") as response:
        assert await response.json() == outage
    assert [await _status(stalled_simulator) for _ in range(3)] == [503, 503, 503]
    # ... and recovers: knobs left out are off.
    await _put_chaos(stalled_simulator, {})
    assert await _status(stalled_simulator) == 200

    # Putting a seed restarts the random sequence.
    flaky = {"seed": 7, "server_error": 0.5}
    await _put_chaos(stalled_simulator, flaky)
    first = [await _status(stalled_simulator) for _ in range(12)]
    await _put_chaos(stalled_simulator, flaky)
    assert [await _status(stalled_simulator) for _ in range(12)] == first
    assert set(first) == {200, 500}
    await _put_chaos(stalled_simulator, {})


@pytest.mark.parametrize(
    "body", [{"rate_limit": 2}, {"unknown": 1}, [1, 2]], ids=["out-of-range", "unknown", "not-an-object"]
)
async def test_chaos_control_refuses_bad_knobs(stalled_simulator: Simulator, body: object) -> None:
    async with stalled_simulator.http.put("/_chaos", json=body) as response:
        assert response.status == 400
        assert (await response.json())["error"]["message"]
    async with stalled_simulator.http.get("/_chaos") as response:
        assert await response.json() == ChaosSettings().as_dict()


async def test_chaos_control_requires_the_api_key(stalled_simulator: Simulator) -> None:
    async with aiohttp.ClientSession(stalled_simulator.base_url) as anonymous:
        for method in ("GET", "PUT"):
            async with anonymous.request(method, "/_chaos", json={"unavailable": 1.0}) as response:
                assert response.status == 401
    async with stalled_simulator.http.get("/_chaos") as response:
        assert (await response.json())["unavailable"] == 0.0
