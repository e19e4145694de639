"""Parse and check category configuration: {"categories": [{"name", "reason", "terms", "patterns"}]}.

Pure: takes decoded JSON, returns `Category` values or raises `CategoryConfigError` with a message
naming the entry at fault, so a bad deployment fails at start-up rather than at the first prompt.
"""

from __future__ import annotations

import re
from typing import Any

from services.moderation.domain.rules import Category, normalise

_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_KEYS = {"name", "reason", "terms", "patterns"}


class CategoryConfigError(ValueError):
    """The category configuration is malformed; the message names the entry."""


def parse_categories(document: Any) -> tuple[Category, ...]:
    if not isinstance(document, dict) or not isinstance(document.get("categories"), list):
        raise CategoryConfigError('expected an object {"categories": [...]}')
    entries = document["categories"]
    if not entries:
        raise CategoryConfigError("categories is empty; at least one category is required")
    categories: list[Category] = []
    seen: set[str] = set()
    for position, entry in enumerate(entries):
        category = _parse_entry(position, entry)
        if category.name in seen:
            raise CategoryConfigError(f"categories[{position}]: duplicate name {category.name!r}")
        seen.add(category.name)
        categories.append(category)
    return tuple(categories)


def _parse_entry(position: int, entry: Any) -> Category:
    where = f"categories[{position}]"
    if not isinstance(entry, dict):
        raise CategoryConfigError(f"{where}: expected an object with name, reason, terms, patterns")
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise CategoryConfigError(
            f"{where}: name must be lower-case letters, digits and underscores (got {name!r})"
        )
    where = f"{where} ({name!r})"
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise CategoryConfigError(f"{where}: unknown keys {unknown}; allowed are {sorted(_KEYS)}")
    reason = entry.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise CategoryConfigError(f"{where}: reason must be a non-empty string a user can read")
    terms = _strings(where, "terms", entry.get("terms", []))
    for index, term in enumerate(terms):
        if not normalise(term):
            raise CategoryConfigError(f"{where}: terms[{index}] {term!r} has no letters or digits")
    patterns = _strings(where, "patterns", entry.get("patterns", []))
    for index, pattern in enumerate(patterns):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise CategoryConfigError(
                f"{where}: patterns[{index}] {pattern!r} is not a valid regular expression: {exc}"
            ) from None
    if not terms and not patterns:
        raise CategoryConfigError(f"{where}: needs at least one term or pattern")
    return Category(name, reason.strip(), tuple(terms), tuple(patterns))


def _strings(where: str, key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise CategoryConfigError(f"{where}: {key} must be a list of non-empty strings")
    return list(value)
