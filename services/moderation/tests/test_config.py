from __future__ import annotations

import json
from pathlib import Path

import pytest
from servicekit.config import ConfigError

from services.moderation.config import ClassifierSettings, Settings
from services.moderation.domain import DEFAULT_CATEGORIES, Category

BASE = {"DATABASE_URL": "postgresql://moderation@db/vidflow"}
CATEGORIES = {"categories": [{"name": "spam", "reason": "No spam.", "terms": ["buy now"]}]}


def test_defaults() -> None:
    settings = Settings.from_env(BASE)
    assert settings.categories == DEFAULT_CATEGORIES
    assert settings.image_blocklist == ()
    assert settings.image_hash_distance == 6
    assert settings.classifier is None  # off unless configured
    assert settings.grpc_listen_address == "127.0.0.1:50052"


def test_default_categories_cover_the_shipped_policy() -> None:
    assert [c.name for c in DEFAULT_CATEGORIES] == [
        "sexual_minors", "graphic_violence", "self_harm", "hate", "public_figures", "copyrighted_characters"
    ]  # fmt: skip


def test_inline_categories_replace_the_defaults() -> None:
    settings = Settings.from_env({**BASE, "MODERATION_CATEGORIES": json.dumps(CATEGORIES)})
    assert settings.categories == (Category("spam", "No spam.", ("buy now",)),)


def test_categories_and_blocklist_from_files(tmp_path: Path) -> None:
    categories, blocklist = tmp_path / "categories.json", tmp_path / "blocklist.json"
    categories.write_text(json.dumps(CATEGORIES))
    blocklist.write_text(json.dumps(["00000000000000ff"]))
    settings = Settings.from_env(
        {
            **BASE,
            "MODERATION_CATEGORIES_FILE": str(categories),
            "MODERATION_IMAGE_BLOCKLIST_FILE": str(blocklist),
            "MODERATION_IMAGE_HASH_DISTANCE": "3",
        }
    )
    assert [c.name for c in settings.categories] == ["spam"]
    assert (settings.image_blocklist, settings.image_hash_distance) == ((0xFF,), 3)


def test_classifier_settings() -> None:
    settings = Settings.from_env(
        {
            **BASE,
            "MODERATION_CLASSIFIER_URL": "https://api.example.com/v1/",
            "MODERATION_CLASSIFIER_API_KEY": "sk-test",
            "MODERATION_CLASSIFIER_TIMEOUT_SECONDS": "2.5",
            "MODERATION_CLASSIFIER_MAX_ATTEMPTS": "4",
        }
    )
    assert settings.classifier == ClassifierSettings(
        "https://api.example.com/v1", "sk-test", "omni-moderation-latest", 2.5, 4
    )


BAD_PATTERN = json.dumps({"categories": [{"name": "x", "reason": "r", "patterns": ["("]}]})
CLASSIFIER = {"MODERATION_CLASSIFIER_URL": "http://classifier/v1"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"MODERATION_CATEGORIES": "{"}, "MODERATION_CATEGORIES: not valid JSON"),
        (
            {"MODERATION_CATEGORIES": BAD_PATTERN},
            r"MODERATION_CATEGORIES: categories\[0\] \('x'\): patterns\[0\] '\(' is not a valid regular",
        ),
        (
            {"MODERATION_CATEGORIES": "{}", "MODERATION_CATEGORIES_FILE": "/x"},
            "either MODERATION_CATEGORIES or",
        ),
        (
            {"MODERATION_CATEGORIES_FILE": "/nonexistent/categories.json"},
            "MODERATION_CATEGORIES_FILE .* cannot read",
        ),
        ({"MODERATION_IMAGE_BLOCKLIST": '["nothex"]'}, r"MODERATION_IMAGE_BLOCKLIST: \[0\]: 'nothex'"),
        ({"MODERATION_IMAGE_HASH_DISTANCE": "65"}, "between 0 and 64"),
        ({"MODERATION_IMAGE_HASH_DISTANCE": "six"}, "must be an integer"),
        ({"MODERATION_CLASSIFIER_URL": "api.example.com"}, "http"),
        ({**CLASSIFIER, "MODERATION_CLASSIFIER_MAX_ATTEMPTS": "0"}, "between 1 and 10"),
        ({**CLASSIFIER, "MODERATION_CLASSIFIER_TIMEOUT_SECONDS": "0"}, "positive"),
    ],
)
def test_bad_configuration_fails_at_start_up(extra: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({**BASE, **extra})
