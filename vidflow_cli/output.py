"""Human output (tables and summaries) and `--json` output of the API objects; pure functions.

Text that came from the server (prompts, ids, messages) is made printable first, so a prompt
holding terminal escape sequences cannot repaint the user's terminal.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROMPT_COLUMN_CHARS = 40


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def printable(text: str) -> str:
    return "".join(char if char.isprintable() else " " for char in text)


def redact(text: str, secrets: Iterable[str]) -> str:
    """A last line of defence: the gateway never echoes keys, but nothing the CLI prints may hold one."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def shorten(text: str, limit: int) -> str:
    text = " ".join(printable(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def timestamp(epoch_seconds: Any) -> str:
    if isinstance(epoch_seconds, bool) or not isinstance(epoch_seconds, int) or epoch_seconds <= 0:
        return "-"
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


def human_bytes(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    value = float(count)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def credits(amount: Any) -> str:
    return f"{amount:,} credits" if isinstance(amount, int) and not isinstance(amount, bool) else "-"


def video_summary(video: Mapping[str, Any]) -> str:
    rows: list[tuple[str, str]] = [
        ("id", _text(video.get("id"))),
        ("status", f"{_text(video.get('status'))} ({_text(video.get('progress'))}%)"),
        ("model", _text(video.get("model"))),
        ("seconds", _text(video.get("seconds"))),
        ("size", _text(video.get("size"))),
        ("created", timestamp(video.get("created_at"))),
    ]
    if video.get("completed_at"):
        rows.append(("completed", timestamp(video.get("completed_at"))))
    if video.get("queue_position"):
        rows.append(("queue", f"#{_text(video.get('queue_position'))} in line"))
    if video.get("reference_images"):
        rows.append(("references", _text(video.get("reference_images"))))
    if video.get("remixed_from_video_id"):
        rows.append(("remixed from", _text(video.get("remixed_from_video_id"))))
    if video.get("retry_count"):
        rows.append(
            ("retries", f"{_text(video.get('retry_count'))} (last {timestamp(video.get('last_retried_at'))})")
        )
    error = video.get("error")
    if isinstance(error, Mapping):
        rows.append(("error", f"{_text(error.get('code'))}: {_text(error.get('message'))}"))
    rows.append(("prompt", " ".join(_text(video.get("prompt")).split())))
    segments = video.get("segments")
    for number, segment in enumerate(segments if isinstance(segments, list) else [], start=1):
        if isinstance(segment, Mapping):
            rows.append((f"segment {number}", _segment_line(segment)))
    return _key_values(rows)


def _segment_line(segment: Mapping[str, Any]) -> str:
    """`completed (100%), 4 s: dawn over the sea`, with the clip's error when it failed."""
    status, progress = _text(segment.get("status")), _text(segment.get("progress"))
    prompt = shorten(_text(segment.get("prompt")), PROMPT_COLUMN_CHARS)
    line = f"{status} ({progress}%), {_text(segment.get('seconds'))} s: {prompt}"
    error = segment.get("error")
    if isinstance(error, Mapping):
        line += f" [{_text(error.get('code'))}: {_text(error.get('message'))}]"
    return line


def video_failure(video: Mapping[str, Any]) -> str:
    """`error: video video_123 failed: The video was cancelled ... (code cancelled)`"""
    error = video.get("error")
    message, code = (error.get("message"), error.get("code")) if isinstance(error, Mapping) else (None, None)
    return (
        f"error: video {_text(video.get('id'))} {_text(video.get('status'))}: "
        f"{_text(message or 'no reason given')} (code {_text(code)})"
    )


def video_table(listing: Mapping[str, Any]) -> str:
    videos = [video for video in listing.get("data") or [] if isinstance(video, Mapping)]
    if not videos:
        return "No videos."
    header = ("ID", "STATUS", "PROGRESS", "MODEL", "SECONDS", "SIZE", "CREATED", "PROMPT")
    rows = [
        (
            _text(video.get("id")),
            _text(video.get("status")),
            f"{_text(video.get('progress'))}%",
            _text(video.get("model")),
            _text(video.get("seconds")),
            _text(video.get("size")),
            timestamp(video.get("created_at")),
            shorten(_text(video.get("prompt")), PROMPT_COLUMN_CHARS),
        )
        for video in videos
    ]
    table = _columns([header, *rows])
    if listing.get("has_more") and listing.get("last_id"):
        table += f"\nMore: vidflow list --after {_text(listing.get('last_id'))}"
    return table


def balance_summary(balance: Mapping[str, Any]) -> str:
    return _key_values(
        [
            ("account", _text(balance.get("account_id"))),
            ("available", credits(balance.get("available"))),
            ("held", credits(balance.get("held"))),
        ]
    )


def quote_summary(quote: Mapping[str, Any]) -> str:
    enough = "enough" if quote.get("sufficient") else "not enough"
    return _key_values(
        [
            ("model", _text(quote.get("model"))),
            ("seconds", _text(quote.get("seconds"))),
            ("size", _text(quote.get("size"))),
            ("price", credits(quote.get("amount"))),
            ("available", f"{credits(quote.get('available'))} ({enough})"),
        ]
    )


def deleted_summary(answer: Mapping[str, Any]) -> str:
    return f"Deleted {_text(answer.get('id'))}."


def download_summary(path: Path, size_bytes: int) -> str:
    return f"Saved {printable(str(path))} ({human_bytes(size_bytes)})"


def error_message(
    status: int, message: str, code: str | None, param: str | None, extra: Mapping[str, Any]
) -> str:
    """`error: Invalid seconds 5. Allowed values: 4, 8, 12. (code invalid_value, param seconds, HTTP 400)`"""
    details = [f"code {code}" if code else "", f"param {param}" if param else "", f"HTTP {status}"]
    details += [f"{name} {_text(value)}" for name, value in extra.items() if isinstance(value, str | int)]
    return f"error: {printable(message)} ({', '.join(detail for detail in details if detail)})"


def _text(value: Any) -> str:
    return "-" if value is None else printable(str(value))


def _key_values(rows: Sequence[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _columns(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )
