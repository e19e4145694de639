"""Vidflow's billing extension under /v1: balance, ledger and quotes for the caller, and the
admin routes for top-ups and any account's view. Handlers only translate HTTP to gRPC."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from servicekit.errors import ErrorKind, ServiceError
from vidflow.billing.v1 import billing_pb2, billing_service_pb2, billing_service_pb2_grpc
from vidflow.jobs.v1 import jobs_service_pb2, jobs_service_pb2_grpc

from services.gateway import api_schemas as api
from services.gateway.api_docs import Access, Body, documented, header, json_body, path
from services.gateway.auth import principal_of
from services.gateway.create_body import read_create_body
from services.gateway.keys import BILLING_STUB, JOBS_STUB
from services.gateway.openai_format import segment_resource

routes = web.RouteTableDef()
_KINDS = {
    billing_pb2.LEDGER_ENTRY_KIND_CREDIT: "credit",
    billing_pb2.LEDGER_ENTRY_KIND_RESERVE: "hold",
    billing_pb2.LEDGER_ENTRY_KIND_CAPTURE: "charge",
    billing_pb2.LEDGER_ENTRY_KIND_RELEASE: "release",
}
MAX_ACCOUNT_ID_CHARS = 64
_ACCOUNT_ID = path(
    "account_id", "A user's or organisation's account id.", {"type": "string", "maxLength": 64}
)


@routes.get("/v1/billing/balance")
@documented("Credit balance", tags=["Billing"], reply=api.BALANCE, extension=True)
async def balance(request: web.Request) -> web.Response:
    return web.json_response(await _balance(request, principal_of(request).user_id))


@routes.get("/v1/billing/ledger")
@documented(
    "Credit ledger",
    tags=["Billing"],
    description="Credits, holds, charges and releases, newest first.",
    parameters=[api.LIMIT_1_100, api.AFTER],
    reply=api.LEDGER,
    errors=[400],
    extension=True,
)
async def ledger(request: web.Request) -> web.Response:
    return web.json_response(await _ledger(request, principal_of(request).user_id))


@routes.post("/v1/billing/quote")
@documented(
    "Quote a video",
    tags=["Billing"],
    description="The create-video body in, the price in credits out; validated as create would be, "
    "and nothing is created.",
    body=Body(
        {"application/json": api.CREATE_VIDEO_JSON, "multipart/form-data": api.CREATE_VIDEO_MULTIPART},
        example={"model": "sora-2", "prompt": "A calico cat playing a piano", "seconds": "4"},
    ),
    reply=api.QUOTE,
    extension=True,
)
async def quote(request: web.Request) -> web.Response:
    """The create-video body in, the price out: validated exactly as create would be."""
    principal = principal_of(request)
    fields = await read_create_body(request)
    jobs: jobs_service_pb2_grpc.JobsServiceStub = request.app[JOBS_STUB]
    preview = await jobs.CreateJob(
        jobs_service_pb2.CreateJobRequest(
            owner_id=principal.user_id,
            model=fields.model,
            prompt=fields.prompt,
            seconds=fields.seconds,
            size=fields.size,
            api_key_id=principal.api_key_id,
            validate_only=True,
            segments=[
                jobs_service_pb2.SegmentRequest(prompt=prompt, seconds=seconds)
                for prompt, seconds in fields.segments
            ],
        )
    )
    job = preview.job
    account = await _balance(request, principal.user_id)
    return web.json_response(
        {
            "object": "billing.quote",
            "model": job.model,
            "seconds": str(job.seconds),
            "size": job.size,
            "amount": job.cost_credits,
            "currency": "credits",
            "available": account["available"],
            "sufficient": account["available"] >= job.cost_credits,
            # A long video's planned clips: what create would make.
            "segments": [segment_resource(segment) for segment in job.segments] or None,
        }
    )


@routes.post("/v1/admin/accounts/{account_id}/credits")
@documented(
    "Top up an account",
    tags=["Admin"],
    parameters=[
        _ACCOUNT_ID,
        header(
            "Idempotency-Key",
            {"type": "string", "minLength": 1, "maxLength": 128},
            "Required, so a retried top-up credits once.",
            required=True,
        ),
    ],
    body=json_body(api.CREDIT_REQUEST, example={"amount": 1000, "reason": "welcome credits"}),
    reply=api.BALANCE,
    errors=[404, 409],
    extension=True,
    access=Access.ADMIN,
)
async def admin_credit(request: web.Request) -> web.Response:
    _require_admin(request)
    account_id = _account_id(request)
    body = await _json_object(request)
    amount, reason = body.get("amount"), body.get("reason")
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= 10**12:
        raise ServiceError(
            ErrorKind.INVALID_ARGUMENT,
            "amount must be a positive whole number of credits",
            param="amount",
            code="invalid_value",
        )
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 500:
        raise ServiceError(
            ErrorKind.INVALID_ARGUMENT,
            "reason must be 1 to 500 characters",
            param="reason",
            code="invalid_value",
        )
    request_id = request.headers.get("Idempotency-Key", "")
    if not request_id or len(request_id) > 128:
        raise ServiceError(
            ErrorKind.INVALID_ARGUMENT,
            "Send an Idempotency-Key header (1 to 128 characters) so a retried top-up credits once.",
            param="Idempotency-Key",
            code="invalid_value",
        )
    stub: billing_service_pb2_grpc.BillingServiceStub = request.app[BILLING_STUB]
    answer = await stub.Credit(
        billing_service_pb2.CreditRequest(
            account_id=account_id, amount=amount, reason=reason.strip(), request_id=f"admin:{request_id}"
        )
    )
    return web.json_response(_balance_body(answer.balance))


@routes.get("/v1/admin/accounts/{account_id}")
@documented(
    "View an account",
    tags=["Admin"],
    description="Any account's balance and ledger (paged with `limit` and `after`).",
    parameters=[_ACCOUNT_ID, api.LIMIT_1_100, api.AFTER],
    reply=api.ADMIN_ACCOUNT,
    errors=[400, 404],
    extension=True,
    access=Access.ADMIN,
)
async def admin_account(request: web.Request) -> web.Response:
    _require_admin(request)
    account_id = _account_id(request)
    return web.json_response(
        {**await _balance(request, account_id), "ledger": await _ledger(request, account_id)}
    )


@routes.put("/v1/admin/accounts/{account_id}/organisation")
@documented(
    "Set an account's organisation",
    tags=["Admin"],
    description="Members of an organisation spend from the organisation's account.",
    parameters=[_ACCOUNT_ID],
    body=json_body(api.ORGANISATION_REQUEST, example={"organisation_id": None}),
    reply=api.ACCOUNT,
    errors=[404],
    extension=True,
    access=Access.ADMIN,
)
async def admin_set_organisation(request: web.Request) -> web.Response:
    """Members of an organisation spend from the organisation's account; "" or null leaves it."""
    _require_admin(request)
    account_id = _account_id(request)
    organisation_id = (await _json_object(request)).get("organisation_id") or ""
    if not isinstance(organisation_id, str) or len(organisation_id) > MAX_ACCOUNT_ID_CHARS:
        raise ServiceError(
            ErrorKind.INVALID_ARGUMENT,
            "organisation_id must be an account id or null",
            param="organisation_id",
            code="invalid_value",
        )
    stub: billing_service_pb2_grpc.BillingServiceStub = request.app[BILLING_STUB]
    answer = await stub.SetOrganisation(
        billing_service_pb2.SetOrganisationRequest(account_id=account_id, organisation_id=organisation_id)
    )
    return web.json_response(
        {
            "object": "billing.account",
            "id": answer.account.id,
            "organisation_id": answer.account.organisation_id or None,
        }
    )


