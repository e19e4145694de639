"""What a video job is and how it moves, without HTTP, ffmpeg or clocks.

Everything here is a pure function of its arguments (the current time is passed in), so the
lifecycle and validation rules can be tested exhaustively without a server.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

# Models and limits as published for OpenAI's Videos API (see the OpenAPI spec in shared/reference).
PRO_MODELS = frozenset({"sora-2-pro", "sora-2-pro-2025-10-06"})
MODELS = frozenset({"sora-2", "sora-2-2025-10-06", "sora-2-2025-12-08"}) | PRO_MODELS
STANDARD_SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")
PRO_ONLY_SIZES = ("1080x1920", "1920x1080")
SECONDS_CHOICES = ("4", "8", "12", "16", "20")
DEFAULT_MODEL = "sora-2"
DEFAULT_SECONDS = "4"
DEFAULT_SIZE = "720x1280"
MAX_PROMPT_CHARS = 32000
MAX_IMAGE_URL_CHARS = 20 * 1024 * 1024
MAX_REFERENCE_IMAGE_BYTES = 20 * 1024 * 1024
CREATE_FIELDS = frozenset({"prompt", "model", "seconds", "size", "input_reference"})
REMIX_FIELDS = frozenset({"prompt"})
MAX_LIST_LIMIT = 100
DEFAULT_LIST_LIMIT = 20
# The first part of the generation time is reported as "queued", the rest as "in_progress".
QUEUED_FRACTION = 0.1


# --- errors -------------------------------------------------------------------------------------


class VideoError(Exception):
    """A request the simulator refuses; `param` and `code` mirror OpenAI's error object."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class InvalidArgument(VideoError):
    pass


class FailedPrecondition(VideoError):
    """The request is well formed but the video is not in a state that allows it."""


class NotFound(VideoError):
    pass


class IdempotencyConflict(VideoError):
    """An Idempotency-Key was reused for a different request."""


class Unauthenticated(VideoError):
    pass


# --- requests -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadedImage:
    """A reference image sent as a file; only a fingerprint is kept, the pixels are not used."""

    format: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class ImageReference:
    image_url: str | None = None
    file_id: str | None = None


InputReference = UploadedImage | ImageReference


@dataclass(frozen=True)
class VideoSpec:
    """A validated create request: everything needed to render the clip."""

    prompt: str
    model: str = DEFAULT_MODEL
    seconds: str = DEFAULT_SECONDS
    size: str = DEFAULT_SIZE
    input_reference: InputReference | None = None

    @property
    def width(self) -> int:
        return int(self.size.split("x")[0])

    @property
    def height(self) -> int:
        return int(self.size.split("x")[1])

    @property
    def duration_seconds(self) -> int:
        return int(self.seconds)


def parse_create_request(fields: Mapping[str, object]) -> VideoSpec:
    """Validate a create body (JSON object, or multipart fields already collected into a mapping)."""
    _reject_unknown(fields, CREATE_FIELDS)
    prompt = _prompt(fields)
    model = _optional_string(fields, "model", DEFAULT_MODEL)
    if model not in MODELS:
        raise InvalidArgument(
            f"Invalid value: '{model}'. Supported values are: {_quoted(sorted(MODELS))}.",
            param="model",
            code="invalid_value",
        )
    seconds = _optional_string(fields, "seconds", DEFAULT_SECONDS)
    if seconds not in SECONDS_CHOICES:
        raise InvalidArgument(
            f"Invalid value: '{seconds}'. Supported values are: {_quoted(SECONDS_CHOICES)}.",
            param="seconds",
            code="invalid_value",
        )
    size = _optional_string(fields, "size", DEFAULT_SIZE)
    if size in PRO_ONLY_SIZES and model not in PRO_MODELS:
        raise InvalidArgument(
            f"Size '{size}' is only available with sora-2-pro models.", param="size", code="invalid_value"
        )
    if size not in STANDARD_SIZES + PRO_ONLY_SIZES:
        raise InvalidArgument(
            f"Invalid value: '{size}'. Supported values are: {_quoted(STANDARD_SIZES + PRO_ONLY_SIZES)}.",
            param="size",
            code="invalid_value",
        )
    return VideoSpec(
        prompt=prompt,
        model=model,
        seconds=seconds,
        size=size,
        input_reference=_input_reference(fields.get("input_reference")),
    )


def parse_remix_request(fields: Mapping[str, object]) -> str:
    """Validate a remix body and return its prompt."""
    _reject_unknown(fields, REMIX_FIELDS)
    return _prompt(fields)


def remix_spec(source: VideoSpec, prompt: str) -> VideoSpec:
    """A remix keeps the source's model, size and length; only the prompt changes."""
    return VideoSpec(prompt=prompt, model=source.model, seconds=source.seconds, size=source.size)


