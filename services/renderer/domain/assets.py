"""What the renderer keeps: asset variants, where each one lives in the bucket, and its record.

Object key layout (one bucket):
  staging/<job_id>/<file>            written by the jobs service, removed once ingested
  media/<owner_id>/<job_id>/<file>   permanent, one file per variant

A later renditions ladder or HLS output adds variants (and files under the same job prefix);
nothing else here has to change.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from servicekit.errors import ErrorKind, ServiceError

from services.renderer.domain.probe import MediaProbe

STAGING_PREFIX = "staging"
MEDIA_PREFIX = "media"
# Ids become path segments, so they must not be able to climb out of their prefix.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class AssetVariant(enum.Enum):
    VIDEO = "video"
    THUMBNAIL = "thumbnail"
    SPRITESHEET = "spritesheet"
    POSTER = "poster"


@dataclass(frozen=True)
class VariantSpec:
    file_name: str
    content_type: str
    image_format: str | None  # Pillow format name for still images; None for video


VARIANTS: dict[AssetVariant, VariantSpec] = {
    AssetVariant.VIDEO: VariantSpec("video.mp4", "video/mp4", None),
    AssetVariant.THUMBNAIL: VariantSpec("thumbnail.webp", "image/webp", "WEBP"),
    AssetVariant.SPRITESHEET: VariantSpec("spritesheet.jpg", "image/jpeg", "JPEG"),
    AssetVariant.POSTER: VariantSpec("poster.jpg", "image/jpeg", "JPEG"),
}
# Thumbnails we make ourselves (when the provider sent none) are this wide.
THUMBNAIL_WIDTH = 320
# Stills that may sit beside the video in staging; each is optional.
COMPANION_VARIANTS = (AssetVariant.THUMBNAIL, AssetVariant.SPRITESHEET)


@dataclass(frozen=True)
class StoredAsset:
    job_id: str
    owner_id: str
    variant: AssetVariant
    object_key: str
    content_type: str
    probe: MediaProbe


def require_id(value: str, param: str) -> str:
    if not _ID.fullmatch(value):
        raise ServiceError(
            ErrorKind.INVALID_ARGUMENT,
            f"{param} must be 1-128 letters, digits, '_', '-' or '.', starting with a letter or digit",
            param=param,
        )
    return value


def staging_dir(job_id: str) -> str:
    return f"{STAGING_PREFIX}/{job_id}/"


def default_staging_key(job_id: str) -> str:
    return staging_dir(job_id) + VARIANTS[AssetVariant.VIDEO].file_name


def check_staging_key(job_id: str, staging_key: str) -> str:
    """The job's own staging video; an empty key means the usual place.

    Keys outside `staging/<job_id>/` are refused, or one caller could copy any object in the
    bucket (another owner's media, say) into its own media. The file name is held to the id rule
    (letters, digits, '_', '-', '.'), so no `..`, backslash or escape reaches the storage server
    either: a backslash is a separator to some, and SeaweedFS answered `..\\x` keys with a 400.
    """
    if not staging_key:
        return default_staging_key(job_id)
    prefix = staging_dir(job_id)
    rest = staging_key[len(prefix) :] if staging_key.startswith(prefix) else ""
    if not _ID.fullmatch(rest):
        raise ServiceError(
            ErrorKind.INVALID_ARGUMENT,
            f"staging_key must name a file directly under {prefix}",
            param="staging_key",
        )
    return staging_key


def companion_staging_key(staging_key: str, variant: AssetVariant) -> str:
    """Thumbnail and spritesheet sit beside the staged video."""
    directory = staging_key.rsplit("/", 1)[0]
    return f"{directory}/{VARIANTS[variant].file_name}"


def job_prefix(owner_id: str, job_id: str) -> str:
    """Everything permanent of one job lives under this prefix (and nothing else does)."""
    return f"{MEDIA_PREFIX}/{owner_id}/{job_id}/"


def media_key(owner_id: str, job_id: str, variant: AssetVariant) -> str:
    return job_prefix(owner_id, job_id) + VARIANTS[variant].file_name