@routes.put("/v1/admin/api_keys/{api_key_id}/budget")
@documented(
    "Set an API key's budget",
    tags=["Admin"],
    parameters=[path("api_key_id", "The key's id.", {"type": "string", "pattern": "^key_[0-9a-f]{16}$"})],
    body=json_body(api.BUDGET_REQUEST, example={"daily_limit": 500, "monthly_limit": 0}),
    reply=api.BUDGET,
    errors=[404],
    extension=True,
    access=Access.ADMIN,
)
async def admin_set_budget(request: web.Request) -> web.Response:
    _require_admin(request)
    key_id = request.match_info["api_key_id"]
    if not key_id.startswith("key_") or len(key_id) > 64 or not key_id.isprintable():
        raise ServiceError(ErrorKind.NOT_FOUND, "No such API key.", param="api_key_id")
    body = await _json_object(request)
    limits = {name: body.get(name, 0) for name in ("daily_limit", "monthly_limit")}
    for name, value in limits.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**12:
            raise ServiceError(
                ErrorKind.INVALID_ARGUMENT,
                f"{name} must be a whole number of credits (0: none)",
                param=name,
                code="invalid_value",
            )
    stub: billing_service_pb2_grpc.BillingServiceStub = request.app[BILLING_STUB]
    answer = await stub.SetBudget(
        billing_service_pb2.SetBudgetRequest(budget=billing_pb2.Budget(api_key_id=key_id, **limits))
    )
    return web.json_response(
        {
            "object": "billing.budget",
            "api_key_id": key_id,
            "daily_limit": answer.budget.daily_limit,
            "monthly_limit": answer.budget.monthly_limit,
        }
    )