def uploaded_image(data: bytes) -> UploadedImage:
    image_format = sniff_image_format(data)
    if image_format is None:
        raise InvalidArgument(
            "Invalid file for 'input_reference': expected a JPEG, PNG or WebP image.",
            param="input_reference",
            code="invalid_image",
        )
    return UploadedImage(format=image_format, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())


def sniff_image_format(data: bytes) -> str | None:
    """Recognise the image formats the Videos API accepts by their magic bytes."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def _reject_unknown(fields: Mapping[str, object], known: frozenset[str]) -> None:
    for name in fields:
        if name not in known:
            raise InvalidArgument(f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter")


def _prompt(fields: Mapping[str, object]) -> str:
    if "prompt" not in fields or fields["prompt"] is None:
        raise InvalidArgument(
            "Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter"
        )
    prompt = _string(fields["prompt"], "prompt")
    if len(prompt) < 1:
        raise InvalidArgument(
            "Invalid 'prompt': string too short. Expected a string with minimum length 1, "
            "but got an empty string instead.",
            param="prompt",
            code="string_below_min_length",
        )
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidArgument(
            f"Invalid 'prompt': string too long. Expected a string with maximum length {MAX_PROMPT_CHARS}, "
            f"but got a string with length {len(prompt)} instead.",
            param="prompt",
            code="string_above_max_length",
        )
    return prompt


def _optional_string(fields: Mapping[str, object], name: str, default: str) -> str:
    value = fields.get(name)
    return default if value is None else _string(value, name)


def _string(value: object, name: str) -> str:
    # Strict like the real API: a client sending seconds=4 instead of "4" should learn it here.
    if not isinstance(value, str):
        raise InvalidArgument(
            f"Invalid type for '{name}': expected a string, but got {_json_type(value)} instead.",
            param=name,
            code="invalid_type",
        )
    return value


def _input_reference(value: object) -> InputReference | None:
    if value is None or isinstance(value, UploadedImage):
        return value
    if not isinstance(value, Mapping):
        raise InvalidArgument(
            "Invalid type for 'input_reference': expected an uploaded file or an object with "
            "'image_url' or 'file_id'.",
            param="input_reference",
            code="invalid_type",
        )
    for name in value:
        if name not in ("image_url", "file_id"):
            raise InvalidArgument(
                f"Unknown parameter: 'input_reference.{name}'.",
                param=f"input_reference.{name}",
                code="unknown_parameter",
            )
    image_url = value.get("image_url")
    file_id = value.get("file_id")
    if (image_url is None) == (file_id is None):
        raise InvalidArgument(
            "Provide exactly one of 'image_url' or 'file_id' in 'input_reference'.",
            param="input_reference",
            code="invalid_value",
        )
    if image_url is not None:
        url = _string(image_url, "input_reference.image_url")
        if len(url) > MAX_IMAGE_URL_CHARS or not url.startswith(("http://", "https://", "data:image/")):
            raise InvalidArgument(
                "Invalid 'input_reference.image_url': expected an http(s) URL or a data:image/ URL.",
                param="input_reference.image_url",
                code="invalid_value",
            )
        return ImageReference(image_url=url)
    file_ref = _string(file_id, "input_reference.file_id")
    if not file_ref:
        raise InvalidArgument(
            "Invalid 'input_reference.file_id': expected a non-empty string.",
            param="input_reference.file_id",
            code="invalid_value",
        )
    return ImageReference(file_id=file_ref)


def _quoted(values: Sequence[str]) -> str:
    quoted = [f"'{value}'" for value in values]
    return ", ".join(quoted[:-1]) + f", and {quoted[-1]}" if len(quoted) > 1 else quoted[0]


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return "a file" if isinstance(value, UploadedImage) else f"a {type(value).__name__}"


# --- the video and its lifecycle ----------------------------------------------------------------


class Status(StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True)
class Failure:
    code: str
    message: str
    at: float


@dataclass
class Video:
    """A job as the store keeps it. Status is not stored: `observe` derives it from time and outcome."""

    id: str
    spec: VideoSpec
    created_at: float
    remixed_from_video_id: str | None = None
    # Set by the render task: exactly one of these, once the files exist or ffmpeg has given up.
    rendered_at: float | None = None
    failure: Failure | None = None
    # Chaos may shorten the asset TTL of one video; None means Timing.asset_ttl_seconds.
    asset_ttl_seconds: float | None = None


@dataclass(frozen=True)
class Timing:
    generation_seconds: float
    asset_ttl_seconds: float


@dataclass(frozen=True)
class VideoState:
    status: Status
    progress: int
    completed_at: float | None = None
    expires_at: float | None = None
    error: Failure | None = None

    @property
    def finished(self) -> bool:
        return self.status in (Status.COMPLETED, Status.FAILED)


def new_video_id() -> str:
    return f"video_{secrets.token_hex(16)}"


def progress_at(elapsed: float, generation_seconds: float) -> int:
    """Percent of the generation time that has passed; never 100 (only completion reports 100)."""
    if generation_seconds <= 0:
        return 99
    return max(0, min(99, math.floor(100 * elapsed / generation_seconds)))


def observe(video: Video, now: float, timing: Timing) -> VideoState:
    """The state a client sees at `now`.

    A video completes only when both the nominal generation time has passed and its files exist,
    so a slow render stretches the job rather than serving a missing file. A render failure shows
    as soon as it is known.
    """
    if video.failure is not None:
        return VideoState(
            status=Status.FAILED,
            progress=progress_at(video.failure.at - video.created_at, timing.generation_seconds),
            error=video.failure,
        )
    due_at = video.created_at + timing.generation_seconds
    if video.rendered_at is not None and now >= due_at:
        completed_at = max(due_at, video.rendered_at)
        return VideoState(
            status=Status.COMPLETED,
            progress=100,
            completed_at=completed_at,
            expires_at=completed_at
            + (timing.asset_ttl_seconds if video.asset_ttl_seconds is None else video.asset_ttl_seconds),
        )
    elapsed = now - video.created_at
    if elapsed < QUEUED_FRACTION * timing.generation_seconds:
        return VideoState(status=Status.QUEUED, progress=0)
    return VideoState(status=Status.IN_PROGRESS, progress=progress_at(elapsed, timing.generation_seconds))


def poll_after_ms(video: Video, now: float, timing: Timing) -> int:
    """How long a client should wait before asking again: until the job is due, within 0.1..1 s."""
    remaining = video.created_at + timing.generation_seconds - now
    return max(100, min(1000, math.ceil(remaining * 1000)))


def due_at(video: Video, timing: Timing) -> float:
    """When the video is nominally finished: it completes then if its files exist by then."""
    return video.created_at + timing.generation_seconds


def refusal(prompt_term: str) -> InvalidArgument:
    """OpenAI's content-policy refusal of a prompt, as the create and remix endpoints return it."""
    return InvalidArgument(
        "Your request was blocked by our moderation system because the prompt may violate our "
        f"usage policies (matched a blocked term: '{prompt_term}').",
        param="prompt",
        code="moderation_blocked",
    )


