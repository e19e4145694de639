"""Facts probed from a media file, what a job expected, and the check between the two."""

from __future__ import annotations

import re
from dataclasses import dataclass

from servicekit.errors import ErrorKind, ServiceError

INVALID_ASSET_CODE = "invalid_provider_asset"
# Containers round durations to frames and audio packets; 0.5 s absorbs that, not a missing second.
DURATION_TOLERANCE_SECONDS = 0.5
_SIZE = re.compile(r"^([1-9][0-9]{0,4})x([1-9][0-9]{0,4})$")


@dataclass(frozen=True)
class MediaProbe:
    duration_seconds: float = 0.0
    width: int = 0
    height: int = 0
    video_codec: str = ""
    audio_codec: str = ""
    bit_rate: int = 0
    size_bytes: int = 0
    # How far the video packets actually reach; shorter than duration_seconds means truncated.
    # Only the prober fills it in; it is not stored.
    readable_seconds: float | None = None


@dataclass(frozen=True)
class Expectation:
    seconds: float
    width: int
    height: int

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


def invalid_asset(message: str) -> ServiceError:
    return ServiceError(ErrorKind.FAILED_PRECONDITION, message, code=INVALID_ASSET_CODE)


def parse_expectation(seconds: float, size: str) -> Expectation:
    if seconds <= 0:
        raise ServiceError(
            ErrorKind.INVALID_ARGUMENT, "expected_seconds must be positive", param="expected_seconds"
        )
    match = _SIZE.fullmatch(size)
    if match is None:
        raise ServiceError(
            ErrorKind.INVALID_ARGUMENT,
            f"expected_size must look like WIDTHxHEIGHT, for example 1280x720; got {size!r}",
            param="expected_size",
        )
    return Expectation(seconds=seconds, width=int(match.group(1)), height=int(match.group(2)))


def check_video(probe: MediaProbe, expected: Expectation) -> None:
    """Refuse a provider file that is not the video the job asked for."""
    if not probe.video_codec or probe.width <= 0 or probe.height <= 0:
        raise invalid_asset("the provider file has no video stream")
    if (probe.width, probe.height) != (expected.width, expected.height):
        raise invalid_asset(
            f"the provider video is {probe.width}x{probe.height}, but the job asked for {expected.size}"
        )
    if probe.duration_seconds <= 0:
        raise invalid_asset("the provider video has no duration")
    if (
        probe.readable_seconds is not None
        and probe.readable_seconds < probe.duration_seconds - DURATION_TOLERANCE_SECONDS
    ):
        raise invalid_asset(
            f"the provider video is truncated: it declares {probe.duration_seconds:.2f} s "
            f"but its frames end at {probe.readable_seconds:.2f} s"
        )
    if abs(probe.duration_seconds - expected.seconds) > DURATION_TOLERANCE_SECONDS:
        raise invalid_asset(
            f"the provider video lasts {probe.duration_seconds:.2f} s, "
            f"but the job asked for {expected.seconds:g} s"
        )
