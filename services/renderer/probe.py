"""Probing files on local disk: video with PyAV (libav*, no ffprobe needed), stills with Pillow.

Both are blocking and CPU/disk-bound; callers run them in a worker thread.
"""

from __future__ import annotations

import warnings
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image

from services.renderer.domain import MediaProbe, invalid_asset


def probe_video(path: Path) -> MediaProbe:
    """Read the container header, demux every video packet and decode the first frame.

    Demuxing (no decoding) is cheap next to the download and is what exposes a file whose
    header promises more than its data holds: one cut short after its index was written.
    """
    size_bytes = path.stat().st_size
    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.video:
                raise invalid_asset("the provider file has no video stream")
            video = container.streams.video[0]
            audio = container.streams.audio[0] if container.streams.audio else None
            codec = video.codec_context
            time_base = video.time_base or Fraction(1, av.time_base)
            start = video.start_time or 0
            if container.duration:
                duration = container.duration / av.time_base
            elif video.duration:
                duration = float(video.duration * time_base)
            else:
                duration = 0.0
            end = start
            decoded_frame = False
            for packet in container.demux(video):
                if packet.pts is not None:
                    end = max(end, packet.pts + (packet.duration or 0))
                if not decoded_frame and packet.size:
                    decoded_frame = bool(packet.decode())
            if not decoded_frame:
                raise invalid_asset("the provider video has no decodable frame")
            return MediaProbe(
                duration_seconds=duration,
                width=codec.width,
                height=codec.height,
                video_codec=codec.name or "",
                audio_codec=(audio.codec_context.name or "") if audio is not None else "",
                bit_rate=container.bit_rate or 0,
                size_bytes=size_bytes,
                readable_seconds=float((end - start) * time_base),
            )
    except av.FFmpegError as exc:
        raise invalid_asset(f"the provider file is not a readable video: {exc.strerror or exc}") from None


def probe_image(path: Path, expected_format: str) -> MediaProbe:
    """Check a still really is an image of the expected format, fully decodable."""
    size_bytes = path.stat().st_size
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                found = image.format
                width, height = image.size
                image.load()  # decodes every pixel: catches truncated data that verify() misses
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise invalid_asset(f"the provider's {path.name} is not a readable image") from None
    if found != expected_format:
        raise invalid_asset(f"the provider's {path.name} is {found or 'unknown'}, expected {expected_format}")
    return MediaProbe(width=width, height=height, size_bytes=size_bytes)


def make_stills(
    video_path: Path, poster_path: Path, thumbnail_path: Path | None, thumbnail_width: int
) -> None:
    """A poster (JPEG, full size) and optionally a thumbnail (WebP) from a frame a third of the way
    in, past fade-ins. Pillow encodes both; PyAV only decodes the frame."""
    with av.open(str(video_path)) as container:
        stream = container.streams.video[0]
        duration = float(container.duration / av.time_base) if container.duration else 0.0
        if duration > 0:
            container.seek(int(duration / 3 * av.time_base), any_frame=False, backward=True)
        frame = next(container.decode(stream))
        image = frame.to_image().convert("RGB")
    image.save(poster_path, format="JPEG", quality=90, optimize=True)
    if thumbnail_path is not None:
        height = max(1, round(image.height * thumbnail_width / image.width))
        image.resize((thumbnail_width, height), Image.Resampling.LANCZOS).save(
            thumbnail_path, format="WEBP", quality=80
        )
