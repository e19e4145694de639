"""Double-entry rules for prepaid credits: holds, and the balanced transactions that move money.

Every money movement is a `Transaction` whose postings sum to zero. An account's credits sit
in buckets: `available` (spendable) and `held` (set aside for a running job). Their
counterparts are `funding` (where top-ups come from, so it runs negative) and `revenue` (what
captures earned). Balances are sums of postings; nothing here touches storage.

Each transaction carries a key that makes it happen at most once: one reserve per job, one
settlement (capture *or* release) per job, one credit per request id.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from servicekit.errors import ErrorKind, ServiceError

from services.billing.domain.pricing import Rate, VideoSpec


class Bucket(enum.StrEnum):
    AVAILABLE = "available"
    HELD = "held"
    REVENUE = "revenue"
    FUNDING = "funding"


class TransactionKind(enum.StrEnum):
    CREDIT = "credit"
    RESERVE = "reserve"
    CAPTURE = "capture"
    RELEASE = "release"


class HoldState(enum.StrEnum):
    HELD = "held"
    CAPTURED = "captured"
    RELEASED = "released"


@dataclass(frozen=True)
class Posting:
    account_id: str
    bucket: Bucket
    amount: int  # signed; zero-amount postings are never recorded


@dataclass(frozen=True)
class Transaction:
    key: str
    kind: TransactionKind
    account_id: str
    amount: int
    reason: str
    postings: tuple[Posting, ...]
    job_id: str | None = None
    # The member account that started the video, when an organisation's account pays for it.
    initiated_by: str | None = None

    def __post_init__(self) -> None:
        if sum(p.amount for p in self.postings) != 0:
            raise ValueError(f"transaction {self.key} does not balance: {self.postings}")
        if any(p.amount == 0 for p in self.postings):
            raise ValueError(f"transaction {self.key} has a zero posting")


@dataclass(frozen=True)
class Balance:
    account_id: str
    available: int = 0
    held: int = 0

    def apply(self, postings: Iterable[Posting]) -> Balance:
        available, held = self.available, self.held
        for posting in postings:
            if posting.account_id != self.account_id:
                continue
            if posting.bucket is Bucket.AVAILABLE:
                available += posting.amount
            elif posting.bucket is Bucket.HELD:
                held += posting.amount
        return replace(self, available=available, held=held)


@dataclass(frozen=True)
class Hold:
    job_id: str
    account_id: str  # the paying account: the organisation's, for a member's video
    spec: VideoSpec
    rate: Rate
    amount: int
    state: HoldState = HoldState.HELD
    captured_amount: int = 0
    reason: str = ""
    created_at: datetime | None = None
    settled_at: datetime | None = None
    # The member account that asked for the video, when another (an organisation's) account pays.
    initiated_by: str | None = None
    api_key_id: str | None = None

    @property
    def requester(self) -> str:
        return self.initiated_by or self.account_id

    @property
    def member(self) -> str | None:
        """The member who started it, when someone else's (an organisation's) account pays."""
        return self.initiated_by if self.initiated_by and self.initiated_by != self.account_id else None


def credit(account_id: str, amount: int, *, reason: str, request_id: str) -> Transaction:
    if amount <= 0:
        raise ServiceError(
            ErrorKind.INVALID_ARGUMENT, "amount must be a positive number of credits", param="amount"
        )
    return Transaction(
        key=credit_key(request_id),
        kind=TransactionKind.CREDIT,
        account_id=account_id,
        amount=amount,
        reason=reason,
        postings=(
            Posting(account_id, Bucket.FUNDING, -amount),
            Posting(account_id, Bucket.AVAILABLE, amount),
        ),
    )


def credit_key(request_id: str) -> str:
    return f"credit:{request_id}"


def reserve(hold: Hold, balance: Balance) -> Transaction:
    """Move the hold's amount from available to held, or refuse if the account cannot pay."""
    if hold.amount > balance.available:
        payer = f"organisation account {hold.account_id}" if hold.member else f"account {hold.account_id}"
        raise ServiceError(
            ErrorKind.INSUFFICIENT_QUOTA,
            f"This job costs {hold.amount} credits but {payer} has only "
            f"{balance.available} credits available. Add credits and try again.",
            code="insufficient_quota",
            metadata={"needed": str(hold.amount), "available": str(balance.available)},
        )
    return Transaction(
        key=f"reserve:{hold.job_id}",
        kind=TransactionKind.RESERVE,
        account_id=hold.account_id,
        job_id=hold.job_id,
        amount=hold.amount,
        reason="reserve",
        initiated_by=hold.member,
        postings=(
            Posting(hold.account_id, Bucket.AVAILABLE, -hold.amount),
            Posting(hold.account_id, Bucket.HELD, hold.amount),
        ),
    )


def same_request(hold: Hold, account_id: str, spec: VideoSpec) -> bool:
    """Whether a repeated Reserve for this hold's job asks for the same thing (AIP-155).

    `account_id` is the requesting account, so a repeat still matches after the member moved to
    another organisation; the hold keeps the account that was paying when it was placed.
    """
    return hold.requester == account_id and hold.spec == spec


def capture_charge(hold: Hold, delivered_seconds: int) -> int:
    """Delivered seconds at the rate the hold was priced at, never more than the hold."""
    if delivered_seconds < 0:
        raise ServiceError(
            ErrorKind.INVALID_ARGUMENT, "delivered_seconds must not be negative", param="delivered_seconds"
        )
    return min(hold.amount, hold.rate.cost(delivered_seconds))


def settled_already(hold: Hold, wanted: HoldState) -> bool:
    """True if the hold already reached `wanted` (a repeat); refuses the other settlement."""
    if hold.state is HoldState.HELD:
        return False
    if hold.state is wanted:
        return True
    verb = "captured" if hold.state is HoldState.CAPTURED else "released"
    action = "capture" if wanted is HoldState.CAPTURED else "release"
    raise ServiceError(
        ErrorKind.FAILED_PRECONDITION,
        f"The hold for job {hold.job_id} was already {verb}, so it cannot be {action}d.",
        param="job_id",
        code="hold_already_settled",
    )


def capture(hold: Hold, charge: int) -> Transaction:
    if not 0 <= charge <= hold.amount:
        raise ValueError(f"charge {charge} outside the hold of {hold.amount}")
    refund = hold.amount - charge
    postings = [Posting(hold.account_id, Bucket.HELD, -hold.amount)]
    if refund:
        postings.append(Posting(hold.account_id, Bucket.AVAILABLE, refund))
    if charge:
        postings.append(Posting(hold.account_id, Bucket.REVENUE, charge))
    return Transaction(
        key=settle_key(hold.job_id),
        kind=TransactionKind.CAPTURE,
        account_id=hold.account_id,
        job_id=hold.job_id,
        amount=charge,
        reason="capture",
        initiated_by=hold.member,
        postings=tuple(postings),
    )


def release(hold: Hold, reason: str) -> Transaction:
    return Transaction(
        key=settle_key(hold.job_id),
        kind=TransactionKind.RELEASE,
        account_id=hold.account_id,
        job_id=hold.job_id,
        amount=hold.amount,
        reason=reason,
        initiated_by=hold.member,
        postings=(
            Posting(hold.account_id, Bucket.HELD, -hold.amount),
            Posting(hold.account_id, Bucket.AVAILABLE, hold.amount),
        ),
    )


def settle_key(job_id: str) -> str:
    """Capture and release share one key, so a job settles once, one way."""
    return f"settle:{job_id}"
