"""Read a create-video body, JSON or multipart, into plain fields with clear 400s for bad input."""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import BadHttpMessage
from servicekit.errors import ErrorKind, ServiceError

_TEXT_FIELDS = ("model", "prompt", "seconds", "size")
_MAX_TEXT_FIELD_BYTES = 256 * 1024
MAX_REFERENCE_IMAGES = 4
MAX_REFERENCE_BYTES = 10 * 1024 * 1024
_REFERENCE_FIELDS = ("input_reference", "input_references")
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?(?:;[\w-]+=[\w.+-]+)*;base64,(.*)$", re.DOTALL)
_FITS = ("crop", "pad")
MAX_SEGMENTS = 12
_SECONDS_HINT = (
    "'seconds' must be one of '4', '8', '12', '16', '20', or a multiple of 4 up to 120 for a long video."
)


@dataclass(frozen=True)
class ReferenceUpload:
    data: bytes
    content_type: str
    filename: str


@dataclass(frozen=True)
class CreateVideoFields:
    model: str
    prompt: str
    seconds: int
    size: str
    references: list[ReferenceUpload] = field(default_factory=list)
    reference_fit: str = "crop"
    # Vidflow extension: a long video's clips as (prompt, seconds), in order.
    segments: list[tuple[str, int]] = field(default_factory=list)
    # Vidflow extension: where to POST this video's video.completed or video.failed ("" for none).
    webhook_url: str = ""


async def read_create_body(request: web.Request) -> CreateVideoFields:
    content_type = request.content_type
    if content_type == "application/json":
        raw = await _read_json(request)
    elif content_type == "multipart/form-data":
        raw = await _read_multipart(request)
    else:
        raise _invalid(None, "Send the request as application/json or multipart/form-data.")
    return create_fields(raw)


def create_fields(raw: dict[str, Any]) -> CreateVideoFields:
    """The fields of one create body already read into a dict (also each request of a batch)."""
    fit = raw.get("reference_fit") or "crop"
    if fit not in _FITS:
        raise _invalid("reference_fit", "reference_fit must be 'crop' or 'pad'.")
    return CreateVideoFields(
        model=_text(raw, "model"),
        prompt=_text(raw, "prompt"),
        seconds=_seconds(raw.get("seconds")),
        size=_text(raw, "size"),
        references=_references(raw),
        reference_fit=fit,
        segments=_segments(raw.get("segments")),
        webhook_url=_text(raw, "webhook_url"),
    )


def _segments(value: Any) -> list[tuple[str, int]]:
    """`segments`: a JSON array of {"prompt", "seconds"} (a JSON string in multipart). The jobs
    service checks the values; this checks the shape."""
    if value is None:
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise _invalid("segments", "segments must be a JSON array.") from None
    if not isinstance(value, list):
        raise _invalid("segments", 'segments must be an array of {"prompt": ..., "seconds": ...} objects.')
    if len(value) > MAX_SEGMENTS:
        raise _invalid("segments", f"At most {MAX_SEGMENTS} segments; this request has {len(value)}.")
    clips = []
    for index, item in enumerate(value):
        if not isinstance(item, dict) or set(item) - {"prompt", "seconds"}:
            raise _invalid(f"segments[{index}]", 'Each segment is {"prompt": ..., "seconds": ...}.')
        prompt = _text(item, "prompt")
        if not prompt.strip():
            raise _invalid(f"segments[{index}].prompt", "Every segment needs a prompt.")
        clips.append((prompt, _seconds(item.get("seconds"), param=f"segments[{index}].seconds") or 4))
    return clips


def _references(raw: dict[str, Any]) -> list[ReferenceUpload]:
    """OpenAI's single `input_reference`, or Vidflow's `input_references` list, as uploads or
    `{"image_url": "data:...;base64,..."}` objects. The render service checks the images."""
    items: list[Any] = []
    for name in _REFERENCE_FIELDS:
        value = raw.get(name)
        if value is None:
            continue
        items.extend(value if isinstance(value, list) else [value])
    if len(items) > MAX_REFERENCE_IMAGES:
        raise _invalid(
            "input_reference",
            f"At most {MAX_REFERENCE_IMAGES} reference images; this request has {len(items)}.",
        )
    return [_reference(index, item) for index, item in enumerate(items)]


def _reference(index: int, item: Any) -> ReferenceUpload:
    param = f"input_reference[{index}]"
    if isinstance(item, ReferenceUpload):
        upload = item
    elif isinstance(item, dict):
        if item.get("file_id"):
            raise _invalid(
                param, "file_id references are not supported; upload the image or send a data URL."
            )
        url = item.get("image_url")
        if isinstance(url, dict):  # the chat-style {"image_url": {"url": ...}} shape
            url = url.get("url")
        if not isinstance(url, str) or not url:
            raise _invalid(param, "A reference object needs an image_url (a base64 data URL).")
        upload = _from_data_url(param, url)
    else:
        raise _invalid(param, 'A reference image must be an uploaded file or an {"image_url": ...} object.')
    if not upload.data:
        raise _invalid(param, "The reference image is empty (0 bytes).")
    if len(upload.data) > MAX_REFERENCE_BYTES:
        raise _invalid(
            param, f"The reference image is larger than {MAX_REFERENCE_BYTES // (1024 * 1024)} MB."
        )
    return upload


