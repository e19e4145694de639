"""Adapters for the services the jobs service calls. Errors arrive as servicekit ServiceError."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from vidflow.billing.v1 import billing_pb2, billing_service_pb2, billing_service_pb2_grpc
from vidflow.moderation.v1 import moderation_pb2, moderation_service_pb2, moderation_service_pb2_grpc
from vidflow.render.v1 import render_pb2, render_service_pb2, render_service_pb2_grpc

from services.jobs.domain.job import Asset
from services.jobs.domain.video_spec import VideoSpec


@dataclass(frozen=True)
class ReferenceImage:
    data: bytes
    content_type: str
    filename: str = ""


@dataclass(frozen=True)
class PreparedReference:
    index: int
    object_key: str
    content_type: str
    data: bytes
    filename: str = ""


@dataclass(frozen=True)
class ModerationVerdict:
    approved: bool
    category: str
    reason: str


class ModerationClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = moderation_service_pb2_grpc.ModerationServiceStub(channel)

    async def check_prompt(self, *, job_id: str, owner_id: str, prompt: str) -> ModerationVerdict:
        response = await self._stub.ModeratePrompt(
            moderation_service_pb2.ModeratePromptRequest(job_id=job_id, owner_id=owner_id, prompt=prompt)
        )
        return _verdict(response.decision)

    async def check_images(
        self, *, job_id: str, owner_id: str, images: list[PreparedReference]
    ) -> ModerationVerdict:
        response = await self._stub.ModerateImages(
            moderation_service_pb2.ModerateImagesRequest(
                job_id=job_id,
                owner_id=owner_id,
                images=[
                    moderation_service_pb2.ImageToModerate(
                        index=image.index,
                        data=image.data,
                        content_type=image.content_type,
                        filename=image.filename,
                    )
                    for image in images
                ],
            ),
            timeout=60,
        )
        return _verdict(response.decision)


def _verdict(decision: moderation_pb2.ModerationDecision) -> ModerationVerdict:
    return ModerationVerdict(
        approved=decision.verdict == moderation_pb2.VERDICT_APPROVED,
        category=decision.category,
        reason=decision.reason,
    )


class BillingClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = billing_service_pb2_grpc.BillingServiceStub(channel)

    async def reserve(self, *, account_id: str, job_id: str, spec: VideoSpec, api_key_id: str) -> int:
        response = await self._stub.Reserve(
            billing_service_pb2.ReserveRequest(
                account_id=account_id, job_id=job_id, spec=_spec(spec), api_key_id=api_key_id
            )
        )
        return response.hold.amount

    async def quote(self, spec: VideoSpec) -> int:
        response = await self._stub.Quote(billing_service_pb2.QuoteRequest(spec=_spec(spec)))
        return response.amount

    async def capture(self, *, job_id: str, delivered_seconds: int) -> int:
        response = await self._stub.Capture(
            billing_service_pb2.CaptureRequest(job_id=job_id, delivered_seconds=delivered_seconds)
        )
        return response.hold.captured_amount

    async def release(self, *, job_id: str, reason: str) -> None:
        await self._stub.Release(billing_service_pb2.ReleaseRequest(job_id=job_id, reason=reason))


def _spec(spec: VideoSpec) -> billing_pb2.VideoSpec:
    return billing_pb2.VideoSpec(model=spec.model, size=spec.size, seconds=spec.seconds)


class RendererClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = render_service_pb2_grpc.RenderServiceStub(channel)

    async def prepare_references(
        self, *, job_id: str, owner_id: str, images: list[ReferenceImage], target_size: str, pad: bool
    ) -> list[PreparedReference]:
        response = await self._stub.PrepareReferences(
            render_service_pb2.PrepareReferencesRequest(
                job_id=job_id,
                owner_id=owner_id,
                images=[
                    render_pb2.ReferenceImageUpload(
                        data=image.data, declared_content_type=image.content_type, filename=image.filename
                    )
                    for image in images
                ],
                target_size=target_size,
                fit=render_pb2.REFERENCE_FIT_PAD if pad else render_pb2.REFERENCE_FIT_CROP,
            ),
            timeout=60,
        )
        return [
            PreparedReference(
                index=prepared.index,
                object_key=prepared.object_key,
                content_type=prepared.content_type,
                data=prepared.data,
                filename=images[prepared.index].filename if prepared.index < len(images) else "",
            )
            for prepared in response.references
        ]

    async def capture_last_frame(self, *, job_id: str, owner_id: str, staging_key: str) -> bytes:
        """The JPEG of a staged clip's last frame."""
        response = await self._stub.CaptureLastFrame(
            render_service_pb2.CaptureLastFrameRequest(
                job_id=job_id, owner_id=owner_id, staging_key=staging_key
            ),
            timeout=60,
        )
        return bytes(response.image)

    async def delete_assets(self, *, job_id: str, owner_id: str) -> int:
        response = await self._stub.DeleteAssets(
            render_service_pb2.DeleteAssetsRequest(job_id=job_id, owner_id=owner_id), timeout=60
        )
        return response.deleted_objects

    async def ingest(
        self,
        *,
        job_id: str,
        owner_id: str,
        staging_key: str,
        expected_seconds: int,
        expected_size: str,
        segment_staging_keys: Sequence[str] = (),
    ) -> Asset:
        response = await self._stub.IngestVideo(
            render_service_pb2.IngestVideoRequest(
                job_id=job_id,
                owner_id=owner_id,
                staging_key=staging_key,
                expected_seconds=expected_seconds,
                expected_size=expected_size,
                segment_staging_keys=list(segment_staging_keys),
            ),
            timeout=300 if segment_staging_keys else 120,
        )
        asset = response.asset
        return Asset(
            object_key=asset.object_key,
            duration_seconds=asset.probe.duration_seconds,
            width=asset.probe.width,
            height=asset.probe.height,
            video_codec=asset.probe.video_codec,
            size_bytes=asset.probe.size_bytes,
        )