def require_downloadable(video: Video, state: VideoState, now: float) -> None:
    if state.status is not Status.COMPLETED:
        raise FailedPrecondition(
            f"Video '{video.id}' is {state.status.value}; content is available once it is completed.",
            param="video_id",
            code="video_not_ready",
        )
    if state.expires_at is not None and now >= state.expires_at:
        raise FailedPrecondition(
            f"The assets of video '{video.id}' expired and can no longer be downloaded.",
            param="video_id",
            code="video_expired",
        )


def require_remixable(video: Video, state: VideoState) -> None:
    if state.status is not Status.COMPLETED:
        raise FailedPrecondition(
            f"Video '{video.id}' is {state.status.value}; only completed videos can be remixed.",
            param="video_id",
            code="invalid_video_status",
        )


# --- listing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListParams:
    after: str | None = None
    limit: int = DEFAULT_LIST_LIMIT
    order: Literal["asc", "desc"] = "desc"


@dataclass(frozen=True)
class Page:
    videos: list[Video]
    has_more: bool


def parse_list_params(query: Mapping[str, str]) -> ListParams:
    raw_limit = query.get("limit")
    limit = DEFAULT_LIST_LIMIT
    if raw_limit is not None:
        try:
            limit = int(raw_limit)
        except ValueError:
            limit = -1
        if not 0 <= limit <= MAX_LIST_LIMIT:
            raise InvalidArgument(
                f"Invalid 'limit': expected an integer between 0 and {MAX_LIST_LIMIT}, got '{raw_limit}'.",
                param="limit",
                code="invalid_value",
            )
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidArgument(
            f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.",
            param="order",
            code="invalid_value",
        )
    return ListParams(
        after=query.get("after") or None, limit=limit, order="asc" if order == "asc" else "desc"
    )


def paginate(videos_oldest_first: Sequence[Video], params: ListParams) -> Page:
    """Cursor paging: the page after the video `params.after` in the requested order."""
    ordered = list(videos_oldest_first if params.order == "asc" else reversed(videos_oldest_first))
    start = 0
    if params.after is not None:
        position = next((i for i, video in enumerate(ordered) if video.id == params.after), None)
        if position is None:
            raise InvalidArgument(
                f"Invalid 'after': no video with id '{params.after}'.", param="after", code="invalid_value"
            )
        start = position + 1
    rest = ordered[start:]
    return Page(videos=rest[: params.limit], has_more=len(rest) > params.limit)
