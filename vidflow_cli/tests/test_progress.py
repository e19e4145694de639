"""The --watch progress bar (pure rendering), its poll pacing, and the two display modes."""

from __future__ import annotations

import io

import pytest

from vidflow_cli.progress import (
    MAX_POLL_SECONDS,
    ProgressDisplay,
    bar_width,
    elapsed,
    poll_delay_seconds,
    progress_line,
    retry_delay_seconds,
)


def at(status: str, progress: object, **extra: object) -> dict[str, object]:
    return {"id": "video_abc", "status": status, "progress": progress, **extra}


@pytest.mark.parametrize(
    ("video", "line"),
    [
        (at("queued", 0), "video_abc [------------------------]   0% queued  0:07"),
        (at("in_progress", 25), "video_abc [######------------------]  25% in progress  0:07"),
        (at("in_progress", 51), "video_abc [############------------]  51% in progress  0:07"),
        (at("completed", 100), "video_abc [########################] 100% completed  0:07"),
        (
            at("queued", 0, queue_position=3),
            "video_abc [------------------------]   0% queued, #3 in line  0:07",
        ),
        (
            at("failed", 40, error={"code": "cancelled", "message": "..."}),
            "video_abc [#########---------------]  40% failed: cancelled  0:07",
        ),
    ],
)
def test_progress_line(video: dict[str, object], line: str) -> None:
    assert progress_line(video, elapsed_seconds=7.9) == line


@pytest.mark.parametrize(("progress", "shown"), [(-5, "  0%"), (250, "100%"), (None, "  0%"), ("50", "  0%")])
def test_progress_is_clamped_and_typed(progress: object, shown: str) -> None:
    assert shown in progress_line(at("in_progress", progress), elapsed_seconds=0)


def test_bar_width_is_configurable() -> None:
    assert "[#####-----]" in progress_line(at("in_progress", 50), elapsed_seconds=0, width=10)


def test_elapsed() -> None:
    assert [elapsed(s) for s in (0, 59.9, 61, 3600 + 62, -1)] == ["0:00", "0:59", "1:01", "1:01:02", "0:00"]


def test_poll_delay_follows_the_server_hint_within_bounds() -> None:
    assert poll_delay_seconds(2000) == 2.0
    assert poll_delay_seconds(None) == 2.0
    assert poll_delay_seconds(0) == 0.2
    assert poll_delay_seconds(10**9) == MAX_POLL_SECONDS


def test_failed_polls_back_off_to_a_cap() -> None:
    assert [retry_delay_seconds(n) for n in range(1, 7)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_plain_output_prints_a_line_per_change_only() -> None:
    stream = io.StringIO()
    display = ProgressDisplay(stream, is_tty=False)
    for seconds, video in enumerate(
        [at("queued", 0), at("queued", 0), at("in_progress", 10), at("in_progress", 10), at("completed", 100)]
    ):
        display.show(video, elapsed_seconds=seconds)
    display.end()
    assert stream.getvalue().splitlines() == [
        "video_abc [------------------------]   0% queued  0:00",
        "video_abc [##----------------------]  10% in progress  0:02",
        "video_abc [########################] 100% completed  0:04",
    ]


def test_a_terminal_gets_one_line_redrawn_in_place() -> None:
    stream = io.StringIO()
    display = ProgressDisplay(stream, is_tty=True, columns=30)
    display.show(at("in_progress", 10), elapsed_seconds=1)
    display.show(at("in_progress", 10), elapsed_seconds=2)
    display.end()
    output = stream.getvalue()
    assert output.count("\r\x1b[2K") == 2 and output.count("\n") == 1 and output.endswith("\n")
    # Cut to the width, so the carriage return still lands on the same line.
    assert all(len(part) <= 29 for part in output.strip("\n").split("\r\x1b[2K"))


def test_on_a_narrow_terminal_the_bar_shrinks_and_keeps_its_width() -> None:
    stream = io.StringIO()
    display = ProgressDisplay(stream, is_tty=True, columns=100)
    video_id = "video_" + "f" * 32
    display.show({"id": video_id, "status": "queued", "progress": 0}, elapsed_seconds=0)
    display.show({"id": video_id, "status": "in_progress", "progress": 50}, elapsed_seconds=5)
    queued, running = stream.getvalue().split("\r\x1b[2K")[1:]
    assert queued == f"{video_id} [{'-' * 20}]   0% queued  0:00"
    assert running == f"{video_id} [{'#' * 10}{'-' * 10}]  50% in progress  0:05"


def test_bar_width() -> None:
    assert bar_width(200, 38) == 24  # wide terminal: the full bar
    assert bar_width(100, 38) == 20  # 100 - 1 - 38 for the id - 41 for the rest
    assert bar_width(80, 38) == 10  # never narrower; the display cuts the line instead
