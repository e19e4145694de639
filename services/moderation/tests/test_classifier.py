"""The classifier adapter against a real HTTP server implementing the moderations contract."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import aiohttp
import pytest
from servicekit.errors import ErrorKind, ServiceError

from services.moderation.classifier import OpenAIModerationClassifier
from services.moderation.config import ClassifierSettings
from services.moderation.tests.fake_classifier import HANG, FakeClassifier, result, serve_fake


@pytest.fixture
async def fake() -> AsyncIterator[FakeClassifier]:
    async with serve_fake(FakeClassifier()) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def _adapter(
    fake: FakeClassifier, session: aiohttp.ClientSession, **overrides: float
) -> OpenAIModerationClassifier:
    settings = ClassifierSettings(
        fake.base_url,
        api_key="sk-test",
        timeout_seconds=overrides.get("timeout", 5),
        max_attempts=int(overrides.get("attempts", 3)),
        backoff_seconds=0.01,
    )
    return OpenAIModerationClassifier(settings, session)


async def test_not_flagged_approves_and_sends_the_contract(
    fake: FakeClassifier, session: aiohttp.ClientSession
) -> None:
    decision = await _adapter(fake, session).classify_text("a cat")
    assert decision.approved
    assert fake.requests == [{"model": "omni-moderation-latest", "input": "a cat"}]
    assert fake.headers[0]["Authorization"] == "Bearer sk-test"


async def test_flagged_rejects_with_the_highest_scoring_flagged_category(
    fake: FakeClassifier, session: aiohttp.ClientSession
) -> None:
    fake.script.append(result(True, violence=0.6, violence__graphic=0.9, harassment=0.3))
    decision = await _adapter(fake, session).classify_text("something violent")
    assert not decision.approved
    assert decision.category == "graphic_violence"
    assert decision.reason == "Graphic violence and gore are not allowed."


async def test_unknown_category_gets_a_safe_name_and_generic_reason(
    fake: FakeClassifier, session: aiohttp.ClientSession
) -> None:
    fake.script.append(
        {
            "results": [
                {"flagged": True, "categories": {"new/thing": True}, "category_scores": {"new/thing": 0.8}}
            ]
        }
    )
    decision = await _adapter(fake, session).classify_text("x")
    assert (decision.category, decision.approved) == ("new_thing", False)
    assert "content classifier" in decision.reason


async def test_images_are_sent_as_data_urls(fake: FakeClassifier, session: aiohttp.ClientSession) -> None:
    fake.script.append(result(True, sexual=0.97))
    decision = await _adapter(fake, session).classify_image(b"\x89PNG-bytes", "image/png")
    assert decision.category == "sexual"
    [part] = fake.requests[0]["input"]
    assert part["type"] == "image_url"
    prefix = "data:image/png;base64,"
    assert part["image_url"]["url"].startswith(prefix)
    assert base64.b64decode(part["image_url"]["url"][len(prefix) :]) == b"\x89PNG-bytes"


async def test_server_errors_are_retried_then_succeed(
    fake: FakeClassifier, session: aiohttp.ClientSession
) -> None:
    fake.script.extend([500, 503, result(True, hate=0.8)])
    decision = await _adapter(fake, session, attempts=3).classify_text("x")
    assert decision.category == "hate"
    assert len(fake.requests) == 3


@pytest.mark.parametrize(
    ("script", "attempts", "calls"),
    [
        ([500, 502, 503], 3, 3),  # retries are bounded
        ([429, 429], 2, 2),
        ([401], 3, 1),  # a client error is not retried
        ([{"unexpected": "shape"}], 3, 1),
    ],
)
async def test_failures_fail_closed_as_unavailable(
    fake: FakeClassifier, session: aiohttp.ClientSession, script: list[object], attempts: int, calls: int
) -> None:
    fake.script.extend(script)
    fake.default = result(False)
    with pytest.raises(ServiceError) as caught:
        await _adapter(fake, session, attempts=attempts).classify_text("x")
    assert caught.value.kind is ErrorKind.UNAVAILABLE
    assert caught.value.code == "moderation_unavailable"
    assert len(fake.requests) == calls


async def test_timeout_is_unavailable(fake: FakeClassifier, session: aiohttp.ClientSession) -> None:
    fake.script.extend([HANG, HANG])
    with pytest.raises(ServiceError) as caught:
        await _adapter(fake, session, timeout=0.2, attempts=2).classify_text("x")
    assert caught.value.kind is ErrorKind.UNAVAILABLE
    assert len(fake.requests) == 2


async def test_timeout_then_success(fake: FakeClassifier, session: aiohttp.ClientSession) -> None:
    fake.script.extend([HANG, result(True, self_harm=0.7)])
    decision = await _adapter(fake, session, timeout=0.2, attempts=2).classify_text("x")
    assert decision.category == "self_harm"


async def test_unreachable_is_unavailable(session: aiohttp.ClientSession) -> None:
    async with serve_fake(FakeClassifier()) as gone:
        url = gone.base_url
    settings = ClassifierSettings(url, timeout_seconds=2, max_attempts=2, backoff_seconds=0.01)
    with pytest.raises(ServiceError) as caught:
        await OpenAIModerationClassifier(settings, session).classify_text("x")
    assert caught.value.kind is ErrorKind.UNAVAILABLE
