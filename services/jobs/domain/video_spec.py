"""What a valid video request is, following the OpenAI Videos API and its newer documentation."""

from __future__ import annotations

from dataclasses import dataclass

from servicekit.errors import ErrorKind, ServiceError

from services.jobs.domain import segments

MAX_PROMPT_CHARS = 32_000
DEFAULT_MODEL = "sora-2"
DEFAULT_SECONDS = 4
DEFAULT_SIZE = "720x1280"
ALLOWED_SECONDS = segments.CLIP_SECONDS

_PORTRAIT_LANDSCAPE_720 = ("720x1280", "1280x720")
_TALL_WIDE = ("1024x1792", "1792x1024")
_FULL_HD = ("1080x1920", "1920x1080")

# Dated snapshots behave like their base model.
SIZES_BY_MODEL: dict[str, tuple[str, ...]] = {
    "sora-2": _PORTRAIT_LANDSCAPE_720,
    "sora-2-2025-10-06": _PORTRAIT_LANDSCAPE_720,
    "sora-2-2025-12-08": _PORTRAIT_LANDSCAPE_720,
    "sora-2-pro": _PORTRAIT_LANDSCAPE_720 + _TALL_WIDE + _FULL_HD,
    "sora-2-pro-2025-10-06": _PORTRAIT_LANDSCAPE_720 + _TALL_WIDE + _FULL_HD,
}


@dataclass(frozen=True)
class VideoSpec:
    model: str
    prompt: str
    seconds: int
    size: str

    @property
    def width(self) -> int:
        return int(self.size.split("x")[0])

    @property
    def height(self) -> int:
        return int(self.size.split("x")[1])


def validate_spec(model: str, prompt: str, seconds: int, size: str) -> VideoSpec:
    """Apply defaults for empty fields and refuse anything the API would refuse."""
    model = model or DEFAULT_MODEL
    seconds = seconds or DEFAULT_SECONDS
    size = size or DEFAULT_SIZE
    if model not in SIZES_BY_MODEL:
        raise _invalid(
            "model", f"Unsupported model {model!r}. Supported models: {', '.join(sorted(SIZES_BY_MODEL))}."
        )
    if not prompt or not prompt.strip():
        raise _invalid("prompt", "The prompt must not be empty.")
    if "\x00" in prompt:
        # PostgreSQL text cannot hold NUL; any gRPC caller could send one.
        raise _invalid("prompt", "The prompt must not contain NUL characters.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise _invalid(
            "prompt", f"The prompt is {len(prompt)} characters; the maximum is {MAX_PROMPT_CHARS}."
        )
    if segments.is_long(seconds):
        segments.check_long_seconds(seconds)
    elif seconds not in ALLOWED_SECONDS:
        raise _invalid(
            "seconds",
            f"Invalid seconds {seconds}. Allowed values: {', '.join(map(str, ALLOWED_SECONDS))}, "
            f"or a multiple of 4 up to {segments.MAX_VIDEO_SECONDS} for a long video.",
        )
    allowed_sizes = SIZES_BY_MODEL[model]
    if size not in allowed_sizes:
        raise _invalid(
            "size", f"Invalid size {size!r} for {model}. Allowed sizes: {', '.join(allowed_sizes)}."
        )
    return VideoSpec(model=model, prompt=prompt, seconds=seconds, size=size)


def _invalid(param: str, message: str) -> ServiceError:
    return ServiceError(ErrorKind.INVALID_ARGUMENT, message, param=param, code="invalid_value")
