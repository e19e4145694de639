"""Billing events as outbox rows: subject, de-duplication id and protobuf payload.

Subjects: billing.v1.hold.placed / .captured / .released and billing.v1.account.credited.
The msg_id doubles as the event id, so a consumer can de-duplicate on either.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from servicekit.bus import StreamSpec
from vidflow.billing.v1 import events_pb2

from services.billing.domain import Hold, HoldState
from services.billing.messages import hold_message

STREAM = StreamSpec("BILLING", ("billing.v1.>",))
_HOLD_VERBS = {HoldState.HELD: "placed", HoldState.CAPTURED: "captured", HoldState.RELEASED: "released"}


@dataclass(frozen=True)
class OutboxEvent:
    subject: str
    msg_id: str
    payload: bytes


def hold_changed(hold: Hold) -> OutboxEvent:
    verb = _HOLD_VERBS[hold.state]
    msg_id = f"hold:{hold.job_id}:{verb}"
    event = events_pb2.HoldChangedEvent(event_id=msg_id, hold=hold_message(hold))
    occurred = hold.settled_at or hold.created_at
    if occurred is not None:
        event.occur_time.FromDatetime(occurred)
    return OutboxEvent(f"billing.v1.hold.{verb}", msg_id, event.SerializeToString())


def account_credited(
    *, request_id: str, account_id: str, amount: int, reason: str, occurred: datetime
) -> OutboxEvent:
    msg_id = f"credit:{request_id}"
    event = events_pb2.AccountCreditedEvent(
        event_id=msg_id, account_id=account_id, amount=amount, reason=reason
    )
    event.occur_time.FromDatetime(occurred)
    return OutboxEvent("billing.v1.account.credited", msg_id, event.SerializeToString())
