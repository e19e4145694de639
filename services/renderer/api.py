"""gRPC translation for RenderService: proto in, use case call, proto out."""

from __future__ import annotations

import grpc
from servicekit.errors import ErrorKind, ServiceError
from vidflow.render.v1 import render_pb2, render_service_pb2, render_service_pb2_grpc

from services.renderer.deletion import AssetDeleter
from services.renderer.delivery import AssetUrls
from services.renderer.domain import AssetVariant, MediaProbe, StoredAsset
from services.renderer.domain.references import Fit, StoredReference
from services.renderer.domain.renditions import RenditionRecord
from services.renderer.frames import FrameCapturer
from services.renderer.ingest import Ingestor
from services.renderer.references import ReferencePreparer, ReferenceUpload
from services.renderer.renditions import RenditionOptions

_TO_PROTO = {
    AssetVariant.VIDEO: render_pb2.ASSET_VARIANT_VIDEO,
    AssetVariant.THUMBNAIL: render_pb2.ASSET_VARIANT_THUMBNAIL,
    AssetVariant.SPRITESHEET: render_pb2.ASSET_VARIANT_SPRITESHEET,
    AssetVariant.POSTER: render_pb2.ASSET_VARIANT_POSTER,
}
_FROM_PROTO = {value: key for key, value in _TO_PROTO.items()}
_FROM_PROTO[render_pb2.ASSET_VARIANT_UNSPECIFIED] = AssetVariant.VIDEO
_FIT_FROM_PROTO = {
    render_pb2.REFERENCE_FIT_UNSPECIFIED: Fit.CROP,
    render_pb2.REFERENCE_FIT_CROP: Fit.CROP,
    render_pb2.REFERENCE_FIT_PAD: Fit.PAD,
}


class RenderApi(render_service_pb2_grpc.RenderServiceServicer):
    def __init__(
        self,
        ingestor: Ingestor,
        urls: AssetUrls,
        references: ReferencePreparer,
        deleter: AssetDeleter,
        frames: FrameCapturer,
    ) -> None:
        self._frames = frames
        self._ingestor = ingestor
        self._urls = urls
        self._references = references
        self._deleter = deleter

    async def DeleteAssets(
        self, request: render_service_pb2.DeleteAssetsRequest, context: grpc.aio.ServicerContext
    ) -> render_service_pb2.DeleteAssetsResponse:
        deleted = await self._deleter.delete(owner_id=request.owner_id, job_id=request.job_id)
        return render_service_pb2.DeleteAssetsResponse(deleted_objects=deleted)

    async def CaptureLastFrame(
        self, request: render_service_pb2.CaptureLastFrameRequest, context: grpc.aio.ServicerContext
    ) -> render_service_pb2.CaptureLastFrameResponse:
        image, width, height = await self._frames.last_frame(
            job_id=request.job_id, owner_id=request.owner_id, staging_key=request.staging_key
        )
        return render_service_pb2.CaptureLastFrameResponse(
            image=image, content_type="image/jpeg", width=width, height=height
        )

    async def IngestVideo(
        self, request: render_service_pb2.IngestVideoRequest, context: grpc.aio.ServicerContext
    ) -> render_service_pb2.IngestVideoResponse:
        asset, renditions = await self._ingestor.ingest(
            job_id=request.job_id,
            owner_id=request.owner_id,
            staging_key=request.staging_key,
            expected_seconds=request.expected_seconds,
            expected_size=request.expected_size,
            options=RenditionOptions(upscale=request.renditions.upscale, hls=request.renditions.hls),
            segment_keys=list(request.segment_staging_keys),
        )
        return render_service_pb2.IngestVideoResponse(
            asset=_asset_to_proto(asset), renditions=[_rendition_to_proto(r) for r in renditions]
        )

    async def ListRenditions(
        self, request: render_service_pb2.ListRenditionsRequest, context: grpc.aio.ServicerContext
    ) -> render_service_pb2.ListRenditionsResponse:
        signed = await self._urls.renditions_for(owner_id=request.owner_id, job_id=request.job_id)
        response = render_service_pb2.ListRenditionsResponse(hls_master_url=signed.hls_master_url)
        response.expire_time.FromDatetime(signed.expire_time)
        for record, url in signed.renditions:
            proto = _rendition_to_proto(record)
            proto.url = url
            proto.url_expire_time.FromDatetime(signed.expire_time)
            response.renditions.append(proto)
        return response

    async def GetAssetUrl(
        self, request: render_service_pb2.GetAssetUrlRequest, context: grpc.aio.ServicerContext
    ) -> render_service_pb2.GetAssetUrlResponse:
        variant = _FROM_PROTO.get(request.variant)
        if variant is None:
            raise ServiceError(ErrorKind.INVALID_ARGUMENT, "unknown asset variant", param="variant")
        signed = await self._urls.url_for(owner_id=request.owner_id, job_id=request.job_id, variant=variant)
        response = render_service_pb2.GetAssetUrlResponse(url=signed.url, asset=_asset_to_proto(signed.asset))
        response.expire_time.FromDatetime(signed.expire_time)
        return response

    async def PrepareReferences(
        self, request: render_service_pb2.PrepareReferencesRequest, context: grpc.aio.ServicerContext
    ) -> render_service_pb2.PrepareReferencesResponse:
        fit = _FIT_FROM_PROTO.get(request.fit)
        if fit is None:
            raise ServiceError(ErrorKind.INVALID_ARGUMENT, "unknown reference fit", param="fit")
        stored = await self._references.prepare(
            job_id=request.job_id,
            owner_id=request.owner_id,
            images=[
                ReferenceUpload(image.data, image.declared_content_type, image.filename)
                for image in request.images
            ],
            target_size=request.target_size,
            fit=fit,
        )
        return render_service_pb2.PrepareReferencesResponse(
            references=[_reference_to_proto(ref) for ref in stored]
        )


def _reference_to_proto(ref: StoredReference) -> render_pb2.PreparedReference:
    image = ref.image
    proto = render_pb2.PreparedReference(
        index=image.index,
        object_key=ref.object_key,
        content_type=image.content_type,
        detected_format=image.detected_format.value,
        original_width=image.original_width,
        original_height=image.original_height,
        width=image.width,
        height=image.height,
        size_bytes=len(image.data),
        data=image.data,
    )
    proto.expire_time.FromDatetime(ref.expires_at)
    return proto


def _rendition_to_proto(record: RenditionRecord) -> render_pb2.Rendition:
    return render_pb2.Rendition(
        name=record.name,
        width=record.width,
        height=record.height,
        bit_rate=record.bit_rate,
        has_audio=record.has_audio,
        remuxed=record.remuxed,
        object_key=record.object_key,
        content_type=record.content_type,
        size_bytes=record.size_bytes,
    )


def _asset_to_proto(asset: StoredAsset) -> render_pb2.StoredAsset:
    return render_pb2.StoredAsset(
        job_id=asset.job_id,
        variant=_TO_PROTO[asset.variant],
        object_key=asset.object_key,
        content_type=asset.content_type,
        probe=_probe_to_proto(asset.probe),
    )


def _probe_to_proto(probe: MediaProbe) -> render_pb2.MediaProbe:
    return render_pb2.MediaProbe(
        duration_seconds=probe.duration_seconds,
        width=probe.width,
        height=probe.height,
        video_codec=probe.video_codec,
        audio_codec=probe.audio_codec,
        bit_rate=probe.bit_rate,
        size_bytes=probe.size_bytes,
    )
