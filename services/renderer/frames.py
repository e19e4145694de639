"""CaptureLastFrame: the last frame of a staged clip, for the next clip of a long video to start from."""

from __future__ import annotations

import asyncio
import io
import shutil
import tempfile
from collections import deque
from pathlib import Path

import av
from PIL import Image
from servicekit.errors import ErrorKind, ServiceError

from services.renderer.domain import check_staging_key, invalid_asset, require_id
from services.renderer.media_store import MediaStore

# Seek this far before the end and decode forwards: the last keyframe is rarely further back.
_TAIL_SECONDS = 2.0


def last_frame(path: Path) -> Image.Image:
    """Decode the clip's tail and keep the final frame."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise invalid_asset("the clip has no video stream")
            stream = container.streams.video[0]
            duration = container.duration / av.time_base if container.duration else 0.0
            if duration > _TAIL_SECONDS:
                container.seek(int((duration - _TAIL_SECONDS) * av.time_base), backward=True)
            tail = deque(container.decode(stream), maxlen=1)
            if not tail:
                raise invalid_asset("the clip has no decodable frame")
            return tail[0].to_image().convert("RGB")
    except av.FFmpegError as exc:
        raise invalid_asset(f"the clip is not a readable video: {exc.strerror or exc}") from None


def jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


class FrameCapturer:
    def __init__(self, media: MediaStore) -> None:
        self._media = media

    async def last_frame(self, *, job_id: str, owner_id: str, staging_key: str) -> tuple[bytes, int, int]:
        """JPEG bytes, width and height of the clip's last frame."""
        require_id(job_id, "job_id")
        require_id(owner_id, "owner_id")
        key = check_staging_key(job_id, staging_key)
        workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=f"frame-{job_id}-"))
        try:
            path = workdir / "clip.mp4"
            if not await self._media.download(key, path):
                raise ServiceError(
                    ErrorKind.NOT_FOUND,
                    f"there is no staged clip at {key}",
                    param="staging_key",
                    code="staging_object_missing",
                )
            image = await asyncio.to_thread(last_frame, path)
            data = await asyncio.to_thread(jpeg_bytes, image)
        finally:
            await asyncio.to_thread(shutil.rmtree, workdir, ignore_errors=True)
        return data, image.width, image.height
