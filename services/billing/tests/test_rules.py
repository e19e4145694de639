"""Pure rules for budgets, organisations and ledger pages."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from servicekit.errors import ErrorKind, ServiceError

from services.billing import domain
from services.billing.domain import Account, Budget, Spend


def test_budget_windows_are_the_utc_day_and_month() -> None:
    # 00:30 on 1 March in UTC+2 is still 28 February in UTC.
    windows = domain.windows(datetime(2031, 3, 1, 0, 30, tzinfo=timezone(timedelta(hours=2))))
    assert windows.day == datetime(2031, 2, 28, tzinfo=UTC)
    assert windows.month == datetime(2031, 2, 1, tzinfo=UTC)
    with pytest.raises(ValueError):
        domain.windows(datetime(2031, 3, 1))


def test_a_budget_refuses_the_first_period_it_would_exceed_and_zero_means_no_limit() -> None:
    domain.check_budget(Budget("k"), Spend(10**9, 10**9), 80)
    domain.check_budget(Budget("k", daily_limit=100, monthly_limit=500), Spend(20, 420), 80)  # exactly full
    with pytest.raises(ServiceError) as caught:
        domain.check_budget(Budget("k", daily_limit=100, monthly_limit=150), Spend(30, 100), 80)
    error = caught.value
    assert (error.kind, error.code) == (ErrorKind.INSUFFICIENT_QUOTA, "budget_exceeded")
    assert error.metadata == {"needed": "80", "spent": "30", "limit": "100", "period": "day"}
    with pytest.raises(ServiceError) as caught:
        domain.check_budget(Budget("k", monthly_limit=150), Spend(0, 100), 80)
    assert caught.value.metadata["period"] == "month"
    for field in ("daily_limit", "monthly_limit"):
        with pytest.raises(ServiceError) as caught:
            Budget("k", **{field: -1})
        assert (caught.value.kind, caught.value.param) == (ErrorKind.INVALID_ARGUMENT, field)


def test_membership_is_one_level_deep() -> None:
    assert Account("u", "org").paying_account_id == "org"
    assert Account("u").paying_account_id == "u"
    domain.check_membership(Account("u"), Account("org"))
    cases = [
        (Account("u"), Account("u"), "organisation_id"),
        (Account("org", is_organisation=True), Account("other"), "account_id"),
        (Account("u"), Account("member", "org"), "organisation_id"),
    ]
    for account, organisation, param in cases:
        with pytest.raises(ServiceError) as caught:
            domain.check_membership(account, organisation)
        assert caught.value.param == param


def test_page_sizes_and_tokens() -> None:
    assert [domain.page_size(n) for n in (0, 1, 100, 101)] == [20, 1, 100, 100]
    with pytest.raises(ServiceError):
        domain.page_size(-1)
    token = domain.page_token("acct", 42)
    assert domain.before_id("acct", token) == 42
    assert domain.before_id("acct", "") is None
    for bad_account, bad_token in (("other", token), ("acct", "x"), ("acct", token + "A")):
        with pytest.raises(ServiceError) as caught:
            domain.before_id(bad_account, bad_token)
        assert caught.value.param == "page_token"
