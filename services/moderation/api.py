"""gRPC translation for ModerationService: proto in, domain call, proto out."""

from __future__ import annotations

import grpc
from servicekit.errors import ErrorKind, ServiceError
from vidflow.moderation.v1 import moderation_pb2, moderation_service_pb2, moderation_service_pb2_grpc

from services.moderation.domain import RuleEngine
from services.moderation.store import DecisionStore, StoredDecision


class ModerationApi(moderation_service_pb2_grpc.ModerationServiceServicer):
    def __init__(self, engine: RuleEngine, store: DecisionStore) -> None:
        self._engine = engine
        self._store = store

    async def ModeratePrompt(
        self, request: moderation_service_pb2.ModeratePromptRequest, context: grpc.aio.ServicerContext
    ) -> moderation_service_pb2.ModeratePromptResponse:
        if not request.job_id:
            raise ServiceError(ErrorKind.INVALID_ARGUMENT, "job_id is required", param="job_id")
        decision = self._engine.evaluate(request.prompt)
        stored = await self._store.record(
            job_id=request.job_id, owner_id=request.owner_id, subject="prompt", decision=decision
        )
        return moderation_service_pb2.ModeratePromptResponse(decision=_to_proto(stored))


def _to_proto(stored: StoredDecision) -> moderation_pb2.ModerationDecision:
    message = moderation_pb2.ModerationDecision(
        id=stored.id,
        job_id=stored.job_id,
        verdict=moderation_pb2.VERDICT_APPROVED
        if stored.decision.approved
        else moderation_pb2.VERDICT_REJECTED,
        category=stored.decision.category,
        reason=stored.decision.reason,
    )
    message.decide_time.FromDatetime(stored.decided_at)
    return message
