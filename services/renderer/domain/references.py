"""Reference images for a job: the checks on what a client uploads, and the fit geometry.

Everything here works on bytes, numbers and strings; the Pillow decoding that uses it lives in
`services.renderer.reference_images`. Decisions, in one place:

- The format is sniffed from the leading bytes, never taken from the declared content type, and
  the decoder is then allowed only that one format, so bytes cannot be read as something else.
- A declared type is checked against the sniffed format. No declaration, an empty one, or a
  generic `application/octet-stream` (what many HTTP clients send for a file) is accepted.
- Bytes after the image's own end are refused: a JPEG must end with its EOI marker (NUL padding
  after it is tolerated, some cameras write it), a PNG with its IEND chunk, and a WebP's RIFF
  size must cover the whole file. That stops JPEG+ZIP and PNG+HTML polyglots outright; anything
  hidden *inside* an image (in a metadata segment) never survives, since the output is re-encoded
  from pixels with no metadata.
- The output is always an opaque RGB JPEG at quality 95 with 4:4:4 chroma. References become the
  first frame of a video, which has no alpha, so transparency is flattened onto white; JPEG keeps
  four prepared 1080p frames well inside one gRPC response, where PNG could not.
- Padding (fit PAD) is black, like letterboxing.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from servicekit.errors import ErrorKind, ServiceError

INVALID_IMAGE_CODE = "invalid_image"
REFERENCES_PREFIX = "references"
REFERENCE_TTL = timedelta(hours=24)
MIN_IMAGES = 1
MAX_IMAGES = 4
IMAGES_PARAM = "input_reference"
PREPARED_CONTENT_TYPE = "image/jpeg"
PREPARED_EXTENSION = "jpg"
PAD_COLOUR = (0, 0, 0)
ALPHA_BACKGROUND = (255, 255, 255)
_SIZE = re.compile(r"^([1-9][0-9]{0,4})x([1-9][0-9]{0,4})$")
# The largest frame a video may have; a bigger target is a caller bug, not a reason to allocate.
MAX_TARGET_SIDE = 4096


class ImageFormat(enum.Enum):
    """Formats recognised by their magic bytes; only the first three are accepted."""

    JPEG = "jpeg"
    PNG = "png"
    WEBP = "webp"
    GIF = "gif"
    BMP = "bmp"
    TIFF = "tiff"
    SVG = "svg"
    HEIF = "heif"  # HEIC and AVIF share the ISO-BMFF `ftyp` box
    ICO = "ico"
    PDF = "pdf"

    @property
    def accepted(self) -> bool:
        return self in ACCEPTED_FORMATS

    @property
    def label(self) -> str:
        return "WebP" if self is ImageFormat.WEBP else self.name


ACCEPTED_FORMATS = frozenset({ImageFormat.JPEG, ImageFormat.PNG, ImageFormat.WEBP})
# Pillow's format names, for `Image.open(formats=...)`.
PILLOW_FORMATS = {ImageFormat.JPEG: "JPEG", ImageFormat.PNG: "PNG", ImageFormat.WEBP: "WEBP"}

_DECLARED = {
    "image/jpeg": ImageFormat.JPEG,
    "image/jpg": ImageFormat.JPEG,
    "image/pjpeg": ImageFormat.JPEG,
    "image/png": ImageFormat.PNG,
    "image/x-png": ImageFormat.PNG,
    "image/apng": ImageFormat.PNG,
    "image/webp": ImageFormat.WEBP,
    "image/gif": ImageFormat.GIF,
    "image/bmp": ImageFormat.BMP,
    "image/x-ms-bmp": ImageFormat.BMP,
    "image/tiff": ImageFormat.TIFF,
    "image/svg+xml": ImageFormat.SVG,
    "image/heic": ImageFormat.HEIF,
    "image/heif": ImageFormat.HEIF,
    "image/avif": ImageFormat.HEIF,
    "image/x-icon": ImageFormat.ICO,
    "image/vnd.microsoft.icon": ImageFormat.ICO,
    "application/pdf": ImageFormat.PDF,
}
# Declarations that say nothing about the format.
_UNDECLARED = {"", "application/octet-stream", "binary/octet-stream"}

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_JPEG_EOI = b"\xff\xd9"


class Fit(enum.Enum):
    CROP = "crop"  # scale to cover the frame, centre-crop the overflow
    PAD = "pad"  # scale to fit inside the frame, pad the rest


@dataclass(frozen=True)
class TargetSize:
    width: int
    height: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_pixels: int


@dataclass(frozen=True)
class Placement:
    """How a source of some size lands in the frame.

    The source is resized to `scaled`; for CROP, `crop` is the box (left, top, right, bottom) of
    the scaled image that is kept; for PAD, the scaled image is pasted at `offset` on a black frame.
    """

    scaled: tuple[int, int]
    crop: tuple[int, int, int, int] | None
    offset: tuple[int, int]


@dataclass(frozen=True)
class PreparedImage:
    """One reference after decoding and normalising, before it is stored."""

    index: int
    detected_format: ImageFormat
    declared_content_type: str
    source_bytes: int
    original_width: int
    original_height: int
    width: int
    height: int
    data: bytes
    content_type: str = PREPARED_CONTENT_TYPE


@dataclass(frozen=True)
class StoredReference:
    image: PreparedImage
    owner_id: str
    job_id: str
    object_key: str
    created_at: datetime

    @property
    def expires_at(self) -> datetime:
        return self.created_at + REFERENCE_TTL


def image_param(index: int) -> str:
    return f"{IMAGES_PARAM}[{index}]"


def invalid_image(index: int, problem: str) -> ServiceError:
    """Every refusal of an uploaded image: INVALID_ARGUMENT naming the image and the problem."""
    return ServiceError(
        ErrorKind.INVALID_ARGUMENT,
        f"reference image {index}: {problem}",
        param=image_param(index),
        code=INVALID_IMAGE_CODE,
    )


def check_count(count: int) -> None:
    if not MIN_IMAGES <= count <= MAX_IMAGES:
        raise ServiceError(
            ErrorKind.INVALID_ARGUMENT,
            f"send {MIN_IMAGES} to {MAX_IMAGES} reference images; got {count}",
            param=IMAGES_PARAM,
            code=INVALID_IMAGE_CODE,
        )


def parse_target_size(value: str) -> TargetSize:
    match = _SIZE.fullmatch(value)
    if match is None or max(int(match.group(1)), int(match.group(2))) > MAX_TARGET_SIDE:
        raise ServiceError(
            ErrorKind.INVALID_ARGUMENT,
            f"target_size must look like WIDTHxHEIGHT, each side 1-{MAX_TARGET_SIDE}, "
            f"for example 1280x720; got {value!r}",
            param="target_size",
        )
    return TargetSize(int(match.group(1)), int(match.group(2)))


def sniff_format(data: bytes) -> ImageFormat | None:
    """The format the leading bytes announce, or None when they announce nothing known."""
    if data.startswith(b"\xff\xd8\xff"):
        return ImageFormat.JPEG
    if data.startswith(_PNG_SIGNATURE):
        return ImageFormat.PNG
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ImageFormat.WEBP
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return ImageFormat.GIF
    if data.startswith(b"BM"):
        return ImageFormat.BMP
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return ImageFormat.TIFF
    if data[4:8] == b"ftyp":
        return ImageFormat.HEIF
    if data[:4] == b"\x00\x00\x01\x00":
        return ImageFormat.ICO
    if data.startswith(b"%PDF"):
        return ImageFormat.PDF
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return ImageFormat.SVG
    return None


def check_bytes(index: int, data: bytes, declared_content_type: str, limits: Limits) -> ImageFormat:
    """Everything that can be said before decoding: size, sniffed format, declaration, end of data."""
    if not data:
        raise invalid_image(index, "the file is empty")
    if len(data) > limits.max_bytes:
        raise invalid_image(
            index, f"the file is {len(data)} bytes, more than the {limits.max_bytes}-byte limit"
        )
    found = sniff_format(data)
    if found is None:
        raise invalid_image(index, "the bytes are not a recognised image; send JPEG, PNG or WebP")
    if not found.accepted:
        raise invalid_image(index, f"unsupported image format {found.label}; send JPEG, PNG or WebP")
    check_declared(index, declared_content_type, found)
    check_end(index, data, found)
    return found


def check_declared(index: int, declared_content_type: str, found: ImageFormat) -> None:
    declared = declared_content_type.split(";", 1)[0].strip().lower()
    if declared in _UNDECLARED:
        return
    if _DECLARED.get(declared) is not found:
        raise invalid_image(index, f"declared {declared} but the bytes are {found.label}")


def check_end(index: int, data: bytes, found: ImageFormat) -> None:
    """Refuse data after the image's end: the usual shape of a polyglot file."""
    if found is ImageFormat.JPEG:
        ends = data.rstrip(b"\x00").endswith(_JPEG_EOI)
    elif found is ImageFormat.PNG:
        ends = data.endswith(_PNG_IEND)
    elif found is ImageFormat.WEBP:
        riff_size = int.from_bytes(data[4:8], "little")
        ends = riff_size + 8 == len(data)
    else:  # no other format gets this far; refuse rather than assume
        ends = False
    if not ends:
        raise invalid_image(index, f"the {found.label} data is truncated or followed by other data")


