"""Typed reads of environment variables; each service builds a frozen Settings from these."""

from __future__ import annotations

import os
from collections.abc import Mapping


class ConfigError(ValueError):
    """A required variable is missing or has a value of the wrong shape."""


def env_str(name: str, default: str | None = None, *, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    value = env.get(name, "")
    if value != "":
        return value
    if default is None:
        raise ConfigError(f"environment variable {name} is required")
    return default


def env_int(name: str, default: int, *, environ: Mapping[str, str] | None = None) -> int:
    raw = env_str(name, str(default), environ=environ)
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def env_float(name: str, default: float, *, environ: Mapping[str, str] | None = None) -> float:
    raw = env_str(name, str(default), environ=environ)
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc


def env_bool(name: str, default: bool, *, environ: Mapping[str, str] | None = None) -> bool:
    raw = env_str(name, "true" if default else "false", environ=environ).strip().lower()
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be a boolean, got {raw!r}")