def _from_data_url(param: str, url: str) -> ReferenceUpload:
    if url.startswith(("http://", "https://")):
        # Fetching arbitrary URLs from inside the platform would invite SSRF; clients send the bytes.
        raise _invalid(param, "Only base64 data URLs are accepted for image_url (data:image/png;base64,...).")
    match = _DATA_URL.match(url)
    if match is None:
        raise _invalid(param, "image_url must be a base64 data URL such as data:image/png;base64,....")
    encoded = match.group(2)
    if len(encoded) > (MAX_REFERENCE_BYTES * 4) // 3 + 8:
        raise _invalid(
            param, f"The reference image is larger than {MAX_REFERENCE_BYTES // (1024 * 1024)} MB."
        )
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(param, "The data URL's base64 payload is not valid base64.") from None
    return ReferenceUpload(data=data, content_type=match.group(1) or "", filename="")


async def _read_json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, LookupError, RecursionError):
        # Bad JSON or bytes (ValueError), an unknown charset (LookupError), absurd nesting.
        raise _invalid(None, "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise _invalid(None, "The request body must be a JSON object.")
    return body


async def _read_multipart(request: web.Request) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or not part.name:
                raise _invalid(None, "Nested or unnamed multipart parts are not supported.")
            if part.filename is not None:
                if part.name not in _REFERENCE_FIELDS:
                    raise _invalid(part.name, f"Unexpected file upload in field {part.name!r}.")
                data = await _read_at_most(part, MAX_REFERENCE_BYTES)
                index = len(fields.get("input_reference", []))
                if data is None:
                    raise _invalid(
                        f"input_reference[{index}]",
                        f"The reference image is larger than {MAX_REFERENCE_BYTES // (1024 * 1024)} MB.",
                    )
                await part.release()
                upload = ReferenceUpload(
                    data=bytes(data),
                    content_type=part.headers.get("Content-Type", ""),
                    filename=part.filename[:255],
                )
                fields.setdefault("input_reference", []).append(upload)
                if len(fields["input_reference"]) > MAX_REFERENCE_IMAGES:
                    raise _invalid("input_reference", f"At most {MAX_REFERENCE_IMAGES} reference images.")
                continue
            data = await part.read()
            if len(data) > _MAX_TEXT_FIELD_BYTES:
                raise _invalid(part.name, f"The field {part.name!r} is too large.")
            try:
                fields[part.name] = data.decode("utf-8")
            except UnicodeDecodeError:
                raise _invalid(part.name, f"The field {part.name!r} is not valid UTF-8 text.") from None
    except ServiceError:
        raise
    except (ValueError, AssertionError, RuntimeError, BadHttpMessage) as exc:
        # aiohttp raises these on a malformed boundary, truncated body or bad part headers.
        raise _invalid(None, f"The multipart body is malformed: {exc}") from None
    return fields


async def _read_at_most(part: BodyPartReader, limit: int) -> bytes | None:
    """The part's bytes, or None as soon as it proves longer than `limit`."""
    chunks: list[bytes] = []
    total = 0
    while chunk := await part.read_chunk(64 * 1024):
        total += len(chunk)
        if total > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _text(raw: dict[str, Any], name: str) -> str:
    value = raw.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _invalid(name, f"{name!r} must be a string.")
    if value == "" and name != "prompt":
        raise _invalid(name, f"{name!r} must not be empty; leave it out to use the default.")
    # JSON can carry lone surrogates and NUL, which neither protobuf nor PostgreSQL text accepts.
    if "\x00" in value or not _encodes_as_utf8(value):
        raise _invalid(name, f"{name!r} must be valid Unicode text without NUL characters.")
    return value


def _encodes_as_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _seconds(value: Any, param: str = "seconds") -> int:
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise _invalid(param, _SECONDS_HINT)
    if isinstance(value, int) and 0 < value < 10_000:
        return value
    # ASCII digits only: str.isdigit also accepts '²', which int() refuses.
    if isinstance(value, str) and (text := value.strip()).isascii() and text.isdigit():
        if 0 < int(text[:5]) < 10_000:
            return int(text)
    raise _invalid(param, _SECONDS_HINT)


def _invalid(param: str | None, message: str) -> ServiceError:
    return ServiceError(
        ErrorKind.INVALID_ARGUMENT, message, param=param, code="invalid_value" if param else None
    )
