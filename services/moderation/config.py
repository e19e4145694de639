"""Frozen settings from the environment; category and blocklist configuration is checked here, so a
bad deployment fails at start-up with a ConfigError naming the variable and the entry."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from servicekit.config import ConfigError, env_float, env_int, env_str
from servicekit.metrics import metrics_port_from_env

from services.moderation.domain import (
    DEFAULT_CATEGORIES,
    BlocklistConfigError,
    Category,
    CategoryConfigError,
    parse_blocklist,
    parse_categories,
)

T = TypeVar("T")


@dataclass(frozen=True)
class ClassifierSettings:
    """An OpenAI `/v1/moderations`-compatible classifier; `base_url` ends in `/v1`."""

    base_url: str
    api_key: str = ""
    model: str = "omni-moderation-latest"
    timeout_seconds: float = 10.0
    max_attempts: int = 3
    backoff_seconds: float = 0.5


@dataclass(frozen=True)
class Settings:
    database_url: str
    grpc_listen_address: str = "127.0.0.1:50052"
    grpc_drain_seconds: float = 10.0
    # /metrics port; 0 (off) unless set, so tests and benchmarks never fight over 9464.
    metrics_port: int = 0
    categories: tuple[Category, ...] = DEFAULT_CATEGORIES
    image_blocklist: tuple[int, ...] = ()
    image_hash_distance: int = 6
    classifier: ClassifierSettings | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        distance = env_int("MODERATION_IMAGE_HASH_DISTANCE", cls.image_hash_distance, environ=env)
        if not 0 <= distance <= 64:
            raise ConfigError(f"MODERATION_IMAGE_HASH_DISTANCE must be between 0 and 64, got {distance}")
        categories = _json_setting(env, "MODERATION_CATEGORIES", parse_categories, CategoryConfigError)
        blocklist = _json_setting(env, "MODERATION_IMAGE_BLOCKLIST", parse_blocklist, BlocklistConfigError)
        return cls(
            database_url=env_str("DATABASE_URL", environ=env),
            grpc_listen_address=env_str("GRPC_LISTEN_ADDRESS", cls.grpc_listen_address, environ=env),
            grpc_drain_seconds=env_float("GRPC_DRAIN_SECONDS", cls.grpc_drain_seconds, environ=env),
            metrics_port=metrics_port_from_env(env),
            categories=DEFAULT_CATEGORIES if categories is None else categories,
            image_blocklist=() if blocklist is None else blocklist,
            image_hash_distance=distance,
            classifier=_classifier(env),
        )


def _classifier(env: Mapping[str, str]) -> ClassifierSettings | None:
    url = env_str("MODERATION_CLASSIFIER_URL", "", environ=env).rstrip("/")
    if not url:
        return None
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"MODERATION_CLASSIFIER_URL must be an http(s) URL ending in /v1, got {url!r}")
    defaults = ClassifierSettings(url)
    timeout = env_float("MODERATION_CLASSIFIER_TIMEOUT_SECONDS", defaults.timeout_seconds, environ=env)
    attempts = env_int("MODERATION_CLASSIFIER_MAX_ATTEMPTS", defaults.max_attempts, environ=env)
    if timeout <= 0:
        raise ConfigError(f"MODERATION_CLASSIFIER_TIMEOUT_SECONDS must be positive, got {timeout}")
    if not 1 <= attempts <= 10:
        raise ConfigError(f"MODERATION_CLASSIFIER_MAX_ATTEMPTS must be between 1 and 10, got {attempts}")
    return ClassifierSettings(
        base_url=url,
        api_key=env_str("MODERATION_CLASSIFIER_API_KEY", "", environ=env),
        model=env_str("MODERATION_CLASSIFIER_MODEL", defaults.model, environ=env),
        timeout_seconds=timeout,
        max_attempts=attempts,
    )


def _json_setting(
    env: Mapping[str, str], name: str, parse: Callable[[object], T], error: type[ValueError]
) -> T | None:
    """`NAME` holds inline JSON, `NAME_FILE` a path to it; setting both is an error; neither is None."""
    inline, path = env.get(name, ""), env.get(f"{name}_FILE", "")
    if inline and path:
        raise ConfigError(f"set either {name} or {name}_FILE, not both")
    if path:
        source = f"{name}_FILE ({path})"
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
    elif inline:
        source, text = name, inline
    else:
        return None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: not valid JSON: {exc}") from None
    try:
        return parse(document)
    except error as exc:
        raise ConfigError(f"{source}: {exc}") from None
