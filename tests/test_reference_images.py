"""Reference images end to end: what is accepted, and every bad file answered with a clear 400
that names the image, never a 500, with nothing charged and the platform still healthy."""

from __future__ import annotations

import asyncio
import base64
import io
import struct
import zlib

import aiohttp
import openai
import pytest
from PIL import Image

from tests.helpers import balance, new_user

pytestmark = pytest.mark.e2e


def _image_bytes(fmt: str, size: tuple[int, int] = (640, 360), color: str = "teal") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format=fmt)
    return out.getvalue()


def _data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _png_bomb() -> bytes:
    """A tiny, valid-looking PNG header that declares 100,000 x 100,000 pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


async def _create_json(stack, user: str, body: dict) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{stack.gateway_url}/v1/videos",
            json=body,
            headers={"Authorization": f"Bearer {stack.key(user)}"},
        ) as response:
            return response.status, await response.json()


async def _create_multipart(stack, user: str, files: list[tuple[bytes, str, str]], **fields: str):
    form = aiohttp.FormData()
    form.add_field("prompt", fields.pop("prompt", "A lighthouse at dusk"))
    for name, value in fields.items():
        form.add_field(name, value)
    for data, filename, content_type in files:
        form.add_field("input_reference", data, filename=filename, content_type=content_type)
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{stack.gateway_url}/v1/videos",
            data=form,
            headers={"Authorization": f"Bearer {stack.key(user)}"},
        ) as response:
            return response.status, await response.json()


@pytest.fixture(scope="module")
async def funded(stack):
    return await new_user(stack, "refs", credits=1_000)


@pytest.mark.parametrize(
    ("reference", "param", "words"),
    [
        ({"image_url": "data:image/png;base64,!!!not-base64!!!"}, "input_reference[0]", "base64"),
        ({"image_url": "https://example.com/cat.png"}, "input_reference[0]", "data URL"),
        ({"file_id": "file-123"}, "input_reference[0]", "file_id"),
        ({"image_url": "data:image/png;base64,"}, "input_reference[0]", "empty"),
        ("just a string", "input_reference[0]", "uploaded file"),
    ],
)
async def test_references_the_gateway_can_judge_alone_get_a_clear_400(stack, funded, reference, param, words):
    status, body = await _create_json(stack, funded, {"prompt": "A lighthouse", "input_reference": reference})
    assert status == 400
    assert body["error"]["param"] == param and words in body["error"]["message"]


async def test_five_images_are_refused(stack, funded):
    png = _data_url(_image_bytes("PNG"), "image/png")
    status, body = await _create_json(
        stack, funded, {"prompt": "A lighthouse", "input_references": [{"image_url": png}] * 5}
    )
    assert status == 400 and body["error"]["param"] == "input_reference" and "4" in body["error"]["message"]
    status, body = await _create_multipart(stack, funded, [(_image_bytes("PNG"), "a.png", "image/png")] * 5)
    assert status == 400 and body["error"]["param"] == "input_reference"


async def test_an_eleven_megabyte_image_is_refused(stack, funded):
    big = b"\xff\xd8\xff" + b"\x00" * (11 * 1024 * 1024)
    status, body = await _create_multipart(stack, funded, [(big, "big.jpg", "image/jpeg")])
    assert (
        status == 400 and body["error"]["param"] == "input_reference[0]" and "MB" in body["error"]["message"]
    )
    assert await balance(stack.billing_address, funded) == (1_000, 0)


def _animated_webp() -> bytes:
    frames = [Image.new("RGB", (64, 64), color) for color in ("red", "blue")]
    out = io.BytesIO()
    frames[0].save(out, format="WEBP", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return out.getvalue()


BAD_FILES = [
    pytest.param(_image_bytes("JPEG")[:-600], "cut.jpg", "image/jpeg", id="truncated-jpeg"),
    pytest.param(_png_bomb(), "bomb.png", "image/png", id="png-decompression-bomb"),
    pytest.param(
        _image_bytes("JPEG") + b"PK\x03\x04" + b"\x00" * 64, "poly.jpg", "image/jpeg", id="polyglot"
    ),
    pytest.param(_image_bytes("JPEG"), "liar.png", "image/png", id="declared-mime-mismatch"),
    pytest.param(b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "a.svg", "image/svg+xml", id="svg"),
    pytest.param(_image_bytes("GIF"), "a.gif", "image/gif", id="gif"),
    pytest.param(_animated_webp(), "anim.webp", "image/webp", id="animated-webp"),
]


@pytest.mark.parametrize(("data", "filename", "content_type"), BAD_FILES)
async def test_bad_image_files_get_a_400_naming_the_image_and_cost_nothing(
    stack, funded, data, filename, content_type
):
    good = (_image_bytes("PNG"), "fine.png", "image/png")
    status, body = await _create_multipart(stack, funded, [good, (data, filename, content_type)])
    assert status == 400, body
    assert body["error"]["param"] == "input_reference[1]"
    assert body["error"]["message"]
    assert await balance(stack.billing_address, funded) == (1_000, 0)


async def test_after_bad_files_a_good_set_of_references_still_makes_a_video(stack, funded):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{stack.gateway_url}/readyz") as response:
            assert response.status == 200
    jpeg = _image_bytes("JPEG", size=(1080, 1920), color="orange")
    webp_url = _data_url(_image_bytes("WEBP", size=(300, 300), color="navy"), "image/webp")
    status, body = await _create_json(
        stack,
        funded,
        {
            "prompt": "A lantern festival",
            "size": "1280x720",
            "input_reference": {"image_url": _data_url(jpeg, "image/jpeg")},
            "input_references": [{"image_url": webp_url}],
            "reference_fit": "pad",
        },
    )
    assert status == 200, body
    assert body["reference_images"] == 2
    client = openai.OpenAI(base_url=f"{stack.gateway_url}/v1", api_key=stack.key(funded), max_retries=0)
    video = await asyncio.to_thread(client.videos.poll, body["id"], poll_interval_ms=200)
    assert video.status == "completed", video.error


async def test_an_image_that_fails_moderation_fails_the_video_and_costs_nothing(stack, funded):
    before = await balance(stack.billing_address, funded)
    status, body = await _create_multipart(
        stack, funded, [(_image_bytes("PNG"), "darth-vader-portrait.png", "image/png")]
    )
    assert status == 200, body
    client = openai.OpenAI(base_url=f"{stack.gateway_url}/v1", api_key=stack.key(funded), max_retries=0)
    video = await asyncio.to_thread(client.videos.poll, body["id"], poll_interval_ms=200)
    assert video.status == "failed" and video.error.code == "moderation_blocked"
    assert await balance(stack.billing_address, funded) == before


def test_the_bomb_really_declares_ten_billion_pixels():
    bomb = _png_bomb()
    assert struct.unpack(">II", bomb[16:24]) == (100_000, 100_000)
    assert len(bomb) < 200  # tiny on the wire, ruinous if decoded


async def test_a_zero_byte_upload_is_refused_as_empty(stack, funded):
    status, body = await _create_multipart(stack, funded, [(b"", "nothing.png", "image/png")])
    assert status == 400
    assert body["error"]["param"] == "input_reference[0]" and "empty" in body["error"]["message"]
