"""Billing through the gateway: balance, quotes, cancelling for free, admin top-ups, and refusals."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

import aiohttp
import openai
import pytest

from simulator.config import Settings as SimulatorSettings
from tests.conftest import running_stack
from tests.helpers import balance, credit, new_user

pytestmark = pytest.mark.e2e


async def _call(stack, user: str, method: str, path: str, **kwargs):
    headers = {"Authorization": f"Bearer {stack.key(user)}", **kwargs.pop("headers", {})}
    async with aiohttp.ClientSession() as http:
        async with http.request(method, f"{stack.gateway_url}{path}", headers=headers, **kwargs) as response:
            return response.status, await response.json()


@pytest.fixture(scope="module")
async def slow_stack(infrastructure):
    # Videos take long enough that there is always time to cancel them.
    async with running_stack(infrastructure, SimulatorSettings(generation_seconds=60)) as stack:
        yield stack


async def test_balance_shows_available_and_held_credits(slow_stack):
    stack = slow_stack
    await credit(stack.billing_address, "user_bob", 300, request_id=f"topup-{uuid.uuid4()}")
    status, body = await _call(stack, "user_bob", "GET", "/v1/billing/balance")
    assert status == 200
    assert body == {
        "object": "billing.balance",
        "account_id": "user_bob",
        "available": body["available"],
        "held": body["held"],
        "currency": "credits",
    }
    assert (body["available"], body["held"]) == await balance(stack.billing_address, "user_bob")


@pytest.mark.parametrize(
    ("request_body", "amount"),
    [
        ({"model": "sora-2", "prompt": "a cat", "seconds": "8", "size": "1280x720"}, 8 * 10),
        ({"model": "sora-2-pro", "prompt": "a cat", "seconds": "12", "size": "720x1280"}, 12 * 30),
        ({"model": "sora-2-pro", "prompt": "a cat", "seconds": "8", "size": "1792x1024"}, 8 * 50),
        ({"model": "sora-2-pro", "prompt": "a cat", "seconds": "4", "size": "1920x1080"}, 4 * 70),
        ({"prompt": "a cat"}, 4 * 10),  # the API's defaults: sora-2, 4 s, 720x1280
    ],
)
async def test_a_quote_prices_the_create_body_at_the_published_rates(slow_stack, request_body, amount):
    status, body = await _call(slow_stack, "user_broke", "POST", "/v1/billing/quote", json=request_body)
    assert status == 200
    assert body["amount"] == amount and body["currency"] == "credits"
    assert body["sufficient"] is False and body["available"] == 0


@pytest.mark.parametrize(
    ("request_body", "param"),
    [
        ({"model": "sora-9", "prompt": "a cat"}, "model"),
        ({"prompt": "a cat", "seconds": "5"}, "seconds"),
        ({"prompt": "a cat", "size": "1920x1080"}, "size"),
        ({"prompt": ""}, "prompt"),
    ],
)
async def test_a_quote_refuses_what_create_would_refuse(slow_stack, request_body, param):
    status, body = await _call(slow_stack, "user_broke", "POST", "/v1/billing/quote", json=request_body)
    assert status == 400
    assert body["error"]["param"] == param


async def test_a_cancelled_video_costs_nothing(slow_stack):
    stack = slow_stack
    await credit(stack.billing_address, "user_alice", 1000, request_id=f"topup-{uuid.uuid4()}")
    before = await balance(stack.billing_address, "user_alice")
    client = openai.OpenAI(base_url=f"{stack.gateway_url}/v1", api_key=stack.key("user_alice"), max_retries=0)
    video = await asyncio.to_thread(
        client.videos.create, model="sora-2", prompt="A long, slow sunset", seconds="8"
    )
    assert await balance(stack.billing_address, "user_alice") == (before[0] - 80, before[1] + 80)

    status, cancelled = await _call(stack, "user_alice", "POST", f"/v1/videos/{video.id}/cancel")
    assert status == 200 and cancelled["error"]["code"] == "cancelled"
    # Bob cannot cancel (or even see) Alice's video.
    status, body = await _call(stack, "user_bob", "POST", f"/v1/videos/{video.id}/cancel")
    assert status == 404 and body["error"]["code"] == "video_not_found"

    final = await asyncio.to_thread(client.videos.poll, video.id, poll_interval_ms=100)
    assert final.status == "failed" and final.error.code == "cancelled"
    assert await balance(stack.billing_address, "user_alice") == before
    # Cancelling again changes nothing and answers the same.
    status, again = await _call(stack, "user_alice", "POST", f"/v1/videos/{video.id}/cancel")
    assert status == 200 and again["status"] == "failed" and again["error"]["code"] == "cancelled"
    assert await balance(stack.billing_address, "user_alice") == before


async def test_a_finished_video_cannot_be_cancelled(stack):
    await credit(stack.billing_address, "user_alice", 100, request_id=f"topup-{uuid.uuid4()}")
    client = openai.OpenAI(base_url=f"{stack.gateway_url}/v1", api_key=stack.key("user_alice"), max_retries=0)
    video = await asyncio.to_thread(
        client.videos.create_and_poll, prompt="A quick wave", poll_interval_ms=200
    )
    assert video.status == "completed"
    status, body = await _call(stack, "user_alice", "POST", f"/v1/videos/{video.id}/cancel")
    assert status == 400 and body["error"]["code"] == "video_not_cancellable"


async def test_admins_top_up_any_account_once_per_idempotency_key(slow_stack):
    stack = slow_stack
    account = f"user_{uuid.uuid4().hex[:8]}"
    key = {"Idempotency-Key": f"topup-{uuid.uuid4()}"}
    body = {"amount": 250, "reason": "goodwill credit"}
    first = await _call(
        stack, "user_admin", "POST", f"/v1/admin/accounts/{account}/credits", json=body, headers=key
    )
    again = await _call(
        stack, "user_admin", "POST", f"/v1/admin/accounts/{account}/credits", json=body, headers=key
    )
    assert first[0] == 200 and first[1]["available"] == 250
    assert again[0] == 200 and again[1]["available"] == 250
    assert await balance(stack.billing_address, account) == (250, 0)


@pytest.mark.parametrize(
    ("body", "headers", "param"),
    [
        ({"amount": 0, "reason": "x"}, {"Idempotency-Key": "k1"}, "amount"),
        ({"amount": -5, "reason": "x"}, {"Idempotency-Key": "k2"}, "amount"),
        ({"amount": 1.5, "reason": "x"}, {"Idempotency-Key": "k3"}, "amount"),
        ({"amount": 5, "reason": ""}, {"Idempotency-Key": "k4"}, "reason"),
        ({"amount": 5, "reason": "x"}, {}, "Idempotency-Key"),
    ],
)
async def test_bad_top_ups_are_refused_with_the_field_named(slow_stack, body, headers, param):
    status, answer = await _call(
        slow_stack, "user_admin", "POST", "/v1/admin/accounts/user_bob/credits", json=body, headers=headers
    )
    assert status == 400 and answer["error"]["param"] == param


async def test_admin_routes_refuse_ordinary_keys(slow_stack):
    for method, path in (
        ("POST", "/v1/admin/accounts/user_bob/credits"),
        ("GET", "/v1/admin/accounts/user_bob"),
        ("PUT", "/v1/admin/api_keys/key_0123456789abcdef/budget"),
    ):
        status, body = await _call(
            slow_stack,
            "user_alice",
            method,
            path,
            json={"amount": 1, "reason": "x"},
            headers={"Idempotency-Key": "k"},
        )
        assert status == 403, path
        assert body["error"]["code"] == "admin_only"


async def test_a_quote_creates_no_video_and_holds_nothing(slow_stack):
    status, _ = await _call(
        slow_stack, "user_broke", "POST", "/v1/billing/quote", json={"prompt": "a quiet lake"}
    )
    assert status == 200
    status, listing = await _call(slow_stack, "user_broke", "GET", "/v1/videos")
    assert status == 200 and listing["data"] == []
    assert await balance(slow_stack.billing_address, "user_broke") == (0, 0)


def _key_id(api_key: str) -> str:
    return "key_" + hashlib.sha256(api_key.encode()).hexdigest()[:16]


async def test_the_ledger_shows_the_credit_the_hold_and_the_charge(stack):
    account = await new_user(stack, "ledger", credits=300)
    client = openai.OpenAI(base_url=f"{stack.gateway_url}/v1", api_key=stack.key(account), max_retries=0)
    video = await asyncio.to_thread(
        client.videos.create_and_poll, prompt="A spinning top", poll_interval_ms=200
    )
    assert video.status == "completed"
    status, ledger = await _call(stack, account, "GET", "/v1/billing/ledger?limit=3")
    assert status == 200
    newest = ledger["data"]
    assert [entry["type"] for entry in newest] == ["charge", "hold", "credit"]
    charge, hold, topup = newest
    assert (hold["available_delta"], hold["held_delta"]) == (-40, 40)
    assert (charge["available_delta"], charge["held_delta"]) == (0, -40)
    assert charge["video_id"] == hold["video_id"] == video.id
    assert topup["available_delta"] == 300
    assert ledger["has_more"] is False and ledger["next_after"] is None
    # Two pages of two: the cursor continues exactly where the first page stopped.
    status, first = await _call(stack, account, "GET", "/v1/billing/ledger", params={"limit": "2"})
    assert status == 200 and first["has_more"] is True
    status, second = await _call(
        stack, account, "GET", "/v1/billing/ledger", params={"limit": "2", "after": first["next_after"]}
    )
    assert status == 200 and second["has_more"] is False
    assert [entry["id"] for entry in first["data"] + second["data"]] == [entry["id"] for entry in newest]
    for bad in ("0", "101", "abc", "²"):
        status, body = await _call(stack, account, "GET", f"/v1/billing/ledger?limit={bad}")
        assert status == 400 and body["error"]["param"] == "limit"


async def test_an_api_key_over_its_daily_budget_is_refused_with_402(stack):
    account = await new_user(stack, "budget")
    key_id = _key_id(stack.key(account))
    status, budget = await _call(
        stack,
        "user_admin",
        "PUT",
        f"/v1/admin/api_keys/{key_id}/budget",
        json={"daily_limit": 50, "monthly_limit": 0},
    )
    assert status == 200 and budget["daily_limit"] == 50
    client = openai.OpenAI(base_url=f"{stack.gateway_url}/v1", api_key=stack.key(account), max_retries=0)
    try:
        await asyncio.to_thread(client.videos.create, prompt="First of the day")  # 40 credits
        with pytest.raises(openai.APIStatusError) as raised:
            await asyncio.to_thread(client.videos.create, prompt="One too many")
        assert raised.value.status_code == 402
        assert raised.value.body["code"] == "budget_exceeded"
        assert "day" in raised.value.body["message"]
    finally:
        await _call(
            stack,
            "user_admin",
            "PUT",
            f"/v1/admin/api_keys/{key_id}/budget",
            json={"daily_limit": 0, "monthly_limit": 0},
        )


async def test_members_of_an_organisation_spend_from_its_account(stack):
    member = await new_user(stack, "member", credits=0)
    organisation = f"org_{uuid.uuid4().hex[:8]}"
    status, joined = await _call(
        stack,
        "user_admin",
        "PUT",
        f"/v1/admin/accounts/{member}/organisation",
        json={"organisation_id": organisation},
    )
    assert status == 200 and joined["organisation_id"] == organisation
    await credit(stack.billing_address, organisation, 500, request_id=f"org-{uuid.uuid4()}")
    status, shown = await _call(stack, member, "GET", "/v1/billing/balance")
    assert status == 200 and (shown["account_id"], shown["available"]) == (organisation, 500)

    client = openai.OpenAI(base_url=f"{stack.gateway_url}/v1", api_key=stack.key(member), max_retries=0)
    video = await asyncio.to_thread(
        client.videos.create_and_poll, prompt="A team photo", poll_interval_ms=200
    )
    assert video.status == "completed"
    assert await balance(stack.billing_address, organisation) == (460, 0)
    status, view = await _call(stack, "user_admin", "GET", f"/v1/admin/accounts/{organisation}")
    assert status == 200
    charge = next(entry for entry in view["ledger"]["data"] if entry["type"] == "charge")
    assert (charge["video_id"], charge["initiated_by"]) == (video.id, member)
    status, refused = await _call(
        stack,
        "user_admin",
        "PUT",
        f"/v1/admin/accounts/{organisation}/organisation",
        json={"organisation_id": member},
    )
    assert status == 400 and refused["error"]["code"] == "account_is_organisation"
