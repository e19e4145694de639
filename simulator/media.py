"""Rendering a clip with ffmpeg: the MP4 plus its thumbnail and spritesheet, in one ffmpeg run.

The static ffmpeg shipped by imageio-ffmpeg has no fonts it can rely on, so the prompt is drawn
by Pillow into a transparent PNG and laid over a moving test pattern with ffmpeg's `overlay`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import textwrap
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from simulator.domain import VideoSpec

log = logging.getLogger(__name__)

VIDEO_FILE = "video.mp4"
THUMBNAIL_FILE = "thumbnail.webp"
SPRITESHEET_FILE = "spritesheet.jpg"
_OVERLAY_FILE = "prompt.png"
SPRITESHEET_COLUMNS = 5
SPRITESHEET_ROWS = 2
SPRITESHEET_TILE_WIDTH = 160
# Long prompts are cut so the text stays legible; the full prompt is still in the resource.
MAX_OVERLAY_LINES = 8
_STDERR_TAIL_CHARS = 2000


class RenderError(Exception):
    """ffmpeg could not produce the files; the message is safe to show to API clients."""


@dataclass(frozen=True)
class ClipSpec:
    width: int
    height: int
    seconds: int
    fps: int
    prompt: str


@dataclass(frozen=True)
class RenderedFiles:
    video: Path
    thumbnail: Path
    spritesheet: Path


def files_in(directory: Path) -> RenderedFiles:
    return RenderedFiles(
        video=directory / VIDEO_FILE,
        thumbnail=directory / THUMBNAIL_FILE,
        spritesheet=directory / SPRITESHEET_FILE,
    )


def prompt_overlay(prompt: str, width: int, height: int) -> Image.Image:
    """The prompt, wrapped and truncated, as white text on a dark translucent band."""
    font_size = max(16, width // 24)
    font = ImageFont.load_default(size=font_size)
    chars_per_line = max(10, int(width * 0.9 / (font_size * 0.55)))
    lines = textwrap.wrap(" ".join(prompt.split()), width=chars_per_line) or [""]
    if len(lines) > MAX_OVERLAY_LINES:
        # ASCII dots: the bundled default font is not guaranteed to have an ellipsis glyph.
        last = lines[MAX_OVERLAY_LINES - 1][: chars_per_line - 4].rstrip()
        lines = [*lines[: MAX_OVERLAY_LINES - 1], f"{last} ..."]
    line_height = int(font_size * 1.3)
    padding = font_size // 2
    band_height = line_height * len(lines) + 2 * padding
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    band_top = height - band_height - height // 12
    draw.rectangle((0, band_top, width, band_top + band_height), fill=(0, 0, 0, 160))
    for index, line in enumerate(lines):
        draw.text(
            (width * 0.05, band_top + padding + index * line_height),
            line,
            font=font,
            fill=(255, 255, 255, 255),
        )
    return image


def ffmpeg_arguments(spec: ClipSpec, overlay_png: Path, files: RenderedFiles) -> list[str]:
    """One ffmpeg invocation writing all three assets from the same frames."""
    total_frames = spec.seconds * spec.fps
    sheet_frames = SPRITESHEET_COLUMNS * SPRITESHEET_ROWS
    graph = ";".join(
        [
            "[0:v][1:v]overlay=shortest=1:format=auto,format=yuv420p,split=3[video][thumb_src][sheet_src]",
            f"[thumb_src]select='eq(n\\,{total_frames // 2})'[thumb]",
            f"[sheet_src]fps={sheet_frames}/{spec.seconds},scale={SPRITESHEET_TILE_WIDTH}:-2,"
            f"tile={SPRITESHEET_COLUMNS}x{SPRITESHEET_ROWS}[sheet]",
            "[2:a]volume=0.1[audio]",
        ]
    )
    size = f"{spec.width}x{spec.height}"
    return [
        "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={spec.fps}:duration={spec.seconds}",
        "-loop", "1", "-framerate", str(spec.fps), "-i", str(overlay_png),
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={spec.seconds}",
        "-filter_complex", graph,
        "-map", "[video]", "-map", "[audio]",
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-r", str(spec.fps),
        "-c:a", "aac", "-b:a", "64k",
        "-t", str(spec.seconds), "-movflags", "+faststart", str(files.video),
        "-map", "[thumb]", "-frames:v", "1", "-c:v", "libwebp", str(files.thumbnail),
        "-map", "[sheet]", "-frames:v", "1", "-update", "1", str(files.spritesheet),
    ]  # fmt: skip


async def render_clip(ffmpeg_exe: str, spec: ClipSpec, directory: Path, time_limit: float) -> RenderedFiles:
    """Render into `directory` (created if needed); raise RenderError if ffmpeg fails or times out."""
    files = files_in(directory)
    # Drawing and PNG-encoding a full frame takes tens of ms: keep it off the event loop.
    overlay_png = await asyncio.to_thread(_write_overlay, spec, directory)
    try:
        await _run_ffmpeg(ffmpeg_exe, ffmpeg_arguments(spec, overlay_png, files), time_limit)
    finally:
        overlay_png.unlink(missing_ok=True)
    if missing := await asyncio.to_thread(_missing_outputs, files):
        raise RenderError(f"ffmpeg finished but did not write {', '.join(missing)}")
    return files


def _write_overlay(spec: ClipSpec, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    overlay_png = directory / _OVERLAY_FILE
    prompt_overlay(spec.prompt, spec.width, spec.height).save(overlay_png)
    return overlay_png


def _missing_outputs(files: RenderedFiles) -> list[str]:
    paths = (files.video, files.thumbnail, files.spritesheet)
    return [path.name for path in paths if not path.is_file() or path.stat().st_size == 0]


async def _run_ffmpeg(ffmpeg_exe: str, arguments: list[str], time_limit: float) -> None:
    try:
        process = await asyncio.create_subprocess_exec(
            ffmpeg_exe,
            *arguments,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise RenderError(f"could not start ffmpeg: {exc}") from exc
    try:
        async with asyncio.timeout(time_limit):
            _, stderr = await process.communicate()
    except BaseException as exc:
        # Timeout, cancellation (video deleted, server stopping): never leave ffmpeg running.
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        if isinstance(exc, TimeoutError):
            raise RenderError(f"ffmpeg did not finish within {time_limit:g} s") from exc
        raise
    if process.returncode != 0:
        detail = stderr.decode(errors="replace").strip()[-_STDERR_TAIL_CHARS:]
        log.warning("ffmpeg failed", extra={"returncode": process.returncode, "stderr": detail})
        last_line = detail.splitlines()[-1] if detail else "no diagnostics"
        raise RenderError(f"ffmpeg exited with status {process.returncode}: {last_line}")


class FfmpegRenderer:
    """Renders a video's assets into a directory; the store calls it from a background task."""

    def __init__(self, ffmpeg_exe: str, *, fps: int, time_limit: float) -> None:
        self._ffmpeg_exe = ffmpeg_exe
        self._fps = fps
        self._time_limit = time_limit

    async def render(self, spec: VideoSpec, directory: Path) -> None:
        clip = ClipSpec(
            width=spec.width,
            height=spec.height,
            seconds=spec.duration_seconds,
            fps=self._fps,
            prompt=spec.prompt,
        )
        await render_clip(self._ffmpeg_exe, clip, directory, self._time_limit)
