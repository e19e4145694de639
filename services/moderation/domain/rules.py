"""A term-and-pattern rule engine that sees through simple evasion.

Text is split into tokens (runs of letters, digits, combining marks and the leet symbols
``@ $ !``). Compatibility forms (full-width letters, ligatures) and case fold first; invisible
format characters (zero-width spaces and joiners, soft hyphens, bidi controls) are dropped. A word
whose letters all look Latin (accents, Cyrillic/Greek look-alikes) folds to ASCII; a word in
another script stays as it is, so other languages are not mangled. Leetspeak digits and symbols
become letters only inside words, so "1984", "4 cats" and "1080p" stay numbers.

Two tokens are pieces of one word (a *join*) when the separator between them has no whitespace
("g.o.r.e", "k-i-l-l", "ki_ll") or both are single characters ("k i l l"). Terms match whole token
spans: a span matches when its pieces spell the term (or its plural) and every real space inside
it falls where the term has a space or hyphen, so "skill" never matches "kill" and "go re-read"
never matches "gore", but "a g.o.r.e fest" and "a g o r e fest" do. Where matches of two terms
overlap, the longer wins ("Al Gore" is a public figure, not gore). Terms of seven letters or more
also match inside a joined word ("beheadingvideo"; "therapist" is safe from "rapist"). Patterns are
regular expressions over the normalised text, tried on the joined and on the token-by-token form.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Letters from other scripts that look like Latin ones (a common subset of Unicode UTS #39), plus
# Latin letters that have no decomposition. Only lower case: text is case-folded first.
_CONFUSABLES = str.maketrans(
    {
        # Cyrillic
        "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
        "с": "c", "т": "t", "у": "y", "х": "x", "і": "i", "ї": "i", "ј": "j", "ѕ": "s", "ԁ": "d",
        "һ": "h", "ԛ": "q", "ԝ": "w", "ӏ": "l", "ɡ": "g", "ь": "b",
        # Greek
        "α": "a", "β": "b", "γ": "y", "ε": "e", "η": "n", "ι": "i", "κ": "k", "μ": "u", "ν": "v",
        "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ϲ": "c",
        # Latin without a decomposition
        "ł": "l", "ø": "o", "đ": "d", "ħ": "h", "ı": "i", "æ": "ae", "œ": "oe", "þ": "th",
    }
)  # fmt: skip
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"}
)
_LEET_CHARS = "013457@$!"
_SYMBOLS = re.compile(r"[@$!]")
_LETTER = re.compile(r"[^\W\d_]")
# Numbers with a unit or ordinal ("1080p", "4k", "3d", "60fps", "21st", "1990s") are not leetspeak.
_NUMBER_WITH_UNIT = re.compile(r"\d+(?:p|k|d|fps|st|nd|rd|th|s|x|mm|cm|m|km|kg|h|min|gb|mb)")
# Terms this long (without spaces) also match inside a word; shorter ones hit "Scunthorpe" and
# "therapist".
_MIN_INNER_TERM = 7


@dataclass(frozen=True)
class _Tokens:
    """Normalised tokens and, between each pair, whether they join into one word."""

    tokens: tuple[str, ...]
    joins: tuple[bool, ...]  # joins[i] is the boundary between tokens[i] and tokens[i + 1]

    def joined_pieces(self) -> list[list[str]]:
        words: list[list[str]] = []
        for index, token in enumerate(self.tokens):
            if index > 0 and self.joins[index - 1]:
                words[-1].append(token)
            else:
                words.append([token])
        return words

    def joined_words(self) -> list[str]:
        return ["".join(pieces) for pieces in self.joined_pieces()]


def _in_token(ch: str) -> bool:
    # Letters, digits, the leet symbols, and combining marks (Devanagari vowel signs are marks).
    return ch.isalnum() or ch in "@$!" or unicodedata.category(ch)[0] == "M"


def _fold(token: str) -> str:
    """Accents off and look-alikes to Latin; the caller keeps the result only if it is all ASCII."""
    decomposed = unicodedata.normalize("NFKD", token)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).translate(_CONFUSABLES)


def _unleet(token: str) -> str:
    if not _LETTER.search(token):
        return _SYMBOLS.sub("", token)  # a number ("1984", "$5") stays a number
    if _NUMBER_WITH_UNIT.fullmatch(token):
        return token
    return token.strip("!").translate(_LEET)  # "gore!" is not "gorei"


def _tokenise(text: str) -> _Tokens:
    folded = unicodedata.normalize("NFKC", text).casefold()
    visible = "".join(ch for ch in folded if unicodedata.category(ch) != "Cf")
    raw: list[str] = []
    gaps: list[str] = []  # gaps[i] is the separator between raw[i] and raw[i + 1]
    pending = ""
    for is_token, group in itertools.groupby(visible, key=_in_token):
        run = "".join(group)
        if not is_token or not any(ch.isalnum() for ch in run):  # "!!!" is punctuation
            pending += run
            continue
        if raw:
            gaps.append(pending)
        raw.append(run)
        pending = ""
    in_word = [not re.search(r"\s", gap) for gap in gaps]  # punctuation inserted inside a word
    joins = []
    for index, gap_in_word in enumerate(in_word):
        spaced_letters = len(raw[index]) == 1 and len(raw[index + 1]) == 1
        # A single letter already joined by punctuation ("g.o.r.e") does not also absorb its
        # space-separated neighbour ("a"): "a g.o.r.e" is "a gore", not "agore".
        left_punctuated = index > 0 and in_word[index - 1]
        right_punctuated = index + 1 < len(in_word) and in_word[index + 1]
        joins.append(gap_in_word or (spaced_letters and not left_punctuated and not right_punctuated))
    # Fold whole words, so "н а с и л и е" stays Russian while "g.о.r.е" becomes Latin.
    tokens: list[str] = []
    for word in _Tokens(tuple(raw), tuple(joins)).joined_pieces():
        ascii_pieces = [_fold(piece) for piece in word]
        chosen = ascii_pieces if all(p.isascii() for p in ascii_pieces) else word
        tokens.extend(_unleet(piece) for piece in chosen)
    # Leet digits standing alone between joined letters: "g 0 r e".
    for index, token in enumerate(tokens):
        if len(token) == 1 and token in _LEET_CHARS:
            neighbours = [
                tokens[other]
                for other, joined in ((index - 1, index > 0 and joins[index - 1]),
                                      (index + 1, index < len(joins) and joins[index]))
                if joined
            ]  # fmt: skip
            if any(_LETTER.search(neighbour) for neighbour in neighbours):
                tokens[index] = token.translate(_LEET)
    return _Tokens(tuple(tokens), tuple(joins))


def normalise(text: str) -> str:
    """Lower-case, mostly ASCII words separated by single spaces, pieces of a word joined."""
    return " ".join(_tokenise(text).joined_words())


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

    @classmethod
    def reject(cls, category: str, reason: str) -> Decision:
        return cls(approved=False, category=category, reason=reason)


APPROVED = Decision(approved=True)


@dataclass(frozen=True)
class _Term:
    category: int
    spaces: frozenset[int]  # offsets in the spelled term where a space may fall


@dataclass(frozen=True)
class _Hit:
    start: int
    end: int
    category: int

    def inside(self, other: _Hit) -> bool:
        longer = other.end - other.start > self.end - self.start
        return longer and other.start <= self.start and self.end <= other.end


class RuleEngine:
    """Rejects with the first category, in configured order, that any rule of matches."""

    def __init__(self, categories: Iterable[Category]) -> None:
        self._categories = tuple(categories)
        self._terms: dict[str, list[_Term]] = {}
        self._inner_terms: list[tuple[str, int]] = []
        self._patterns: list[tuple[re.Pattern[str], int]] = []
        for index, category in enumerate(self._categories):
            for term in category.terms:
                tokens = _tokenise(term).tokens
                spelled = "".join(tokens)
                if not spelled:
                    continue
                offsets = frozenset(len("".join(tokens[:cut])) for cut in range(1, len(tokens)))
                self._terms.setdefault(spelled, []).append(_Term(index, offsets))
                if len(spelled) >= _MIN_INNER_TERM:
                    self._inner_terms.append((spelled, index))
            self._patterns.extend((re.compile(pattern), index) for pattern in category.patterns)
        self._longest = max((len(spelled) for spelled in self._terms), default=0)

    @property
    def categories(self) -> tuple[Category, ...]:
        return self._categories

    def evaluate(self, text: str) -> Decision:
        tokens = _tokenise(text)
        words = tokens.joined_words()
        hit: set[int] = {h.category for h in self._term_hits(tokens)}
        hit.update(index for spelled, index in self._inner_terms if any(spelled in w for w in words))
        views = (" ".join(words), " ".join(tokens.tokens))
        hit.update(index for pattern, index in self._patterns if any(pattern.search(v) for v in views))
        if not hit:
            return APPROVED
        category = self._categories[min(hit)]
        return Decision.reject(category.name, category.reason)

    def _term_hits(self, text: _Tokens) -> list[_Hit]:
        hits: list[_Hit] = []
        tokens = text.tokens
        for start in range(len(tokens)):
            spelled = ""
            spaces: list[int] = []
            for end in range(start, len(tokens)):
                if end > start and not text.joins[end - 1]:
                    spaces.append(len(spelled))
                spelled += tokens[end]
                if len(spelled) > self._longest + 2:
                    break
                hits.extend(
                    _Hit(start, end + 1, term.category)
                    for candidate in _singulars(spelled)
                    for term in self._terms.get(candidate, ())
                    if all(space in term.spaces for space in spaces)
                )
        # The longer of two overlapping matches wins: "al gore" over "gore".
        return [h for h in hits if not any(h.inside(other) for other in hits)]


def _singulars(word: str) -> Sequence[str]:
    if word.endswith("es"):
        return (word, word[:-1], word[:-2])
    if word.endswith("s"):
        return (word, word[:-1])
    return (word,)


_MINORS = "(?:" + "|".join(
    ("child", "children", "kids?", "minors?", "underage", "preteens?", "teens?", "teenagers?",
     "toddlers?", "schoolgirls?", "schoolboys?")
) + ")"  # fmt: skip
_SEXUAL = "(?:" + "|".join(
    ("nude", "naked", "nudity", "nsfw", "sexual", "sexy", "sex", "erotic", "porn", "porno", "lingerie",
     "undressed", "undressing", "topless")
) + ")"  # fmt: skip
_GROUPS = "(?:" + "|".join(
    ("jews", "muslims", "christians", "blacks", "whites", "asians", "arabs", "gays", "trans people",
     "immigrants", "mexicans", "refugees")
) + ")"  # fmt: skip

DEFAULT_CATEGORIES: tuple[Category, ...] = (
    Category(
        "sexual_minors",
        "Content that sexualises minors is never allowed.",
        terms=(
            "child porn",
            "cp video",
            "underage sex",
            "nude child",
            "naked kid",
            "loli",
            "shota",
            "jailbait",
        ),
        patterns=(
            rf"\b{_MINORS}\b.{{0,40}}\b{_SEXUAL}\b",
            rf"\b{_SEXUAL}\b.{{0,40}}\b{_MINORS}\b",
        ),
    ),
    Category(
        "graphic_violence",
        "Graphic violence and gore are not allowed.",
        terms=(
            "gore",
            "gory",
            "beheading",
            "decapitation",
            "decapitated",
            "dismemberment",
            "dismembered",
            "disembowel",
            "disembowelled",
            "mutilated corpse",
            "torture scene",
            "blood bath",
            "massacre",
            "snuff film",
        ),
    ),
    Category(
        "self_harm",
        "Content that depicts or encourages self-harm or suicide is not allowed.",
        terms=(
            "suicide",
            "self harm",
            "cutting myself",
            "kill myself",
            "killing myself",
            "slit wrists",
            "slit my wrists",
            "hang myself",
            "end my life",
        ),
    ),
    Category(
        "hate",
        "Hateful content about a protected group is not allowed.",
        terms=("white power", "heil hitler", "sieg heil", "ethnic cleansing", "subhuman", "race war"),
        patterns=(
            rf"\b(?:death to|kill|gas|exterminate) (?:all |the )?{_GROUPS}\b",
            rf"\b{_GROUPS} (?:are|r) (?:vermin|animals|subhuman|rats|parasites)\b",
        ),
    ),
    Category(
        "public_figures",
        "Real public figures cannot be depicted on this platform.",
        terms=(
            "donald trump",
            "joe biden",
            "kamala harris",
            "barack obama",
            "al gore",
            "elon musk",
            "taylor swift",
            "vladimir putin",
            "xi jinping",
            "pope francis",
            "pope leo",
            "kim jong un",
            "narendra modi",
            "emmanuel macron",
            "king charles",
        ),
    ),
    Category(
        "copyrighted_characters",
        "Copyrighted characters cannot be used on this platform.",
        terms=(
            "mickey mouse",
            "minnie mouse",
            "spider-man",
            "darth vader",
            "harry potter",
            "pikachu",
            "super mario",
            "elsa from frozen",
            "batman",
            "superman",
            "shrek",
            "sonic the hedgehog",
            "spongebob",
            "homer simpson",
        ),
    ),
)
