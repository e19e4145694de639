"""Client webhook routes (Vidflow extensions), all scoped to the caller; another user's endpoint
answers 404 like one that does not exist.

- `/v1/webhook_endpoints`: URLs that receive events of every video of the owner, whichever API key
  made it. Each has its own `whsec_` secret, shown once, in the answer that creates it.
- `/v1/webhook_secret`: the owner's secret for per-video `webhook_url`s. Creating it again
  rotates it; the old one keeps signing alongside for a day so receivers can switch over.

Deliveries follow Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`);
`servicekit.webhooks.verify` checks them.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from servicekit.errors import ErrorKind, ServiceError

from services.gateway import paging
from services.gateway.api_docs import Schema, documented, json_body, links_to
from services.gateway.api_schemas import UNIX_SECONDS
from services.gateway.auth import principal_of
from services.gateway.json_body import read_json_object
from services.gateway.keys import CLIENT_WEBHOOK_SETTINGS, IDENTITY, WEBHOOK_STORE
from services.gateway.webhook_events import EVENT_TYPES, FINAL_EVENTS
from services.gateway.webhook_store import Endpoint, SecretInfo
from services.gateway.webhook_urls import (
    MAX_URL_CHARS,
    WebhookUrlError,
    check_webhook_host,
    check_webhook_url,
)

routes = web.RouteTableDef()
MAX_ENDPOINTS_PER_OWNER = 20
# After a rotation, deliveries carry a signature with the old secret too, this long.
SECRET_OVERLAP = timedelta(hours=24)
_ENDPOINT_ID = re.compile(r"^we_[0-9a-f]{24}$")
_TAGS = ["Webhooks"]

_EVENTS = {
    "type": "array",
    "items": {"type": "string", "enum": list(EVENT_TYPES)},
    "minItems": 1,
    "uniqueItems": True,
    "description": "`video.completed`, `video.failed`, and `video.progress` (every status change of a "
    "video still queued or in progress).",
}
_API_KEY_SCOPE = {
    "type": ["string", "null"],
    "description": "One of the caller's API key ids (`key_...`): the endpoint then gets events only of "
    "videos that key created. Null or absent: every video of the caller.",
}
WEBHOOK_ENDPOINT = Schema(
    "WebhookEndpoint",
    {
        "type": "object",
        "required": ["id", "object", "url", "events", "created_at"],
        "properties": {
            "id": {"type": "string", "examples": ["we_0123456789abcdef01234567"]},
            "object": {"const": "webhook_endpoint"},
            "url": {"type": "string"},
            "events": _EVENTS,
            "created_at": UNIX_SECONDS,
            "api_key_id": _API_KEY_SCOPE,
            "secret": {
                "type": "string",
                "pattern": "^whsec_",
                "description": "The signing secret; only in the answer that creates the endpoint.",
            },
        },
    },
)
CREATE_WEBHOOK_ENDPOINT = Schema(
    "CreateWebhookEndpointBody",
    {
        "type": "object",
        "required": ["url"],
        "additionalProperties": False,
        "properties": {
            "url": {
                "type": "string",
                "pattern": "^https?://",
                "maxLength": MAX_URL_CHARS,
                "description": "Private and loopback addresses are refused unless the gateway allows them.",
            },
            "events": {**_EVENTS, "default": list(FINAL_EVENTS)},
            "api_key_id": _API_KEY_SCOPE,
        },
    },
)
DELETED_WEBHOOK_ENDPOINT = Schema(
    "DeletedWebhookEndpoint",
    {
        "type": "object",
        "required": ["id", "object", "deleted"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "webhook_endpoint.deleted"},
            "deleted": {"const": True},
        },
    },
)
WEBHOOK_SECRET = Schema(
    "WebhookSecret",
    {
        "type": "object",
        "description": "The owner's signing secret for per-video `webhook_url`s.",
        "required": ["object", "created_at", "previous_expires_at"],
        "properties": {
            "object": {"const": "webhook_secret"},
            "secret": {
                "type": "string",
                "pattern": "^whsec_",
                "description": "Only in the answer that creates (or rotates) it.",
            },
            "created_at": UNIX_SECONDS,
            "previous_expires_at": {
                "anyOf": [UNIX_SECONDS, {"type": "null"}],
                "description": "After a rotation: until then, deliveries are signed with the old secret too.",
            },
        },
    },
)


@routes.post("/v1/webhook_endpoints")
@documented(
    "Create webhook endpoint",
    tags=_TAGS,
    description="A URL that receives the events of every video of the caller (with `api_key_id`, only "
    "of the videos that key created), signed per Standard "
    "Webhooks with the `whsec_` secret in the answer (shown only this once). Events are "
    '`{"type", "timestamp", "data"}` with the video object as `data`; a delivery is tried again '
    f"with backoff until it gets a 2xx. At most {MAX_ENDPOINTS_PER_OWNER} endpoints per user.",
    body=json_body(
        CREATE_WEBHOOK_ENDPOINT,
        example={"url": "https://example.com/hooks/vidflow", "events": ["video.completed", "video.failed"]},
    ),
    reply=WEBHOOK_ENDPOINT,
    errors=[404],  # an api_key_id that is not one of the caller's active keys
    extension=True,
    links=links_to(["retrieve_endpoint", "delete_endpoint"], "endpoint_id"),
)
async def create_endpoint(request: web.Request) -> web.Response:
    principal = principal_of(request)
    body = await read_json_object(request)
    unknown = sorted(set(body) - {"url", "events", "api_key_id"})
    if unknown:
        raise _invalid(unknown[0], f"Unknown field {unknown[0]!r}.")
    url = body.get("url")
    if not isinstance(url, str):
        raise _invalid("url", "url must be a string: the https:// URL to send events to.")
    allow_private = request.app[CLIENT_WEBHOOK_SETTINGS].allow_private
    try:
        check_webhook_url(url, allow_private=allow_private)
        await check_webhook_host(url, allow_private=allow_private)
    except WebhookUrlError as refused:
        raise _invalid("url", str(refused), code="invalid_webhook_url") from None
    events = _events(body.get("events", list(FINAL_EVENTS)))
    api_key_id = await _own_api_key_id(request, principal.user_id, body.get("api_key_id"))
    store = request.app[WEBHOOK_STORE]
    if await store.count_endpoints(principal.user_id) >= MAX_ENDPOINTS_PER_OWNER:
        raise ServiceError(
            ErrorKind.FAILED_PRECONDITION,
            f"A user can have at most {MAX_ENDPOINTS_PER_OWNER} webhook endpoints; delete one first.",
            code="too_many_webhook_endpoints",
        )
    endpoint, secret = await store.create_endpoint(
        owner_id=principal.user_id, url=url, events=events, api_key_id=api_key_id
    )
    # The only time the secret leaves the gateway.
    return web.json_response({**endpoint_resource(endpoint), "secret": secret})


@routes.get("/v1/webhook_endpoints")
@documented(
    "List webhook endpoints",
    tags=_TAGS,
    description="The caller's endpoints, newest first (without their secrets).",
    parameters=paging.PARAMETERS,
    reply=Schema("WebhookEndpointList", paging.list_schema("Webhook endpoints", WEBHOOK_ENDPOINT)),
    errors=[400],
    extension=True,
)
async def list_endpoints(request: web.Request) -> web.Response:
    limit, after = paging.page_of(request)
    endpoints = await request.app[WEBHOOK_STORE].list_endpoints(
        principal_of(request).user_id, limit=limit + 1, after=after
    )
    return web.json_response(paging.list_body([endpoint_resource(endpoint) for endpoint in endpoints], limit))


@routes.get("/v1/webhook_endpoints/{endpoint_id}")
@documented("Retrieve webhook endpoint", tags=_TAGS, reply=WEBHOOK_ENDPOINT, errors=[404], extension=True)
async def retrieve_endpoint(request: web.Request) -> web.Response:
    endpoint_id = _endpoint_id(request)
    endpoint = await request.app[WEBHOOK_STORE].get_endpoint(principal_of(request).user_id, endpoint_id)
    if endpoint is None:
        raise _no_such_endpoint(endpoint_id)
    return web.json_response(endpoint_resource(endpoint))


@routes.delete("/v1/webhook_endpoints/{endpoint_id}")
@documented(
    "Delete webhook endpoint",
    tags=_TAGS,
    description="Stops its deliveries, pending retries included.",
    reply=DELETED_WEBHOOK_ENDPOINT,
    errors=[404],
    extension=True,
)
async def delete_endpoint(request: web.Request) -> web.Response:
    endpoint_id = _endpoint_id(request)
    if not await request.app[WEBHOOK_STORE].delete_endpoint(principal_of(request).user_id, endpoint_id):
        raise _no_such_endpoint(endpoint_id)
    return web.json_response({"id": endpoint_id, "object": "webhook_endpoint.deleted", "deleted": True})


@routes.post("/v1/webhook_secret")
@documented(
    "Create or rotate webhook secret",
    tags=_TAGS,
    description="The caller's `whsec_` secret for the `webhook_url` of single videos, shown only in this "
    "answer. Calling again makes a new one; for 24 hours after, deliveries carry a signature with the "
    "old secret as well, so receivers can switch without missing events.",
    reply=WEBHOOK_SECRET,
    extension=True,
)
async def rotate_secret(request: web.Request) -> web.Response:
    info, secret = await request.app[WEBHOOK_STORE].rotate_secret(
        principal_of(request).user_id, overlap=SECRET_OVERLAP
    )
    return web.json_response({**secret_resource(info), "secret": secret})


@routes.get("/v1/webhook_secret")
@documented(
    "Retrieve webhook secret",
    tags=_TAGS,
    description="Whether the caller has a webhook secret and since when; never the secret itself.",
    reply=WEBHOOK_SECRET,
    errors=[404],
    extension=True,
)
async def retrieve_secret(request: web.Request) -> web.Response:
    info = await request.app[WEBHOOK_STORE].secret_info(principal_of(request).user_id)
    if info is None:
        raise ServiceError(
            ErrorKind.NOT_FOUND,
            "No webhook secret yet; create one with POST /v1/webhook_secret.",
            code="webhook_secret_not_found",
        )
    return web.json_response(secret_resource(info))


def endpoint_resource(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "id": endpoint.id,
        "object": "webhook_endpoint",
        "url": endpoint.url,
        "events": list(endpoint.events),
        "created_at": _unix(endpoint.created_at),
        "api_key_id": endpoint.api_key_id,
    }


def secret_resource(info: SecretInfo) -> dict[str, Any]:
    return {
        "object": "webhook_secret",
        "created_at": _unix(info.created_at),
        "previous_expires_at": _unix(info.previous_expires_at) if info.previous_expires_at else None,
    }


def _events(value: Any) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(event, str) and event in EVENT_TYPES for event in value)
    ):
        raise _invalid("events", f"events must be a non-empty list of {', '.join(EVENT_TYPES)}.")
    return tuple(dict.fromkeys(value))


def _endpoint_id(request: web.Request) -> str:
    endpoint_id = request.match_info["endpoint_id"]
    if not _ENDPOINT_ID.match(endpoint_id):
        raise _no_such_endpoint(endpoint_id[:64])
    return endpoint_id


def _no_such_endpoint(endpoint_id: str) -> ServiceError:
    return ServiceError(
        ErrorKind.NOT_FOUND,
        f"No webhook endpoint found with id '{endpoint_id}'.",
        param="endpoint_id",
        code="webhook_endpoint_not_found",
    )


def _invalid(param: str, message: str, code: str = "invalid_value") -> ServiceError:
    return ServiceError(ErrorKind.INVALID_ARGUMENT, message, param=param, code=code)


def _unix(moment: datetime) -> int:
    return int(moment.timestamp())


async def _own_api_key_id(request: web.Request, owner_id: str, value: Any) -> str | None:
    """A key id the caller owns, or None for an endpoint of all the caller's videos. Another
    user's key reads as a missing one."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _invalid("api_key_id", "api_key_id must be one of your API key ids, or null.")
    key = await request.app[IDENTITY].get_api_key(value[:64]) if value.isprintable() else None
    if key is None or key.user_id != owner_id or key.revoked_at is not None:
        raise ServiceError(
            ErrorKind.NOT_FOUND,
            f"No active API key found with id '{value[:64]}'.",
            param="api_key_id",
            code="api_key_not_found",
        )
    return key.id
