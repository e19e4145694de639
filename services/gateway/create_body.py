"""Read a create-video body, JSON or multipart, into plain fields with clear 400s for bad input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import BadHttpMessage
from servicekit.errors import ErrorKind, ServiceError

_TEXT_FIELDS = ("model", "prompt", "seconds", "size")
_MAX_TEXT_FIELD_BYTES = 256 * 1024


@dataclass(frozen=True)
class CreateVideoFields:
    model: str
    prompt: str
    seconds: int
    size: str


async def read_create_body(request: web.Request) -> CreateVideoFields:
    content_type = request.content_type
    if content_type == "application/json":
        raw = await _read_json(request)
    elif content_type == "multipart/form-data":
        raw = await _read_multipart(request)
    else:
        raise _invalid(None, "Send the request as application/json or multipart/form-data.")
    if "input_reference" in raw:
        raise _invalid("input_reference", "Reference images are not supported yet.")
    return CreateVideoFields(
        model=_text(raw, "model"),
        prompt=_text(raw, "prompt"),
        seconds=_seconds(raw.get("seconds")),
        size=_text(raw, "size"),
    )


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
                fields[part.name] = part.filename  # a file upload; its bytes are not read here
                await part.release()
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


def _seconds(value: Any) -> int:
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise _invalid("seconds", "'seconds' must be one of '4', '8', '12', '16', '20'.")
    if isinstance(value, int) and 0 < value < 10_000:
        return value
    # ASCII digits only: str.isdigit also accepts '²', which int() refuses.
    if isinstance(value, str) and (text := value.strip()).isascii() and text.isdigit():
        if 0 < int(text[:5]) < 10_000:
            return int(text)
    raise _invalid("seconds", "'seconds' must be one of '4', '8', '12', '16', '20'.")


def _invalid(param: str | None, message: str) -> ServiceError:
    return ServiceError(
        ErrorKind.INVALID_ARGUMENT, message, param=param, code="invalid_value" if param else None
    )
