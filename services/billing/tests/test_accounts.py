"""ListLedger, organisations and per-key budgets over a real gRPC port against real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from servicekit.errors import ErrorKind, ServiceError
from vidflow.billing.v1 import billing_pb2
from vidflow.billing.v1 import billing_service_pb2 as pb

from services.billing.tests.harness import PRO_4S, Billing, new_id, refused

pytestmark = pytest.mark.integration

KIND = billing_pb2.LedgerEntryKind


async def ledger(
    billing: Billing, account: str, page_size: int = 0, token: str = ""
) -> pb.ListLedgerResponse:
    return await billing.stub.ListLedger(
        pb.ListLedgerRequest(account_id=account, page_size=page_size, page_token=token)
    )


async def join(billing: Billing, account: str, organisation: str) -> billing_pb2.Account:
    request = pb.SetOrganisationRequest(account_id=account, organisation_id=organisation)
    return (await billing.stub.SetOrganisation(request)).account


async def set_budget(billing: Billing, key: str, daily: int = 0, monthly: int = 0) -> billing_pb2.Budget:
    budget = billing_pb2.Budget(api_key_id=key, daily_limit=daily, monthly_limit=monthly)
    return (await billing.stub.SetBudget(pb.SetBudgetRequest(budget=budget))).budget


async def spent(billing: Billing, key: str) -> tuple[int, int]:
    response = await billing.stub.GetBudget(pb.GetBudgetRequest(api_key_id=key))
    return response.spent_today, response.spent_this_month


# --- the one-account race -------------------------------------------------------------------------


async def test_100_concurrent_reserves_on_an_account_that_pays_for_10_give_10_holds(billing: Billing) -> None:
    account = new_id("acct")
    await billing.credit(account, 10 * 80)
    results = await asyncio.gather(
        *(billing.reserve(account, new_id("job")) for _ in range(100)), return_exceptions=True
    )
    holds = [r for r in results if isinstance(r, billing_pb2.Hold)]
    refusals = [r for r in results if not isinstance(r, billing_pb2.Hold)]
    assert len(holds) == 10
    assert len(refusals) == 90
    assert all(isinstance(r, ServiceError) and r.kind is ErrorKind.INSUFFICIENT_QUOTA for r in refusals)
    assert {r.code for r in refusals if isinstance(r, ServiceError)} == {"insufficient_quota"}
    assert await billing.balance(account) == (0, 800)
    assert await billing.store.audit() == []


# --- ListLedger -----------------------------------------------------------------------------------


async def test_list_ledger_pages_newest_first_with_per_account_deltas(billing: Billing) -> None:
    account = new_id("acct")
    await billing.credit(account, 1000)
    captured, released = new_id("job"), new_id("job")
    await billing.reserve(account, captured)
    await billing.capture(captured, 5)
    await billing.reserve(account, released, PRO_4S)
    await billing.release(released, "cancelled")
    for _ in range(20):
        await billing.credit(account, 1)

    first = await ledger(billing, account)
    assert len(first.entries) == 20  # the default page size
    assert first.next_page_token
    second = await ledger(billing, account, token=first.next_page_token)
    assert len(second.entries) == 5 and second.next_page_token == ""
    entries = [*first.entries, *second.entries]
    assert len({e.id for e in entries}) == 25
    assert [e.create_time.ToDatetime() for e in entries] == sorted(
        (e.create_time.ToDatetime() for e in entries), reverse=True
    )
    assert all(e.account_id == account and e.kind == KIND.LEDGER_ENTRY_KIND_CREDIT for e in entries[:20])
    oldest_five = [(e.kind, e.available_delta, e.held_delta, e.job_id, e.reason) for e in entries[20:]]
    assert oldest_five == [
        (KIND.LEDGER_ENTRY_KIND_RELEASE, 200, -200, released, "cancelled"),
        (KIND.LEDGER_ENTRY_KIND_RESERVE, -200, 200, released, "reserve"),
        (KIND.LEDGER_ENTRY_KIND_CAPTURE, 30, -80, captured, "capture"),  # 50 of 80 charged
        (KIND.LEDGER_ENTRY_KIND_RESERVE, -80, 80, captured, "reserve"),
        (KIND.LEDGER_ENTRY_KIND_CREDIT, 1000, 0, "", "test top-up"),
    ]
    # The deltas add up to the balance.
    available, held = await billing.balance(account)
    assert sum(e.available_delta for e in entries) == available == 1020 - 50
    assert sum(e.held_delta for e in entries) == held == 0

    # Small pages walk the same entries in the same order.
    walked: list[billing_pb2.LedgerEntry] = []
    token = ""
    while True:
        page = await ledger(billing, account, page_size=7, token=token)
        assert len(page.entries) <= 7
        walked.extend(page.entries)
        token = page.next_page_token
        if not token:
            break
    assert [e.id for e in walked] == [e.id for e in entries]
    # Above the maximum is coerced to 100 (AIP-158).
    assert len((await ledger(billing, account, page_size=1000)).entries) == 25


async def test_list_ledger_unknown_account_is_empty_and_bad_requests_are_refused(billing: Billing) -> None:
    empty = await ledger(billing, new_id("acct"))
    assert list(empty.entries) == [] and empty.next_page_token == ""

    account, other = new_id("acct"), new_id("acct")
    for _ in range(3):
        await billing.credit(account, 5)
    token = (await ledger(billing, account, page_size=1)).next_page_token
    assert token
    error = await refused(ledger(billing, account, page_size=-1))
    assert (error.kind, error.param) == (ErrorKind.INVALID_ARGUMENT, "page_size")
    for bad in ("not-a-token", token[:-2] + "zz", "@@@"):
        error = await refused(ledger(billing, account, token=bad))
        assert (error.kind, error.param) == (ErrorKind.INVALID_ARGUMENT, "page_token")
    error = await refused(ledger(billing, other, token=token))  # another account's token
    assert (error.kind, error.param) == (ErrorKind.INVALID_ARGUMENT, "page_token")


# --- organisations --------------------------------------------------------------------------------


async def test_a_member_spends_from_the_organisation_and_settles_there(billing: Billing) -> None:
    org, member = new_id("org"), new_id("user")
    await billing.credit(member, 1000)  # the member's own credits stay its own
    account = await join(billing, member, org)
    assert (account.id, account.organisation_id) == (member, org)
    error = await refused(billing.reserve(member, new_id("job")))
    assert error.kind is ErrorKind.INSUFFICIENT_QUOTA  # the organisation has nothing yet
    assert org in error.message and error.metadata == {"needed": "80", "available": "0"}

    await billing.credit(org, 500)
    captured, released = new_id("job"), new_id("job")
    hold = await billing.reserve(member, captured)
    assert (hold.account_id, hold.amount) == (org, 80)
    assert await billing.reserve(member, captured) == hold  # a repeat
    await billing.reserve(member, released)
    assert await billing.balance(org) == (340, 160)
    assert await billing.own_balance(member) == (1000, 0)
    # GetBalance answers with the balance the member spends from, named by its account.
    balance = (await billing.stub.GetBalance(pb.GetBalanceRequest(account_id=member))).balance
    assert (balance.account_id, balance.available, balance.held) == (org, 340, 160)

    assert (await billing.capture(captured, 8)).captured_amount == 80
    await billing.release(released, "failed")
    assert await billing.balance(org) == (420, 0)
    assert await billing.own_balance(member) == (1000, 0)

    entries = (await ledger(billing, org)).entries
    assert [(e.kind, e.initiated_by) for e in entries[:4]] == [
        (KIND.LEDGER_ENTRY_KIND_RELEASE, member),
        (KIND.LEDGER_ENTRY_KIND_CAPTURE, member),
        (KIND.LEDGER_ENTRY_KIND_RESERVE, member),
        (KIND.LEDGER_ENTRY_KIND_RESERVE, member),
    ]
    assert (entries[4].kind, entries[4].initiated_by) == (KIND.LEDGER_ENTRY_KIND_CREDIT, "")
    # The member's own ledger shows only its own credit.
    assert [e.kind for e in (await ledger(billing, member)).entries] == [KIND.LEDGER_ENTRY_KIND_CREDIT]
    assert await billing.store.audit() == []


async def test_moving_a_member_mid_job_settles_on_the_account_that_held(billing: Billing) -> None:
    first_org, second_org, member = new_id("org"), new_id("org"), new_id("user")
    await billing.credit(first_org, 1000)
    await billing.credit(second_org, 1000)
    await billing.credit(member, 1000)
    await join(billing, member, first_org)
    captured, released, leaving = new_id("job"), new_id("job"), new_id("job")
    for job in (captured, released, leaving):
        await billing.reserve(member, job)
    assert await billing.balance(first_org) == (760, 240)

    await join(billing, member, second_org)
    # A retried reserve of a job placed before the move is the same hold, on the first org.
    assert (await billing.reserve(member, captured)).account_id == first_org
    assert (await billing.capture(captured, 4)).account_id == first_org
    assert (await billing.release(released)).account_id == first_org
    assert await billing.balance(first_org) == (1000 - 40 - 80, 80)
    assert await billing.balance(second_org) == (1000, 0)

    account = await join(billing, member, "")  # leaves: pays for itself again
    assert account.organisation_id == ""
    assert (await billing.capture(leaving, 8)).account_id == first_org
    assert await billing.balance(first_org) == (1000 - 40 - 80, 0)
    assert (await billing.reserve(member, new_id("job"))).account_id == member
    assert await billing.balance(member) == (920, 80)
    assert await billing.store.audit() == []


async def test_organisations_are_one_level_deep(billing: Billing) -> None:
    org, member, outsider = new_id("org"), new_id("user"), new_id("user")
    await join(billing, member, org)
    error = await refused(join(billing, org, new_id("org")))
    assert (error.kind, error.code) == (ErrorKind.FAILED_PRECONDITION, "account_is_organisation")
    error = await refused(join(billing, outsider, member))
    assert (error.kind, error.code) == (ErrorKind.FAILED_PRECONDITION, "organisation_is_member")
    error = await refused(join(billing, outsider, outsider))
    assert (error.kind, error.param) == (ErrorKind.INVALID_ARGUMENT, "organisation_id")
    assert (await join(billing, member, org)).organisation_id == org  # a repeat
    # Organisations are accounts: credit and spend directly.
    await billing.credit(org, 100)
    assert (await billing.reserve(org, new_id("job"))).account_id == org
    assert await billing.store.audit() == []


# --- budgets --------------------------------------------------------------------------------------


async def test_a_daily_budget_refuses_with_the_numbers_and_resets_next_day(billing: Billing) -> None:
    account, key, other_key = new_id("acct"), new_id("key"), new_id("key")
    billing.clock.now = datetime(2031, 5, 17, 23, 0, tzinfo=UTC)
    await billing.credit(account, 10_000)
    assert await set_budget(billing, key, daily=200) == billing_pb2.Budget(api_key_id=key, daily_limit=200)
    await billing.reserve(account, new_id("job"), api_key=key)
    await billing.reserve(account, new_id("job"), api_key=key)
    error = await refused(billing.reserve(account, new_id("job"), api_key=key))
    assert (error.kind, error.code) == (ErrorKind.INSUFFICIENT_QUOTA, "budget_exceeded")
    assert error.metadata == {"needed": "80", "spent": "160", "limit": "200", "period": "day"}
    assert all(str(n) in error.message for n in (80, 160, 200)) and "day" in error.message
    # Another key, or no key, is not limited by this one's budget.
    await billing.reserve(account, new_id("job"), PRO_4S, api_key=other_key)
    await billing.reserve(account, new_id("job"), PRO_4S)
    assert await spent(billing, key) == (160, 160)
    assert await spent(billing, other_key) == (200, 200)

    billing.clock.now = datetime(2031, 5, 18, 0, 0, tzinfo=UTC)  # the next UTC day
    assert await spent(billing, key) == (0, 160)
    await billing.reserve(account, new_id("job"), api_key=key)
    assert await spent(billing, key) == (80, 240)
    assert await billing.store.audit() == []


async def test_a_monthly_budget_counts_earlier_days_of_the_month(billing: Billing) -> None:
    account, key = new_id("acct"), new_id("key")
    await billing.credit(account, 10_000)
    await set_budget(billing, key, daily=100, monthly=250)
    billing.clock.now = datetime(2031, 1, 30, 12, 0, tzinfo=UTC)
    await billing.reserve(account, new_id("job"), api_key=key)
    billing.clock.now = datetime(2031, 1, 31, 12, 0, tzinfo=UTC)
    await billing.reserve(account, new_id("job"), api_key=key)
    billing.clock.now = datetime(2031, 1, 31, 23, 59, tzinfo=UTC)
    error = await refused(billing.reserve(account, new_id("job"), api_key=key))
    assert error.metadata == {"needed": "80", "spent": "80", "limit": "100", "period": "day"}
    await set_budget(billing, key, daily=0, monthly=200)
    error = await refused(billing.reserve(account, new_id("job"), api_key=key))
    assert error.metadata == {"needed": "80", "spent": "160", "limit": "200", "period": "month"}
    assert "month" in error.message
    billing.clock.now = datetime(2031, 2, 1, 0, 0, tzinfo=UTC)  # a new month
    await billing.reserve(account, new_id("job"), api_key=key)
    assert await spent(billing, key) == (80, 80)


async def test_released_holds_do_not_count_and_captures_count_what_was_charged(billing: Billing) -> None:
    account, key = new_id("acct"), new_id("key")
    await billing.credit(account, 10_000)
    await set_budget(billing, key, daily=200)
    released, captured = new_id("job"), new_id("job")
    await billing.reserve(account, released, api_key=key)
    await billing.reserve(account, captured, api_key=key)
    assert await spent(billing, key) == (160, 160)
    await billing.release(released)
    await billing.capture(captured, 3)  # 30 of 80
    assert await spent(billing, key) == (30, 30)
    await billing.reserve(account, new_id("job"), api_key=key)
    await billing.reserve(account, new_id("job"), api_key=key)  # 190 of 200
    error = await refused(billing.reserve(account, new_id("job"), api_key=key))
    assert error.metadata["spent"] == "190"


async def test_concurrent_reserves_under_one_key_never_exceed_its_budget(billing: Billing) -> None:
    key = new_id("key")
    accounts = [new_id("acct") for _ in range(4)]  # one key, several paying accounts
    for account in accounts:
        await billing.credit(account, 10_000)
    await set_budget(billing, key, daily=7 * 80, monthly=10_000)
    results = await asyncio.gather(
        *(billing.reserve(accounts[i % 4], new_id("job"), api_key=key) for i in range(60)),
        return_exceptions=True,
    )
    holds = [r for r in results if isinstance(r, billing_pb2.Hold)]
    refusals = [r for r in results if isinstance(r, ServiceError)]
    assert len(holds) == 7 and len(refusals) == 53
    assert {(r.kind, r.code, r.metadata["period"]) for r in refusals} == {
        (ErrorKind.INSUFFICIENT_QUOTA, "budget_exceeded", "day")
    }
    assert await spent(billing, key) == (560, 560)
    assert await billing.store.audit() == []


async def test_budget_requests_are_validated(billing: Billing) -> None:
    for param, budget in (
        ("daily_limit", billing_pb2.Budget(api_key_id="k", daily_limit=-1)),
        ("monthly_limit", billing_pb2.Budget(api_key_id="k", monthly_limit=-5)),
        ("api_key_id", billing_pb2.Budget(daily_limit=5)),
    ):
        error = await refused(billing.stub.SetBudget(pb.SetBudgetRequest(budget=budget)))
        assert (error.kind, error.param) == (ErrorKind.INVALID_ARGUMENT, param)
    unknown = await billing.stub.GetBudget(pb.GetBudgetRequest(api_key_id=new_id("key")))
    assert (unknown.budget.daily_limit, unknown.budget.monthly_limit, unknown.spent_today) == (0, 0, 0)
    error = await refused(billing.stub.GetBudget(pb.GetBudgetRequest()))
    assert (error.kind, error.param) == (ErrorKind.INVALID_ARGUMENT, "api_key_id")
