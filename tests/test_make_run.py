"""`make run` as a newcomer runs it: real child processes, its own servers, the openai SDK."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import openai
import pytest

from tests.helpers import probe_mp4

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]
_OVERRIDES = ("DATABASE_URL", "NATS_URL", "S3_ENDPOINT", "S3_ACCESS_KEY", "S3_SECRET_KEY", "S3_REGION")


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


async def _read_until(stream: asyncio.StreamReader, marker: str, deadline_seconds: float) -> list[str]:
    lines: list[str] = []
    ends = time.monotonic() + deadline_seconds
    while not any(marker in line for line in lines):
        remaining = ends - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{marker!r} not printed in time; got:\n{''.join(lines)}")
        raw = await asyncio.wait_for(stream.readline(), remaining)
        if not raw:
            raise AssertionError(f"make run exited before printing {marker!r}:\n{''.join(lines)}")
        lines.append(raw.decode())
    return lines


async def test_make_run_serves_the_openai_sdk_and_stops_cleanly(tmp_path):
    gateway, simulator, jobs, moderation, billing, renderer = _free_ports(6)
    dev_key = "vf_dev_make_run_test_key"
    env = {key: value for key, value in os.environ.items() if key not in _OVERRIDES}
    env.update(
        VIDFLOW_DEVSTACK_DIR=str(tmp_path / "devstack"),
        VIDFLOW_DEV_API_KEY=dev_key,
        GATEWAY_PORT=str(gateway),
        SIMULATOR_PORT=str(simulator),
        JOBS_GRPC_PORT=str(jobs),
        MODERATION_GRPC_PORT=str(moderation),
        BILLING_GRPC_PORT=str(billing),
        RENDERER_GRPC_PORT=str(renderer),
        SIMULATOR_GENERATION_SECONDS="1",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devstack",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert process.stdout is not None
        printed = "".join(await _read_until(process.stdout, "Ctrl-C stops everything", 120))
        assert f"http://127.0.0.1:{gateway}/v1" in printed
        assert dev_key in printed

        client = openai.OpenAI(base_url=f"http://127.0.0.1:{gateway}/v1", api_key=dev_key, max_retries=0)
        video = await asyncio.to_thread(
            client.videos.create_and_poll,
            model="sora-2",
            prompt="A paper boat on a pond",
            seconds="4",
            poll_interval_ms=300,
        )
        assert video.status == "completed", video.error
        content = await asyncio.to_thread(client.videos.download_content, video.id)
        width, height, duration, codec = probe_mp4(content.read())
        assert (width, height, codec) == (720, 1280, "h264")  # the API's default size
        assert duration == pytest.approx(4.0, abs=0.2)
        # The simulator's signed webhook, through the gateway's intake, is what finished the job.
        log_lines = (tmp_path / "devstack" / "logs" / "jobs.log").read_text().splitlines()
        applied = [json.loads(line) for line in log_lines if '"provider webhook applied"' in line]
        assert [entry["job_id"] for entry in applied] == [video.id]
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        exit_code = await asyncio.wait_for(process.wait(), 60)
    assert exit_code == 0
    # Everything it started is gone: nothing listens on the stack's ports any more.
    for port in (gateway, simulator, jobs, moderation, billing, renderer):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, port
