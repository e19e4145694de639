"""The prompt overlay and the ffmpeg command line, without running ffmpeg (the HTTP tests do that)."""

from __future__ import annotations

from pathlib import Path

from simulator.media import (
    MAX_OVERLAY_LINES,
    SPRITESHEET_COLUMNS,
    SPRITESHEET_ROWS,
    ClipSpec,
    ffmpeg_arguments,
    files_in,
    prompt_overlay,
)


def _opaque_rows(width: int, height: int, prompt: str) -> int:
    image = prompt_overlay(prompt, width, height)
    assert image.size == (width, height) and image.mode == "RGBA"
    alpha = image.getchannel("A")
    return sum(1 for y in range(height) if alpha.getpixel((width // 2, y)))


def test_overlay_is_transparent_except_for_the_text_band() -> None:
    image = prompt_overlay("A calico cat playing a piano on stage", 720, 1280)
    alpha = image.getchannel("A")
    assert alpha.getpixel((5, 5)) == 0
    lo, hi = alpha.getextrema()  # type: ignore[misc]
    assert (lo, hi) == (0, 255), "expected transparent background and opaque text"


def test_long_prompts_wrap_onto_more_lines_but_are_capped() -> None:
    short = _opaque_rows(720, 1280, "A cat")
    medium = _opaque_rows(720, 1280, "A calico cat playing a grand piano on a dimly lit stage " * 2)
    huge = _opaque_rows(720, 1280, "word " * 5000)
    capped = _opaque_rows(720, 1280, "word " * 50000)
    assert short < medium < huge
    assert huge == capped, f"more than {MAX_OVERLAY_LINES} lines should not grow the band"


def test_empty_and_whitespace_prompts_still_render() -> None:
    assert prompt_overlay(" \n\t ", 1280, 720).size == (1280, 720)


def test_ffmpeg_writes_all_three_assets_at_the_requested_size_and_length(tmp_path: Path) -> None:
    files = files_in(tmp_path)
    spec = ClipSpec(width=1792, height=1024, seconds=8, fps=30, prompt="p")
    arguments = ffmpeg_arguments(spec, tmp_path / "overlay.png", files)
    source = next(a for a in arguments if a.startswith("testsrc2="))
    assert "size=1792x1024" in source and "rate=30" in source and "duration=8" in source
    assert arguments[arguments.index("-t") + 1] == "8"
    assert {str(files.video), str(files.thumbnail), str(files.spritesheet)} <= set(arguments)
    graph = arguments[arguments.index("-filter_complex") + 1]
    assert f"tile={SPRITESHEET_COLUMNS}x{SPRITESHEET_ROWS}" in graph
    assert "eq(n\\,120)" in graph, "thumbnail should be the middle frame (8 s x 30 fps / 2)"
