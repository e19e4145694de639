"""Normalisation and the rule engine: evasions that must be caught, innocent texts that must pass."""

from __future__ import annotations

import pytest

from services.moderation.domain import DEFAULT_CATEGORIES, Category, RuleEngine, normalise

ENGINE = RuleEngine(DEFAULT_CATEGORIES)
# Terms chosen to sit inside ordinary words, the classic "Scunthorpe problem".
SCUNTHORPE = RuleEngine(
    [Category("test", "Not allowed.", terms=("kill", "cunt", "rape", "rapist", "sex", "ass", "cock", "hell"))]
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a g.o.r.e fest", "a gore fest"),
        ("K-I-L-L", "kill"),
        ("k_i_l_l", "kill"),
        ("G\u200bO\u200cR\u200dE\u2060", "gore"),  # zero-width space, non-joiner, joiner, word joiner
        ("go\u00adre", "gore"),  # soft hyphen
        ("\ufeffgore\u202e", "gore"),  # BOM and a bidi override
        ("ＧＯＲＥ ｆｅｓｔ", "gore fest"),  # full-width
        ("gоrе", "gore"),  # Cyrillic о and е in a Latin word
        ("ѕех", "sex"),  # entirely Cyrillic look-alikes
        ("gοrε", "gore"),  # Greek omicron and epsilon
        ("göré", "gore"),
        ("g0r3", "gore"),
        ("$u1c1d3", "suicide"),
        ("k!ll", "kill"),
        ("gore!!!", "gore"),
        ("g 0 r e", "gore"),
        ("1984, 4 cats, $5, 3.5", "1984 4 cats 5 35"),
        ("a 3d render in 4k at 1080p and 60fps, the 1990s, 21st century", None),
        ("горе и радость", "горе и радость"),  # Russian stays Russian
        ("Straße café naïve", "strasse cafe naive"),
        ("東京の夜景", "東京の夜景"),
        ("हिन्दी में", "हिन्दी में"),  # combining vowel signs are kept in other scripts
    ],
)
def test_normalise(text: str, expected: str | None) -> None:
    assert normalise(text) == (expected if expected is not None else text.lower().replace(",", ""))


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("a g.o.r.e fest", "graphic_violence"),
        ("a g o r e fest", "graphic_violence"),
        ("GORE", "graphic_violence"),
        ("g o r e", "graphic_violence"),
        ("g. o. r. e.", "graphic_violence"),
        ("g-o-r-e", "graphic_violence"),
        ("go-re", "graphic_violence"),
        ("g\u200bore", "graphic_violence"),
        ("ｇｏｒｅ", "graphic_violence"),
        ("gоrе", "graphic_violence"),
        ("g0r3 everywhere", "graphic_violence"),
        ("gore!", "graphic_violence"),
        ("beheadings on camera", "graphic_violence"),
        ("a beheadingvideo", "graphic_violence"),
        ("m@ss@cre at the mall", "graphic_violence"),
        ("d.e.c.a.p.i.t.a.t.i.o.n", "graphic_violence"),
        ("a man about to kill myself", "self_harm"),
        ("I want to k.i.l.l myself", "self_harm"),
        ("kill my-self", "self_harm"),
        ("s u i c i d e", "self_harm"),
        ("$u1c1d3 note", "self_harm"),
        ("self-harm", "self_harm"),
        ("selfharm tips", "self_harm"),
        ("self harm", "self_harm"),
        ("HEIL HITLER", "hate"),
        ("death to all immigrants", "hate"),
        ("gas the jews", "hate"),
        ("naked kids", "sexual_minors"),
        ("a teenager, nude", "sexual_minors"),
        ("sexy schoolgirl", "sexual_minors"),
        ("l0li", "sexual_minors"),
        ("Donald Trump riding a horse", "public_figures"),
        ("d0nald trump", "public_figures"),
        ("Al Gore giving a talk", "public_figures"),  # the longer match wins over "gore"
        ("Al Gore in a gore fest", "graphic_violence"),  # both present: the first category wins
        ("donald   trump", "public_figures"),
        ("Spider-Man swinging", "copyrighted_characters"),
        ("spider man", "copyrighted_characters"),
        ("p i k a c h u", "copyrighted_characters"),
        ("Рikасhu", "copyrighted_characters"),  # Cyrillic Р, а, с
    ],
)
def test_evasions_are_caught(text: str, category: str) -> None:
    decision = ENGINE.evaluate(text)
    assert not decision.approved
    assert decision.category == category
    assert decision.reason == next(c.reason for c in DEFAULT_CATEGORIES if c.name == category)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a cat playing the piano in a sunny kitchen",
        "a gorgeous sunset over the sea",  # "gor..." is not "gore"
        "I'll go re-read the book",  # real spaces do not build "gore"
        "a go, re-enactment",
        "Gorey, a town in Ireland",  # "gorey" is not "gory"
        "a drone shot of Scunthorpe",
        "a skilled craftsman at work",
        "the therapist's office",
        "cocktails in Essex",
        "the assassin's creed of hello kitty",
        "Vegas the city at night",
        "gas the car up at the station",
        "a kidney transplant",
        "a minor chord on a guitar",
        "teenagers skateboarding in a park",
        "a baby bath in a nursery",
        "1984, 4 cats and 3 dogs in 4k at 1080p, 60fps",
        "a 3d render of the 42nd street in the 1990s",
        "a batter hitting a home run",  # "batter" is not "batman"
        "a mario kart style race",  # only "super mario" is a term
        "horror movie trailer with a haunted house",
        "горе и радость",  # Russian: "grief and joy"
        "un chat qui joue du piano",
        "猫がピアノを弾く",
        "Straße in München bei Nacht",
        "a documentary about the history of the Roman empire",
    ],
)
def test_innocent_texts_pass(text: str) -> None:
    assert ENGINE.evaluate(text).approved, ENGINE.evaluate(text)


@pytest.mark.parametrize(
    "text",
    ["skill", "skills", "Scunthorpe", "therapist", "grapes", "Essex", "Sussex", "assassin", "class",
     "cocktail", "Hancock", "hello", "shell", "Michelle"],
)  # fmt: skip
def test_terms_do_not_match_inside_words(text: str) -> None:
    assert SCUNTHORPE.evaluate(text).approved


@pytest.mark.parametrize("text", ["kill", "k.i.l.l", "KILLS", "the rapist", "s3x", "a$$"])
def test_short_terms_still_match_as_words(text: str) -> None:
    assert not SCUNTHORPE.evaluate(text).approved


def test_patterns_match_normalised_text() -> None:
    engine = RuleEngine([Category("weapons", "No weapons.", patterns=(r"\bbuild an? (?:bomb|gun)\b",))])
    assert engine.evaluate("how to B.U.I.L.D a b0mb").category == "weapons"
    assert engine.evaluate("build a bonfire").approved


def test_first_configured_category_wins() -> None:
    first = Category("first", "First.", terms=("shared",))
    second = Category("second", "Second.", terms=("shared", "other"))
    assert RuleEngine([first, second]).evaluate("shared other").category == "first"
    assert RuleEngine([second, first]).evaluate("shared").category == "second"


def test_non_latin_terms_match_non_latin_text() -> None:
    engine = RuleEngine([Category("ru", "Нельзя.", terms=("насилие",))])
    assert engine.evaluate("сцена НАСИЛИЕ").category == "ru"
    assert engine.evaluate("н а с и л и е").category == "ru"
    assert engine.evaluate("мирная сцена").approved
