"""gRPC translation for ModerationService: proto in, domain call, proto out."""

from __future__ import annotations

import grpc
from vidflow.moderation.v1 import moderation_pb2, moderation_service_pb2, moderation_service_pb2_grpc

from services.moderation.domain import ImageInput, Moderator, overall, require_job_id
from services.moderation.domain.rules import APPROVED
from services.moderation.store import PROMPT_INDEX, DecisionStore, NewDecision, StoredDecision


class ModerationApi(moderation_service_pb2_grpc.ModerationServiceServicer):
    def __init__(self, moderator: Moderator, store: DecisionStore) -> None:
        self._moderator = moderator
        self._store = store

    async def ModeratePrompt(
        self, request: moderation_service_pb2.ModeratePromptRequest, context: grpc.aio.ServicerContext
    ) -> moderation_service_pb2.ModeratePromptResponse:
        require_job_id(request.job_id)
        decision = await self._moderator.moderate_prompt(request.prompt)
        [stored] = await self._store.record(
            job_id=request.job_id,
            owner_id=request.owner_id,
            items=[NewDecision("prompt", PROMPT_INDEX, decision)],
        )
        return moderation_service_pb2.ModeratePromptResponse(decision=_to_proto(stored))

    async def ModerateImages(
        self, request: moderation_service_pb2.ModerateImagesRequest, context: grpc.aio.ServicerContext
    ) -> moderation_service_pb2.ModerateImagesResponse:
        require_job_id(request.job_id)
        images = [
            ImageInput(index=i.index, data=i.data, content_type=i.content_type, filename=i.filename)
            for i in request.images
        ]
        per_image = await self._moderator.moderate_images(images)
        first_rejected = overall(per_image)
        summary = (
            NewDecision("images", PROMPT_INDEX, APPROVED)
            if first_rejected is None
            else NewDecision("images", first_rejected.index, first_rejected.decision)
        )
        [job, *stored] = await self._store.record(
            job_id=request.job_id,
            owner_id=request.owner_id,
            items=[summary, *(NewDecision("image", d.index, d.decision) for d in per_image)],
        )
        return moderation_service_pb2.ModerateImagesResponse(
            decision=_to_proto(job), image_decisions=[_to_proto(s) for s in stored]
        )


def _to_proto(stored: StoredDecision) -> moderation_pb2.ModerationDecision:
    message = moderation_pb2.ModerationDecision(
        id=stored.id,
        job_id=stored.job_id,
        verdict=moderation_pb2.VERDICT_APPROVED
        if stored.decision.approved
        else moderation_pb2.VERDICT_REJECTED,
        category=stored.decision.category,
        reason=stored.decision.reason,
        image_index=stored.image_index,
    )
    message.decide_time.FromDatetime(stored.decided_at)
    return message
