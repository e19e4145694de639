"""The web app in a real browser: Debian's chromium, driven by Playwright, against the whole stack.

Each test signs in with its own user's key and works the page as a person would: the quote, a
video made with a reference image and followed live to the end, its renditions played, a cancel, a
refused retry showing the API's message, a long video's clips, paging, and polling when the live
socket is down. Waits are on DOM state (Playwright's `expect`), never on time. Screenshots go to
/tmp/webapp-*.png.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from PIL import Image
from playwright.async_api import Browser, Page, WebSocketRoute, async_playwright, expect

from tests.helpers import new_user

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
]
# A video goes from create to completed in a few seconds on the simulator; a loaded machine is slower.
FINISHED_MS = 90_000
MODERATED_PROMPT = "A b.e.h.e.a.d.i.n.g in close-up"


async def _api(stack, user: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.request(
            method,
            f"{stack.gateway_url}{path}",
            json=body,
            headers={"Authorization": f"Bearer {stack.key(user)}"},
        ) as response:
            return response.status, await response.json()


def _png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not await asyncio.to_thread(CHROMIUM.exists):
        pytest.fail(
            f"{CHROMIUM} is missing: `make test` installs Debian's chromium when run as root "
            "(apt-get install -y --no-install-recommends chromium)."
        )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh browser profile (so a fresh localStorage) per test. Uncaught script errors and
    Content-Security-Policy violations fail the test."""
    context = await browser.new_context(viewport={"width": 1360, "height": 900}, locale="en-US")
    opened = await context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    opened.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}") if "Content Security Policy" in message.text else None
        ),
    )
    yield opened
    await context.close()
    assert problems == []


async def _sign_in(page: Page, stack, user: str) -> None:
    await page.goto(f"{stack.gateway_url}/")
    await page.get_by_label("API key").fill(stack.key(user))
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#workspace")).to_be_visible()


def _card(page: Page, video_id: str):
    return page.locator(f'.video-card[data-id="{video_id}"]')


async def _newest_video_id(stack, user: str) -> str:
    status, page = await _api(stack, user, "GET", "/v1/videos?limit=1")
    assert status == 200 and page["data"], page
    return str(page["data"][0]["id"])


async def test_a_wrong_key_is_refused_with_the_api_message(stack, page):
    wrong_key = "vf_not_a_real_key"
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{stack.gateway_url}/v1/billing/balance", headers={"Authorization": f"Bearer {wrong_key}"}
        ) as response:
            assert response.status == 401
            refused = await response.json()
    await page.goto(f"{stack.gateway_url}/")
    await page.get_by_label("API key").fill(wrong_key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#signin-error")).to_have_text(refused["error"]["message"])
    await expect(page.locator("#workspace")).to_be_hidden()
    assert await page.evaluate("localStorage.getItem('vidflow.apiKey')") is None


async def test_the_key_is_remembered_until_sign_out(stack, page):
    user = await new_user(stack, "webapp_session", credits=0)
    await _sign_in(page, stack, user)
    assert await page.evaluate("localStorage.getItem('vidflow.apiKey')") == stack.key(user)
    await page.reload()
    await expect(page.locator("#workspace")).to_be_visible()
    await expect(page.locator("#balance-available")).to_have_text("0 credits")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_label("API key")).to_be_visible()
    await expect(page.locator("#workspace")).to_be_hidden()
    assert await page.evaluate("localStorage.getItem('vidflow.apiKey')") is None


