"""Intake for provider webhooks: verify the Standard Webhooks signature, then hand the event to
the jobs service, which ignores webhook ids it has seen before. Outside /v1: providers sign
their calls instead of sending one of our API keys."""

from __future__ import annotations

import hashlib
import json
import logging

from aiohttp import web
from servicekit.errors import ErrorKind, ServiceError
from servicekit.webhooks import ID_HEADER, WebhookVerificationError, verify
from vidflow.jobs.v1 import jobs_service_pb2, jobs_service_pb2_grpc

from services.gateway import api_schemas as api
from services.gateway.api_docs import Access, documented, json_body
from services.gateway.keys import JOBS_STUB, PROVIDER_WEBHOOK_SECRETS

log = logging.getLogger(__name__)
MAX_WEBHOOK_BYTES = 64 * 1024
TOLERANCE_SECONDS = 300
MAX_EVENT_ID_CHARS = 128  # the jobs service's provider_events column
_OUTCOMES = {
    jobs_service_pb2.PROVIDER_EVENT_OUTCOME_APPLIED: "applied",
    jobs_service_pb2.PROVIDER_EVENT_OUTCOME_DUPLICATE: "duplicate",
    jobs_service_pb2.PROVIDER_EVENT_OUTCOME_IGNORED: "ignored",
}

routes = web.RouteTableDef()


@routes.post("/webhooks/providers/{deployment}")
@documented(
    "Receive a provider webhook",
    tags=["Provider webhooks"],
    description="For video providers, not API clients: a Standard Webhooks signed event with the "
    "deployment's secret (`PROVIDER_WEBHOOK_SECRETS`); no API key.",
    parameters=api.WEBHOOK_HEADERS,
    body=json_body(api.PROVIDER_EVENT, example={"type": "video.completed", "data": {"id": "video_123"}}),
    reply=api.PROVIDER_EVENT_RECEIPT,
    # 503/504: the jobs service or its database is away or hung; the provider sends the event again.
    errors=[404, 503, 504],
    extension=True,
    access=Access.SIGNED,
)
async def receive_provider_webhook(request: web.Request) -> web.Response:
    deployment = request.match_info["deployment"]
    secret = request.app[PROVIDER_WEBHOOK_SECRETS].get(deployment)
    if secret is None:
        raise ServiceError(ErrorKind.NOT_FOUND, "No webhook intake for that deployment.", param="deployment")
    if request.content_length is not None and request.content_length > MAX_WEBHOOK_BYTES:
        raise ServiceError(ErrorKind.PAYLOAD_TOO_LARGE, "Webhook bodies are limited to 64 KiB.")
    body = await request.content.read(MAX_WEBHOOK_BYTES + 1)
    if len(body) > MAX_WEBHOOK_BYTES:
        raise ServiceError(ErrorKind.PAYLOAD_TOO_LARGE, "Webhook bodies are limited to 64 KiB.")
    try:
        verify(secret, request.headers, body, tolerance_seconds=TOLERANCE_SECONDS)
    except WebhookVerificationError as exc:
        log.warning("provider webhook refused", extra={"deployment": deployment, "reason": str(exc)})
        raise ServiceError(
            ErrorKind.INVALID_ARGUMENT, f"Webhook refused: {exc}.", code="invalid_signature"
        ) from None
    event_type, upstream_id = _parse_event(body)
    stub: jobs_service_pb2_grpc.JobsServiceStub = request.app[JOBS_STUB]
    answer = await stub.RecordProviderEvent(
        jobs_service_pb2.RecordProviderEventRequest(
            deployment=deployment,
            event_id=event_id_of(request.headers[ID_HEADER]),
            event_type=event_type,
            upstream_id=upstream_id,
        )
    )
    return web.json_response({"received": True, "outcome": _OUTCOMES.get(answer.outcome, "ignored")})


def event_id_of(webhook_id: str) -> str:
    """What the jobs service de-duplicates on: the webhook's id, or a digest of one too long to
    store. Never a cut: two long ids sharing their first 128 characters are two events."""
    if len(webhook_id) <= MAX_EVENT_ID_CHARS:
        return webhook_id
    return "sha256:" + hashlib.sha256(webhook_id.encode()).hexdigest()


def _parse_event(body: bytes) -> tuple[str, str]:
    """The OpenAI event shape: {"type": "video.completed", "data": {"id": "video_..."}}."""
    try:
        event = json.loads(body)
    except (ValueError, RecursionError):
        raise ServiceError(ErrorKind.INVALID_ARGUMENT, "The webhook body is not JSON.") from None
    data = event.get("data") if isinstance(event, dict) else None
    event_type = event.get("type") if isinstance(event, dict) else None
    upstream_id = data.get("id") if isinstance(data, dict) else None
    if not isinstance(event_type, str) or not event_type or len(event_type) > 128:
        raise ServiceError(ErrorKind.INVALID_ARGUMENT, "The webhook has no event type.", param="type")
    if not isinstance(upstream_id, str) or not upstream_id or len(upstream_id) > 128:
        raise ServiceError(ErrorKind.INVALID_ARGUMENT, "The webhook names no video.", param="data.id")
    return event_type, upstream_id
