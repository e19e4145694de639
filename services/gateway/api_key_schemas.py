"""OpenAPI schemas of the key and user management routes (`api_keys.py`)."""

from __future__ import annotations

from typing import Any

from services.gateway.api_docs import Schema, path

_TIME = {"type": "integer", "description": "Unix seconds."}
_NULLABLE_TIME = {"type": ["integer", "null"], "description": "Unix seconds, or null."}
_RPM = {
    "type": ["integer", "null"],
    "minimum": 0,
    "maximum": 1_000_000,
    "description": "Requests per minute; 0: unlimited; null: the gateway's default (GATEWAY_DEFAULT_RPM).",
}
_JOBS = {
    "type": "integer",
    "minimum": 0,
    "maximum": 10_000,
    "description": "Unfinished videos the key may have at once; 0: unlimited.",
}
_NAME = {"type": "string", "maxLength": 200}
_KEY_PROPERTIES: dict[str, Any] = {
    "object": {"const": "api_key"},
    "id": {"type": "string", "pattern": "^key_[0-9a-f]{16}$"},
    "name": {"type": "string"},
    "owner_id": {"type": "string"},
    "prefix": {"type": "string", "description": "The key's first 8 characters."},
    "redacted_value": {"type": "string", "examples": ["vf_AbCdE…"]},
    "created_at": _TIME,
    "last_used_at": {**_NULLABLE_TIME, "description": "Unix seconds, to the minute; null if never used."},
    "revoked_at": _NULLABLE_TIME,
    "requests_per_minute": _RPM,
    "max_concurrent_jobs": _JOBS,
}
API_KEY = Schema(
    "ApiKey",
    {"type": "object", "required": sorted(_KEY_PROPERTIES), "properties": _KEY_PROPERTIES},
)
NEW_API_KEY = Schema(
    "NewApiKey",
    {
        "type": "object",
        "description": "The key with its secret `value`: shown this once, stored only as a hash.",
        "required": [*sorted(_KEY_PROPERTIES), "value"],
        "properties": {**_KEY_PROPERTIES, "value": {"type": "string", "pattern": "^vf_"}},
    },
)
CREATE_KEY_REQUEST = Schema(
    "CreateApiKeyRequest",
    {
        "type": "object",
        "additionalProperties": False,
        "description": "Limits may be set by admins only.",
        "properties": {"name": _NAME, "requests_per_minute": _RPM, "max_concurrent_jobs": _JOBS},
    },
)
KEY_LIMITS_REQUEST = Schema(
    "ApiKeyLimitsRequest",
    {
        "type": "object",
        "additionalProperties": False,
        "description": "Only the fields sent change.",
        "properties": {"requests_per_minute": _RPM, "max_concurrent_jobs": _JOBS},
    },
)
_USER_PROPERTIES: dict[str, Any] = {
    "object": {"const": "user"},
    "id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
    "name": {"type": "string"},
    "role": {"enum": ["user", "admin"]},
    "created_at": _TIME,
}
USER = Schema(
    "User", {"type": "object", "required": sorted(_USER_PROPERTIES), "properties": _USER_PROPERTIES}
)
CREATE_USER_REQUEST = Schema(
    "CreateUserRequest",
    {
        "type": "object",
        "required": ["name"],
        "properties": {
            "id": {**_USER_PROPERTIES["id"], "description": "Leave out to get a generated user_... id."},
            "name": {**_NAME, "minLength": 1},
            "role": {"enum": ["user", "admin"], "default": "user"},
        },
    },
)


def _list_of(item: Schema, name: str) -> Schema:
    return Schema(
        name,
        {
            "type": "object",
            "required": ["object", "data", "first_id", "last_id", "has_more"],
            "properties": {
                "object": {"const": "list"},
                "data": {"type": "array", "items": item},
                "first_id": {"type": ["string", "null"]},
                "last_id": {"type": ["string", "null"], "description": "Pass as `after` for the next page."},
                "has_more": {"type": "boolean"},
            },
        },
    )


API_KEY_LIST = _list_of(API_KEY, "ApiKeyList")
USER_LIST = _list_of(USER, "UserList")
KEY_ID = path("key_id", "The key's id.", {"type": "string", "pattern": "^key_[0-9a-f]{16}$"})
USER_ID = path("user_id", "The user's id.", {"type": "string", "maxLength": 64})
