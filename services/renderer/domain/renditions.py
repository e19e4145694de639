"""The renditions ladder: which rungs a source gets, at what size, and the one ffmpeg command.

A rung is named by a height ("720p"), but it is applied to the source's SHORT side, so portrait
and landscape sources are treated alike: 720p of a 1280x720 source is 1280x720, and 720p of a
720x1280 source is 720x1280. The rung whose short side equals the source's short side "matches
the source" and is remuxed (stream copy, no quality loss, a fraction of the time); lower rungs
are transcoded; higher rungs are skipped unless upscaling was asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from servicekit.errors import ErrorKind, ServiceError

RENDITIONS_DIR = "renditions"
HLS_DIR = "hls"
HLS_MASTER = "master.m3u8"
RENDER_FAILED_CODE = "render_failed"
DEFAULT_LADDER = "1080,720,480"
# x264 settings for transcoded rungs: visually fine for previews, quick on two cores.
X264_PRESET = "veryfast"
X264_CRF = 23
AAC_BIT_RATE = "128k"
HLS_SEGMENT_SECONDS = 4


@dataclass(frozen=True)
class Rung:
    name: str
    width: int
    height: int
    remux: bool


@dataclass(frozen=True)
class RenditionRecord:
    job_id: str
    owner_id: str
    name: str
    width: int
    height: int
    bit_rate: int
    has_audio: bool
    remuxed: bool
    object_key: str
    content_type: str
    size_bytes: int
    hls_master_key: str | None = None


def render_failed(message: str) -> ServiceError:
    return ServiceError(ErrorKind.FAILED_PRECONDITION, message, code=RENDER_FAILED_CODE)


def parse_ladder(raw: str) -> tuple[int, ...]:
    """ "1080,720,480" -> (1080, 720, 480): even heights, largest first, no repeats."""
    heights: set[int] = set()
    for part in raw.split(","):
        part = part.strip().removesuffix("p")
        if not part:
            continue
        if not part.isdigit() or int(part) < 2 or int(part) % 2 or int(part) > 8640:
            raise ValueError(f"a ladder rung must be an even height from 2 to 8640, got {part!r}")
        heights.add(int(part))
    if not heights:
        raise ValueError("the ladder needs at least one rung")
    return tuple(sorted(heights, reverse=True))


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def plan_ladder(width: int, height: int, ladder: tuple[int, ...], *, upscale: bool) -> list[Rung]:
    """The rungs to make for a `width`x`height` source, largest first."""
    short, long = min(width, height), max(width, height)
    rungs = []
    for rung in ladder:
        if rung > short and not upscale:
            continue
        if rung == short:
            rungs.append(Rung(f"{rung}p", width, height, remux=True))
            continue
        scaled_long = _even(long * rung / short)
        w, h = (scaled_long, rung) if width >= height else (rung, scaled_long)
        rungs.append(Rung(f"{rung}p", w, h, remux=False))
    return rungs


def rendition_file(rung: Rung) -> str:
    return f"{rung.name}.mp4"


def ladder_command(
    ffmpeg: str, source: Path, rungs: list[Rung], out_dir: Path, *, has_audio: bool
) -> list[str]:
    """One ffmpeg process for every rung: the source is decoded once, split, and scaled per rung;
    the matching rung is a stream copy in the same process. Every output has its index up front
    (`+faststart`) so players can start before the whole file has arrived."""
    args = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(source)]
    encoded = [rung for rung in rungs if not rung.remux]
    if encoded:
        if len(encoded) == 1:
            graph = f"[0:v]scale={encoded[0].width}:{encoded[0].height}[o0]"
        else:
            labels = "".join(f"[s{i}]" for i in range(len(encoded)))
            parts = [f"[0:v]split={len(encoded)}{labels}"]
            parts += [f"[s{i}]scale={r.width}:{r.height}[o{i}]" for i, r in enumerate(encoded)]
            graph = ";".join(parts)
        args += ["-filter_complex", graph]
    audio = ["-map", "0:a:0"] if has_audio else []
    for rung in rungs:
        out = str(out_dir / rendition_file(rung))
        if rung.remux:
            args += ["-map", "0:v:0", *audio, "-c", "copy"]
        else:
            index = encoded.index(rung)
            args += [
                "-map", f"[o{index}]", *audio,
                "-c:v", "libx264", "-preset", X264_PRESET, "-crf", str(X264_CRF), "-pix_fmt", "yuv420p",
            ]  # fmt: skip
            if has_audio:
                args += ["-c:a", "aac", "-b:a", AAC_BIT_RATE]
        args += ["-sn", "-dn", "-movflags", "+faststart", out]
    return args


def hls_command(
    ffmpeg: str, rendition_dir: Path, rungs: list[Rung], hls_dir: Path, *, has_audio: bool
) -> list[str]:
    """HLS from the finished renditions by stream copy: a master playlist and one variant
    playlist with its segments per rung, in `hls_dir/<rung>/`."""
    args = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    for rung in rungs:
        args += ["-i", str(rendition_dir / rendition_file(rung))]
    streams = []
    for i, rung in enumerate(rungs):
        args += ["-map", f"{i}:v:0"]
        if has_audio:
            args += ["-map", f"{i}:a:0"]
        streams.append(f"v:{i},a:{i},name:{rung.name}" if has_audio else f"v:{i},name:{rung.name}")
    args += [
        "-c", "copy", "-f", "hls", "-hls_time", str(HLS_SEGMENT_SECONDS), "-hls_playlist_type", "vod",
        "-hls_segment_filename", str(hls_dir / "%v" / "segment_%03d.ts"),
        "-master_pl_name", HLS_MASTER, "-var_stream_map", " ".join(streams),
        str(hls_dir / "%v" / "index.m3u8"),
    ]  # fmt: skip
    return args
