"""Pure moderation logic: normalisation against evasion, and a rule engine over categories."""

from services.moderation.domain.rules import (
    DEFAULT_CATEGORIES,
    Category,
    Decision,
    RuleEngine,
    normalise,
)

__all__ = ["DEFAULT_CATEGORIES", "Category", "Decision", "RuleEngine", "normalise"]
