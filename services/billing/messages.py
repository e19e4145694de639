"""Domain values as protobuf messages; shared by the gRPC API and the published events."""

from __future__ import annotations

from vidflow.billing.v1 import billing_pb2

from services.billing.domain import (
    Account,
    Balance,
    Budget,
    Hold,
    HoldState,
    LedgerEntry,
    TransactionKind,
    VideoSpec,
)

_STATES = {
    HoldState.HELD: billing_pb2.HOLD_STATE_HELD,
    HoldState.CAPTURED: billing_pb2.HOLD_STATE_CAPTURED,
    HoldState.RELEASED: billing_pb2.HOLD_STATE_RELEASED,
}

_KINDS = {
    TransactionKind.CREDIT: billing_pb2.LEDGER_ENTRY_KIND_CREDIT,
    TransactionKind.RESERVE: billing_pb2.LEDGER_ENTRY_KIND_RESERVE,
    TransactionKind.CAPTURE: billing_pb2.LEDGER_ENTRY_KIND_CAPTURE,
    TransactionKind.RELEASE: billing_pb2.LEDGER_ENTRY_KIND_RELEASE,
}


def hold_message(hold: Hold) -> billing_pb2.Hold:
    message = billing_pb2.Hold(
        job_id=hold.job_id,
        account_id=hold.account_id,
        amount=hold.amount,
        captured_amount=hold.captured_amount,
        state=_STATES[hold.state],
    )
    if hold.created_at is not None:
        message.create_time.FromDatetime(hold.created_at)
    if hold.settled_at is not None:
        message.settle_time.FromDatetime(hold.settled_at)
    return message


def balance_message(balance: Balance) -> billing_pb2.Balance:
    return billing_pb2.Balance(account_id=balance.account_id, available=balance.available, held=balance.held)


def video_spec(message: billing_pb2.VideoSpec) -> VideoSpec:
    return VideoSpec(model=message.model, size=message.size, seconds=message.seconds)


def account_message(account: Account) -> billing_pb2.Account:
    return billing_pb2.Account(id=account.id, organisation_id=account.organisation_id or "")


def budget_message(budget: Budget) -> billing_pb2.Budget:
    return billing_pb2.Budget(
        api_key_id=budget.api_key_id, daily_limit=budget.daily_limit, monthly_limit=budget.monthly_limit
    )


def ledger_entry_message(entry: LedgerEntry) -> billing_pb2.LedgerEntry:
    message = billing_pb2.LedgerEntry(
        id=str(entry.id),
        account_id=entry.account_id,
        kind=_KINDS[entry.kind],
        available_delta=entry.available_delta,
        held_delta=entry.held_delta,
        job_id=entry.job_id or "",
        reason=entry.reason,
        initiated_by=entry.initiated_by or "",
    )
    message.create_time.FromDatetime(entry.created_at)
    return message
