"""A term-and-pattern rule engine that sees through simple evasion.

Text is normalised before matching: Unicode compatibility forms and a few confusable
letters fold to ASCII, case folds, leetspeak digits become letters, and punctuation or
spacing inserted inside words collapses. Terms then match whole words; long terms also
match inside the text with all separators removed ("k.i.l.l.i.n.g" -> "killing").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

# Letters from other scripts that look like Latin ones (a small, common subset of UTS #39).
_CONFUSABLES = str.maketrans(
    {
        "а": "a",
        "е": "e",
        "о": "o",
        "р": "p",
        "с": "c",
        "у": "y",
        "х": "x",
        "і": "i",
        "ј": "j",
        "ѕ": "s",
        "ԁ": "d",
        "һ": "h",
        "ɡ": "g",
        "ο": "o",
        "α": "a",
        "ν": "v",
        "τ": "t",
        "ι": "i",
        "κ": "k",
        "ρ": "p",
        "μ": "u",
        "β": "b",
    }
)
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"}
)
_SEPARATORS = re.compile(r"[\W_]+")
# A single character between separators, repeated: "k i l l" or "k-i-l-l".
_SPACED_LETTERS = re.compile(r"\b(?:\w[\W_]+){2,}\w\b")
_MIN_SQUASHED_TERM = 6


def normalise(text: str) -> str:
    """Lower-case ASCII-ish words separated by single spaces."""
    folded = unicodedata.normalize("NFKC", text).casefold().translate(_CONFUSABLES)
    stripped = "".join(ch for ch in unicodedata.normalize("NFKD", folded) if not unicodedata.combining(ch))
    # Leetspeak only inside words, so "1984" or "4 cats" stay numbers.
    unleeted = re.sub(
        r"(?<=[a-z])[0-9@$!]+|[0-9@$!]+(?=[a-z])", lambda m: m.group().translate(_LEET), stripped
    )
    joined = _SPACED_LETTERS.sub(lambda m: _SEPARATORS.sub("", m.group()), unleeted)
    return _SEPARATORS.sub(" ", joined).strip()


@dataclass(frozen=True)
class Category:
    name: str
    reason: str
    terms: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    approved: bool
    category: str = ""
    reason: str = ""


@dataclass
class _CompiledCategory:
    category: Category
    word_regex: re.Pattern[str] | None
    squashed_terms: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...] = field(default_factory=tuple)


class RuleEngine:
    def __init__(self, categories: Iterable[Category]) -> None:
        self._compiled = [self._compile(category) for category in categories]

    @staticmethod
    def _compile(category: Category) -> _CompiledCategory:
        terms = [normalise(term) for term in category.terms if normalise(term)]
        word_regex = (
            re.compile(r"\b(?:" + "|".join(re.escape(term) for term in terms) + r")\b") if terms else None
        )
        squashed = tuple(t.replace(" ", "") for t in terms if len(t.replace(" ", "")) >= _MIN_SQUASHED_TERM)
        patterns = tuple(re.compile(p) for p in category.patterns)
        return _CompiledCategory(category, word_regex, squashed, patterns)

    def evaluate(self, text: str) -> Decision:
        normal = normalise(text)
        squashed = normal.replace(" ", "")
        for compiled in self._compiled:
            hit = (
                (compiled.word_regex is not None and compiled.word_regex.search(normal))
                or any(term in squashed for term in compiled.squashed_terms)
                or any(pattern.search(normal) for pattern in compiled.patterns)
            )
            if hit:
                category = compiled.category
                return Decision(approved=False, category=category.name, reason=category.reason)
        return Decision(approved=True)


DEFAULT_CATEGORIES: tuple[Category, ...] = (
    Category(
        "sexual_minors",
        "The prompt appears to sexualise minors, which is never allowed.",
        terms=("child porn", "cp video", "underage sex", "nude child", "naked kid", "loli", "shota"),
        patterns=(
            r"\b(?:child|kid|minor|underage|preteen|teen)\w*\b.{0,40}\b(?:nude|naked|sexual|sex|erotic)\b",
            r"\b(?:nude|naked|sexual|sex|erotic)\b.{0,40}\b(?:child|kid|minor|underage|preteen)\w*\b",
        ),
    ),
    Category(
        "graphic_violence",
        "The prompt asks for graphic violence or gore.",
        terms=(
            "gore",
            "beheading",
            "decapitation",
            "dismemberment",
            "disembowel",
            "mutilated corpse",
            "torture scene",
            "blood bath",
            "massacre",
        ),
    ),
    Category(
        "self_harm",
        "The prompt depicts or encourages self-harm or suicide.",
        terms=("suicide", "self harm", "cutting myself", "kill myself", "slit wrists", "hang myself"),
    ),
    Category(
        "hate",
        "The prompt contains hateful content about a protected group.",
        terms=("white power", "heil hitler", "ethnic cleansing", "gas the", "subhuman"),
        patterns=(r"\bdeath to (?:all )?(?:jews|muslims|christians|blacks|whites|gays|immigrants)\b",),
    ),
    Category(
        "public_figures",
        "The prompt depicts a real public figure, which this platform does not generate.",
        terms=(
            "donald trump",
            "joe biden",
            "barack obama",
            "elon musk",
            "taylor swift",
            "vladimir putin",
            "xi jinping",
            "pope francis",
            "kim jong un",
            "narendra modi",
        ),
    ),
    Category(
        "copyrighted_characters",
        "The prompt names a copyrighted character.",
        terms=(
            "mickey mouse",
            "spiderman",
            "spider man",
            "darth vader",
            "harry potter",
            "pikachu",
            "super mario",
            "elsa from frozen",
            "batman",
            "superman",
            "shrek",
            "sonic the hedgehog",
        ),
    ),
)