async def test_quote_create_with_a_reference_image_follow_live_and_play_renditions(stack, page):
    user = await new_user(stack, "webapp", credits=2_000)
    requested_urls: list[str] = []
    page.on("request", lambda request: requested_urls.append(request.url))
    page.on("websocket", lambda socket: requested_urls.append(socket.url))
    await _sign_in(page, stack, user)
    _, balance = await _api(stack, user, "GET", "/v1/billing/balance")
    await expect(page.locator("#balance-available")).to_have_text(f"{balance['available']:,} credits")
    await expect(page.locator("#live-state")).to_have_attribute("data-state", "live")
    await expect(page.locator("#empty")).to_be_visible()

    # The quote follows the form, and says what the API says for the same fields.
    prompt = "A lighthouse at dusk, waves rolling in, slow pan"
    await page.get_by_label("Prompt", exact=True).fill(prompt)
    await page.get_by_label("Length", exact=True).select_option("8")
    _, quote = await _api(
        stack, user, "POST", "/v1/billing/quote", {"model": "sora-2", "prompt": prompt, "seconds": "8"}
    )
    await expect(page.locator("#quote-amount")).to_have_text(f"{quote['amount']:,} credits")
    await expect(page.locator("#quote")).to_have_attribute("data-sufficient", "true")
    await page.get_by_label("Length", exact=True).select_option("4")
    _, quote = await _api(
        stack, user, "POST", "/v1/billing/quote", {"model": "sora-2", "prompt": prompt, "seconds": "4"}
    )
    await expect(page.locator("#quote-amount")).to_have_text(f"{quote['amount']:,} credits")

    # Sizes follow the model.
    await page.locator("label", has_text="sora-2-pro").click()
    await expect(page.locator("#size option")).to_have_count(6)
    await page.locator("label", has_text=re.compile(r"^sora-2$")).click()
    await expect(page.locator("#size option")).to_have_count(2)

    # Two images chosen, one removed: one is sent.
    await page.locator("#reference-input").set_input_files(
        [
            {"name": "red.png", "mimeType": "image/png", "buffer": _png((220, 40, 60))},
            {"name": "blue.png", "mimeType": "image/png", "buffer": _png((40, 60, 220))},
        ]
    )
    thumbnails = page.locator("#reference-list img")
    await expect(thumbnails).to_have_count(2)
    await expect(thumbnails.first).to_have_attribute("src", re.compile(r"^blob:"))
    await page.get_by_role("button", name="Remove blue.png").click()
    await expect(thumbnails).to_have_count(1)
    await page.screenshot(path="/tmp/webapp-composer.png", full_page=True, animations="disabled")

    # Progress values the card shows, recorded as they change.
    await page.evaluate(
        """() => {
          window.progressSeen = [];
          new MutationObserver((changes) => {
            for (const change of changes) {
              if (change.attributeName === "aria-valuenow" && change.target.closest(".progress-row")) {
                window.progressSeen.push(Number(change.target.getAttribute("aria-valuenow")));
              }
            }
          }).observe(document.getElementById("videos"), {subtree: true, attributes: true});
        }"""
    )
    await page.get_by_role("button", name="Generate video").click()
    await expect(page.locator(".video-card")).to_have_count(1)
    video_id = await _newest_video_id(stack, user)
    card = _card(page, video_id)
    await expect(card.locator(".video-prompt")).to_have_text(prompt)
    await expect(card).to_have_attribute("data-status", "completed", timeout=FINISHED_MS)
    await expect(card.get_by_text("1 reference image")).to_be_visible()
    await expect(page.get_by_label("Prompt", exact=True)).to_have_value(
        ""
    )  # the form is ready for the next one
    seen = await page.evaluate("window.progressSeen")
    assert seen == sorted(seen), seen  # progress never went back
    _, video = await _api(stack, user, "GET", f"/v1/videos/{video_id}")
    assert (video["status"], video["reference_images"]) == ("completed", 1)
    await expect(card.locator(".video-media img")).to_have_attribute("src", re.compile(r"^blob:"))
    await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path="/tmp/webapp-library.png", full_page=True, animations="disabled")
    await page.emulate_media(color_scheme="dark")
    await page.screenshot(path="/tmp/webapp-library-dark.png", full_page=True, animations="disabled")
    await page.emulate_media(color_scheme="light")

    # The player: every rendition the API lists, then the original; each one loads and plays.
    _, renditions = await _api(stack, user, "GET", f"/v1/videos/{video_id}/renditions")
    names = [rendition["name"] for rendition in renditions["data"]]
    assert names, renditions
    await card.get_by_role("button", name="Play").click()
    player = page.locator("#player")
    await expect(player).to_be_visible()
    buttons = player.locator("#renditions button")
    await expect(buttons).to_have_text([*names, "Original"])
    video_element = page.locator("#player-video")
    await expect(video_element).to_have_attribute("poster", re.compile(r"^blob:"))

    async def playing(name: str) -> str | None:
        await expect(video_element).to_have_attribute("data-rendition", name)
        await page.wait_for_function(
            "() => { const v = document.getElementById('player-video');"
            " return v.readyState >= 1 && v.duration > 0; }"
        )
        return await video_element.get_attribute("src")

    sources = [await playing(names[0])]  # the best rendition plays first
    for name in [*names[1:], "original"]:
        await player.locator(f'#renditions [data-rendition="{name}"]').click()
        await expect(player.locator(f'#renditions [data-rendition="{name}"]')).to_have_attribute(
            "aria-pressed", "true"
        )
        sources.append(await playing(name))
    assert len(set(sources)) == len(sources), sources  # every switch loaded another source
    # The renditions play straight from storage (presigned, so only the objects' paths compare).
    assert [urlsplit(str(source)).path for source in sources[:-1]] == [
        urlsplit(rendition["url"]).path for rendition in renditions["data"]
    ]
    assert str(sources[-1]).startswith("blob:")  # the original, fetched with the key
    await video_element.evaluate("video => { video.muted = true; return video.play(); }")
    await page.wait_for_function("() => document.getElementById('player-video').currentTime > 0")
    await page.screenshot(path="/tmp/webapp-player.png", animations="disabled")

    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Download original").click()
    download = await download_info.value
    assert download.suggested_filename == f"{video_id}.mp4"
    saved = await asyncio.to_thread(Path(await download.path()).read_bytes)
    assert saved[4:8] == b"ftyp"  # an MP4
    await page.get_by_role("button", name="Close player").click()
    await expect(player).to_be_hidden()

    # Deleting takes a confirming second click.
    delete = card.get_by_role("button", name="Delete")
    await delete.click()
    await card.get_by_role("button", name="Confirm delete").click()
    await expect(card).to_have_count(0)
    status, _ = await _api(stack, user, "GET", f"/v1/videos/{video_id}")
    assert status == 404
    assert not [url for url in requested_urls if stack.key(user) in url]


