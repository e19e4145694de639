"""Pure moderation logic: normalisation against evasion, a rule engine over categories, image
hashes, and the policy that combines them with an optional external classifier."""

from services.moderation.domain.categories import CategoryConfigError, parse_categories
from services.moderation.domain.imagehash import (
    Blocklist,
    BlocklistConfigError,
    ImageDecodeError,
    dhash,
    format_hash,
    hamming,
    parse_blocklist,
)
from services.moderation.domain.moderator import (
    BLOCKED_IMAGE,
    MAX_IMAGE_BYTES,
    MAX_IMAGES,
    Classifier,
    ImageDecision,
    ImageInput,
    Moderator,
    overall,
    require_job_id,
    validate_images,
)
from services.moderation.domain.rules import (
    APPROVED,
    DEFAULT_CATEGORIES,
    Category,
    Decision,
    RuleEngine,
    normalise,
)

__all__ = [
    "APPROVED",
    "BLOCKED_IMAGE",
    "DEFAULT_CATEGORIES",
    "MAX_IMAGES",
    "MAX_IMAGE_BYTES",
    "Blocklist",
    "BlocklistConfigError",
    "Category",
    "CategoryConfigError",
    "Classifier",
    "Decision",
    "ImageDecision",
    "ImageDecodeError",
    "ImageInput",
    "Moderator",
    "RuleEngine",
    "dhash",
    "format_hash",
    "hamming",
    "normalise",
    "overall",
    "parse_blocklist",
    "parse_categories",
    "require_job_id",
    "validate_images",
]
