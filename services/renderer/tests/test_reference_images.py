"""Decoding and normalising with Pillow, in process: what comes out, what is refused, and a fuzz run."""

from __future__ import annotations

import io
import random
import struct
import zlib

import pytest
from PIL import Image, ImageCms
from servicekit.errors import ErrorKind, ServiceError

from services.renderer.domain.references import INVALID_IMAGE_CODE, Fit, Limits, PreparedImage, TargetSize
from services.renderer.reference_images import prepare_image

LIMITS = Limits(max_bytes=10 * 1024 * 1024, max_pixels=40_000_000)
HD = TargetSize(1280, 720)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def gradient(size: tuple[int, int] = (800, 600)) -> Image.Image:
    return Image.linear_gradient("L").resize(size).convert("RGB")


def prepared(data: bytes, fit: Fit = Fit.CROP, target: TargetSize = HD, declared: str = "") -> PreparedImage:
    return prepare_image(0, data, declared, target, fit, LIMITS)


def refused(data: bytes, declared: str = "", index: int = 1) -> str:
    with pytest.raises(ServiceError) as caught:
        prepare_image(index, data, declared, HD, Fit.CROP, LIMITS)
    assert caught.value.kind is ErrorKind.INVALID_ARGUMENT
    assert caught.value.code == INVALID_IMAGE_CODE
    assert caught.value.param == f"input_reference[{index}]"
    return caught.value.message


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose IHDR declares `width` x `height` RGB pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 4096))
        + png_chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(("fmt", "detected"), [("JPEG", "jpeg"), ("PNG", "png"), ("WEBP", "webp")])
@pytest.mark.parametrize("fit", list(Fit))
def test_each_format_comes_out_as_a_clean_jpeg_at_the_target_size(fmt: str, detected: str, fit: Fit) -> None:
    result = prepared(encode(gradient(), fmt), fit)
    out = Image.open(io.BytesIO(result.data))
    assert (out.format, out.mode, out.size) == ("JPEG", "RGB", (1280, 720))
    assert (result.width, result.height, result.original_width, result.original_height) == (
        1280,
        720,
        800,
        600,
    )
    assert result.detected_format.value == detected
    assert result.content_type == "image/jpeg"
    assert "exif" not in out.info and "icc_profile" not in out.info


def test_pad_is_black_and_crop_keeps_the_centre() -> None:
    # A 4:3 white image: padded to 16:9 it gets 160-pixel black bars left and right.
    padded = Image.open(
        io.BytesIO(prepared(encode(Image.new("RGB", (800, 600), "white"), "PNG"), Fit.PAD).data)
    )
    for x in (0, 100, 1279 - 100, 1279):
        assert max(padded.getpixel((x, 360))) <= 8  # type: ignore[arg-type]
    assert min(padded.getpixel((640, 360))) >= 247  # type: ignore[arg-type]
    # Cropped, 4:3 to 16:9 cuts the top and bottom eighth: a red band of 60 rows at the top goes.
    striped = Image.new("RGB", (800, 600), "blue")
    striped.paste((255, 0, 0), (0, 0, 800, 60))
    cropped = Image.open(io.BytesIO(prepared(encode(striped, "PNG"), Fit.CROP).data))
    assert cropped.getpixel((640, 0))[2] > 200  # type: ignore[index]  # the red band was cut away


def test_exif_orientation_is_applied_and_all_metadata_dropped() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees clockwise
    exif[0x010F] = "SecretCam"
    source = Image.new("RGB", (400, 300), "green")
    source.paste((255, 0, 0), (0, 0, 200, 300))  # left half red: after rotation, the top half
    result = prepared(encode(source, "JPEG", exif=exif.tobytes()), Fit.PAD)
    assert (result.original_width, result.original_height) == (300, 400)
    out = Image.open(io.BytesIO(result.data))
    assert not out.getexif() and b"SecretCam" not in result.data
    # Portrait 300x400 padded into 1280x720 is 540x720 in the middle: red above, green below.
    top, bottom = out.getpixel((640, 100)), out.getpixel((640, 620))
    assert top[0] > 200 and top[1] < 60  # type: ignore[index]
    assert bottom[1] > 100 and bottom[0] < 60  # type: ignore[index]


def test_transparency_is_flattened_onto_white() -> None:
    result = prepared(encode(Image.new("RGBA", (320, 180), (255, 0, 0, 0)), "PNG"), Fit.CROP)
    assert min(Image.open(io.BytesIO(result.data)).getpixel((640, 360))) >= 247  # type: ignore[arg-type]


def test_an_icc_profile_is_converted_and_not_kept() -> None:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    result = prepared(encode(gradient((320, 180)), "PNG", icc_profile=profile))
    assert "icc_profile" not in Image.open(io.BytesIO(result.data)).info


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    grey = Image.new("I;16", (320, 180), 32768)
    pixel = Image.open(io.BytesIO(prepared(encode(grey, "PNG")).data)).getpixel((640, 360))
    assert 120 <= pixel[0] <= 136  # type: ignore[index]


