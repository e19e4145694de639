"""Human output: summaries, the videos table, money, sizes and errors."""

from __future__ import annotations

from pathlib import Path

from vidflow_cli.output import (
    balance_summary,
    download_summary,
    error_message,
    human_bytes,
    printable,
    quote_summary,
    redact,
    timestamp,
    to_json,
    video_failure,
    video_summary,
    video_table,
)

CREATED = 1_750_000_000  # 2025-06-15 15:06:40 UTC


def video(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "id": "video_abc",
        "object": "video",
        "model": "sora-2",
        "status": "completed",
        "progress": 100,
        "created_at": CREATED,
        "completed_at": CREATED + 60,
        "expires_at": None,
        "prompt": "A calico cat playing a piano",
        "size": "1280x720",
        "seconds": "4",
        "remixed_from_video_id": None,
        "error": None,
        "queue_position": None,
        "reference_images": 0,
    }
    body.update(changes)
    return body


def test_video_summary_lists_the_fields_that_matter() -> None:
    assert video_summary(video()).splitlines() == [
        "id         video_abc",
        "status     completed (100%)",
        "model      sora-2",
        "seconds    4",
        "size       1280x720",
        "created    2025-06-15 15:06 UTC",
        "completed  2025-06-15 15:07 UTC",
        "prompt     A calico cat playing a piano",
    ]


def test_video_summary_shows_queue_references_and_errors_only_when_present() -> None:
    lines = video_summary(
        video(
            status="failed",
            progress=0,
            completed_at=None,
            queue_position=2,
            reference_images=1,
            error={"code": "cancelled", "message": "The video was cancelled."},
        )
    ).splitlines()
    assert "status      failed (0%)" in lines
    assert "queue       #2 in line" in lines
    assert "references  1" in lines
    assert "error       cancelled: The video was cancelled." in lines
    assert not any(line.startswith("completed") for line in lines)


def test_video_table_aligns_columns_and_shortens_prompts() -> None:
    listing = {
        "object": "list",
        "data": [
            video(),
            video(id="video_longer_id", status="in_progress", progress=45, prompt="word " * 30),
        ],
        "has_more": False,
        "last_id": "video_longer_id",
    }
    header, first, second = video_table(listing).splitlines()
    assert header.split() == ["ID", "STATUS", "PROGRESS", "MODEL", "SECONDS", "SIZE", "CREATED", "PROMPT"]
    # Every column starts where its header does.
    assert first.index("completed") == second.index("in_progress") == header.index("STATUS")
    assert first.index("100%") == second.index("45%") == header.index("PROGRESS")
    assert second.endswith("word wo...") and len(second[header.index("PROMPT") :]) == 40


def test_video_table_points_to_the_next_page() -> None:
    listing = {"data": [video()], "has_more": True, "last_id": "video_abc"}
    assert video_table(listing).splitlines()[-1] == "More: vidflow list --after video_abc"


def test_an_empty_list_says_so() -> None:
    assert video_table({"object": "list", "data": [], "has_more": False}) == "No videos."


def test_server_text_cannot_drive_the_terminal() -> None:
    hostile = "cat\x1b]0;owned\x07\x1b[2J\nrm -rf"
    assert "\x1b" not in video_summary(video(prompt=hostile))
    assert "\x1b" not in video_table({"data": [video(prompt=hostile)]})
    assert printable("a\tb\x00c") == "a b c"


def test_money_is_in_credits() -> None:
    assert balance_summary(
        {"object": "billing.balance", "account_id": "user_a", "available": 12345, "held": 40}
    ).splitlines() == ["account    user_a", "available  12,345 credits", "held       40 credits"]
    quote = {"model": "sora-2", "seconds": "8", "size": "1280x720", "amount": 80, "available": 50}
    assert quote_summary({**quote, "sufficient": False}).splitlines()[-2:] == [
        "price      80 credits",
        "available  50 credits (not enough)",
    ]
    assert quote_summary({**quote, "sufficient": True}).endswith("(enough)")


def test_sizes_and_times() -> None:
    assert [human_bytes(n) for n in (0, 1023, 1024, 1536 * 1024, 3 * 1024**3)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "1.5 MiB",
        "3.0 GiB",
    ]
    assert download_summary(Path("out/v.mp4"), 2048) == "Saved out/v.mp4 (2.0 KiB)"
    assert timestamp(CREATED) == "2025-06-15 15:06 UTC"
    assert timestamp(None) == timestamp(0) == timestamp("soon") == "-"


def test_error_message_carries_message_code_param_status_and_extra_facts() -> None:
    assert error_message(400, "Invalid seconds 5.", "invalid_value", "seconds", {}) == (
        "error: Invalid seconds 5. (code invalid_value, param seconds, HTTP 400)"
    )
    assert error_message(
        402, "Not enough credits.", "insufficient_quota", None, {"needed": 40, "available": 0}
    ) == ("error: Not enough credits. (code insufficient_quota, HTTP 402, needed 40, available 0)")
    assert (
        error_message(502, "HTTP 502 Bad Gateway", None, None, {}) == "error: HTTP 502 Bad Gateway (HTTP 502)"
    )


def test_failed_video_message() -> None:
    failed = video(status="failed", error={"code": "moderation_blocked", "message": "Refused."})
    assert video_failure(failed) == "error: video video_abc failed: Refused. (code moderation_blocked)"
    assert video_failure(video(status="failed")) == "error: video video_abc failed: no reason given (code -)"


def test_redact_and_json() -> None:
    assert redact("key sk-1 and sk-1 again", ["sk-1", ""]) == "key [redacted] and [redacted] again"
    assert to_json({"prompt": "café"}) == '{\n  "prompt": "café"\n}'


def test_a_long_video_lists_its_clips_and_retries() -> None:
    lines = video_summary(
        video(
            status="in_progress",
            progress=60,
            retry_count=1,
            last_retried_at=CREATED + 120,
            segments=[
                {"index": 0, "prompt": "dawn", "seconds": "4", "status": "completed", "progress": 100},
                {
                    "index": 1,
                    "prompt": "dusk",
                    "seconds": "8",
                    "status": "failed",
                    "progress": 30,
                    "error": {"code": "provider_error", "message": "Upstream failed."},
                },
            ],
        )
    ).splitlines()
    assert "retries    1 (last 2025-06-15 15:08 UTC)" in lines
    assert lines[-2:] == [
        "segment 1  completed (100%), 4 s: dawn",
        "segment 2  failed (30%), 8 s: dusk [provider_error: Upstream failed.]",
    ]
