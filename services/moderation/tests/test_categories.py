from __future__ import annotations

from typing import Any

import pytest

from services.moderation.domain import Category, CategoryConfigError, RuleEngine, parse_categories


def test_parses_categories_in_order() -> None:
    categories = parse_categories(
        {
            "categories": [
                {
                    "name": "weapons",
                    "reason": " No weapons. ",
                    "terms": ["pipe bomb"],
                    "patterns": [r"\bak ?47\b"],
                },
                {"name": "spam", "reason": "No spam.", "terms": ["buy now"]},
            ]
        }
    )
    assert categories == (
        Category("weapons", "No weapons.", ("pipe bomb",), (r"\bak ?47\b",)),
        Category("spam", "No spam.", ("buy now",), ()),
    )
    engine = RuleEngine(categories)
    assert engine.evaluate("a p.i.p.e b.o.m.b").category == "weapons"
    assert engine.evaluate("an AK-47").category == "weapons"
    assert engine.evaluate("buy now!").category == "spam"


ENTRY = {"name": "hate", "reason": "No.", "terms": ["x"]}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "expected an object"),
        ({"categories": {}}, "expected an object"),
        ({"categories": []}, "categories is empty"),
        ({"categories": ["hate"]}, r"categories\[0\]: expected an object"),
        ({"categories": [{**ENTRY, "name": "Hate Speech"}]}, r"categories\[0\]: name must be lower-case"),
        ({"categories": [{**ENTRY, "name": ""}]}, r"categories\[0\]: name"),
        ({"categories": [ENTRY, {**ENTRY, "terms": ["y"]}]}, r"categories\[1\]: duplicate name 'hate'"),
        ({"categories": [{**ENTRY, "reason": "  "}]}, r"categories\[0\] \('hate'\): reason must be"),
        ({"categories": [{"name": "hate", "terms": ["x"]}]}, r"\('hate'\): reason must be"),
        ({"categories": [{**ENTRY, "terms": "x"}]}, r"\('hate'\): terms must be a list"),
        ({"categories": [{**ENTRY, "terms": ["x", 3]}]}, r"\('hate'\): terms must be a list"),
        ({"categories": [{**ENTRY, "terms": ["ok", "..."]}]}, r"\('hate'\): terms\[1\] '...' has no letters"),
        (
            {"categories": [{**ENTRY, "patterns": ["(unclosed"]}]},
            r"patterns\[0\] '\(unclosed' is not a valid",
        ),
        ({"categories": [{"name": "hate", "reason": "No."}]}, r"\('hate'\): needs at least one term"),
        ({"categories": [{**ENTRY, "term": ["typo"]}]}, r"\('hate'\): unknown keys \['term'\]"),
    ],
)
def test_errors_name_the_entry(document: Any, message: str) -> None:
    with pytest.raises(CategoryConfigError, match=message):
        parse_categories(document)
