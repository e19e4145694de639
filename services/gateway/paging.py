"""Cursor paging for the gateway's own lists (batches, webhook endpoints): `limit` and `after` in,
OpenAI's list object out."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from servicekit.errors import ErrorKind, ServiceError

from services.gateway.api_docs import Parameter, query

MAX_LIMIT = 100
DEFAULT_LIMIT = 20
_MAX_CURSOR_CHARS = 64

PARAMETERS: tuple[Parameter, ...] = (
    query(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
        "Page size.",
    ),
    query("after", {"type": "string", "maxLength": _MAX_CURSOR_CHARS}, "The last id of the previous page."),
)


def page_of(request: web.Request) -> tuple[int, str | None]:
    """(limit, after) from the query, or a 400."""
    raw = request.query.get("limit", str(DEFAULT_LIMIT))
    # ASCII digits only ('²' is a digit to str.isdigit) and short, so int() cannot fail.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 3 and 1 <= int(raw) <= MAX_LIMIT):
        raise ServiceError(
            ErrorKind.INVALID_ARGUMENT,
            f"limit must be a whole number from 1 to {MAX_LIMIT}.",
            param="limit",
            code="invalid_value",
        )
    after = request.query.get("after") or None
    if after is not None and len(after) > _MAX_CURSOR_CHARS:
        raise ServiceError(
            ErrorKind.INVALID_ARGUMENT,
            "after must be an id from a previous page.",
            param="after",
            code="invalid_value",
        )
    return int(raw), after


def list_body(items: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """`items` holds up to limit + 1 entries; the extra one only tells that there is more."""
    page = items[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > limit,
    }


def list_schema(name: str, item: Any) -> dict[str, Any]:
    """The JSON Schema of a `list_body` answer of `item`s."""
    return {
        "type": "object",
        "title": name,
        "required": ["object", "data", "first_id", "last_id", "has_more"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": item},
            "first_id": {"type": ["string", "null"]},
            "last_id": {"type": ["string", "null"]},
            "has_more": {"type": "boolean"},
        },
    }
