"""API key management, admin user routes and per-key rate limits, through real gateway servers
against real PostgreSQL. Two gateway servers on one database stand for two replicas."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import psycopg
import pytest

from services.gateway.tests.running_gateway import (
    Tenant,
    migrated,
    new_tenant,
    running_gateway,
    settings_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def database(fresh_database_url: str) -> str:
    return await migrated(fresh_database_url)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


@pytest.fixture
async def gateway(database: str) -> AsyncIterator[str]:
    async with running_gateway(settings_for(database)) as url:
        yield url


async def call(
    http: aiohttp.ClientSession, method: str, url: str, who: Tenant | str | None, **kwargs: Any
) -> tuple[int, Any, Any]:
    headers = dict(kwargs.pop("headers", {}))
    if isinstance(who, Tenant):
        headers.update(who.auth)
    elif isinstance(who, str):
        headers["Authorization"] = f"Bearer {who}"
    async with http.request(method, url, headers=headers, **kwargs) as response:
        body = await response.json(content_type=None)
        assert "X-Request-Id" in response.headers
        return response.status, body, response.headers


def assert_error(status: int, body: Any, expected_status: int, code: str | None = None) -> dict[str, Any]:
    assert status == expected_status, body
    assert set(body) == {"error"}
    assert {"message", "type", "param", "code"} <= set(body["error"])
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


# --- a user's own keys ------------------------------------------------------------------------------


async def test_a_new_key_shows_its_secret_once_and_only_its_prefix_afterwards(http, gateway, database):
    alice = await new_tenant(database)
    status, created, _ = await call(http, "POST", f"{gateway}/v1/api_keys", alice, json={"name": "laptop"})
    assert status == 200, created
    secret = created["value"]
    assert secret.startswith("vf_") and len(secret) > 40
    assert created["id"] == f"key_{hashlib.sha256(secret.encode()).hexdigest()[:16]}"
    assert created["prefix"] == secret[:8] and created["redacted_value"] == secret[:8] + "…"
    assert created["name"] == "laptop" and created["owner_id"] == alice.user_id
    assert created["revoked_at"] is None and created["last_used_at"] is None

    status, listed, _ = await call(http, "GET", f"{gateway}/v1/api_keys", alice)
    assert status == 200
    mine = {key["id"]: key for key in listed["data"]}
    assert created["id"] in mine and len(mine) == 2  # the new key and the one alice used
    assert secret not in str(listed)
    assert "value" not in mine[created["id"]]
    # The stored form is the hash; the secret is nowhere in the database.
    with psycopg.connect(database) as conn:
        dump = str(conn.execute("SELECT * FROM gateway.api_keys").fetchall())
    assert secret not in dump and hashlib.sha256(secret.encode()).hexdigest() in dump


async def test_the_new_key_works_and_records_its_last_use(http, gateway, database):
    alice = await new_tenant(database)
    _, created, _ = await call(http, "POST", f"{gateway}/v1/api_keys", alice, json={})
    status, _, _ = await call(http, "GET", f"{gateway}/v1/api_keys", created["value"])
    assert status == 200
    _, again, _ = await call(http, "GET", f"{gateway}/v1/api_keys/{created['id']}", alice)
    assert isinstance(again["last_used_at"], int) and again["last_used_at"] >= created["created_at"]


async def test_a_revoked_key_is_refused_at_once_by_every_replica(http, database):
    alice = await new_tenant(database)
    async with running_gateway(settings_for(database)) as one, running_gateway(settings_for(database)) as two:
        _, created, _ = await call(http, "POST", f"{one}/v1/api_keys", alice, json={"name": "ci"})
        key = created["value"]
        for replica in (one, two):
            assert (await call(http, "GET", f"{replica}/v1/api_keys", key))[0] == 200
        status, revoked, _ = await call(http, "DELETE", f"{one}/v1/api_keys/{created['id']}", alice)
        assert status == 200 and isinstance(revoked["revoked_at"], int)
        for replica in (two, one):
            status, body, _ = await call(http, "GET", f"{replica}/v1/api_keys", key)
            error = assert_error(status, body, 401, "invalid_api_key")
            assert key not in error["message"]
        # Alice's other key still works, and the list shows the revoked one as revoked.
        _, listed, _ = await call(http, "GET", f"{two}/v1/api_keys", alice)
        assert {k["id"]: k["revoked_at"] is not None for k in listed["data"]}[created["id"]]


async def test_another_users_key_is_404_like_a_missing_one(http, gateway, database):
    alice, bob = await new_tenant(database), await new_tenant(database)
    _, created, _ = await call(http, "POST", f"{gateway}/v1/api_keys", alice, json={})
    for method in ("GET", "DELETE"):
        for key_id in (created["id"], "key_0000000000000000", "not-a-key-id", "k" * 500):
            status, body, _ = await call(http, method, f"{gateway}/v1/api_keys/{key_id}", bob)
            assert_error(status, body, 404)
    assert (await call(http, "GET", f"{gateway}/v1/api_keys", created["value"]))[0] == 200
    _, bobs, _ = await call(http, "GET", f"{gateway}/v1/api_keys", bob)
    assert created["id"] not in {key["id"] for key in bobs["data"]}


@pytest.mark.parametrize(
    "body, param",
    [
        ({"name": 7}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "tab\there"}, "name"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_bad_key_requests_are_400(http, gateway, database, body, param):
    alice = await new_tenant(database)
    status, answer, _ = await call(http, "POST", f"{gateway}/v1/api_keys", alice, json=body)
    assert assert_error(status, answer, 400)["param"] == param


async def test_unreadable_bodies_and_bad_paging_are_400(http, gateway, database):
    alice = await new_tenant(database)
    status, body, _ = await call(
        http,
        "POST",
        f"{gateway}/v1/api_keys",
        alice,
        data=b"{nope",
        headers={"Content-Type": "application/json"},
    )
    assert_error(status, body, 400)
    for query in ("limit=0", "limit=101", "limit=x", "after=" + "a" * 100):
        status, body, _ = await call(http, "GET", f"{gateway}/v1/api_keys?{query}", alice)
        assert_error(status, body, 400)


async def test_keys_list_in_pages(http, gateway, database):
    alice = await new_tenant(database)
    made = [
        (await call(http, "POST", f"{gateway}/v1/api_keys", alice, json={"name": f"k{n}"}))[1]
        for n in range(3)
    ]
    seen: list[str] = []
    after = ""
    while True:
        _, page, _ = await call(http, "GET", f"{gateway}/v1/api_keys?limit=2{after}", alice)
        seen += [key["id"] for key in page["data"]]
        if not page["has_more"]:
            break
        after = f"&after={page['last_id']}"
    assert len(seen) == len(set(seen)) == 4
    assert seen[:3] == [key["id"] for key in reversed(made)]  # newest first


async def test_only_admins_set_limits(http, gateway, database):
    alice = await new_tenant(database)
    status, body, _ = await call(
        http, "POST", f"{gateway}/v1/api_keys", alice, json={"requests_per_minute": 100000}
    )
    assert assert_error(status, body, 403, "admin_only")["param"] == "requests_per_minute"
    admin = await new_tenant(database, role="admin")
    status, body, _ = await call(
        http,
        "POST",
        f"{gateway}/v1/api_keys",
        admin,
        json={"requests_per_minute": 5, "max_concurrent_jobs": 2},
    )
    assert status == 200 and (body["requests_per_minute"], body["max_concurrent_jobs"]) == (5, 2)


# --- admin routes -----------------------------------------------------------------------------------


async def test_admins_create_users_and_their_keys(http, gateway, database):
    admin = await new_tenant(database, role="admin")
    status, user, _ = await call(http, "POST", f"{gateway}/v1/admin/users", admin, json={"name": "Carol"})
    assert status == 200 and user["role"] == "user" and user["id"].startswith("user_")
    status, named, _ = await call(
        http,
        "POST",
        f"{gateway}/v1/admin/users",
        admin,
        json={"id": f"user_dave_{uuid.uuid4().hex[:6]}", "name": "Dave", "role": "admin"},
    )
    assert status == 200 and named["role"] == "admin"
    status, body, _ = await call(
        http, "POST", f"{gateway}/v1/admin/users", admin, json={"id": named["id"], "name": "Again"}
    )
    assert_error(status, body, 409, "user_exists")

    assert (await call(http, "GET", f"{gateway}/v1/admin/users/{user['id']}", admin))[1] == user
    status, body, _ = await call(http, "GET", f"{gateway}/v1/admin/users/user_nobody", admin)
    assert_error(status, body, 404)
    _, listing, _ = await call(http, "GET", f"{gateway}/v1/admin/users?limit=100", admin)
    assert {user["id"], named["id"], admin.user_id} <= {u["id"] for u in listing["data"]}

    status, key, _ = await call(
        http,
        "POST",
        f"{gateway}/v1/admin/users/{user['id']}/api_keys",
        admin,
        json={"name": "carol's", "max_concurrent_jobs": 1},
    )
    assert status == 200 and key["owner_id"] == user["id"] and key["max_concurrent_jobs"] == 1
    _, keys, _ = await call(http, "GET", f"{gateway}/v1/admin/users/{user['id']}/api_keys", admin)
    assert [k["id"] for k in keys["data"]] == [key["id"]]
    # Carol's key is hers: her own list shows it.
    _, own, _ = await call(http, "GET", f"{gateway}/v1/api_keys", key["value"])
    assert [k["id"] for k in own["data"]] == [key["id"]]
    status, body, _ = await call(
        http, "POST", f"{gateway}/v1/admin/users/user_nobody/api_keys", admin, json={}
    )
    assert_error(status, body, 404)


async def test_admins_change_limits_and_revoke_anyones_key(http, gateway, database):
    admin, alice = await new_tenant(database, role="admin"), await new_tenant(database)
    _, key, _ = await call(http, "POST", f"{gateway}/v1/api_keys", alice, json={})
    url = f"{gateway}/v1/admin/api_keys/{key['id']}"
    status, changed, _ = await call(http, "PATCH", url, admin, json={"requests_per_minute": 7})
    assert status == 200 and (changed["requests_per_minute"], changed["max_concurrent_jobs"]) == (7, 0)
    _, changed, _ = await call(http, "PATCH", url, admin, json={"max_concurrent_jobs": 3})
    assert (changed["requests_per_minute"], changed["max_concurrent_jobs"]) == (7, 3)  # only what was sent
    _, changed, _ = await call(http, "PATCH", url, admin, json={"requests_per_minute": None})
    assert changed["requests_per_minute"] is None  # back to the gateway's default
    for bad in (
        {"requests_per_minute": -1},
        {"max_concurrent_jobs": True},
        {"max_concurrent_jobs": None},
        {"name": "x"},
    ):
        status, body, _ = await call(http, "PATCH", url, admin, json=bad)
        assert_error(status, body, 400)
    status, body, _ = await call(
        http,
        "PATCH",
        f"{gateway}/v1/admin/api_keys/key_0000000000000000",
        admin,
        json={"max_concurrent_jobs": 1},
    )
    assert_error(status, body, 404)
    status, revoked, _ = await call(http, "DELETE", url, admin)
    assert status == 200 and revoked["revoked_at"] is not None
    assert_error(*(await call(http, "GET", f"{gateway}/v1/api_keys", key["value"]))[:2], 401)


async def test_admin_routes_are_403_for_users(http, gateway, database):
    alice = await new_tenant(database)
    _, key, _ = await call(http, "POST", f"{gateway}/v1/api_keys", alice, json={})
    for method, path, body in (
        ("POST", "/v1/admin/users", {"name": "Eve", "role": "admin"}),
        ("GET", "/v1/admin/users", None),
        ("GET", f"/v1/admin/users/{alice.user_id}", None),
        ("POST", f"/v1/admin/users/{alice.user_id}/api_keys", {}),
        ("GET", f"/v1/admin/users/{alice.user_id}/api_keys", None),
        ("PATCH", f"/v1/admin/api_keys/{key['id']}", {"requests_per_minute": 0}),
        ("DELETE", f"/v1/admin/api_keys/{key['id']}", None),
    ):
        status, answer, _ = await call(http, method, f"{gateway}{path}", alice, json=body)
        assert_error(status, answer, 403, "admin_only")


# --- rate limits ------------------------------------------------------------------------------------


async def test_the_rate_limit_is_shared_by_replicas_and_answers_like_openai(http, database):
    admin, alice = await new_tenant(database, role="admin"), await new_tenant(database)
    async with running_gateway(settings_for(database)) as one, running_gateway(settings_for(database)) as two:
        _, key, _ = await call(
            http,
            "POST",
            f"{one}/v1/admin/users/{alice.user_id}/api_keys",
            admin,
            json={"requests_per_minute": 3},
        )
        remaining = []
        for replica in (one, two, one):
            status, _, headers = await call(http, "GET", f"{replica}/v1/api_keys", key["value"])
            assert status == 200
            assert headers["x-ratelimit-limit-requests"] == "3"
            remaining.append(int(headers["x-ratelimit-remaining-requests"]))
        assert remaining == [2, 1, 0]
        for replica in (two, one):
            status, body, headers = await call(http, "GET", f"{replica}/v1/api_keys", key["value"])
            error = assert_error(status, body, 429, "rate_limit_exceeded")
            assert error["type"] == "rate_limit_error"
            retry_after = headers["Retry-After"]
            assert retry_after.isdigit() and 1 <= int(retry_after) <= 20  # a token every 20 s at 3/min
            assert headers["x-ratelimit-remaining-requests"] == "0"
        # Another key of the same user has its own budget.
        status, _, headers = await call(http, "GET", f"{two}/v1/api_keys", alice)
        assert status == 200 and int(headers["x-ratelimit-remaining-requests"]) > 0


async def test_a_limit_of_zero_and_a_default_of_zero_mean_unlimited(http, database):
    admin = await new_tenant(database, role="admin")
    async with running_gateway(settings_for(database, default_requests_per_minute=0)) as url:
        for _ in range(3):
            status, _, headers = await call(http, "GET", f"{url}/v1/api_keys", admin)
            assert status == 200 and "x-ratelimit-limit-requests" not in headers
    async with running_gateway(settings_for(database, default_requests_per_minute=2)) as url:
        _, key, _ = await call(http, "POST", f"{url}/v1/api_keys", admin, json={"requests_per_minute": 0})
        statuses = [(await call(http, "GET", f"{url}/v1/api_keys", key["value"]))[0] for _ in range(4)]
        assert statuses == [200] * 4
        # The admin's own key follows the default of two a minute (it already spent one above).
        assert (await call(http, "GET", f"{url}/v1/api_keys", admin))[0] == 200
        assert (await call(http, "GET", f"{url}/v1/api_keys", admin))[0] == 429
