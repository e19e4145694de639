"""The Videos API over a real loopback port, driven with a plain HTTP client."""

from __future__ import annotations

import asyncio
import io
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

from simulator.app import make_app
from simulator.config import Settings
from simulator.domain import VideoSpec
from simulator.media import RenderError

from .conftest import API_KEY, GENERATION_SECONDS, Simulator, StalledRenderer, StartSimulator

REQUIRED_VIDEO_FIELDS = {
    "id",
    "object",
    "model",
    "status",
    "progress",
    "created_at",
    "completed_at",
    "expires_at",
    "prompt",
    "size",
    "seconds",
    "remixed_from_video_id",
    "error",
}


def _png(width: int = 64, height: int = 36) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


async def _error(response: aiohttp.ClientResponse) -> dict[str, Any]:
    body = await response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


# --- the happy path with real renders -----------------------------------------------------------


async def test_created_video_is_queued_then_completes_with_downloadable_assets(simulator: Simulator) -> None:
    async with simulator.http.post(
        "/v1/videos", json={"prompt": "a red kite over the dunes", "size": "1280x720", "seconds": "4"}
    ) as response:
        assert response.status == 200
        assert 100 <= int(response.headers["openai-poll-after-ms"]) <= 1000
        created = await response.json()
    assert set(created) == REQUIRED_VIDEO_FIELDS
    assert created["id"].startswith("video_")
    assert (created["object"], created["status"], created["progress"]) == ("video", "queued", 0)
    assert (created["model"], created["size"], created["seconds"]) == ("sora-2", "1280x720", "4")
    assert created["completed_at"] is None and created["expires_at"] is None and created["error"] is None

    finished = await simulator.wait_until_finished(created["id"])
    assert (finished["status"], finished["progress"], finished["error"]) == ("completed", 100, None)
    assert finished["completed_at"] - finished["created_at"] >= int(GENERATION_SECONDS)
    assert finished["expires_at"] == finished["completed_at"] + 3600

    content_url = f"/v1/videos/{created['id']}/content"
    async with simulator.http.get(content_url) as response:
        assert (response.status, response.content_type) == (200, "video/mp4")
        video = await response.read()
    assert video[4:8] == b"ftyp"
    async with simulator.http.get(content_url, headers={"Range": "bytes=100-199"}) as response:
        assert response.status == 206
        assert await response.read() == video[100:200]
    for variant, content_type, image_format in [
        ("thumbnail", "image/webp", "WEBP"),
        ("spritesheet", "image/jpeg", "JPEG"),
    ]:
        async with simulator.http.get(content_url, params={"variant": variant}) as response:
            assert (response.status, response.content_type) == (200, content_type)
            assert Image.open(io.BytesIO(await response.read())).format == image_format

    async with simulator.http.post(
        f"/v1/videos/{created['id']}/remix", json={"prompt": "now at night"}
    ) as response:
        assert response.status == 200
        remix = await response.json()
    assert remix["id"] != created["id"]
    assert remix["remixed_from_video_id"] == created["id"]
    assert (remix["prompt"], remix["model"], remix["size"], remix["seconds"]) == (
        "now at night",
        "sora-2",
        "1280x720",
        "4",
    )
    assert (await simulator.wait_until_finished(remix["id"]))["status"] == "completed"


async def test_multipart_create_accepts_an_uploaded_reference_image(stalled_simulator: Simulator) -> None:
    form = aiohttp.FormData()
    form.add_field("prompt", "animate this")
    form.add_field("model", "sora-2-pro")
    form.add_field("size", "1920x1080")
    form.add_field("seconds", "8")
    form.add_field("input_reference", _png(), filename="ref.png", content_type="image/png")
    async with stalled_simulator.http.post("/v1/videos", data=form) as response:
        assert response.status == 200, await response.text()
        video = await response.json()
    assert (video["model"], video["size"], video["seconds"]) == ("sora-2-pro", "1920x1080", "8")


