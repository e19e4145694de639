"""gRPC translation for BillingService: proto in, domain call, proto out."""

from __future__ import annotations

import grpc
from servicekit.errors import ErrorKind, ServiceError
from vidflow.billing.v1 import billing_service_pb2 as pb
from vidflow.billing.v1 import billing_service_pb2_grpc

from services.billing import domain
from services.billing.domain import PriceTable
from services.billing.messages import (
    account_message,
    balance_message,
    budget_message,
    hold_message,
    ledger_entry_message,
    video_spec,
)
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
        _optional_id(request.api_key_id, "api_key_id")
        spec = video_spec(request.spec)
        self._prices.quote(spec)  # validates model, size and seconds
        hold = await self._store.reserve(
            request.account_id,
            request.job_id,
            spec,
            self._prices.rate(spec.model, spec.size),
            api_key_id=request.api_key_id or None,
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
        """The balance the account spends from: a member gets its organisation's, with that account_id."""
        _require_id(request.account_id, "account_id")
        balance = await self._store.paying_balance(request.account_id)
        return pb.GetBalanceResponse(balance=balance_message(balance))

    async def ListLedger(
        self, request: pb.ListLedgerRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListLedgerResponse:
        _require_id(request.account_id, "account_id")
        size = domain.page_size(request.page_size)
        before = domain.before_id(request.account_id, request.page_token)
        page = await self._store.list_ledger(request.account_id, size, before)
        return pb.ListLedgerResponse(
            entries=[ledger_entry_message(entry) for entry in page.entries],
            next_page_token=page.next_page_token,
        )

    async def SetBudget(
        self, request: pb.SetBudgetRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetBudgetResponse:
        _require_id(request.budget.api_key_id, "api_key_id")
        budget = domain.Budget(
            request.budget.api_key_id, request.budget.daily_limit, request.budget.monthly_limit
        )
        return pb.SetBudgetResponse(budget=budget_message(await self._store.set_budget(budget)))

    async def GetBudget(
        self, request: pb.GetBudgetRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetBudgetResponse:
        _require_id(request.api_key_id, "api_key_id")
        budget, spend = await self._store.budget(request.api_key_id)
        return pb.GetBudgetResponse(
            budget=budget_message(budget), spent_today=spend.today, spent_this_month=spend.this_month
        )

    async def SetOrganisation(
        self, request: pb.SetOrganisationRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetOrganisationResponse:
        _require_id(request.account_id, "account_id")
        _optional_id(request.organisation_id, "organisation_id")
        account = await self._store.set_organisation(request.account_id, request.organisation_id or None)
        return pb.SetOrganisationResponse(account=account_message(account))


def _require_text(value: str, param: str) -> None:
    if not value.strip():
        raise ServiceError(ErrorKind.INVALID_ARGUMENT, f"{param} is required", param=param)


def _require_id(value: str, param: str) -> None:
    _require_text(value, param)
    _optional_id(value, param)


def _optional_id(value: str, param: str) -> None:
    if value and not value.strip():
        raise ServiceError(ErrorKind.INVALID_ARGUMENT, f"{param} must not be blank", param=param)
    if len(value) > _MAX_ID:
        raise ServiceError(
            ErrorKind.INVALID_ARGUMENT, f"{param} must be at most {_MAX_ID} characters", param=param
        )
