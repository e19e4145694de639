"""Stitching a long video's clips into one: stream copy when every clip was encoded alike, else
one re-encode that brings every clip to the first clip's frame size and rate."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from services.renderer.domain.renditions import AAC_BIT_RATE, X264_CRF, X264_PRESET


@dataclass(frozen=True)
class StreamLayout:
    """What must match for clips to be joined without re-encoding."""

    video_codec: str
    width: int
    height: int
    pixel_format: str
    frame_rate: Fraction
    time_base: Fraction
    profile: str
    # Empty when the clip is silent.
    audio_codec: str = ""
    sample_rate: int = 0
    channels: int = 0

    @property
    def has_audio(self) -> bool:
        return bool(self.audio_codec)


def can_stream_copy(layouts: list[StreamLayout]) -> bool:
    return len(set(layouts)) == 1


def concat_list(paths: list[Path]) -> str:
    """The concat demuxer's input list; paths are ours (a temp dir), quoted all the same."""
    return "".join("file '{}'\n".format(str(path).replace("'", "'\\''")) for path in paths)


def copy_command(ffmpeg: str, list_file: Path, out: Path) -> list[str]:
    return [
        ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-f", "concat", "-safe", "0", "-i", str(list_file),
        "-map", "0", "-c", "copy", "-movflags", "+faststart", str(out),
    ]  # fmt: skip


def reencode_command(ffmpeg: str, paths: list[Path], layouts: list[StreamLayout], out: Path) -> list[str]:
    """Every clip scaled (letterboxed if its shape differs) to the first clip's size and rate. Audio
    is kept only when every clip has some: a silent stretch would need invented sound."""
    first = layouts[0]
    with_audio = all(layout.has_audio for layout in layouts)
    rate = f"{first.frame_rate.numerator}/{first.frame_rate.denominator}"
    args = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    for path in paths:
        args += ["-i", str(path)]
    parts = []
    inputs = ""
    for index in range(len(paths)):
        parts.append(
            f"[{index}:v]scale={first.width}:{first.height}:force_original_aspect_ratio=decrease,"
            f"pad={first.width}:{first.height}:(ow-iw)/2:(oh-ih)/2,setsar=1,fps={rate},format=yuv420p[v{index}]"
        )
        inputs += f"[v{index}]"
        if with_audio:
            parts.append(f"[{index}:a]aresample=48000,aformat=channel_layouts=stereo[a{index}]")
            inputs += f"[a{index}]"
    audio_flag = 1 if with_audio else 0
    outputs = "[v][a]" if with_audio else "[v]"
    parts.append(f"{inputs}concat=n={len(paths)}:v=1:a={audio_flag}{outputs}")
    args += ["-filter_complex", ";".join(parts), "-map", "[v]"]
    if with_audio:
        args += ["-map", "[a]", "-c:a", "aac", "-b:a", AAC_BIT_RATE]
    args += [
        "-c:v", "libx264", "-preset", X264_PRESET, "-crf", str(X264_CRF),
        "-movflags", "+faststart", str(out),
    ]  # fmt: skip
    return args