async def test_multipart_reference_object_uses_bracketed_field_names(stalled_simulator: Simulator) -> None:
    form = aiohttp.FormData(
        {"prompt": "p", "input_reference[file_id]": "file-123"}, default_to_multipart=True
    )
    async with stalled_simulator.http.post("/v1/videos", data=form) as response:
        assert response.status == 200, await response.text()
    form = aiohttp.FormData(
        {"prompt": "p", "input_reference[file_id]": "f", "input_reference[image_url]": "x"},
        default_to_multipart=True,
    )
    async with stalled_simulator.http.post("/v1/videos", data=form) as response:
        assert response.status == 400
        assert (await _error(response))["param"] == "input_reference"


async def test_deleting_removes_the_video_and_its_files(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    async with start_simulator(data_dir=tmp_path) as simulator:
        kept = await simulator.create(prompt="kept")
        dropped = await simulator.create(prompt="dropped while rendering")
        async with simulator.http.delete(f"/v1/videos/{dropped['id']}") as response:
            assert response.status == 200
            assert await response.json() == {"id": dropped["id"], "object": "video.deleted", "deleted": True}
        assert not (tmp_path / dropped["id"]).exists()
        for method, path in [
            ("GET", f"/v1/videos/{dropped['id']}"),
            ("DELETE", f"/v1/videos/{dropped['id']}"),
            ("GET", f"/v1/videos/{dropped['id']}/content"),
        ]:
            async with simulator.http.request(method, path) as response:
                assert response.status == 404
                assert (await _error(response))["code"] == "video_not_found"
        assert (await simulator.wait_until_finished(kept["id"]))["status"] == "completed"
        assert sorted(p.name for p in (tmp_path / kept["id"]).iterdir()) == [
            "spritesheet.jpg",
            "thumbnail.webp",
            "video.mp4",
        ]


async def test_assets_expire_after_the_ttl(start_simulator: StartSimulator) -> None:
    async with start_simulator(asset_ttl_seconds=0) as simulator:
        video = await simulator.wait_until_finished((await simulator.create())["id"])
        assert video["status"] == "completed"
        assert video["expires_at"] == video["completed_at"]
        async with simulator.http.get(f"/v1/videos/{video['id']}/content") as response:
            assert response.status == 400
            assert (await _error(response))["code"] == "video_expired"


async def test_an_ffmpeg_failure_ends_the_video_as_failed(start_simulator: StartSimulator) -> None:
    async with start_simulator(ffmpeg_exe="/bin/false") as simulator:
        video = await simulator.wait_until_finished((await simulator.create())["id"])
        assert video["status"] == "failed"
        assert video["error"]["code"] == "video_generation_failed"
        assert "ffmpeg exited with status 1" in video["error"]["message"]
        assert video["completed_at"] is None and video["expires_at"] is None
        async with simulator.http.get(f"/v1/videos/{video['id']}/content") as response:
            assert response.status == 400
            assert (await _error(response))["code"] == "video_not_ready"


class CrashingRenderer:
    async def render(self, spec: VideoSpec, directory: Path) -> None:
        raise ZeroDivisionError("bug in the renderer")


class RefusingRenderer:
    async def render(self, spec: VideoSpec, directory: Path) -> None:
        raise RenderError(f"cannot draw {spec.prompt!r}")


async def test_render_errors_reach_the_client_but_bugs_stay_in_the_log(
    start_simulator: StartSimulator,
) -> None:
    async with start_simulator(renderer=RefusingRenderer()) as simulator:
        video = await simulator.wait_until_finished((await simulator.create(prompt="a moose"))["id"])
        assert video["error"]["message"] == "Video generation failed: cannot draw 'a moose'"
    async with start_simulator(renderer=CrashingRenderer()) as simulator:
        video = await simulator.wait_until_finished((await simulator.create())["id"])
        assert video["status"] == "failed"
        assert video["error"]["code"] == "internal_error"
        assert "ZeroDivision" not in video["error"]["message"]


# --- idempotency --------------------------------------------------------------------------------


async def test_idempotency_key_returns_the_first_video(stalled_simulator: Simulator) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    body = {"prompt": "only once", "seconds": "8"}

    async def create(headers: dict[str, str]) -> dict[str, Any]:
        async with stalled_simulator.http.post("/v1/videos", json=body, headers=headers) as response:
            assert response.status == 200
            video: dict[str, Any] = await response.json()
            return video

    concurrent = await asyncio.gather(*(create(key) for _ in range(5)))
    assert len({video["id"] for video in concurrent}) == 1
    assert (await create(key))["id"] == concurrent[0]["id"]
    assert (await create({"Idempotency-Key": str(uuid.uuid4())}))["id"] != concurrent[0]["id"]
    assert (await create({}))["id"] != (await create({}))["id"]
    async with stalled_simulator.http.get("/v1/videos", params={"limit": "100"}) as response:
        assert len((await response.json())["data"]) == 4

    async with stalled_simulator.http.post(
        "/v1/videos", json={**body, "seconds": "12"}, headers=key
    ) as response:
        assert response.status == 409
        assert (await _error(response))["code"] == "idempotency_key_reused"


async def test_idempotency_keys_belong_to_the_api_key(start_simulator: StartSimulator) -> None:
    async with start_simulator(renderer=StalledRenderer(), api_key="") as simulator:
        ids = set()
        for token in ("sk-alice", "sk-bob", "sk-alice"):
            async with simulator.http.post(
                "/v1/videos",
                json={"prompt": "p"},
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "same-key"},
            ) as response:
                ids.add((token, (await response.json())["id"]))
        assert len({video_id for _, video_id in ids}) == 2


