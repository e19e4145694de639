"""Pure renderer logic: asset variants and key layout, probe facts and their validation."""

from services.renderer.domain.assets import (
    COMPANION_VARIANTS,
    VARIANTS,
    AssetVariant,
    StoredAsset,
    VariantSpec,
    check_staging_key,
    companion_staging_key,
    default_staging_key,
    job_prefix,
    media_key,
    require_id,
)
from services.renderer.domain.probe import (
    DURATION_TOLERANCE_SECONDS,
    INVALID_ASSET_CODE,
    Expectation,
    MediaProbe,
    check_video,
    invalid_asset,
    parse_expectation,
)

__all__ = [
    "COMPANION_VARIANTS",
    "DURATION_TOLERANCE_SECONDS",
    "INVALID_ASSET_CODE",
    "VARIANTS",
    "AssetVariant",
    "Expectation",
    "MediaProbe",
    "StoredAsset",
    "VariantSpec",
    "check_staging_key",
    "check_video",
    "companion_staging_key",
    "default_staging_key",
    "invalid_asset",
    "job_prefix",
    "media_key",
    "parse_expectation",
    "require_id",
]