async def test_cancel_a_running_video(stack, page):
    user = await new_user(stack, "webapp_cancel", credits=5_000)
    await _sign_in(page, stack, user)
    prompt = "A slow sunrise over a mountain lake. Mist lifts off the water."
    await page.get_by_label("Prompt", exact=True).fill(prompt)
    await page.get_by_label("Length", exact=True).select_option("120")  # six clips: plenty of time to cancel
    await expect(page.locator("#quote-clips li")).to_have_count(6)
    _, quote = await _api(
        stack, user, "POST", "/v1/billing/quote", {"model": "sora-2", "prompt": prompt, "seconds": "120"}
    )
    await page.get_by_role("button", name="Generate video").click()
    await expect(page.locator(".video-card")).to_have_count(1)
    video_id = await _newest_video_id(stack, user)
    card = _card(page, video_id)
    await expect(page.locator("#balance-held")).to_have_text(f"{quote['amount']:,} held")
    await card.get_by_role("button", name="Cancel").click()
    # At once "Cancelling" (the answer); "Cancelled" once the jobs service has released the hold.
    badge = card.locator(".badge").first
    await expect(badge).to_have_text(re.compile(r"^Cancell(ing|ed)$"))
    await expect(card.get_by_role("button", name="Cancel")).to_have_count(0)
    await expect(badge).to_have_text("Cancelled", timeout=FINISHED_MS)
    await expect(card).to_have_attribute("data-status", "failed")
    _, video = await _api(stack, user, "GET", f"/v1/videos/{video_id}")
    assert (video["status"], video["error"]["code"]) == ("failed", "cancelled")
    await expect(page.locator("#balance-held")).to_have_text("", timeout=FINISHED_MS)
    await expect(page.locator("#balance-available")).to_have_text("5,000 credits")


async def test_a_refused_retry_shows_the_api_message(stack, page):
    user = await new_user(stack, "webapp_retry", credits=1_000)
    await _sign_in(page, stack, user)
    await page.get_by_label("Prompt", exact=True).fill(MODERATED_PROMPT)
    await page.get_by_role("button", name="Generate video").click()
    await expect(page.locator(".video-card")).to_have_count(1)
    video_id = await _newest_video_id(stack, user)
    card = _card(page, video_id)
    await expect(card).to_have_attribute("data-status", "failed", timeout=FINISHED_MS)
    _, video = await _api(stack, user, "GET", f"/v1/videos/{video_id}")
    await expect(card.locator(".video-error")).to_have_text(video["error"]["message"])
    await card.get_by_role("button", name="Retry").click()
    status, refused = await _api(stack, user, "POST", f"/v1/videos/{video_id}/retry")
    assert (status, refused["error"]["code"]) == (400, "video_not_retryable")
    await expect(card.get_by_role("alert")).to_have_text(refused["error"]["message"])
    await expect(card.get_by_role("button", name="Retry")).to_be_enabled()
    await page.screenshot(path="/tmp/webapp-refused-retry.png", full_page=True, animations="disabled")


