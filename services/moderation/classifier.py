"""Adapter for an external classifier speaking OpenAI's `POST /v1/moderations` contract.

Failure policy: fail closed. When the classifier cannot give an answer (connection errors,
timeouts, 408/409/429/5xx after bounded retries with exponential backoff, any other non-200, or a
body that does not follow the contract) the call raises ServiceError(UNAVAILABLE), nothing is
stored, and the jobs service retries admission later. Unchecked content is never approved.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

import aiohttp
from servicekit.errors import ErrorKind, ServiceError

from services.moderation.config import ClassifierSettings
from services.moderation.domain import APPROVED, Decision

log = logging.getLogger(__name__)

_RETRYABLE = {408, 409, 429}
UNAVAILABLE_MESSAGE = "Content moderation is temporarily unavailable; please try again later."

# OpenAI's category names -> ours where they mean the same, with a reason a user can read.
_CATEGORIES: dict[str, tuple[str, str]] = {
    "sexual/minors": ("sexual_minors", "Content that sexualises minors is never allowed."),
    "sexual": ("sexual", "Sexual content is not allowed."),
    "violence/graphic": ("graphic_violence", "Graphic violence and gore are not allowed."),
    "violence": ("violence", "Violent content is not allowed."),
    "self-harm": ("self_harm", "Content that depicts or encourages self-harm or suicide is not allowed."),
    "self-harm/intent": (
        "self_harm",
        "Content that depicts or encourages self-harm or suicide is not allowed.",
    ),
    "self-harm/instructions": (
        "self_harm",
        "Content that depicts or encourages self-harm or suicide is not allowed.",
    ),
    "hate": ("hate", "Hateful content about a protected group is not allowed."),
    "hate/threatening": ("hate", "Hateful content about a protected group is not allowed."),
    "harassment": ("harassment", "Harassing content is not allowed."),
    "harassment/threatening": ("harassment", "Harassing or threatening content is not allowed."),
    "illicit": ("illicit", "Content that facilitates wrongdoing is not allowed."),
    "illicit/violent": ("illicit", "Content that facilitates violent wrongdoing is not allowed."),
}


class _BadResponse(Exception):
    pass


class OpenAIModerationClassifier:
    def __init__(self, settings: ClassifierSettings, session: aiohttp.ClientSession) -> None:
        self._settings = settings
        self._session = session
        self._url = f"{settings.base_url}/moderations"

    async def classify_text(self, text: str) -> Decision:
        return _decision(await self._moderate(text))

    async def classify_image(self, data: bytes, content_type: str) -> Decision:
        url = f"data:{content_type};base64,{base64.b64encode(data).decode()}"
        return _decision(await self._moderate([{"type": "image_url", "image_url": {"url": url}}]))

    async def _moderate(self, content: str | list[dict[str, Any]]) -> dict[str, Any]:
        settings = self._settings
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        timeout = aiohttp.ClientTimeout(total=settings.timeout_seconds)
        problem = ""
        for attempt in range(1, settings.max_attempts + 1):
            try:
                async with self._session.post(
                    self._url,
                    json={"model": settings.model, "input": content},
                    headers=headers,
                    timeout=timeout,
                ) as response:
                    if response.status == 200:
                        return _first_result(await response.json(content_type=None))
                    problem = f"HTTP {response.status}"
                    if response.status not in _RETRYABLE and response.status < 500:
                        break  # 400/401/404…: retrying will not help; a deployment problem
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            except (_BadResponse, ValueError) as exc:
                problem = f"response does not follow the moderations contract: {exc}"
                break
            if attempt < settings.max_attempts:
                await asyncio.sleep(settings.backoff_seconds * 2 ** (attempt - 1))
        log.warning("classifier unavailable", extra={"url": self._url, "problem": problem})
        raise ServiceError(ErrorKind.UNAVAILABLE, UNAVAILABLE_MESSAGE, code="moderation_unavailable")


def _first_result(body: Any) -> dict[str, Any]:
    results = body.get("results") if isinstance(body, dict) else None
    if not isinstance(results, list) or not results or not isinstance(results[0], dict):
        raise _BadResponse("no results")
    result: dict[str, Any] = results[0]
    if not isinstance(result.get("flagged"), bool):
        raise _BadResponse("results[0].flagged is not a boolean")
    return result


def _decision(result: dict[str, Any]) -> Decision:
    if not result["flagged"]:
        return APPROVED
    flags = result.get("categories") if isinstance(result.get("categories"), dict) else {}
    raw_scores = result.get("category_scores")
    scores: dict[str, Any] = raw_scores if isinstance(raw_scores, dict) else {}
    flagged = [name for name, on in (flags or {}).items() if on is True] or list(scores)

    def score(name: str) -> float:
        value = scores.get(name)
        return float(value) if isinstance(value, int | float) else 0.0

    top = max(flagged, key=score, default="")
    if top in _CATEGORIES:
        return Decision.reject(*_CATEGORIES[top])
    name = top.replace("/", "_").replace("-", "_") or "flagged"
    return Decision.reject(name, "The content was flagged by the content classifier and is not allowed.")