def check_pixels(index: int, width: int, height: int, limits: Limits) -> None:
    if width <= 0 or height <= 0:
        raise invalid_image(index, "the image has no pixels")
    if width * height > limits.max_pixels:
        raise invalid_image(
            index,
            f"too many pixels: {width}x{height} is more than {limits.max_pixels} pixels "
            f"({limits.max_pixels / 1e6:g} megapixels)",
        )


def placement(source: tuple[int, int], target: TargetSize, fit: Fit) -> Placement:
    """Where a `source`-sized image lands in the target frame; never zero-sized, always exact."""
    src_w, src_h = source
    if fit is Fit.CROP:
        # Cover: the side that scales more decides; the other overflows and is centre-cropped.
        if src_w * target.height >= src_h * target.width:
            scaled = (max(target.width, _round(src_w * target.height, src_h)), target.height)
        else:
            scaled = (target.width, max(target.height, _round(src_h * target.width, src_w)))
        left = (scaled[0] - target.width) // 2
        top = (scaled[1] - target.height) // 2
        return Placement(scaled, (left, top, left + target.width, top + target.height), (0, 0))
    # Pad: the side that scales less decides; the other falls short and is centred on black.
    if src_w * target.height >= src_h * target.width:
        scaled = (target.width, min(target.height, max(1, _round(src_h * target.width, src_w))))
    else:
        scaled = (min(target.width, max(1, _round(src_w * target.height, src_h))), target.height)
    return Placement(scaled, None, ((target.width - scaled[0]) // 2, (target.height - scaled[1]) // 2))


def _round(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half up, in integers (no float drift on big sizes)."""
    return (2 * numerator + denominator) // (2 * denominator)


def reference_key(owner_id: str, job_id: str, index: int) -> str:
    return f"{REFERENCES_PREFIX}/{owner_id}/{job_id}/{index}.{PREPARED_EXTENSION}"
