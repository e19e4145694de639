"""Decoding and normalising one uploaded reference image with Pillow.

Blocking and CPU-bound: callers run `prepare_image` in a worker thread. The rules it applies are
in `services.renderer.domain.references`; this module only does what needs Pillow:

- open with exactly the sniffed format allowed, check the pixel count from the header *before*
  decoding (our own per-call limit; Pillow's process-wide MAX_IMAGE_PIXELS stays as a backstop and
  its DecompressionBombError/Warning are refused the same way), refuse animation, then decode
  every pixel (`load()`; ImageFile.LOAD_TRUNCATED_IMAGES must stay off, and is checked);
- JPEGs are decoded at a reduced DCT scale (`draft`) when the target frame is much smaller: the
  whole stream is still decoded, so truncation is still caught, with a quarter of the memory;
- MPO (a JPEG holding extra pictures, as many phones write) is read as its primary picture;
- upright by EXIF orientation, an embedded ICC profile converted to sRGB when possible, alpha
  flattened onto white, resized with Lanczos, cropped or padded, and encoded as JPEG q95 4:4:4
  with no metadata at all.

Known limit: a JPEG cut short inside its scan data and then given a fresh end marker decodes, with
the missing rows grey: libjpeg reports that only as a warning, which Pillow does not surface. An
upload simply cut short has no end marker and is refused before decoding.

Pillow raises many exception types on hostile input (OSError, SyntaxError, ValueError, EOFError,
struct.error, ...). Anything raised while *reading* the upload is therefore the upload's fault
and becomes an invalid-image error; errors after decoding (resize, encode) are ours and propagate.
"""

from __future__ import annotations

import io

from PIL import Image, ImageCms, ImageFile
from servicekit.errors import ServiceError

from services.renderer.domain.references import (
    ALPHA_BACKGROUND,
    PAD_COLOUR,
    PILLOW_FORMATS,
    Fit,
    ImageFormat,
    Limits,
    PreparedImage,
    TargetSize,
    check_bytes,
    check_pixels,
    invalid_image,
    placement,
)

JPEG_QUALITY = 95
_ORIENTATION_TAG = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_SIDES = {5, 6, 7, 8}
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def prepare_image(
    index: int, data: bytes, declared_content_type: str, target: TargetSize, fit: Fit, limits: Limits
) -> PreparedImage:
    """Check, decode and normalise one upload; raises only the invalid-image ServiceError for bad input."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError("ImageFile.LOAD_TRUNCATED_IMAGES is on; truncated uploads would pass")
    found = check_bytes(index, data, declared_content_type, limits)
    image, original = _decode(index, data, found, target, fit, limits)
    try:
        frame = _to_frame(image, target, fit)
    finally:
        image.close()
    out = io.BytesIO()
    frame.save(out, "JPEG", quality=JPEG_QUALITY, subsampling=0)
    return PreparedImage(
        index=index,
        detected_format=found,
        declared_content_type=declared_content_type,
        source_bytes=len(data),
        original_width=original[0],
        original_height=original[1],
        width=frame.width,
        height=frame.height,
        data=out.getvalue(),
    )


def _decode(
    index: int, data: bytes, found: ImageFormat, target: TargetSize, fit: Fit, limits: Limits
) -> tuple[Image.Image, tuple[int, int]]:
    """The fully decoded, upright RGB image and its upright size before any draft scaling."""
    corrupt = f"the {found.label} data is corrupt or truncated and cannot be decoded"
    try:
        image = Image.open(io.BytesIO(data), formats=[PILLOW_FORMATS[found]])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise invalid_image(index, f"too many pixels: more than {limits.max_pixels} pixels") from None
    except Exception:
        raise invalid_image(index, corrupt) from None
    try:
        check_pixels(index, image.width, image.height, limits)
        # MPO frames are other views of the same photo (depth, stereo), not animation.
        animated = getattr(image, "is_animated", False) or getattr(image, "n_frames", 1) > 1
        if animated and image.format != "MPO":
            raise invalid_image(index, f"animated {found.label} images are not supported; send a still image")
        orientation = _orientation(image)
        upright = (image.height, image.width) if orientation in _SWAPS_SIDES else image.size
        if found is ImageFormat.JPEG:
            scaled = placement(upright, target, fit).scaled
            wanted = (scaled[1], scaled[0]) if orientation in _SWAPS_SIDES else scaled
            image.draft("RGB", wanted)
        image.load()
        icc = image.info.get("icc_profile")
        rgb = _to_rgb(image, icc if isinstance(icc, bytes) else None)
        if orientation in _TRANSPOSE:
            rgb = rgb.transpose(_TRANSPOSE[orientation])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        image.close()
        raise invalid_image(index, f"too many pixels: more than {limits.max_pixels} pixels") from None
    except ServiceError:
        image.close()
        raise
    except Exception:
        image.close()
        raise invalid_image(index, corrupt) from None
    if rgb is not image:
        image.close()
    return rgb, upright


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation, 1 (as stored) when there is none or the EXIF block is unreadable."""
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


def _to_rgb(image: Image.Image, icc: bytes | None) -> Image.Image:
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        # 16-bit and float greyscale: scale to 8 bits instead of clipping everything to white.
        image = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, ALPHA_BACKGROUND)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if icc and image.mode in ("RGB", "CMYK", "L"):
        try:
            converted = ImageCms.profileToProfile(
                image, ImageCms.ImageCmsProfile(io.BytesIO(icc)), _SRGB, outputMode="RGB"
            )
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
            converted = None  # a broken or exotic profile: fall back to reading the values as sRGB
        if converted is not None:
            return converted
    return image if image.mode == "RGB" else image.convert("RGB")


def _to_frame(image: Image.Image, target: TargetSize, fit: Fit) -> Image.Image:
    where = placement(image.size, target, fit)
    resized = image.resize(where.scaled, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if where.crop is not None:
        return resized.crop(where.crop)
    frame = Image.new("RGB", (target.width, target.height), PAD_COLOUR)
    frame.paste(resized, where.offset)
    return frame
