"""The command line: subcommands, their options, and the checks argparse can make (exit 2)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from vidflow_cli import __version__
from vidflow_cli.config import DEFAULT_BASE_URL
from vidflow_cli.create_request import Segment

VARIANTS = ("video", "thumbnail", "spritesheet", "poster")
REFERENCE_FITS = ("crop", "pad")


def segment(text: str) -> Segment:
    """Reads "PROMPT:SECONDS"; the last colon splits, so the prompt itself may contain colons."""
    prompt, colon, seconds = text.rpartition(":")
    seconds = seconds.strip()
    if not colon or not prompt.strip() or not (seconds.isascii() and seconds.isdigit() and int(seconds) > 0):
        raise argparse.ArgumentTypeError(
            f'expected "PROMPT:SECONDS" such as "a cat wakes up:4", got {text!r}'
        )
    return Segment(prompt=prompt.strip(), seconds=str(int(seconds)))


def readable_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return path


def positive_int(text: str) -> int:
    if not (text.isascii() and text.isdigit() and int(text) > 0):
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidflow",
        description="Create, watch and download videos through a Vidflow gateway (OpenAI Videos API).",
        epilog=f"Environment: VIDFLOW_BASE_URL (default {DEFAULT_BASE_URL}), VIDFLOW_API_KEY "
        "(or OPENAI_API_KEY). Exit codes: 0 ok, 1 API error or failed video, 2 usage.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_connection_options(parser, default=None)
    # The same options after the subcommand; SUPPRESS keeps a subcommand from resetting the
    # value given before it ("vidflow --json list" and "vidflow list --json" both work).
    common = argparse.ArgumentParser(add_help=False)
    _add_connection_options(common, default=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    submit = commands.add_parser("submit", parents=[common], help="create a video")
    _add_create_options(submit)
    submit.add_argument(
        "--reference",
        type=readable_file,
        action="append",
        default=[],
        metavar="FILE",
        help="reference image (JPEG, PNG or WebP); repeat for up to four",
    )
    submit.add_argument(
        "--reference-fit",
        choices=REFERENCE_FITS,
        help="crop (server default) or pad the references to the video's size",
    )
    submit.add_argument(
        "--idempotency-key", metavar="KEY", help="a retried submit with the same key creates one video"
    )
    submit.add_argument(
        "--watch", action="store_true", help="follow progress until the video is done, then download it"
    )
    submit.add_argument(
        "--output", type=Path, metavar="PATH", help="where --watch saves the download (default <id>.mp4)"
    )
    submit.add_argument("--variant", choices=VARIANTS, default="video", help="what --watch downloads")

    quote = commands.add_parser("quote", parents=[common], help="price a video without creating it")
    _add_create_options(quote)

    listing = commands.add_parser("list", parents=[common], help="list your videos, newest first")
    listing.add_argument("--limit", type=positive_int, help="at most this many (server caps at 100)")
    listing.add_argument("--after", metavar="ID", help="the page after this video id")
    listing.add_argument("--order", choices=("asc", "desc"), help="by creation time (default desc)")

    for name, text in (
        ("get", "show one video"),
        ("cancel", "stop a video that has not finished (nothing is charged)"),
        ("retry", "run a failed video again"),
        ("delete", "delete a finished video and its files"),
    ):
        command = commands.add_parser(name, parents=[common], help=text)
        command.add_argument("video_id", metavar="ID")

    watch = commands.add_parser("watch", parents=[common], help="follow a video until done, then download it")
    watch.add_argument("video_id", metavar="ID")
    watch.add_argument("--output", type=Path, metavar="PATH", help="where to save (default <id>.mp4)")
    watch.add_argument("--variant", choices=VARIANTS, default="video")

    download = commands.add_parser("download", parents=[common], help="save a finished video or image")
    download.add_argument("video_id", metavar="ID")
    download.add_argument("--variant", choices=VARIANTS, default="video")
    download.add_argument(
        "--output",
        type=Path,
        metavar="PATH",
        help="file to write (default <id>.mp4, <id>.<variant>.webp|jpg)",
    )

    commands.add_parser("balance", parents=[common], help="credits available and held")
    return parser


def _add_connection_options(parser: argparse.ArgumentParser, *, default: object) -> None:
    parser.add_argument(
        "--base-url",
        default=default,
        metavar="URL",
        help=f"gateway API root (env VIDFLOW_BASE_URL, default {DEFAULT_BASE_URL})",
    )
    parser.add_argument(
        "--api-key",
        default=default,
        metavar="KEY",
        help="API key (env VIDFLOW_API_KEY or OPENAI_API_KEY; prefer those: flags show up in process lists)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default if default is not None else False,
        help="print the API objects as JSON",
    )


def _add_create_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "prompt", metavar="PROMPT", nargs="?", help="what the video shows (optional with --segment)"
    )
    parser.add_argument("--model", help="e.g. sora-2 (server default) or sora-2-pro")
    # Not checked here: the server's own message is the one to show.
    parser.add_argument("--seconds", help="clip length, e.g. 4, 8 or 12")
    parser.add_argument("--size", help="WIDTHxHEIGHT, e.g. 1280x720")
    parser.add_argument(
        "--segment",
        type=segment,
        action="append",
        default=[],
        metavar="PROMPT:SECONDS",
        help="a scene of a longer video; repeat in order",
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("submit", "quote") and not args.prompt and not args.segment:
        parser.error(f"{args.command} needs a PROMPT, or one --segment per scene")
    return args
