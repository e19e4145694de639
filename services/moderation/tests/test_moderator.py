"""The moderation policy without transports: validation and the order of checks."""

from __future__ import annotations

import pytest
from servicekit.errors import ErrorKind, ServiceError

from services.moderation.domain import (
    DEFAULT_CATEGORIES,
    MAX_IMAGE_BYTES,
    Blocklist,
    Decision,
    ImageInput,
    Moderator,
    RuleEngine,
    dhash,
    overall,
    validate_images,
)
from services.moderation.tests.test_imagehash import picture


def test_an_image_at_the_limit_passes_and_one_byte_more_is_refused() -> None:
    validate_images([ImageInput(0, b"\x00" * MAX_IMAGE_BYTES)])
    with pytest.raises(ServiceError) as caught:
        validate_images([ImageInput(0, b"\x00"), ImageInput(1, b"\x00" * (MAX_IMAGE_BYTES + 1))])
    assert (caught.value.kind, caught.value.param) == (ErrorKind.INVALID_ARGUMENT, "images[1].data")
    assert "10 MiB" in caught.value.message


class RecordingClassifier:
    """A classifier that rejects texts and images it is told to, and records what it saw."""

    def __init__(self, *, reject_texts: tuple[str, ...] = ()) -> None:
        self.reject_texts = reject_texts
        self.texts: list[str] = []
        self.images: list[str] = []

    async def classify_text(self, text: str) -> Decision:
        self.texts.append(text)
        return Decision.reject("harassment", "Harassment.") if text in self.reject_texts else Decision(True)

    async def classify_image(self, data: bytes, content_type: str) -> Decision:
        self.images.append(content_type)
        return Decision.reject("violence", "Violence is not allowed.")


async def test_classifier_sees_only_what_the_rules_let_through() -> None:
    classifier = RecordingClassifier(reject_texts=("you are an idiot",))
    moderator = Moderator(RuleEngine(DEFAULT_CATEGORIES), Blocklist.of([dhash(picture())], 6), classifier)

    assert (await moderator.moderate_prompt("a gore fest")).category == "graphic_violence"
    assert (await moderator.moderate_prompt("you are an idiot")).category == "harassment"
    assert (await moderator.moderate_prompt("a cat")).approved
    assert classifier.texts == ["you are an idiot", "a cat"]

    decisions = await moderator.moderate_images(
        [
            ImageInput(2, picture(), filename="a.png"),  # blocklisted
            ImageInput(0, picture("gradient"), filename="batman.png"),  # file name
            ImageInput(1, picture("gradient", fmt="JPEG")),  # classifier
        ]
    )
    assert [(d.index, d.decision.category) for d in decisions] == [
        (2, "blocked_image"),
        (0, "copyrighted_characters"),
        (1, "violence"),
    ]
    assert decisions[2].decision.reason == "Image 1: Violence is not allowed."
    assert classifier.images == ["image/jpeg"]  # sniffed, since the request named no type
    first = overall(decisions)
    assert first is not None and first.index == 2
