"""gRPC translation for BillingService: proto in, domain call, proto out."""

from __future__ import annotations

import grpc
from servicekit.errors import ErrorKind, ServiceError
from vidflow.billing.v1 import billing_service_pb2 as pb
from vidflow.billing.v1 import billing_service_pb2_grpc

from services.billing import domain
from services.billing.domain import PriceTable
from services.billing.messages import balance_message, hold_message, video_spec
from services.billing.store import LedgerStore

_MAX_ID = 64


class BillingApi(billing_service_pb2_grpc.BillingServiceServicer):
    def __init__(self, prices: PriceTable, store: LedgerStore) -> None:
        self._prices = prices
        self._store = store

    async def Quote(self, request: pb.QuoteRequest, context: grpc.aio.ServicerContext) -> pb.QuoteResponse:
        return pb.QuoteResponse(amount=self._prices.quote(video_spec(request.spec)))

    async def Reserve(
        self, request: pb.ReserveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReserveResponse:
        _require_id(request.account_id, "account_id")
        _require_id(request.job_id, "job_id")
        spec = video_spec(request.spec)
        self._prices.quote(spec)  # validates model, size and seconds
        hold = await self._store.reserve(
            request.account_id, request.job_id, spec, self._prices.rate(spec.model, spec.size)
        )
        return pb.ReserveResponse(hold=hold_message(hold))

    async def Capture(
        self, request: pb.CaptureRequest, context: grpc.aio.ServicerContext
    ) -> pb.CaptureResponse:
        _require_id(request.job_id, "job_id")
        if request.delivered_seconds < 0:
            raise ServiceError(
                ErrorKind.INVALID_ARGUMENT,
                "delivered_seconds must not be negative",
                param="delivered_seconds",
            )
        hold = await self._store.capture(request.job_id, request.delivered_seconds)
        return pb.CaptureResponse(hold=hold_message(hold))

    async def Release(
        self, request: pb.ReleaseRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReleaseResponse:
        _require_id(request.job_id, "job_id")
        _require_text(request.reason, "reason")
        hold = await self._store.release(request.job_id, request.reason)
        return pb.ReleaseResponse(hold=hold_message(hold))

    async def Credit(self, request: pb.CreditRequest, context: grpc.aio.ServicerContext) -> pb.CreditResponse:
        _require_id(request.account_id, "account_id")
        _require_text(request.reason, "reason")
        _require_text(request.request_id, "request_id")
        transaction = domain.credit(
            request.account_id, request.amount, reason=request.reason, request_id=request.request_id
        )
        balance = await self._store.credit(transaction, request_id=request.request_id)
        return pb.CreditResponse(balance=balance_message(balance))

    async def GetBalance(
        self, request: pb.GetBalanceRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetBalanceResponse:
        _require_id(request.account_id, "account_id")
        return pb.GetBalanceResponse(balance=balance_message(await self._store.balance(request.account_id)))


def _require_text(value: str, param: str) -> None:
    if not value.strip():
        raise ServiceError(ErrorKind.INVALID_ARGUMENT, f"{param} is required", param=param)


def _require_id(value: str, param: str) -> None:
    _require_text(value, param)
    if len(value) > _MAX_ID:
        raise ServiceError(
            ErrorKind.INVALID_ARGUMENT, f"{param} must be at most {_MAX_ID} characters", param=param
        )
