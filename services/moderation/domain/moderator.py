"""The moderation policy: validate the request, run the rules, the blocklist and the classifier.

A prompt or an image is rejected when any check rejects it; the rules (and, for images, the file
name and the blocklist) run first, and the classifier, when there is one, only sees what they let
through. Decisions come back in request order; nothing here stores anything.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from servicekit.errors import ErrorKind, ServiceError

from services.moderation.domain.imagehash import Blocklist, ImageDecodeError, dhash
from services.moderation.domain.rules import APPROVED, Decision, RuleEngine

MAX_IMAGES = 4
MAX_IMAGE_BYTES = 10 * 1024 * 1024
BLOCKED_IMAGE = "blocked_image"


class Classifier(Protocol):
    """An external content classifier. Raises ServiceError(UNAVAILABLE) when it cannot answer."""

    async def classify_text(self, text: str) -> Decision: ...

    async def classify_image(self, data: bytes, content_type: str) -> Decision: ...


@dataclass(frozen=True)
class ImageInput:
    index: int
    data: bytes
    content_type: str = ""
    filename: str = ""


@dataclass(frozen=True)
class ImageDecision:
    index: int
    decision: Decision


def require_job_id(job_id: str) -> None:
    if not job_id:
        raise ServiceError(ErrorKind.INVALID_ARGUMENT, "job_id is required", param="job_id")


def validate_images(images: list[ImageInput]) -> None:
    if not 1 <= len(images) <= MAX_IMAGES:
        raise ServiceError(
            ErrorKind.INVALID_ARGUMENT,
            f"between 1 and {MAX_IMAGES} images are required, got {len(images)}",
            param="images",
        )
    seen: set[int] = set()
    for position, image in enumerate(images):
        param = f"images[{position}]"
        if not 0 <= image.index < MAX_IMAGES or image.index in seen:
            raise ServiceError(
                ErrorKind.INVALID_ARGUMENT,
                f"image index must be unique and between 0 and {MAX_IMAGES - 1}, got {image.index}",
                param=f"{param}.index",
            )
        seen.add(image.index)
        if not image.data:
            raise ServiceError(ErrorKind.INVALID_ARGUMENT, "image data is empty", param=f"{param}.data")
        if len(image.data) > MAX_IMAGE_BYTES:
            raise ServiceError(
                ErrorKind.INVALID_ARGUMENT,
                f"image is {len(image.data)} bytes; the limit is {MAX_IMAGE_BYTES} bytes (10 MiB)",
                param=f"{param}.data",
            )


class Moderator:
    def __init__(self, rules: RuleEngine, blocklist: Blocklist, classifier: Classifier | None = None) -> None:
        self._rules = rules
        self._blocklist = blocklist
        self._classifier = classifier

    async def moderate_prompt(self, prompt: str) -> Decision:
        decision = self._rules.evaluate(prompt)
        if decision.approved and self._classifier is not None and prompt.strip():
            decision = await self._classifier.classify_text(prompt)
        return decision

    async def moderate_images(self, images: list[ImageInput]) -> list[ImageDecision]:
        validate_images(images)
        # Decode everything first: a broken image refuses the whole request before any outbound call.
        hashes = await asyncio.gather(*(asyncio.to_thread(_hash, position, image)
                                        for position, image in enumerate(images)))  # fmt: skip
        local = [self._local_check(image, value) for image, value in zip(images, hashes, strict=True)]
        decisions = await asyncio.gather(
            *(self._classify(image, decision) for image, decision in zip(images, local, strict=True))
        )
        return [ImageDecision(image.index, d) for image, d in zip(images, decisions, strict=True)]

    def _local_check(self, image: ImageInput, value: int) -> Decision:
        if image.filename:
            by_name = self._rules.evaluate(image.filename)
            if not by_name.approved:
                return Decision.reject(
                    by_name.category, f"The file name of image {image.index} was refused. {by_name.reason}"
                )
        if self._blocklist.closest(value) is not None:
            return Decision.reject(
                BLOCKED_IMAGE, f"Image {image.index} matches an image that is not allowed on this platform."
            )
        return APPROVED

    async def _classify(self, image: ImageInput, decision: Decision) -> Decision:
        if not decision.approved or self._classifier is None:
            return decision
        verdict = await self._classifier.classify_image(image.data, _content_type(image))
        if verdict.approved:
            return verdict
        return Decision.reject(verdict.category, f"Image {image.index}: {verdict.reason}")


def overall(decisions: list[ImageDecision]) -> ImageDecision | None:
    """The first rejected image's decision, or None when every image passed."""
    return next((d for d in decisions if not d.decision.approved), None)


def _hash(position: int, image: ImageInput) -> int:
    try:
        return dhash(image.data)
    except ImageDecodeError as exc:
        raise ServiceError(
            ErrorKind.INVALID_ARGUMENT,
            f"image {image.index} is {exc}",
            param=f"images[{position}].data",
            code="invalid_image",
        ) from None


def _content_type(image: ImageInput) -> str:
    if image.content_type in ("image/png", "image/jpeg"):
        return image.content_type
    return "image/jpeg" if image.data.startswith(b"\xff\xd8") else "image/png"