async def _balance(request: web.Request, account_id: str) -> dict[str, Any]:
    stub: billing_service_pb2_grpc.BillingServiceStub = request.app[BILLING_STUB]
    answer = await stub.GetBalance(billing_service_pb2.GetBalanceRequest(account_id=account_id))
    return _balance_body(answer.balance)


def _balance_body(balance: billing_pb2.Balance) -> dict[str, Any]:
    return {
        "object": "billing.balance",
        "account_id": balance.account_id,
        "available": balance.available,
        "held": balance.held,
        "currency": "credits",
    }


async def _ledger(request: web.Request, account_id: str) -> dict[str, Any]:
    limit = request.query.get("limit", "20")
    if not (limit.isascii() and limit.isdigit() and 1 <= int(limit[:4]) <= 100 and len(limit) <= 3):
        raise ServiceError(
            ErrorKind.INVALID_ARGUMENT, "limit must be between 1 and 100", param="limit", code="invalid_value"
        )
    stub: billing_service_pb2_grpc.BillingServiceStub = request.app[BILLING_STUB]
    answer = await stub.ListLedger(
        billing_service_pb2.ListLedgerRequest(
            account_id=account_id, page_size=int(limit), page_token=request.query.get("after", "")[:512]
        )
    )
    return {
        "object": "list",
        "data": [
            {
                "id": entry.id,
                "object": "billing.ledger_entry",
                "type": _KINDS.get(entry.kind, "other"),
                "available_delta": entry.available_delta,
                "held_delta": entry.held_delta,
                "video_id": entry.job_id or None,
                "reason": entry.reason or None,
                "initiated_by": entry.initiated_by or None,
                "created_at": entry.create_time.seconds,
            }
            for entry in answer.entries
        ],
        "has_more": bool(answer.next_page_token),
        "next_after": answer.next_page_token or None,
    }


def _require_admin(request: web.Request) -> None:
    if not principal_of(request).is_admin:
        raise ServiceError(
            ErrorKind.PERMISSION_DENIED, "This route needs an admin API key.", code="admin_only"
        )


def _account_id(request: web.Request) -> str:
    account_id = request.match_info["account_id"]
    # Unprintable characters (NUL, which PostgreSQL text refuses) are in no account id.
    if not account_id or len(account_id) > MAX_ACCOUNT_ID_CHARS or not account_id.isprintable():
        raise ServiceError(ErrorKind.NOT_FOUND, "No such account.", param="account_id")
    return account_id


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, LookupError, RecursionError):
        raise ServiceError(ErrorKind.INVALID_ARGUMENT, "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ServiceError(ErrorKind.INVALID_ARGUMENT, "The request body must be a JSON object.")
    return body