# --- listing ------------------------------------------------------------------------------------


async def test_list_pages_with_after_and_has_more(stalled_simulator: Simulator) -> None:
    created = [(await stalled_simulator.create(prompt=f"clip {n}"))["id"] for n in range(5)]

    async def page(**params: str) -> dict[str, Any]:
        async with stalled_simulator.http.get("/v1/videos", params=params) as response:
            assert response.status == 200
            body: dict[str, Any] = await response.json()
            return body

    first = await page(limit="2")
    assert first["object"] == "list"
    assert [v["id"] for v in first["data"]] == created[::-1][:2]
    assert (first["first_id"], first["last_id"], first["has_more"]) == (created[4], created[3], True)
    second = await page(limit="2", after=first["last_id"])
    assert [v["id"] for v in second["data"]] == [created[2], created[1]]
    last = await page(limit="2", after=second["last_id"])
    assert ([v["id"] for v in last["data"]], last["has_more"]) == ([created[0]], False)
    ascending = await page(order="asc")
    assert [v["id"] for v in ascending["data"]] == created
    assert ascending["has_more"] is False
    empty = await page(limit="0")
    assert (empty["data"], empty["first_id"], empty["last_id"], empty["has_more"]) == ([], None, None, True)


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "x", "model": "sora-9"}, "model"),
        ({"prompt": "x", "seconds": "6"}, "seconds"),
        ({"prompt": "x", "size": "800x600"}, "size"),
        ({"prompt": "x", "model": "sora-2", "size": "1080x1920"}, "size"),
        ({"prompt": ""}, "prompt"),
        ({"model": "sora-2"}, "prompt"),
        ({"prompt": "x", "style": "noir"}, "style"),
    ],
)
async def test_invalid_create_bodies_are_400_naming_the_field(
    stalled_simulator: Simulator, body: dict[str, Any], param: str
) -> None:
    for request in (
        {"json": body},
        {"data": aiohttp.FormData(body, default_to_multipart=True)},
        {"data": aiohttp.FormData(body)},  # application/x-www-form-urlencoded
    ):
        async with stalled_simulator.http.post("/v1/videos", **request) as response:
            assert response.status == 400
            error = await _error(response)
            assert (error["type"], error["param"]) == ("invalid_request_error", param)


