"""The create body: only what was given, segments as the gateway's extension, references as files."""

from __future__ import annotations

import json
from pathlib import Path

from vidflow_cli.create_request import CreateVideo, FilePart, Segment, create_fields, multipart_parts


def test_only_given_fields_are_sent() -> None:
    assert create_fields(CreateVideo(prompt="a cat")) == {"prompt": "a cat"}
    assert create_fields(CreateVideo(prompt="a cat", model="sora-2", seconds="8", size="1280x720")) == {
        "prompt": "a cat",
        "model": "sora-2",
        "seconds": "8",
        "size": "1280x720",
    }


def test_segments_are_sent_only_when_given() -> None:
    fields = create_fields(CreateVideo(prompt=None, segments=(Segment("dawn", "4"), Segment("dusk", "8"))))
    assert fields == {"segments": [{"prompt": "dawn", "seconds": "4"}, {"prompt": "dusk", "seconds": "8"}]}


def test_multipart_has_text_fields_then_one_input_reference_per_image(tmp_path: Path) -> None:
    png, webp, odd = tmp_path / "a.png", tmp_path / "b.webp", tmp_path / "c.unknown"
    for path in (png, webp, odd):
        path.write_bytes(path.name.encode())
    texts, files = multipart_parts(
        CreateVideo(
            prompt="a cat",
            seconds="4",
            segments=(Segment("dawn", "4"),),
            references=(png, webp, odd),
            reference_fit="pad",
        )
    )
    assert dict(texts) == {
        "prompt": "a cat",
        "seconds": "4",
        "reference_fit": "pad",
        "segments": json.dumps([{"prompt": "dawn", "seconds": "4"}]),
    }
    assert files == [
        FilePart("input_reference", b"a.png", "a.png", "image/png"),
        FilePart("input_reference", b"b.webp", "b.webp", "image/webp"),
        # The server checks the bytes themselves; an unknown suffix is not refused here.
        FilePart("input_reference", b"c.unknown", "c.unknown", "application/octet-stream"),
    ]
