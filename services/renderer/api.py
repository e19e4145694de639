"""gRPC translation for RenderService: proto in, use case call, proto out."""

from __future__ import annotations

import grpc
from servicekit.errors import ErrorKind, ServiceError
from vidflow.render.v1 import render_pb2, render_service_pb2, render_service_pb2_grpc

from services.renderer.delivery import AssetUrls
from services.renderer.domain import AssetVariant, MediaProbe, StoredAsset
from services.renderer.ingest import Ingestor

_TO_PROTO = {
    AssetVariant.VIDEO: render_pb2.ASSET_VARIANT_VIDEO,
    AssetVariant.THUMBNAIL: render_pb2.ASSET_VARIANT_THUMBNAIL,
    AssetVariant.SPRITESHEET: render_pb2.ASSET_VARIANT_SPRITESHEET,
}
_FROM_PROTO = {value: key for key, value in _TO_PROTO.items()}
_FROM_PROTO[render_pb2.ASSET_VARIANT_UNSPECIFIED] = AssetVariant.VIDEO


class RenderApi(render_service_pb2_grpc.RenderServiceServicer):
    def __init__(self, ingestor: Ingestor, urls: AssetUrls) -> None:
        self._ingestor = ingestor
        self._urls = urls

    async def IngestVideo(
        self, request: render_service_pb2.IngestVideoRequest, context: grpc.aio.ServicerContext
    ) -> render_service_pb2.IngestVideoResponse:
        asset = await self._ingestor.ingest(
            job_id=request.job_id,
            owner_id=request.owner_id,
            staging_key=request.staging_key,
            expected_seconds=request.expected_seconds,
            expected_size=request.expected_size,
        )
        return render_service_pb2.IngestVideoResponse(asset=_asset_to_proto(asset))

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
