"""API key and user management under /v1: users manage their own keys; admins manage users, anyone's
keys and per-key limits. Handlers translate HTTP to the identity store and back; another user's key
answers 404, like a key that does not exist.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from aiohttp import web
from servicekit.errors import ErrorKind, ServiceError

from services.gateway import api_key_schemas as schemas
from services.gateway import paging
from services.gateway.api_docs import Access, documented, json_body, links_to
from services.gateway.auth import principal_of, require_admin
from services.gateway.identity import ROLES, UNSET, ApiKey, KeyLimits, Unset, User
from services.gateway.json_body import read_json_object
from services.gateway.keys import IDENTITY

routes = web.RouteTableDef()
MAX_ACTIVE_KEYS_PER_USER = 100
MAX_REQUESTS_PER_MINUTE = 1_000_000
MAX_CONCURRENT_JOBS = 10_000
_MAX_NAME_CHARS = 200
_USER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_KEY_ID = re.compile(r"^key_[0-9a-f]{16}$")
_LIMIT_FIELDS = ("requests_per_minute", "max_concurrent_jobs")
# OpenAPI links from the answers that make a key or a user to what takes its id.
_ON_OWN_KEY = links_to(["get_own_key", "revoke_own_key"], "key_id")
_ON_ANY_KEY = {
    **links_to(["admin_set_limits", "admin_revoke_key"], "key_id"),
    **links_to(["admin_set_budget"], "api_key_id"),
}
_ON_THE_USER = {
    **links_to(["admin_get_user", "admin_create_key", "admin_list_keys"], "user_id"),
    **links_to(["admin_account", "admin_credit", "admin_set_organisation"], "account_id"),
}


# --- the caller's own keys --------------------------------------------------------------------------


@routes.post("/v1/api_keys")
@documented(
    "Create an API key",
    description="A new key for the caller. The secret `value` is in this answer only.",
    body=json_body(schemas.CREATE_KEY_REQUEST, example={"name": "laptop"}),
    reply=schemas.NEW_API_KEY,
    errors=[403],
    tags=["API keys"],
    extension=True,
    links=_ON_OWN_KEY,
)
async def create_own_key(request: web.Request) -> web.Response:
    principal = principal_of(request)
    body = await read_json_object(request, empty_allowed=True)
    if any(name in body for name in _LIMIT_FIELDS) and not principal.is_admin:
        raise ServiceError(
            ErrorKind.PERMISSION_DENIED,
            "Only an admin can set a key's limits.",
            param=next(name for name in _LIMIT_FIELDS if name in body),
            code="admin_only",
        )
    return await _create_key(request, principal.user_id, body)


@routes.get("/v1/api_keys")
@documented(
    "List API keys",
    description="The caller's keys, revoked ones included, newest first; secrets are never shown.",
    parameters=list(paging.PARAMETERS),
    reply=schemas.API_KEY_LIST,
    errors=[400],
    tags=["API keys"],
    extension=True,
)
async def list_own_keys(request: web.Request) -> web.Response:
    return await _list_keys(request, principal_of(request).user_id)


@routes.get("/v1/api_keys/{key_id}")
@documented(
    "Retrieve an API key",
    parameters=[schemas.KEY_ID],
    reply=schemas.API_KEY,
    errors=[404],
    tags=["API keys"],
    extension=True,
)
async def get_own_key(request: web.Request) -> web.Response:
    key = await request.app[IDENTITY].get_api_key(_key_id(request))
    if key is None or key.user_id != principal_of(request).user_id:
        raise _no_such_key()
    return web.json_response(key_resource(key))


@routes.delete("/v1/api_keys/{key_id}")
@documented(
    "Revoke an API key",
    description="The key stops working at once, on every replica.",
    parameters=[schemas.KEY_ID],
    reply=schemas.API_KEY,
    errors=[404],
    tags=["API keys"],
    extension=True,
)
async def revoke_own_key(request: web.Request) -> web.Response:
    key = await request.app[IDENTITY].revoke_api_key(_key_id(request), owner_id=principal_of(request).user_id)
    if key is None:
        raise _no_such_key()
    return web.json_response(key_resource(key))


# --- admin: users and anyone's keys -----------------------------------------------------------------


@routes.post("/v1/admin/users")
@documented(
    "Create a user",
    body=json_body(schemas.CREATE_USER_REQUEST, example={"name": "Carol", "role": "user"}),
    reply=schemas.USER,
    errors=[409],
    tags=["Admin"],
    extension=True,
    access=Access.ADMIN,
    links=_ON_THE_USER,
)
async def admin_create_user(request: web.Request) -> web.Response:
    require_admin(request)
    body = await read_json_object(request)
    user_id = body.get("id")
    if user_id is not None and (not isinstance(user_id, str) or not _USER_ID.match(user_id)):
        raise _invalid("id", "id must be 1 to 64 letters, digits, '_' or '-' (leave it out to get one).")
    role = body.get("role", "user")
    if role not in ROLES:
        raise _invalid("role", f"role must be one of {', '.join(ROLES)}.")
    user = await request.app[IDENTITY].create_user(
        name=_name(body.get("name"), required=True), role=role, user_id=user_id
    )
    if user is None:
        raise ServiceError(
            ErrorKind.ALREADY_EXISTS, "A user with this id exists.", param="id", code="user_exists"
        )
    return web.json_response(user_resource(user))


@routes.get("/v1/admin/users")
@documented(
    "List users",
    parameters=list(paging.PARAMETERS),
    reply=schemas.USER_LIST,
    errors=[400],
    tags=["Admin"],
    extension=True,
    access=Access.ADMIN,
)
async def admin_list_users(request: web.Request) -> web.Response:
    require_admin(request)
    limit, after = paging.page_of(request)
    users = await request.app[IDENTITY].list_users(limit=limit + 1, after=after)
    return web.json_response(paging.list_body([user_resource(user) for user in users], limit))


@routes.get("/v1/admin/users/{user_id}")
@documented(
    "Retrieve a user",
    parameters=[schemas.USER_ID],
    reply=schemas.USER,
    errors=[404],
    tags=["Admin"],
    extension=True,
    access=Access.ADMIN,
)
async def admin_get_user(request: web.Request) -> web.Response:
    require_admin(request)
    return web.json_response(user_resource(await _existing_user(request)))


@routes.post("/v1/admin/users/{user_id}/api_keys")
@documented(
    "Create an API key for a user",
    parameters=[schemas.USER_ID],
    body=json_body(schemas.CREATE_KEY_REQUEST, example={"name": "ci", "max_concurrent_jobs": 2}),
    reply=schemas.NEW_API_KEY,
    errors=[404],
    tags=["Admin"],
    extension=True,
    access=Access.ADMIN,
    links=_ON_ANY_KEY,
)
async def admin_create_key(request: web.Request) -> web.Response:
    require_admin(request)
    user = await _existing_user(request)
    return await _create_key(request, user.id, await read_json_object(request, empty_allowed=True))


@routes.get("/v1/admin/users/{user_id}/api_keys")
@documented(
    "List a user's API keys",
    parameters=[schemas.USER_ID, *paging.PARAMETERS],
    reply=schemas.API_KEY_LIST,
    errors=[400, 404],
    tags=["Admin"],
    extension=True,
    access=Access.ADMIN,
)
async def admin_list_keys(request: web.Request) -> web.Response:
    require_admin(request)
    return await _list_keys(request, (await _existing_user(request)).id)


@routes.delete("/v1/admin/api_keys/{key_id}")
@documented(
    "Revoke any API key",
    parameters=[schemas.KEY_ID],
    reply=schemas.API_KEY,
    errors=[404],
    tags=["Admin"],
    extension=True,
    access=Access.ADMIN,
)
async def admin_revoke_key(request: web.Request) -> web.Response:
    require_admin(request)
    key = await request.app[IDENTITY].revoke_api_key(_key_id(request))
    if key is None:
        raise _no_such_key()
    return web.json_response(key_resource(key))


@routes.patch("/v1/admin/api_keys/{key_id}")
@documented(
    "Set an API key's limits",
    parameters=[schemas.KEY_ID],
    body=json_body(schemas.KEY_LIMITS_REQUEST, example={"requests_per_minute": 600}),
    reply=schemas.API_KEY,
    errors=[404],
    tags=["Admin"],
    extension=True,
    access=Access.ADMIN,
)
async def admin_set_limits(request: web.Request) -> web.Response:
    require_admin(request)
    key_id = _key_id(request)
    body = await read_json_object(request)
    unknown = sorted(set(body) - set(_LIMIT_FIELDS))
    if unknown:
        raise _invalid(unknown[0], f"Only {' and '.join(_LIMIT_FIELDS)} can be changed.")
    rpm: int | Unset | None = UNSET
    if "requests_per_minute" in body:
        rpm = _requests_per_minute(body["requests_per_minute"])
    jobs: int | Unset = UNSET
    if "max_concurrent_jobs" in body:
        jobs = _max_concurrent_jobs(body["max_concurrent_jobs"])
    key = await request.app[IDENTITY].set_limits(key_id, requests_per_minute=rpm, max_concurrent_jobs=jobs)
    if key is None:
        raise _no_such_key()
    return web.json_response(key_resource(key))


# --- shared by both ---------------------------------------------------------------------------------


async def _create_key(request: web.Request, user_id: str, body: dict[str, Any]) -> web.Response:
    unknown = sorted(set(body) - {"name", *_LIMIT_FIELDS})
    if unknown:
        raise _invalid(unknown[0], f"Unknown field {unknown[0]!r}.")
    limits = KeyLimits(
        requests_per_minute=_requests_per_minute(body.get("requests_per_minute")),
        max_concurrent_jobs=_max_concurrent_jobs(body.get("max_concurrent_jobs", 0)),
    )
    name = _name(body.get("name"), required=False)
    identity = request.app[IDENTITY]
    if await identity.count_active_keys(user_id) >= MAX_ACTIVE_KEYS_PER_USER:
        raise ServiceError(
            ErrorKind.FAILED_PRECONDITION,
            f"A user can hold at most {MAX_ACTIVE_KEYS_PER_USER} active API keys; revoke one first.",
            code="too_many_api_keys",
        )
    key, secret = await identity.create_api_key(user_id=user_id, name=name, limits=limits)
    # The only time the secret leaves the gateway: it is stored hashed and cannot be shown again.
    return web.json_response({**key_resource(key), "value": secret})


async def _list_keys(request: web.Request, user_id: str) -> web.Response:
    limit, after = paging.page_of(request)
    keys = await request.app[IDENTITY].list_api_keys(user_id, limit=limit + 1, after=after)
    return web.json_response(paging.list_body([key_resource(key) for key in keys], limit))


def key_resource(key: ApiKey) -> dict[str, Any]:
    return {
        "object": "api_key",
        "id": key.id,
        "name": key.name,
        "owner_id": key.user_id,
        "prefix": key.display_prefix,
        "redacted_value": f"{key.display_prefix}…",
        "created_at": _unix(key.created_at),
        "last_used_at": _unix(key.last_used_at),
        "revoked_at": _unix(key.revoked_at),
        "requests_per_minute": key.limits.requests_per_minute,
        "max_concurrent_jobs": key.limits.max_concurrent_jobs,
    }


def user_resource(user: User) -> dict[str, Any]:
    return {
        "object": "user",
        "id": user.id,
        "name": user.name,
        "role": user.role,
        "created_at": _unix(user.created_at),
    }


def _unix(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment is not None else None


async def _existing_user(request: web.Request) -> User:
    user_id = request.match_info["user_id"]
    user = await request.app[IDENTITY].get_user(user_id) if _USER_ID.match(user_id) else None
    if user is None:
        raise ServiceError(ErrorKind.NOT_FOUND, "No such user.", param="user_id")
    return user


def _key_id(request: web.Request) -> str:
    key_id = request.match_info["key_id"]
    if not _KEY_ID.match(key_id):
        raise _no_such_key()
    return key_id


def _no_such_key() -> ServiceError:
    return ServiceError(ErrorKind.NOT_FOUND, "No such API key.", param="key_id")


def _name(value: Any, *, required: bool) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (not value.strip() and required):
        raise _invalid("name", "name must be a non-empty string.")
    if len(value) > _MAX_NAME_CHARS or not value.isprintable():
        raise _invalid("name", f"name must be at most {_MAX_NAME_CHARS} printable characters.")
    return value.strip()


def _requests_per_minute(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_REQUESTS_PER_MINUTE:
        raise _invalid(
            "requests_per_minute",
            f"requests_per_minute must be a whole number from 0 (unlimited) to {MAX_REQUESTS_PER_MINUTE}, "
            "or null for the gateway's default.",
        )
    return value


def _max_concurrent_jobs(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CONCURRENT_JOBS:
        raise _invalid(
            "max_concurrent_jobs",
            f"max_concurrent_jobs must be a whole number from 0 (unlimited) to {MAX_CONCURRENT_JOBS}.",
        )
    return value


def _invalid(param: str, message: str) -> ServiceError:
    return ServiceError(ErrorKind.INVALID_ARGUMENT, message, param=param, code="invalid_value")
