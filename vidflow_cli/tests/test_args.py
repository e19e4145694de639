"""The command line: what each subcommand accepts, and usage errors exiting 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from vidflow_cli.args import parse_args
from vidflow_cli.create_request import Segment


def usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_submit_takes_every_create_option(tmp_path: Path) -> None:
    first, second = tmp_path / "a.png", tmp_path / "b.jpg"
    first.write_bytes(b"png")
    second.write_bytes(b"jpg")
    args = parse_args(
        [
            "submit", "A lighthouse at dusk", "--model", "sora-2-pro", "--seconds", "8",
            "--size", "1280x720", "--reference", str(first), "--reference", str(second),
            "--reference-fit", "pad", "--segment", "waves: rising:4", "--segment", "a storm:4",
            "--idempotency-key", "nightly-1", "--watch", "--output", "out.mp4", "--variant", "poster",
        ]
    )  # fmt: skip
    assert args.command == "submit"
    assert (args.prompt, args.model, args.seconds, args.size) == (
        "A lighthouse at dusk",
        "sora-2-pro",
        "8",
        "1280x720",
    )
    assert args.reference == [first, second]
    assert args.reference_fit == "pad"
    # The last colon splits, so prompts may hold colons of their own.
    assert args.segment == [Segment("waves: rising", "4"), Segment("a storm", "4")]
    assert (args.idempotency_key, args.watch, args.output, args.variant) == (
        "nightly-1",
        True,
        Path("out.mp4"),
        "poster",
    )


def test_submit_defaults_leave_everything_to_the_server() -> None:
    args = parse_args(["submit", "a cat"])
    assert (args.model, args.seconds, args.size, args.reference_fit) == (None, None, None, None)
    assert (args.segment, args.reference, args.watch, args.variant) == ([], [], False, "video")


def test_segments_alone_make_a_submit() -> None:
    args = parse_args(["submit", "--segment", "dawn:4", "--segment", "dusk:4"])
    assert args.prompt is None and [s.prompt for s in args.segment] == ["dawn", "dusk"]


def test_seconds_is_passed_through_unchecked_so_the_server_explains() -> None:
    assert parse_args(["submit", "a cat", "--seconds", "7"]).seconds == "7"


@pytest.mark.parametrize("option", ["--json", "--base-url=http://h:1/v1", "--api-key=k"])
def test_connection_options_work_before_and_after_the_subcommand(option: str) -> None:
    before = parse_args([option, "list"])
    after = parse_args(["list", option])
    assert vars(before) == vars(after)


def test_without_connection_options_nothing_is_set() -> None:
    args = parse_args(["balance"])
    assert (args.json, args.base_url, args.api_key) == (False, None, None)


def test_list_options() -> None:
    args = parse_args(["list", "--limit", "5", "--after", "video_1", "--order", "asc"])
    assert (args.limit, args.after, args.order) == (5, "video_1", "asc")


@pytest.mark.parametrize("command", ["get", "cancel", "retry", "delete", "watch", "download"])
def test_id_commands_take_the_video_id(command: str) -> None:
    assert parse_args([command, "video_abc"]).video_id == "video_abc"


def test_download_variant_and_output() -> None:
    args = parse_args(["download", "video_abc", "--variant", "thumbnail", "--output", "t.webp"])
    assert (args.variant, args.output) == ("thumbnail", Path("t.webp"))


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        ([], "required"),
        (["submit"], "PROMPT"),
        (["quote", "--model", "sora-2"], "PROMPT"),
        (["submit", "a cat", "--segment", "no seconds"], "PROMPT:SECONDS"),
        (["submit", "a cat", "--segment", ":4"], "PROMPT:SECONDS"),
        (["submit", "a cat", "--segment", "a cat:0"], "PROMPT:SECONDS"),
        (["submit", "a cat", "--segment", "a cat:²"], "PROMPT:SECONDS"),
        (["submit", "a cat", "--reference", "/no/such/image.png"], "no such file"),
        (["submit", "a cat", "--reference-fit", "stretch"], "invalid choice"),
        (["download", "video_abc", "--variant", "gif"], "invalid choice"),
        (["list", "--limit", "0"], "positive whole number"),
        (["list", "--order", "sideways"], "invalid choice"),
        (["get"], "ID"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2_and_say_why(argv: list[str], complaint: str, capsys) -> None:
    assert complaint in usage_error(argv, capsys)
