"""Pure domain tests: probe validation against what the job asked for, and the object key layout."""

from __future__ import annotations

import pytest
from servicekit.errors import ErrorKind, ServiceError

from services.renderer.domain import (
    DURATION_TOLERANCE_SECONDS,
    INVALID_ASSET_CODE,
    AssetVariant,
    Expectation,
    MediaProbe,
    check_staging_key,
    check_video,
    companion_staging_key,
    media_key,
    parse_expectation,
    require_id,
)

GOOD = MediaProbe(
    duration_seconds=4.0,
    width=1280,
    height=720,
    video_codec="h264",
    audio_codec="aac",
    bit_rate=1,
    size_bytes=1,
)
ASKED = Expectation(seconds=4, width=1280, height=720)


def refused(probe: MediaProbe, expected: Expectation = ASKED) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        check_video(probe, expected)
    assert caught.value.kind is ErrorKind.FAILED_PRECONDITION
    assert caught.value.code == INVALID_ASSET_CODE
    return caught.value


def with_(**changes: object) -> MediaProbe:
    return MediaProbe(**{**GOOD.__dict__, **changes})  # type: ignore[arg-type]


def test_a_matching_video_passes() -> None:
    check_video(GOOD, ASKED)
    check_video(with_(audio_codec=""), ASKED)  # silent video is fine


def test_size_mismatch_names_both_sizes() -> None:
    error = refused(with_(width=720, height=1280))
    assert "720x1280" in error.message and "1280x720" in error.message


@pytest.mark.parametrize("probe", [with_(video_codec=""), with_(width=0, height=0)])
def test_no_video_stream_is_refused(probe: MediaProbe) -> None:
    assert "no video stream" in refused(probe).message


@pytest.mark.parametrize("delta", [-DURATION_TOLERANCE_SECONDS, 0.0, DURATION_TOLERANCE_SECONDS, 0.02, -0.3])
def test_duration_within_tolerance_passes(delta: float) -> None:
    check_video(with_(duration_seconds=4.0 + delta), ASKED)


@pytest.mark.parametrize(
    "delta", [-DURATION_TOLERANCE_SECONDS - 0.01, DURATION_TOLERANCE_SECONDS + 0.01, 4.0, -3.0]
)
def test_duration_beyond_tolerance_is_refused(delta: float) -> None:
    error = refused(with_(duration_seconds=4.0 + delta))
    assert "asked for 4 s" in error.message


def test_zero_duration_is_refused() -> None:
    assert "no duration" in refused(with_(duration_seconds=0.0)).message


def test_frames_ending_early_mean_truncated() -> None:
    check_video(with_(readable_seconds=4.0 - DURATION_TOLERANCE_SECONDS), ASKED)
    assert "truncated" in refused(with_(readable_seconds=1.2)).message


@pytest.mark.parametrize(
    ("seconds", "size", "param"),
    [
        (0, "1280x720", "expected_seconds"),
        (4, "", "expected_size"),
        (4, "1280*720", "expected_size"),
        (4, "0x720", "expected_size"),
        (4, " 1280x720", "expected_size"),
        (4, "1280x720x3", "expected_size"),
    ],
)
def test_bad_expectations_are_invalid_arguments(seconds: int, size: str, param: str) -> None:
    with pytest.raises(ServiceError) as caught:
        parse_expectation(seconds, size)
    assert caught.value.kind is ErrorKind.INVALID_ARGUMENT
    assert caught.value.param == param


def test_expectation_parses_width_then_height() -> None:
    assert parse_expectation(8, "720x1280") == Expectation(seconds=8, width=720, height=1280)


def test_key_layout() -> None:
    assert media_key("own_1", "job_1", AssetVariant.VIDEO) == "media/own_1/job_1/video.mp4"
    assert media_key("own_1", "job_1", AssetVariant.THUMBNAIL) == "media/own_1/job_1/thumbnail.webp"
    assert media_key("own_1", "job_1", AssetVariant.SPRITESHEET) == "media/own_1/job_1/spritesheet.jpg"
    assert check_staging_key("job_1", "") == "staging/job_1/video.mp4"
    assert check_staging_key("job_1", "staging/job_1/video.mp4") == "staging/job_1/video.mp4"
    assert companion_staging_key("staging/job_1/video.mp4", AssetVariant.SPRITESHEET) == (
        "staging/job_1/spritesheet.jpg"
    )


@pytest.mark.parametrize(
    "key",
    [
        "media/own_2/job_2/video.mp4",
        "staging/job_2/video.mp4",
        "staging/job_1/",
        "staging/job_1/../x/video.mp4",
        "staging/job_1/sub/video.mp4",
        "staging/job_1",
        # Found by tests/reliability/test_abuse.py: S3 servers that read a backslash as a separator.
        "staging/job_1/..\\job_2\\video.mp4",
        "staging/job_1/..",
        "staging/job_1/.hidden",
        "staging/job_1/video.mp4\x00",
        "staging/job_1/%2e%2e%2fjob_2%2fvideo.mp4",
    ],
)
def test_staging_key_must_belong_to_the_job(key: str) -> None:
    with pytest.raises(ServiceError) as caught:
        check_staging_key("job_1", key)
    assert caught.value.kind is ErrorKind.INVALID_ARGUMENT
    assert caught.value.param == "staging_key"


@pytest.mark.parametrize("value", ["", "..", "a/b", "-x", "x" * 129, "own 1"])
def test_ids_cannot_escape_their_prefix(value: str) -> None:
    with pytest.raises(ServiceError) as caught:
        require_id(value, "owner_id")
    assert caught.value.kind is ErrorKind.INVALID_ARGUMENT
