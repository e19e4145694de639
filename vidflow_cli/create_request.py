"""What a create (or quote) asks for, and the body fields it becomes; pure, no I/O but reading files."""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Segment:
    """One scene of a longer video (the gateway's `segments` extension)."""

    prompt: str
    seconds: str  # digits, sent as a string like the top-level `seconds`


@dataclass(frozen=True)
class CreateVideo:
    prompt: str | None
    model: str | None = None
    seconds: str | None = None
    size: str | None = None
    segments: Sequence[Segment] = ()
    references: Sequence[Path] = ()
    reference_fit: str | None = None


def create_fields(request: CreateVideo) -> dict[str, Any]:
    """The create body's fields, leaving out what was not given so the server's defaults apply."""
    fields: dict[str, Any] = {}
    for name in ("prompt", "model", "seconds", "size", "reference_fit"):
        value = getattr(request, name)
        if value is not None:
            fields[name] = value
    if request.segments:
        fields["segments"] = [{"prompt": s.prompt, "seconds": s.seconds} for s in request.segments]
    return fields


@dataclass(frozen=True)
class FilePart:
    name: str
    data: bytes
    filename: str
    content_type: str


def multipart_parts(request: CreateVideo) -> tuple[list[tuple[str, str]], list[FilePart]]:
    """Multipart for reference images: the text fields (segments as a JSON string), then one
    repeated `input_reference` file part per image, in the order given."""
    texts = [
        (name, json.dumps(value) if name == "segments" else value)
        for name, value in create_fields(request).items()
    ]
    files = [
        FilePart(
            name="input_reference",
            data=path.read_bytes(),
            filename=path.name,
            content_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream",
        )
        for path in request.references
    ]
    return texts, files
