from __future__ import annotations

import io

import pytest
from PIL import Image, ImageDraw

from services.moderation.domain import (
    Blocklist,
    BlocklistConfigError,
    ImageDecodeError,
    dhash,
    hamming,
    parse_blocklist,
)
from services.moderation.domain.imagehash import format_hash, parse_hash


def picture(
    kind: str = "stripes", *, size: tuple[int, int] = (320, 240), fmt: str = "PNG", **save: int
) -> bytes:
    """Deterministic test pictures with clear structure (a dHash of a flat colour is all zeros)."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    width, height = size
    if kind == "stripes":
        for x in range(0, width, width // 8):
            draw.rectangle([x, 0, x + width // 16, height], fill=(20, 40, 160))
        draw.ellipse([width // 4, height // 4, 3 * width // 4, 3 * height // 4], fill=(200, 30, 30))
    elif kind == "gradient":
        for y in range(height):
            draw.line([0, y, width, y], fill=(255 * y // height, 100, 255 - 255 * y // height))
        draw.rectangle([width // 8, height // 3, width // 2, height // 2], fill="black")
    else:
        raise ValueError(kind)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def altered(data: bytes) -> bytes:
    """Scaled down, a small mark drawn on it, and re-encoded as JPEG: still the same picture."""
    with Image.open(io.BytesIO(data)) as image:
        smaller = image.convert("RGB").resize((image.width * 3 // 4, image.height * 3 // 4))
    ImageDraw.Draw(smaller).rectangle([2, 2, 12, 12], fill="yellow")
    buffer = io.BytesIO()
    smaller.save(buffer, "JPEG", quality=70)
    return buffer.getvalue()


def test_dhash_is_64_bits_and_stable_across_formats() -> None:
    value = dhash(picture())
    assert 0 < value < 2**64
    assert dhash(picture()) == value
    assert hamming(dhash(picture(fmt="JPEG", quality=90)), value) <= 2


def test_near_duplicates_are_close_and_different_pictures_far() -> None:
    original = dhash(picture())
    assert hamming(dhash(altered(picture())), original) <= 6
    assert hamming(dhash(picture("gradient")), original) > 16


def test_dhash_follows_the_definition() -> None:
    # Each row brighter on the left than the right at every step: all 64 bits set.
    image = Image.new("L", (9, 8))
    image.putdata([255 - 28 * column for _row in range(8) for column in range(9)])
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    assert dhash(buffer.getvalue()) == 2**64 - 1


@pytest.mark.parametrize("data", [b"not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, picture()[:200]])
def test_unreadable_bytes_raise_decode_error(data: bytes) -> None:
    with pytest.raises(ImageDecodeError):
        dhash(data)


def test_hamming() -> None:
    assert hamming(0, 0) == 0
    assert hamming(0b1011, 0b0001) == 2
    assert hamming(0, 2**64 - 1) == 64


def test_blocklist_threshold_is_inclusive() -> None:
    blocklist = Blocklist.of([0xFF00], max_distance=2)
    assert blocklist.closest(0xFF00) == 0
    assert blocklist.closest(0xFF03) == 2
    assert blocklist.closest(0xFF07) is None
    assert Blocklist.of([], 6).closest(0) is None


def test_parse_blocklist() -> None:
    assert parse_blocklist(["00000000000000ff", "0xFFFFFFFFFFFFFFFF"]) == (0xFF, 2**64 - 1)
    assert parse_hash(format_hash(0xABC)) == 0xABC
    assert format_hash(0xABC) == "0000000000000abc"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"hashes": []}, "expected a JSON list"),
        (["abc"], r"\[0\]: 'abc' is not a 64-bit hash"),
        (["00000000000000ff", "zz000000000000ff"], r"\[1\]: 'zz000000000000ff'"),
        (["00000000000000ff0"], r"\[0\]"),
        ([255], r"\[0\]: 255 is not"),
    ],
)
def test_blocklist_errors_name_the_entry(document: object, message: str) -> None:
    with pytest.raises(BlocklistConfigError, match=message):
        parse_blocklist(document)
