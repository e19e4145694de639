"""Pure tests of the reference-image rules: counts, sizes, sniffing, declarations, end of data, geometry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from servicekit.errors import ErrorKind, ServiceError

from services.renderer.domain.references import (
    INVALID_IMAGE_CODE,
    Fit,
    ImageFormat,
    Limits,
    PreparedImage,
    StoredReference,
    TargetSize,
    check_bytes,
    check_count,
    check_pixels,
    parse_target_size,
    placement,
    reference_key,
    sniff_format,
)

LIMITS = Limits(max_bytes=1000, max_pixels=40_000_000)
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 20 + b"\xff\xd9"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 20 + b"\x00\x00\x00\x00IEND\xaeB`\x82"
WEBP = b"RIFF" + (16).to_bytes(4, "little") + b"WEBPVP8 " + b"\x00" * 8


def refused(data: bytes, declared: str = "", limits: Limits = LIMITS, index: int = 2) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        check_bytes(index, data, declared, limits)
    error = caught.value
    assert error.kind is ErrorKind.INVALID_ARGUMENT
    assert error.code == INVALID_IMAGE_CODE
    assert error.param == f"input_reference[{index}]"
    assert error.message.startswith(f"reference image {index}: ")
    return error


@pytest.mark.parametrize("count", [0, 5, 12])
def test_one_to_four_images(count: int) -> None:
    with pytest.raises(ServiceError) as caught:
        check_count(count)
    assert caught.value.kind is ErrorKind.INVALID_ARGUMENT
    assert caught.value.param == "input_reference"
    assert str(count) in caught.value.message
    for fine in (1, 4):
        check_count(fine)


@pytest.mark.parametrize(
    ("data", "found"),
    [
        (JPEG, ImageFormat.JPEG),
        (PNG, ImageFormat.PNG),
        (WEBP, ImageFormat.WEBP),
        (b"GIF89a....", ImageFormat.GIF),
        (b"GIF87a....", ImageFormat.GIF),
        (b"BM\x00\x00", ImageFormat.BMP),
        (b"II*\x00\x08", ImageFormat.TIFF),
        (b"MM\x00*\x00", ImageFormat.TIFF),
        (b"\x00\x00\x00\x18ftypheic", ImageFormat.HEIF),
        (b"\xef\xbb\xbf  <svg xmlns='http://www.w3.org/2000/svg'/>", ImageFormat.SVG),
        (b'<?xml version="1.0"?>\n<svg/>', ImageFormat.SVG),
        (b"%PDF-1.7", ImageFormat.PDF),
        (b"<html><body>hi</body></html>", None),
        (b"PK\x03\x04", None),
    ],
)
def test_formats_are_sniffed_from_the_bytes(data: bytes, found: ImageFormat | None) -> None:
    assert sniff_format(data) is found


@pytest.mark.parametrize("data", [JPEG, PNG, WEBP])
@pytest.mark.parametrize("declared", ["", "application/octet-stream", "binary/octet-stream"])
def test_no_declaration_is_accepted(data: bytes, declared: str) -> None:
    assert check_bytes(0, data, declared, LIMITS).accepted


@pytest.mark.parametrize(
    ("data", "declared", "expected"),
    [
        (JPEG, "image/jpeg", ImageFormat.JPEG),
        (JPEG, "IMAGE/JPG; charset=binary", ImageFormat.JPEG),
        (PNG, "image/png", ImageFormat.PNG),
        (WEBP, "image/webp", ImageFormat.WEBP),
    ],
)
def test_matching_declarations_pass(data: bytes, declared: str, expected: ImageFormat) -> None:
    assert check_bytes(0, data, declared, LIMITS) is expected


@pytest.mark.parametrize(
    ("data", "declared", "message"),
    [
        (JPEG, "image/png", "declared image/png but the bytes are JPEG"),
        (PNG, "image/jpeg", "declared image/jpeg but the bytes are PNG"),
        (WEBP, "image/gif", "declared image/gif but the bytes are WebP"),
        (JPEG, "text/html", "declared text/html but the bytes are JPEG"),
    ],
)
def test_a_wrong_declaration_names_both(data: bytes, declared: str, message: str) -> None:
    assert message in refused(data, declared).message


@pytest.mark.parametrize(
    ("data", "label"),
    [
        (b"GIF89a" + b"\x00" * 10, "GIF"),
        (b"BM" + b"\x00" * 10, "BMP"),
        (b"II*\x00" + b"\x00" * 10, "TIFF"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "SVG"),
    ],
)
def test_other_formats_are_unsupported(data: bytes, label: str) -> None:
    # The unsupported format wins over a (mis)declaration: it is the more useful thing to hear.
    message = refused(data, "image/png").message
    assert f"unsupported image format {label}; send JPEG, PNG or WebP" in message


def test_unknown_bytes_empty_and_oversized_are_refused() -> None:
    assert "not a recognised image" in refused(b"hello").message
    assert "empty" in refused(b"").message
    message = refused(JPEG + b"\x00" * 1000).message
    assert "1026 bytes" in message and "1000-byte limit" in message


@pytest.mark.parametrize(
    "data",
    [
        JPEG + b"PK\x03\x04zip",  # JPEG+ZIP polyglot
        JPEG[:-1],  # cut before the EOI marker
        PNG + b"<html><script>alert(1)</script></html>",  # PNG+HTML polyglot
        PNG[:-4],
        WEBP + b"extra",
        WEBP[:-1],
    ],
)
def test_data_after_the_end_or_a_missing_end_is_refused(data: bytes) -> None:
    assert "truncated or followed by other data" in refused(data).message


def test_nul_padding_after_a_jpeg_is_tolerated() -> None:
    assert check_bytes(0, JPEG + b"\x00" * 16, "", LIMITS) is ImageFormat.JPEG


def test_pixel_cap() -> None:
    check_pixels(0, 8000, 5000, LIMITS)
    with pytest.raises(ServiceError) as caught:
        check_pixels(3, 8000, 5001, LIMITS)
    assert "too many pixels" in caught.value.message and "8000x5001" in caught.value.message
    assert caught.value.param == "input_reference[3]"


@pytest.mark.parametrize("value", ["", "1280", "1280*720", "0x720", "1280x0", " 1280x720", "5000x720"])
def test_bad_target_sizes(value: str) -> None:
    with pytest.raises(ServiceError) as caught:
        parse_target_size(value)
    assert caught.value.param == "target_size"


def test_target_size_parses_width_then_height() -> None:
    assert parse_target_size("720x1280") == TargetSize(720, 1280)


@pytest.mark.parametrize(
    ("source", "fit", "scaled", "crop", "offset"),
    [
        ((1920, 1080), Fit.CROP, (1280, 720), (0, 0, 1280, 720), (0, 0)),
        ((1920, 1080), Fit.PAD, (1280, 720), None, (0, 0)),
        ((800, 600), Fit.CROP, (1280, 960), (0, 120, 1280, 840), (0, 0)),  # 4:3 -> trim top and bottom
        ((800, 600), Fit.PAD, (960, 720), None, (160, 0)),  # 4:3 -> bars left and right
        ((1080, 1920), Fit.PAD, (405, 720), None, (437, 0)),  # portrait into landscape
        ((1080, 1920), Fit.CROP, (1280, 2276), (0, 778, 1280, 1498), (0, 0)),
        ((4000, 10), Fit.PAD, (1280, 3), None, (0, 358)),
        ((100000, 1), Fit.PAD, (1280, 1), None, (0, 359)),  # never zero-sized
    ],
)
def test_fit_geometry(
    source: tuple[int, int],
    fit: Fit,
    scaled: tuple[int, int],
    crop: tuple[int, int, int, int] | None,
    offset: tuple[int, int],
) -> None:
    where = placement(source, TargetSize(1280, 720), fit)
    assert (where.scaled, where.crop, where.offset) == (scaled, crop, offset)


@given(
    st.integers(1, 20_000),
    st.integers(1, 20_000),
    st.integers(1, 4096),
    st.integers(1, 4096),
    st.sampled_from(Fit),
)
def test_fit_always_fills_the_frame_exactly(sw: int, sh: int, tw: int, th: int, fit: Fit) -> None:
    target = TargetSize(tw, th)
    where = placement((sw, sh), target, fit)
    w, h = where.scaled
    assert w >= 1 and h >= 1
    if fit is Fit.CROP:
        assert w >= tw and h >= th and (w == tw or h == th)
        assert where.crop is not None
        left, top, right, bottom = where.crop
        assert (right - left, bottom - top) == (tw, th)
        assert 0 <= left and 0 <= top and right <= w and bottom <= h
        # Centred: the overflow splits evenly, to within a pixel.
        assert abs(left - (w - right)) <= 1 and abs(top - (h - bottom)) <= 1
    else:
        assert w <= tw and h <= th and (w == tw or h == th)
        x, y = where.offset
        assert abs(x - (tw - w - x)) <= 1 and abs(y - (th - h - y)) <= 1


def test_key_layout_and_expiry() -> None:
    assert reference_key("own_1", "job_1", 3) == "references/own_1/job_1/3.jpg"
    created = datetime(2025, 1, 1, tzinfo=UTC)
    image = PreparedImage(0, ImageFormat.PNG, "", 1, 1, 1, 1, 1, b"x")
    stored = StoredReference(image, "own_1", "job_1", "k", created)
    assert stored.expires_at == created + timedelta(hours=24)