async def test_a_long_video_written_as_two_clips_shows_each_clip(stack, page):
    user = await new_user(stack, "webapp_clips", credits=2_000)
    await _sign_in(page, stack, user)
    await page.get_by_label("Write each clip myself").check()
    rows = page.locator("#clip-editor > li")
    await expect(rows).to_have_count(2)
    await expect(page.get_by_label("Length", exact=True)).to_be_disabled()
    # Add a third, take it out again; then swap the two.
    await page.get_by_role("button", name="Add clip").click()
    await expect(rows).to_have_count(3)
    await page.get_by_role("button", name="Remove clip 3").click()
    await expect(rows).to_have_count(2)
    await page.get_by_label("Clip 1 prompt").fill("A paper boat is folded on a wooden table")
    await page.get_by_label("Clip 2 prompt").fill("The paper boat drifts down a rainy gutter")
    await page.get_by_role("button", name="Move clip 2 up").click()
    await expect(page.get_by_label("Clip 1 prompt")).to_have_value(
        "The paper boat drifts down a rainy gutter"
    )
    await page.get_by_role("button", name="Move clip 1 down").click()
    for number in (1, 2):
        await page.get_by_label(f"Clip {number} length").select_option("12")
    await expect(page.get_by_label("Length", exact=True)).to_have_value("24")
    segments = [
        {"prompt": "A paper boat is folded on a wooden table", "seconds": 12},
        {"prompt": "The paper boat drifts down a rainy gutter", "seconds": 12},
    ]
    _, quote = await _api(
        stack, user, "POST", "/v1/billing/quote", {"model": "sora-2", "prompt": "", "segments": segments}
    )
    await expect(page.locator("#quote-amount")).to_have_text(f"{quote['amount']:,} credits")
    await expect(page.locator("#quote-clips li")).to_have_count(2)
    await page.screenshot(path="/tmp/webapp-clips-editor.png", full_page=True, animations="disabled")

    await page.get_by_role("button", name="Generate video").click()
    await expect(page.locator(".video-card")).to_have_count(1)
    video_id = await _newest_video_id(stack, user)
    clips = _card(page, video_id).locator(".video-clips > li")
    await expect(clips).to_have_count(2)
    await expect(clips.first).to_contain_text(segments[0]["prompt"])
    await expect(clips.last).to_contain_text(segments[1]["prompt"])
    # Each clip follows its own progress: the first is done while the second is still to come.
    await expect(clips.first.locator(".clip-status")).to_have_text("Done", timeout=FINISHED_MS)
    await page.screenshot(path="/tmp/webapp-clips-progress.png", animations="disabled")
    _, video = await _api(stack, user, "GET", f"/v1/videos/{video_id}")
    assert [clip["prompt"] for clip in video["segments"]] == [clip["prompt"] for clip in segments]
    if video["status"] != "completed":  # spare the machine the rest (the flow test sees a video finish)
        await _card(page, video_id).get_by_role("button", name="Cancel").click()
        await expect(_card(page, video_id)).to_have_attribute("data-status", "failed", timeout=FINISHED_MS)


async def test_load_more_pages_through_the_list_newest_first(stack, page):
    user = await new_user(stack, "webapp_pages", credits=1_000)
    made = []
    for _ in range(21):  # refused by moderation at once: nothing is rendered
        status, video = await _api(
            stack, user, "POST", "/v1/videos", {"model": "sora-2", "prompt": MODERATED_PROMPT, "seconds": "4"}
        )
        assert status == 200, video
        made.append(video["id"])
    await _sign_in(page, stack, user)
    cards = page.locator(".video-card:not(.skeleton)")
    await expect(cards).to_have_count(20)
    await expect(cards.first).to_have_attribute("data-id", made[-1])
    await page.get_by_role("button", name="Load more").click()
    await expect(cards).to_have_count(21)
    await expect(cards.last).to_have_attribute("data-id", made[0])
    await expect(page.get_by_role("button", name="Load more")).to_be_hidden()


async def test_without_the_live_socket_videos_are_polled_to_the_end(stack, page):
    user = await new_user(stack, "webapp_polling", credits=1_000)

    async def refuse(socket: WebSocketRoute) -> None:
        await socket.close(code=1011, reason="unavailable")

    await page.route_web_socket(re.compile(r"/v1/ws$"), refuse)
    await _sign_in(page, stack, user)
    await expect(page.locator("#live-state")).to_have_attribute("data-state", "polling")
    await page.get_by_label("Prompt", exact=True).fill("A hummingbird hovering at a red flower")
    await page.get_by_role("button", name="Generate video").click()
    await expect(page.locator(".video-card")).to_have_count(1)
    video_id = await _newest_video_id(stack, user)
    await expect(_card(page, video_id)).to_have_attribute("data-status", "completed", timeout=FINISHED_MS)