def test_a_large_jpeg_decodes_at_reduced_scale_with_the_true_size_reported() -> None:
    result = prepared(encode(gradient((4000, 3000)), "JPEG"), Fit.CROP)
    assert (result.original_width, result.original_height, result.width, result.height) == (
        4000,
        3000,
        1280,
        720,
    )


def test_truncated_jpeg_is_refused() -> None:
    data = encode(gradient(), "JPEG")
    assert "truncated" in refused(data[: len(data) // 2])
    # Cut inside the headers, with an end marker put back so the decoder itself has to notice.
    assert "corrupt or truncated" in refused(data[:300] + b"\xff\xd9")
    # Known limit: cut inside the scan data *and* given a new end marker, libjpeg only warns
    # (Pillow does not surface it) and the missing rows come out grey; see reference_images.py.


@pytest.mark.parametrize(("width", "height"), [(100_000, 100_000), (8000, 8000), (65535, 1000)])
def test_png_decompression_bombs_are_refused_before_decoding(width: int, height: int) -> None:
    assert "too many pixels" in refused(png_bomb(width, height))


@pytest.mark.parametrize("fmt", ["WEBP", "PNG"])
def test_animations_are_refused(fmt: str) -> None:
    frames = [Image.new("RGB", (64, 64), colour) for colour in ("red", "blue")]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:])
    assert "animated" in refused(data)


def test_a_single_frame_apng_style_save_is_fine() -> None:
    prepared(encode(Image.new("RGB", (64, 64), "red"), "PNG", save_all=True))


def test_polyglots_are_refused() -> None:
    jpeg = encode(gradient(), "JPEG")
    assert "followed by other data" in refused(jpeg + b"PK\x03\x04" + b"\x00" * 40)
    png = encode(gradient(), "PNG")
    assert "followed by other data" in refused(png + b"<html><script>alert(1)</script></html>")
    # HTML first, image after: not an image at all.
    assert "not a recognised image" in refused(b"<html>" + jpeg)


# --- fuzz: the decoder path returns a prepared image or raises the invalid-image error, nothing else


def _mutations(rng: random.Random, seeds: list[bytes], count: int) -> list[bytes]:
    cases: list[bytes] = []
    for _ in range(count):
        base = bytearray(rng.choice(seeds))
        kind = rng.randrange(6)
        if kind == 0:  # random bytes, sometimes behind a real magic number
            body = rng.randbytes(rng.randrange(0, 4096))
            cases.append(
                rng.choice([b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\x00\x00\x00\x00WEBP"]) + body
            )
            continue
        if kind == 1:  # bit flips anywhere
            for _ in range(rng.randrange(1, 16)):
                base[rng.randrange(len(base))] ^= 1 << rng.randrange(8)
        elif kind == 2:  # bit flips, but the end of data left intact so the decoder really runs
            for _ in range(rng.randrange(1, 16)):
                base[rng.randrange(len(base) - 12)] ^= 1 << rng.randrange(8)
        elif kind == 3:  # truncation
            del base[rng.randrange(1, len(base)) :]
        elif kind == 4:  # splice two images
            other = rng.choice(seeds)
            cut = rng.randrange(1, len(base))
            base = base[:cut] + other[rng.randrange(len(other)) :]
        else:  # overwrite a run in the header region with random bytes
            start = rng.randrange(min(len(base), 200))
            base[start : start + 8] = rng.randbytes(8)
        cases.append(bytes(base))
    return cases


def test_fuzzed_inputs_only_ever_prepare_or_raise_invalid_image() -> None:
    source = gradient((96, 64))
    seeds = [
        encode(source, "JPEG"),
        encode(source, "JPEG", progressive=True),
        encode(source, "PNG"),
        encode(source.convert("P"), "PNG"),
        encode(source, "WEBP"),
        encode(source, "WEBP", lossless=True),
    ]
    rng = random.Random(20250101)
    outcomes = {"prepared": 0, "refused": 0}
    for data in _mutations(rng, seeds, 3000):
        try:
            result = prepare_image(0, data, "", TargetSize(64, 36), Fit.PAD, LIMITS)
        except ServiceError as error:
            assert error.kind is ErrorKind.INVALID_ARGUMENT and error.code == INVALID_IMAGE_CODE, error
            outcomes["refused"] += 1
        else:
            assert Image.open(io.BytesIO(result.data)).size == (64, 36)
            outcomes["prepared"] += 1
    # Both paths were exercised, so the decoder really saw damaged data.
    assert outcomes["prepared"] > 10 and outcomes["refused"] > 100, outcomes
