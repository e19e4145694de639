"""JSON object bodies for the management routes, with OpenAI-style 400s for anything else."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from servicekit.errors import ErrorKind, ServiceError


async def read_json_object(request: web.Request, *, empty_allowed: bool = False) -> dict[str, Any]:
    if empty_allowed and not request.body_exists:
        return {}
    try:
        body = await request.json()
    except (ValueError, LookupError, RecursionError):
        # Bad JSON or bytes (ValueError), an unknown charset (LookupError), absurd nesting.
        raise ServiceError(ErrorKind.INVALID_ARGUMENT, "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ServiceError(ErrorKind.INVALID_ARGUMENT, "The request body must be a JSON object.")
    return body
