"""Pure decisions of the commands: where downloads go, and which 404 means "no such route"."""

from __future__ import annotations

from pathlib import Path

import pytest

from vidflow_cli.client import ApiError
from vidflow_cli.commands import output_path


@pytest.mark.parametrize(
    ("variant", "name"),
    [
        ("video", "video_abc.mp4"),
        ("thumbnail", "video_abc.thumbnail.webp"),
        ("spritesheet", "video_abc.spritesheet.jpg"),
        ("poster", "video_abc.poster.jpg"),
    ],
)
def test_default_file_names(variant: str, name: str) -> None:
    assert output_path(None, "video_abc", variant) == Path(name)


def test_output_is_used_as_given_or_as_a_directory(tmp_path: Path) -> None:
    assert output_path(tmp_path / "cat.mp4", "video_abc", "video") == tmp_path / "cat.mp4"
    assert output_path(tmp_path, "video_abc", "poster") == tmp_path / "video_abc.poster.jpg"


@pytest.mark.parametrize("hostile", ["../../etc/passwd", "/tmp/x", "..", "a/b\\c"])
def test_an_id_cannot_climb_out_of_the_current_directory(hostile: str) -> None:
    path = output_path(None, hostile, "video")
    assert len(path.parts) == 1 and not path.name.startswith(".")


def test_a_missing_route_is_told_apart_from_a_missing_video() -> None:
    assert ApiError(404, "Unknown request URL.").is_missing_route
    assert ApiError(405, "Method Not Allowed").is_missing_route
    assert not ApiError(404, "No video found.", code="video_not_found", param="video_id").is_missing_route
    assert not ApiError(400, "Bad.").is_missing_route


def test_transient_errors() -> None:
    assert [ApiError(status, "x").is_transient for status in (400, 404, 429, 500, 502, 503, 504)] == [
        False,
        False,
        True,
        False,
        True,
        True,
        True,
    ]
