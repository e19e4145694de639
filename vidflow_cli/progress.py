"""The `--watch` progress bar: a pure line renderer, the poll delay, and a display that redraws one
line on a terminal or prints a plain line per change when the output is a file or a pipe."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TextIO

from vidflow_cli.output import printable

IN_FLIGHT = frozenset({"queued", "in_progress"})
BAR_WIDTH = 24
MIN_BAR_WIDTH = 10
# Everything on the line but the id and the bar, with room for "in progress, clip 10/12" and 1:00:00.
_RESERVED_CHARS = len(" [] 100% ") + len("in progress, clip 10/12") + len("  1:00:00")
DEFAULT_POLL_SECONDS = 2.0  # when the server sends no openai-poll-after-ms hint
MIN_POLL_SECONDS = 0.2
MAX_POLL_SECONDS = 30.0


def poll_delay_seconds(poll_after_ms: int | None) -> float:
    """The server's hint, kept within bounds so a bad hint neither hammers it nor stalls the watch."""
    if poll_after_ms is None:
        return DEFAULT_POLL_SECONDS
    return min(max(poll_after_ms / 1000, MIN_POLL_SECONDS), MAX_POLL_SECONDS)


def retry_delay_seconds(failures: int) -> float:
    """After the n-th failed poll in a row: 2, 4, 8, 16, then 30 seconds."""
    return min(DEFAULT_POLL_SECONDS * 2 ** max(failures - 1, 0), MAX_POLL_SECONDS)


def bar_width(columns: int, id_length: int) -> int:
    """The widest bar (up to BAR_WIDTH) that leaves room for the id and a long status, so the
    bar keeps its width while the status text changes."""
    return min(max(columns - 1 - id_length - _RESERVED_CHARS, MIN_BAR_WIDTH), BAR_WIDTH)


def progress_line(video: Mapping[str, Any], *, elapsed_seconds: float, width: int = BAR_WIDTH) -> str:
    """`video_123 [######------------------]  25% in progress  0:07`"""
    progress = _percent(video.get("progress"))
    filled = progress * width // 100
    bar = "#" * filled + "-" * (width - filled)
    status = str(video.get("status") or "unknown").replace("_", " ")
    queue_position = video.get("queue_position")
    if status == "queued" and isinstance(queue_position, int) and queue_position > 0:
        status = f"queued, #{queue_position} in line"
    elif status == "failed" and isinstance(video.get("error"), Mapping):
        status = f"failed: {video['error'].get('code') or 'error'}"
    elif status == "in progress" and (clip := _current_clip(video.get("segments"))):
        status = f"in progress, clip {clip}"
    return printable(f"{video.get('id', '')} [{bar}] {progress:3d}% {status}  {elapsed(elapsed_seconds)}")


def elapsed(seconds: float) -> str:
    """`0:07`, `12:30`, `1:02:03`"""
    whole = max(int(seconds), 0)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _current_clip(segments: Any) -> str | None:
    """`2/3` for a long video whose first clip is done; None for a single-clip video."""
    if not isinstance(segments, list) or len(segments) < 2:
        return None
    done = sum(
        1 for segment in segments if isinstance(segment, Mapping) and segment.get("status") == "completed"
    )
    return f"{min(done + 1, len(segments))}/{len(segments)}"


def _percent(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return min(max(int(value), 0), 100)


class ProgressDisplay:
    """One line redrawn in place on a terminal; elsewhere a new line only when the status,
    progress, place in line or clip changes, so logs stay short."""

    def __init__(self, stream: TextIO, *, is_tty: bool, columns: int = 80) -> None:
        self._stream = stream
        self._is_tty = is_tty
        self._columns = max(columns, 20)
        self._drawn = False
        self._last_state: tuple[Any, ...] | None = None

    @property
    def is_tty(self) -> bool:
        return self._is_tty

    def show(self, video: Mapping[str, Any], *, elapsed_seconds: float) -> None:
        if self._is_tty:
            # Fit the terminal, narrowing the bar and then cutting: a wrapped line cannot be redrawn.
            width = bar_width(self._columns, len(str(video.get("id", ""))))
            line = progress_line(video, elapsed_seconds=elapsed_seconds, width=width)
            self._stream.write("\r\x1b[2K" + line[: self._columns - 1])
            self._drawn = True
        else:
            line = progress_line(video, elapsed_seconds=elapsed_seconds)
            state = (
                video.get("status"),
                _percent(video.get("progress")),
                video.get("queue_position"),
                _current_clip(video.get("segments")),
            )
            if state == self._last_state:
                return
            self._last_state = state
            self._stream.write(line + "\n")
        self._stream.flush()

    def end(self) -> None:
        """Leave the cursor on a fresh line for whatever is printed next."""
        if self._is_tty and self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = False
