"""Joining a long video's staged clips into the one source video the ingest then stores."""

from __future__ import annotations

import asyncio
from fractions import Fraction
from pathlib import Path

import av
from servicekit.errors import ServiceError

from services.renderer.domain import invalid_asset
from services.renderer.domain.stitching import (
    StreamLayout,
    can_stream_copy,
    concat_list,
    copy_command,
    reencode_command,
)
from services.renderer.ffmpeg import run_ffmpeg
from services.renderer.probe import probe_video


def stream_layout(path: Path) -> StreamLayout:
    """The clip's encoding, after checking it is a readable video at all."""
    probe_video(path)
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        codec = video.codec_context
        return StreamLayout(
            video_codec=codec.name or "",
            width=codec.width,
            height=codec.height,
            pixel_format=codec.format.name if codec.format else "",
            frame_rate=Fraction(video.average_rate or 0),
            time_base=Fraction(video.time_base or 0),
            profile=codec.profile or "",
            audio_codec=(audio.codec_context.name or "") if audio is not None else "",
            sample_rate=audio.codec_context.sample_rate if audio is not None else 0,
            channels=audio.codec_context.channels if audio is not None else 0,
        )


async def stitch(clips: list[Path], out: Path, *, ffmpeg: str, timeout_seconds: float) -> bool:
    """Write the clips, in order, as one MP4 at `out`. True when it was a stream copy."""
    layouts = []
    for index, clip in enumerate(clips):
        try:
            layouts.append(await asyncio.to_thread(stream_layout, clip))
        except ServiceError as error:
            raise invalid_asset(f"clip {index} of the long video is unusable: {error.message}") from None
        except av.FFmpegError as error:
            raise invalid_asset(f"clip {index} of the long video is unusable: {error}") from None
    if can_stream_copy(layouts):
        list_file = out.with_suffix(".txt")
        list_file.write_text(concat_list(clips))
        await run_ffmpeg(copy_command(ffmpeg, list_file, out), timeout_seconds=timeout_seconds)
        return True
    await run_ffmpeg(reencode_command(ffmpeg, clips, layouts, out), timeout_seconds=timeout_seconds)
    return False