@pytest.mark.parametrize(
    ("content_type", "payload"),
    [
        ("application/json", b'{"prompt": "unterminated'),
        ("application/json", b"[1, 2]"),
        ("application/json", b"\xff\xfe"),
        ("multipart/form-data", b"no boundary given"),
        ("multipart/form-data; boundary=xyz", b"not a multipart body at all"),
        (
            "multipart/form-data; boundary=xyz",
            b'--xyz\r\nContent-Disposition: form-data; name="prompt"\r\n\r\ncut',
        ),
        (
            "multipart/form-data; boundary=xyz",
            b"--xyz\r\nContent-Disposition: form-data\r\n\r\nx\r\n--xyz--\r\n",
        ),
        (
            "multipart/form-data; boundary=xyz",
            b'--xyz\r\nContent-Disposition: form-data; name="prompt"\r\n\r\n\xff\xfe\r\n--xyz--\r\n',
        ),
        ("text/plain", b"prompt=hello"),
    ],
)
async def test_malformed_bodies_are_400_not_500(
    stalled_simulator: Simulator, content_type: str, payload: bytes
) -> None:
    async with stalled_simulator.http.post(
        "/v1/videos", data=payload, headers={"Content-Type": content_type}
    ) as response:
        assert response.status == 400
        assert (await _error(response))["type"] == "invalid_request_error"


async def test_multipart_parts_are_size_bounded(stalled_simulator: Simulator) -> None:
    form = aiohttp.FormData({"prompt": "p" * 300_000}, default_to_multipart=True)
    async with stalled_simulator.http.post("/v1/videos", data=form) as response:
        assert response.status == 400
        assert (await _error(response))["param"] == "prompt"
    form = aiohttp.FormData({"prompt": "p"})
    form.add_field("input_reference", b"%PDF-1.7 not an image", filename="doc.pdf")
    async with stalled_simulator.http.post("/v1/videos", data=form) as response:
        assert response.status == 400
        assert (await _error(response))["param"] == "input_reference"


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"Authorization": "Bearer sk-wrong"}, "invalid_api_key"),
        ({"Authorization": f"Basic {API_KEY}"}, "missing_api_key"),
        ({"Authorization": ""}, "missing_api_key"),
    ],
)
async def test_wrong_or_missing_api_key_is_401(
    stalled_simulator: Simulator, headers: dict[str, str], code: str
) -> None:
    for method, path in [("POST", "/v1/videos"), ("GET", "/v1/videos"), ("GET", "/v1/videos/video_x")]:
        async with stalled_simulator.http.request(
            method, path, json={"prompt": "x"}, headers=headers
        ) as response:
            assert response.status == 401
            assert (await _error(response))["code"] == code


async def test_unknown_ids_and_routes_are_404(stalled_simulator: Simulator) -> None:
    for method, path in [
        ("GET", "/v1/videos/video_0000"),
        ("GET", "/v1/videos/video_0000/content"),
        ("DELETE", "/v1/videos/video_0000"),
        ("POST", "/v1/videos/video_0000/remix"),
        ("GET", "/v1/images"),
        ("GET", "/"),
    ]:
        async with stalled_simulator.http.request(method, path, json={"prompt": "x"}) as response:
            assert response.status == 404, (method, path)
            await _error(response)


async def test_in_progress_videos_have_no_content_and_cannot_be_remixed(stalled_simulator: Simulator) -> None:
    video = await stalled_simulator.create()
    async with stalled_simulator.http.get(f"/v1/videos/{video['id']}") as response:
        assert "openai-poll-after-ms" in response.headers
        assert (await response.json())["status"] in ("queued", "in_progress")
    for variant in ("video", "thumbnail", "spritesheet"):
        async with stalled_simulator.http.get(
            f"/v1/videos/{video['id']}/content", params={"variant": variant}
        ) as response:
            assert response.status == 400
            assert (await _error(response))["code"] == "video_not_ready"
    async with stalled_simulator.http.get(
        f"/v1/videos/{video['id']}/content", params={"variant": "poster"}
    ) as response:
        assert response.status == 400
        assert (await _error(response))["param"] == "variant"
    async with stalled_simulator.http.post(
        f"/v1/videos/{video['id']}/remix", json={"prompt": "x"}
    ) as response:
        assert response.status == 400
        assert (await _error(response))["code"] == "invalid_video_status"


async def test_unexpected_exceptions_become_a_generic_500() -> None:
    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("secret internal detail")

    app = make_app(Settings(port=0))
    app.router.add_get("/v1/broken", broken)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/v1/broken") as response,
        ):
            assert response.status == 500
            error = await _error(response)
            assert error["type"] == "server_error"
            assert "secret" not in error["message"]
    finally:
        await runner.cleanup()
