"""Perceptual difference hash (dHash) of an image and a blocklist of near-duplicates, with Pillow.

dHash: grayscale, resize to 9x8, and for each row set a bit where a pixel is brighter than its
right-hand neighbour; 64 bits, most significant first (row-major). Re-encoding, resizing and small
edits move only a few bits, so a blocked picture is found by Hamming distance, not equality.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

_HEX64 = re.compile(r"(?:0x)?([0-9a-fA-F]{16})")


class ImageDecodeError(ValueError):
    """The bytes are not an image Pillow can read."""


class BlocklistConfigError(ValueError):
    """The blocklist is malformed; the message names the entry."""


def dhash(data: bytes) -> int:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                image.draft("L", (64, 64))  # JPEG: decode at a reduced scale, much faster
                small = image.convert("L").resize((9, 8), Image.Resampling.LANCZOS)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning):  # fmt: skip
        raise ImageDecodeError("not a readable image") from None
    pixels = small.tobytes()  # mode L: one byte per pixel, row-major
    value = 0
    for row in range(8):
        for column in range(8):
            left, right = pixels[row * 9 + column], pixels[row * 9 + column + 1]
            value = (value << 1) | (1 if left > right else 0)
    return value


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def format_hash(value: int) -> str:
    return f"{value:016x}"


def parse_hash(text: str) -> int:
    match = _HEX64.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise BlocklistConfigError(f"{text!r} is not a 64-bit hash in 16 hex digits")
    return int(match.group(1), 16)


def parse_blocklist(document: object) -> tuple[int, ...]:
    if not isinstance(document, list):
        raise BlocklistConfigError("expected a JSON list of 16-hex-digit dHash strings")
    hashes = []
    for index, item in enumerate(document):
        try:
            hashes.append(parse_hash(item))
        except BlocklistConfigError as exc:
            raise BlocklistConfigError(f"[{index}]: {exc}") from None
    return tuple(hashes)


@dataclass(frozen=True)
class Blocklist:
    hashes: tuple[int, ...]
    max_distance: int

    @classmethod
    def of(cls, hashes: Iterable[int], max_distance: int) -> Blocklist:
        return cls(tuple(hashes), max_distance)

    def closest(self, value: int) -> int | None:
        """The smallest distance to a blocked hash when within the threshold, else None."""
        distances = [hamming(value, blocked) for blocked in self.hashes]
        best = min(distances, default=None)
        return best if best is not None and best <= self.max_distance else None
