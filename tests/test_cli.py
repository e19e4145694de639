"""The `vidflow` CLI end to end: the real command run as a child process against the whole stack.

Every run goes through `vidflow(...)`, which also checks that the API key never shows up in the
CLI's output or errors, and that nothing ends in a traceback.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from simulator.config import Settings as SimulatorSettings
from tests.conftest import Stack, running_stack
from tests.helpers import balance, new_user, probe_mp4

pytestmark = pytest.mark.e2e

RUN_BOUND_SECONDS = 120  # a bound on a hung child, not a timing assertion


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


async def vidflow(stack: Stack, user: str, *args: str, cwd: Path, key: str | None = None) -> Run:
    key = key or stack.key(user)
    env = {name: value for name, value in os.environ.items() if not name.startswith(("VIDFLOW_", "OPENAI_"))}
    env.update(VIDFLOW_BASE_URL=f"{stack.gateway_url}/v1", VIDFLOW_API_KEY=key)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vidflow_cli",
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(child.communicate(), timeout=RUN_BOUND_SECONDS)
    assert child.returncode is not None
    run = Run(child.returncode, stdout.decode(), stderr.decode())
    assert key not in run.stdout and key not in run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    return run


async def _api(stack: Stack, user: str, method: str, path: str, **kwargs: Any) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {stack.key(user)}"}
    async with aiohttp.ClientSession() as http:
        async with http.request(method, f"{stack.gateway_url}/v1{path}", headers=headers, **kwargs) as answer:
            return answer.status, await answer.json()


@pytest.fixture(scope="module")
async def slow_stack(infrastructure):
    # Videos take long enough that there is always time to cancel them.
    async with running_stack(infrastructure, SimulatorSettings(generation_seconds=60)) as stack:
        yield stack


async def test_submit_watch_follows_progress_and_downloads_a_playable_mp4(stack, tmp_path):
    user = await new_user(stack, "cli_watch")
    run = await vidflow(
        stack, user, "submit", "A lighthouse at dusk", "--seconds", "4", "--size", "1280x720", "--watch",
        cwd=tmp_path,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    (saved,) = tmp_path.iterdir()  # the video and nothing else: no partial file left behind
    assert saved.name.startswith("video_") and saved.suffix == ".mp4"
    width, height, duration, codec = probe_mp4(saved.read_bytes())
    assert (width, height, codec) == (1280, 720, "h264")
    assert duration == pytest.approx(4.0, abs=0.2)
    assert run.stdout.startswith(f"Saved {saved.name} (") and "KiB" in run.stdout
    # Not a terminal, so plain progress lines, one per change, ending at 100%.
    progress = run.stderr.splitlines()
    assert all(line.startswith(f"{saved.stem} [") for line in progress)
    assert "100% completed" in progress[-1]
    assert len(progress) == len(set(line.rsplit("  ", 1)[0] for line in progress))


async def test_list_get_download_variants_and_delete(stack, tmp_path):
    user = await new_user(stack, "cli_browse")
    created = await vidflow(
        stack, user, "submit", "A calico cat playing a piano", "--watch", "--json",
        "--output", "clips/cat.mp4", cwd=tmp_path,
    )  # fmt: skip
    assert created.code == 0, created.stderr
    video = created.json()
    assert video["object"] == "video" and video["status"] == "completed" and video["progress"] == 100
    clip = tmp_path / "clips" / "cat.mp4"
    assert probe_mp4(clip.read_bytes())[3] == "h264"
    assert "Saved clips/cat.mp4" in created.stderr  # --json keeps stdout for the video object

    listed = await vidflow(stack, user, "list", "--json", cwd=tmp_path)
    assert listed.code == 0 and [item["id"] for item in listed.json()["data"]] == [video["id"]]
    table = await vidflow(stack, user, "list", cwd=tmp_path)
    header, row = table.stdout.splitlines()
    assert header.split()[:3] == ["ID", "STATUS", "PROGRESS"]
    assert row.split()[:3] == [video["id"], "completed", "100%"] and "calico cat" in row

    fetched = await vidflow(stack, user, "--json", "get", video["id"], cwd=tmp_path)
    assert fetched.code == 0 and fetched.json() == video
    summary = await vidflow(stack, user, "get", video["id"], cwd=tmp_path)
    assert "status     completed (100%)" in summary.stdout.splitlines()

    thumbnail = await vidflow(stack, user, "download", video["id"], "--variant", "thumbnail", cwd=tmp_path)
    assert thumbnail.code == 0, thumbnail.stderr
    webp = (tmp_path / f"{video['id']}.thumbnail.webp").read_bytes()
    assert webp[:4] == b"RIFF" and webp[8:12] == b"WEBP"
    poster = await vidflow(
        stack, user, "download", video["id"], "--variant", "poster", "--output", "poster.jpg", "--json",
        cwd=tmp_path,
    )  # fmt: skip
    jpeg = (tmp_path / "poster.jpg").read_bytes()
    assert jpeg[:3] == b"\xff\xd8\xff"
    assert poster.json() == {
        "id": video["id"],
        "variant": "poster",
        "path": "poster.jpg",
        "bytes": len(jpeg),
        "content_type": "image/jpeg",
    }
    again = await vidflow(stack, user, "download", video["id"], "--output", "again.mp4", cwd=tmp_path)
    assert again.code == 0 and (tmp_path / "again.mp4").read_bytes() == clip.read_bytes()
    assert not list(tmp_path.glob(".*.part"))

    # Another user's id answers like a missing one.
    foreign = await vidflow(stack, "user_bob", "get", video["id"], cwd=tmp_path)
    assert foreign.code == 1 and "video_not_found" in foreign.stderr and foreign.stdout == ""

    deleted = await vidflow(stack, user, "delete", video["id"], cwd=tmp_path)
    assert deleted.code == 0 and deleted.stdout.strip() == f"Deleted {video['id']}."
    gone = await vidflow(stack, user, "get", video["id"], cwd=tmp_path)
    assert gone.code == 1 and "video_not_found" in gone.stderr


async def test_cancel_a_video_made_from_a_reference_image(slow_stack, tmp_path):
    stack = slow_stack
    user = await new_user(stack, "cli_cancel")
    image = io.BytesIO()
    Image.new("RGB", (640, 360), "teal").save(image, format="PNG")
    (tmp_path / "ref.png").write_bytes(image.getvalue())
    created = await vidflow(
        stack, user, "submit", "The same teal room, slowly lit", "--reference", "ref.png", "--json",
        cwd=tmp_path,
    )  # fmt: skip
    assert created.code == 0, created.stderr
    video = created.json()
    assert video["reference_images"] == 1 and video["status"] in ("queued", "in_progress")
    assert (await balance(stack.billing_address, user))[1] > 0  # credits held

    cancelled = await vidflow(stack, user, "cancel", video["id"], cwd=tmp_path)
    assert cancelled.code == 0, cancelled.stderr
    lines = cancelled.stdout.splitlines()
    assert lines[0] == f"id          {video['id']}"
    assert any(line.startswith("error       cancelled: ") for line in lines)

    # Watching it to its end (the hold is given back first) shows why it failed and exits 1,
    # downloading nothing.
    watched = await vidflow(stack, user, "watch", video["id"], cwd=tmp_path)
    assert watched.code == 1
    assert f"error: video {video['id']} failed: " in watched.stderr and "(code cancelled)" in watched.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ref.png"]
    assert await balance(stack.billing_address, user) == (1_000, 0)

    # Retrying holds the price again and starts over; cancelling again gives it back.
    retried = await vidflow(stack, user, "retry", video["id"], "--json", cwd=tmp_path)
    assert retried.code == 0, retried.stderr
    assert retried.json()["retry_count"] == 1 and retried.json()["status"] in ("queued", "in_progress")
    assert (await balance(stack.billing_address, user))[1] > 0
    assert (await vidflow(stack, user, "cancel", video["id"], cwd=tmp_path)).code == 0


async def test_segments_are_sent_as_the_long_video_extension(slow_stack, tmp_path):
    stack = slow_stack
    user = await new_user(stack, "cli_segments")
    created = await vidflow(
        stack, user, "submit", "--segment", "Dawn: the harbour wakes:4", "--segment", "Noon at the market:8",
        "--json", cwd=tmp_path,
    )  # fmt: skip
    assert created.code == 0, created.stderr
    video = created.json()
    assert video["seconds"] == "12"
    assert [(clip["prompt"], clip["seconds"]) for clip in video["segments"]] == [
        ("Dawn: the harbour wakes", "4"),
        ("Noon at the market", "8"),
    ]
    shown = await vidflow(stack, user, "get", video["id"], cwd=tmp_path)
    assert any(
        line.startswith("segment 2  ") and "8 s: Noon at the market" in line
        for line in shown.stdout.splitlines()
    )
    assert (await vidflow(stack, user, "cancel", video["id"], cwd=tmp_path)).code == 0


async def test_balance(stack, tmp_path):
    user = await new_user(stack, "cli_balance", credits=1_234)
    as_json = await vidflow(stack, user, "balance", "--json", cwd=tmp_path)
    assert as_json.code == 0
    assert as_json.json() == {
        "object": "billing.balance",
        "account_id": user,
        "available": 1_234,
        "held": 0,
        "currency": "credits",
    }
    human = await vidflow(stack, user, "balance", cwd=tmp_path)
    assert human.stdout.splitlines() == [
        f"account    {user}",
        "available  1,234 credits",
        "held       0 credits",
    ]


async def test_quote_prices_without_creating(stack, tmp_path):
    user = await new_user(stack, "cli_quote", credits=50)
    quoted = await vidflow(stack, user, "quote", "a cat", "--seconds", "8", "--json", cwd=tmp_path)
    assert quoted.code == 0, quoted.stderr
    assert (quoted.json()["amount"], quoted.json()["sufficient"]) == (80, False)
    listed = await vidflow(stack, user, "list", "--json", cwd=tmp_path)
    assert listed.json()["data"] == []


async def test_bad_seconds_exit_1_with_the_servers_message(stack, tmp_path):
    user = await new_user(stack, "cli_bad")
    status, body = await _api(stack, user, "POST", "/videos", json={"prompt": "a cat", "seconds": "5"})
    assert status == 400
    run = await vidflow(stack, user, "submit", "a cat", "--seconds", "5", cwd=tmp_path)
    assert run.code == 1 and run.stdout == ""
    error = body["error"]
    assert run.stderr.strip() == (
        f"error: {error['message']} (code {error['code']}, param {error['param']}, HTTP 400)"
    )
    assert (await vidflow(stack, user, "list", "--json", cwd=tmp_path)).json()["data"] == []


async def test_retrying_an_unknown_video_is_an_api_error(stack, tmp_path):
    run = await vidflow(stack, "user_alice", "retry", "video_does_not_exist", cwd=tmp_path)
    assert run.code == 1 and "video_not_found" in run.stderr


async def test_keys_never_leak_and_usage_errors_exit_2(stack, tmp_path):
    wrong_key = "vf_test_this-key-is-wrong-and-secret"
    rejected = await vidflow(stack, "user_alice", "list", cwd=tmp_path, key=wrong_key)
    assert rejected.code == 1
    assert "Incorrect API key provided." in rejected.stderr and "invalid_api_key" in rejected.stderr
    # A key given as a flag wins over the environment's, and is kept out of errors all the same.
    flagged = await vidflow(stack, "user_alice", "get", "video_nope", "--api-key", wrong_key, cwd=tmp_path)
    assert flagged.code == 1 and "invalid_api_key" in flagged.stderr and wrong_key not in flagged.stderr

    unreachable = await vidflow(
        stack, "user_alice", "balance", "--base-url", "http://127.0.0.1:9/v1", cwd=tmp_path
    )
    assert unreachable.code == 1 and "Could not reach the gateway at 127.0.0.1:9" in unreachable.stderr

    usage = await vidflow(stack, "user_alice", "download", "video_x", "--variant", "gif", cwd=tmp_path)
    assert usage.code == 2 and "invalid choice" in usage.stderr
