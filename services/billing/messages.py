"""Domain values as protobuf messages; shared by the gRPC API and the published events."""

from __future__ import annotations

from vidflow.billing.v1 import billing_pb2

from services.billing.domain import Balance, Hold, HoldState, VideoSpec

_STATES = {
    HoldState.HELD: billing_pb2.HOLD_STATE_HELD,
    HoldState.CAPTURED: billing_pb2.HOLD_STATE_CAPTURED,
    HoldState.RELEASED: billing_pb2.HOLD_STATE_RELEASED,
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
