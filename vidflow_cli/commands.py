"""What each subcommand does: call the gateway through the client, print through `output`.

Results go to stdout (one JSON document with `--json`); progress, notes and errors go to
stderr. Exit codes: 0 ok, 1 an API error, an unreachable gateway or a failed video, 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from vidflow_cli.args import parse_args
from vidflow_cli.client import ApiError, TransportError, VidflowClient
from vidflow_cli.config import ClientConfig, ConfigProblem, resolve_config
from vidflow_cli.create_request import CreateVideo
from vidflow_cli.output import (
    balance_summary,
    deleted_summary,
    download_summary,
    error_message,
    printable,
    quote_summary,
    redact,
    to_json,
    video_failure,
    video_summary,
    video_table,
)
from vidflow_cli.progress import IN_FLIGHT, ProgressDisplay, poll_delay_seconds, retry_delay_seconds

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # the shell's convention for Ctrl-C
MAX_POLL_FAILURES = 5  # consecutive unreachable or 5xx polls before --watch gives up
_FILE_EXTENSIONS = {"video": "mp4", "thumbnail": "webp", "spritesheet": "jpg", "poster": "jpg"}
_UNSAFE_FILENAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass
class Terminal:
    stdout: TextIO
    stderr: TextIO
    json: bool
    secrets: tuple[str, ...]  # never printed, whatever a message holds
    stderr_is_tty: bool = False
    columns: int = 80

    def result(self, api_object: Any, human: str) -> None:
        print(redact(to_json(api_object) if self.json else human, self.secrets), file=self.stdout)

    def note(self, text: str) -> None:
        print(redact(text, self.secrets), file=self.stderr)

    def progress(self) -> ProgressDisplay:
        return ProgressDisplay(self.stderr, is_tty=self.stderr_is_tty, columns=self.columns)


Command = Callable[[VidflowClient, argparse.Namespace, Terminal], Awaitable[int]]


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    args = parse_args(argv)  # exits 2 on bad usage, 0 on --help
    try:
        config = resolve_config(
            base_url_flag=args.base_url,
            api_key_flag=args.api_key,
            environ=os.environ if environ is None else environ,
        )
    except ConfigProblem as problem:
        print(f"vidflow: {problem}", file=stderr)
        return EXIT_USAGE
    terminal = Terminal(
        stdout=stdout,
        stderr=stderr,
        json=args.json,
        secrets=(config.api_key,),
        stderr_is_tty=stderr.isatty(),
        columns=shutil.get_terminal_size().columns,
    )
    try:
        return asyncio.run(run(args, config, terminal))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader left (`vidflow list --json | head`): end quietly, and keep the interpreter's
        # final flush of stdout from raising again on the way out.
        if stdout is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


async def run(args: argparse.Namespace, config: ClientConfig, terminal: Terminal) -> int:
    try:
        async with VidflowClient.open(config) as client:
            return await COMMANDS[args.command](client, args, terminal)
    except ApiError as error:
        terminal.note(error_message(error.status, error.message, error.code, error.param, error.extra))
    except TransportError as error:
        terminal.note(f"error: {error}")
    except BrokenPipeError:
        raise
    except OSError as error:  # a reference image that cannot be read, an output that cannot be written
        terminal.note(f"error: {printable(str(error))}")
    return EXIT_FAILED


async def submit(client: VidflowClient, args: argparse.Namespace, terminal: Terminal) -> int:
    video = await client.create_video(_create_request(args), idempotency_key=args.idempotency_key)
    if not args.watch:
        terminal.result(video, video_summary(video))
        return EXIT_OK
    return await _follow_and_download(client, video, None, args, terminal)


async def watch(client: VidflowClient, args: argparse.Namespace, terminal: Terminal) -> int:
    fetched = await client.get_video(args.video_id)
    return await _follow_and_download(client, fetched.body, fetched.poll_after_ms, args, terminal)


async def quote(client: VidflowClient, args: argparse.Namespace, terminal: Terminal) -> int:
    answer = await client.quote(_create_request(args))
    terminal.result(answer, quote_summary(answer))
    return EXIT_OK


async def list_videos(client: VidflowClient, args: argparse.Namespace, terminal: Terminal) -> int:
    listing = await client.list_videos(limit=args.limit, after=args.after, order=args.order)
    terminal.result(listing, video_table(listing))
    return EXIT_OK


async def get(client: VidflowClient, args: argparse.Namespace, terminal: Terminal) -> int:
    video = (await client.get_video(args.video_id)).body
    terminal.result(video, video_summary(video))
    return EXIT_OK


async def cancel(client: VidflowClient, args: argparse.Namespace, terminal: Terminal) -> int:
    video = await client.cancel_video(args.video_id)
    terminal.result(video, video_summary(video))
    return EXIT_OK


async def retry(client: VidflowClient, args: argparse.Namespace, terminal: Terminal) -> int:
    try:
        video = await client.retry_video(args.video_id)
    except ApiError as error:
        if not error.is_missing_route:
            raise
        terminal.note(
            "error: this gateway does not offer retry (POST /v1/videos/{id}/retry is unknown to it); "
            "submit the prompt again instead."
        )
        return EXIT_FAILED
    terminal.result(video, video_summary(video))
    return EXIT_OK


async def delete(client: VidflowClient, args: argparse.Namespace, terminal: Terminal) -> int:
    answer = await client.delete_video(args.video_id)
    terminal.result(answer, deleted_summary(answer))
    return EXIT_OK


async def download(client: VidflowClient, args: argparse.Namespace, terminal: Terminal) -> int:
    destination = output_path(args.output, args.video_id, args.variant)
    saved = await client.download(args.video_id, variant=args.variant, destination=destination)
    record = {
        "id": args.video_id,
        "variant": args.variant,
        "path": str(saved.path),
        "bytes": saved.size_bytes,
        "content_type": saved.content_type,
    }
    terminal.result(record, download_summary(saved.path, saved.size_bytes))
    return EXIT_OK


async def balance(client: VidflowClient, args: argparse.Namespace, terminal: Terminal) -> int:
    answer = await client.balance()
    terminal.result(answer, balance_summary(answer))
    return EXIT_OK


COMMANDS: dict[str, Command] = {
    "submit": submit,
    "watch": watch,
    "quote": quote,
    "list": list_videos,
    "get": get,
    "cancel": cancel,
    "retry": retry,
    "delete": delete,
    "download": download,
    "balance": balance,
}


def output_path(requested: Path | None, video_id: str, variant: str) -> Path:
    """`--output` as given (inside it when it names a directory), else `<id>.mp4` for the video
    and `<id>.<variant>.<ext>` for images, in the current directory. The id is made a safe file
    name: it comes from the command line or the server, and must not climb out with `../`."""
    name = _UNSAFE_FILENAME_CHARS.sub("_", video_id).lstrip(".") or "video"
    extension = _FILE_EXTENSIONS[variant]
    default = f"{name}.{extension}" if variant == "video" else f"{name}.{variant}.{extension}"
    if requested is None:
        return Path(default)
    return requested / default if requested.is_dir() else requested


def _create_request(args: argparse.Namespace) -> CreateVideo:
    return CreateVideo(
        prompt=args.prompt,
        model=args.model,
        seconds=args.seconds,
        size=args.size,
        segments=tuple(args.segment),
        references=tuple(getattr(args, "reference", ())),
        reference_fit=getattr(args, "reference_fit", None),
    )


async def _follow_and_download(
    client: VidflowClient,
    video: dict[str, Any],
    poll_after_ms: int | None,
    args: argparse.Namespace,
    terminal: Terminal,
) -> int:
    video_id = str(video["id"])
    try:
        video = await _follow(client, video, poll_after_ms, terminal.progress())
    except asyncio.CancelledError:  # Ctrl-C: the video goes on without us
        terminal.note(
            f"Stopped watching; the video continues. Resume with: vidflow watch {printable(video_id)}"
        )
        raise
    if video.get("status") != "completed":
        terminal.note(video_failure(video))
        if terminal.json:
            terminal.result(video, "")
        return EXIT_FAILED
    destination = output_path(args.output, video_id, args.variant)
    saved = await client.download(video_id, variant=args.variant, destination=destination)
    summary = download_summary(saved.path, saved.size_bytes)
    if terminal.json:
        terminal.note(summary)  # stdout carries only the video object
        terminal.result(video, "")
    else:
        terminal.result(video, summary)
    return EXIT_OK


async def _follow(
    client: VidflowClient, video: dict[str, Any], poll_after_ms: int | None, display: ProgressDisplay
) -> dict[str, Any]:
    """Polls until the video leaves queued/in_progress, at the pace the server asks for; a few
    consecutive transient failures (unreachable, 429, 5xx) are retried with growing pauses."""
    started = time.monotonic()
    failures = 0
    delay = poll_delay_seconds(poll_after_ms)
    try:
        while True:
            display.show(video, elapsed_seconds=time.monotonic() - started)
            if video.get("status") not in IN_FLIGHT:
                return video
            await _pause(delay, video, display, started)
            try:
                fetched = await client.get_video(str(video["id"]))
            except (ApiError, TransportError) as error:
                if isinstance(error, ApiError) and not error.is_transient:
                    raise
                failures += 1
                if failures > MAX_POLL_FAILURES:
                    raise
                delay = retry_delay_seconds(failures)
                continue
            failures = 0
            video, delay = fetched.body, poll_delay_seconds(fetched.poll_after_ms)
    finally:
        display.end()


async def _pause(seconds: float, video: Mapping[str, Any], display: ProgressDisplay, started: float) -> None:
    """Sleeps until the next poll; on a terminal the elapsed time keeps ticking meanwhile."""
    if not display.is_tty:
        await asyncio.sleep(seconds)
        return
    ends = time.monotonic() + seconds
    while (left := ends - time.monotonic()) > 0:
        await asyncio.sleep(min(left, 1.0))
        display.show(video, elapsed_seconds=time.monotonic() - started)
