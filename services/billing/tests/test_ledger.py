"""Pure ledger rules: balanced transactions, capture math, settlement transitions."""

from dataclasses import replace

import pytest
from servicekit.errors import ErrorKind, ServiceError

from services.billing import domain
from services.billing.domain import Balance, Bucket, Hold, HoldState, Posting, Rate, Transaction, VideoSpec

SORA_2 = Rate(100_000, 100)  # 10 credits per second


def make_hold(seconds: int = 8, rate: Rate = SORA_2, **changes: object) -> Hold:
    hold = Hold(
        job_id="job_1",
        account_id="acct_1",
        spec=VideoSpec("sora-2", "1280x720", seconds),
        rate=rate,
        amount=rate.cost(seconds),
    )
    return replace(hold, **changes)  # type: ignore[arg-type]


def test_unbalanced_or_zero_postings_are_refused() -> None:
    with pytest.raises(ValueError, match="does not balance"):
        Transaction("k", domain.TransactionKind.CREDIT, "a", 5, "x", (Posting("a", Bucket.AVAILABLE, 5),))
    with pytest.raises(ValueError, match="zero posting"):
        Transaction(
            "k",
            domain.TransactionKind.CREDIT,
            "a",
            0,
            "x",
            (Posting("a", Bucket.AVAILABLE, 0), Posting("a", Bucket.FUNDING, 0)),
        )


def test_credit_moves_funding_to_available() -> None:
    transaction = domain.credit("acct_1", 500, reason="top-up", request_id="r1")
    assert transaction.key == "credit:r1"
    assert Balance("acct_1", 10, 3).apply(transaction.postings) == Balance("acct_1", 510, 3)
    for amount in (0, -5):
        with pytest.raises(ServiceError) as caught:
            domain.credit("acct_1", amount, reason="top-up", request_id="r1")
        assert (caught.value.kind, caught.value.param) == (ErrorKind.INVALID_ARGUMENT, "amount")


def test_reserve_moves_available_to_held_or_refuses_with_the_numbers() -> None:
    hold = make_hold(seconds=8)  # 80 credits
    transaction = domain.reserve(hold, Balance("acct_1", 80, 0))
    assert Balance("acct_1", 80, 0).apply(transaction.postings) == Balance("acct_1", 0, 80)
    with pytest.raises(ServiceError) as caught:
        domain.reserve(hold, Balance("acct_1", 79, 0))
    error = caught.value
    assert error.kind is ErrorKind.INSUFFICIENT_QUOTA
    assert error.code == "insufficient_quota"
    assert error.metadata == {"needed": "80", "available": "79"}
    assert "80" in error.message and "79" in error.message


@pytest.mark.parametrize(
    ("delivered", "charge"),
    [(8, 80), (4, 40), (1, 10), (0, 0), (9, 80), (1000, 80)],
)
def test_capture_charges_delivered_seconds_and_never_more_than_the_hold(delivered: int, charge: int) -> None:
    hold = make_hold(seconds=8)
    assert domain.capture_charge(hold, delivered) == charge
    transaction = domain.capture(hold, charge)
    after = Balance("acct_1", 20, 80).apply(transaction.postings)
    assert after == Balance("acct_1", 20 + 80 - charge, 0)
    revenue = sum(p.amount for p in transaction.postings if p.bucket is Bucket.REVENUE)
    assert revenue == charge


def test_capture_uses_the_rate_the_hold_was_priced_at_with_rounding_capped_by_the_hold() -> None:
    # 0.40 USD/s at 1 credit per dollar: 3 s = 1.2 -> 2 credits, and a 3 s hold is 2 credits.
    hold = make_hold(seconds=3, rate=Rate(400_000, 1))
    assert hold.amount == 2
    assert domain.capture_charge(hold, 2) == 1  # 0.8 rounds up to 1
    assert domain.capture_charge(hold, 3) == 2
    assert domain.capture_charge(hold, 30) == 2


def test_negative_delivery_is_an_invalid_argument() -> None:
    with pytest.raises(ServiceError) as caught:
        domain.capture_charge(make_hold(), -1)
    assert caught.value.param == "delivered_seconds"


def test_capture_refuses_a_charge_outside_the_hold() -> None:
    with pytest.raises(ValueError):
        domain.capture(make_hold(seconds=8), 81)


def test_release_returns_the_whole_hold() -> None:
    transaction = domain.release(make_hold(seconds=8), "failed")
    assert Balance("acct_1", 5, 80).apply(transaction.postings) == Balance("acct_1", 85, 0)


def test_capture_and_release_share_one_settlement_key() -> None:
    hold = make_hold()
    assert domain.capture(hold, 10).key == domain.release(hold, "failed").key == domain.settle_key("job_1")


def test_settlement_is_once_and_one_way() -> None:
    held = make_hold()
    assert domain.settled_already(held, HoldState.CAPTURED) is False
    assert domain.settled_already(held, HoldState.RELEASED) is False
    captured = make_hold(state=HoldState.CAPTURED, captured_amount=40)
    released = make_hold(state=HoldState.RELEASED)
    assert domain.settled_already(captured, HoldState.CAPTURED) is True
    assert domain.settled_already(released, HoldState.RELEASED) is True
    for hold, wanted in ((captured, HoldState.RELEASED), (released, HoldState.CAPTURED)):
        with pytest.raises(ServiceError) as caught:
            domain.settled_already(hold, wanted)
        assert caught.value.kind is ErrorKind.FAILED_PRECONDITION


def test_a_repeated_reserve_must_ask_for_the_same_thing() -> None:
    hold = make_hold()
    assert domain.same_request(hold, "acct_1", VideoSpec("sora-2", "1280x720", 8))
    assert not domain.same_request(hold, "acct_2", VideoSpec("sora-2", "1280x720", 8))
    assert not domain.same_request(hold, "acct_1", VideoSpec("sora-2", "1280x720", 4))


def test_balance_ignores_other_accounts_and_non_balance_buckets() -> None:
    postings = (
        Posting("acct_2", Bucket.AVAILABLE, 100),
        Posting("acct_1", Bucket.REVENUE, 7),
        Posting("acct_1", Bucket.FUNDING, -9),
    )
    assert Balance("acct_1", 1, 2).apply(postings) == Balance("acct_1", 1, 2)
