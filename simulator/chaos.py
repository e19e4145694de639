"""Chaos: the faults a real provider shows, decided reproducibly from one seeded random generator.

Pure decisions, no HTTP and no clock: the middleware in `app.py` and the store apply them. One
`random.Random(seed)` is drawn from in a fixed pattern per decision, in the order requests arrive,
so the same seed and the same request sequence give the same outcomes.

Per /v1 request (`plan_request`):
- one draw picks at most one fault, checked in the order rate_limit, server_error, unavailable,
  drop (each probability is exact as long as they sum to at most 1);
- one draw decides the added latency (`slow`);
- for a request that creates a video and got a 500/503/drop, one more draw decides whether the
  fault hits before or after the video was created (half the time each): the "the create timed
  out, but the video exists" case clients must reconcile.
Knobs at zero draw nothing.

Per created video (`plan_job`): one draw each for `fail_job` and `early_expiry`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any

PROBABILITY_KNOBS = ("rate_limit", "server_error", "unavailable", "slow", "drop", "fail_job", "early_expiry")
DEFAULT_RETRY_AFTER_MS = 1000
DEFAULT_SLOW_MS = 2000


class ChaosConfigError(ValueError):
    """A knob has a value of the wrong type or out of range."""


@dataclass(frozen=True)
class ChaosSettings:
    """The knobs, all off by default. Names match the `SIMULATOR_CHAOS_*` variables and `/_chaos`."""

    # None: seeded from the OS, so outcomes differ between runs.
    seed: int | None = None
    rate_limit: float = 0.0
    retry_after_ms: int = DEFAULT_RETRY_AFTER_MS
    server_error: float = 0.0
    unavailable: float = 0.0
    slow: float = 0.0
    slow_ms: int = DEFAULT_SLOW_MS
    drop: float = 0.0
    fail_job: float = 0.0
    refuse_terms: tuple[str, ...] = ()
    early_expiry: float = 0.0
    # With early_expiry, expires_at = completed_at + this (0: expired the moment it completes).
    early_expiry_seconds: float = 0.0

    def check(self) -> None:
        for name in PROBABILITY_KNOBS:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ChaosConfigError(f"chaos {name} must be a probability in 0..1, got {value}")
        for name in ("retry_after_ms", "slow_ms", "early_expiry_seconds"):
            if getattr(self, name) < 0:
                raise ChaosConfigError(f"chaos {name} must not be negative")
        if any(not term.strip() for term in self.refuse_terms):
            raise ChaosConfigError("chaos refuse_terms must not contain empty terms")

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["refuse_terms"] = list(self.refuse_terms)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ChaosSettings:
        """Knobs from a JSON object; absent knobs are off. Raises ChaosConfigError on bad input."""
        known = {field.name for field in fields(cls)}
        if unknown := sorted(set(data) - known):
            raise ChaosConfigError(f"unknown chaos knob(s): {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            if name == "seed":
                if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                    raise ChaosConfigError("chaos seed must be an integer or null")
                values[name] = value
            elif name == "refuse_terms":
                if not isinstance(value, list) or not all(isinstance(term, str) for term in value):
                    raise ChaosConfigError("chaos refuse_terms must be a list of strings")
                values[name] = tuple(value)
            elif name in ("retry_after_ms", "slow_ms"):
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ChaosConfigError(f"chaos {name} must be an integer")
                values[name] = value
            else:
                if not isinstance(value, int | float) or isinstance(value, bool):
                    raise ChaosConfigError(f"chaos {name} must be a number")
                values[name] = float(value)
        settings = cls(**values)
        settings.check()
        return settings


def parse_terms(raw: str) -> tuple[str, ...]:
    """`SIMULATOR_CHAOS_REFUSE_TERMS`: comma-separated, blanks ignored."""
    return tuple(term.strip() for term in raw.split(",") if term.strip())


class Fault(StrEnum):
    RATE_LIMIT = "rate_limit"
    SERVER_ERROR = "server_error"
    UNAVAILABLE = "unavailable"
    DROP = "drop"


@dataclass(frozen=True)
class RequestPlan:
    fault: Fault | None = None
    # True: let the handler run (the video gets created), then fail the response.
    after_handler: bool = False
    delay_ms: int = 0
    retry_after_ms: int = DEFAULT_RETRY_AFTER_MS


@dataclass(frozen=True)
class JobPlan:
    fail: bool = False
    # None: the normal asset TTL; otherwise the TTL after completion, in seconds.
    expires_after_seconds: float | None = None


class Chaos:
    """Owns the knobs and the one random generator every decision draws from."""

    def __init__(self, settings: ChaosSettings | None = None) -> None:
        self.replace(settings or ChaosSettings())

    @property
    def settings(self) -> ChaosSettings:
        return self._settings

    def replace(self, settings: ChaosSettings) -> None:
        """Swap every knob and restart the random sequence from the (new) seed."""
        settings.check()
        self._settings = settings
        self._rng = random.Random(settings.seed)

    def plan_request(self, *, creates_video: bool) -> RequestPlan:
        knobs = self._settings
        fault: Fault | None = None
        thresholds = [
            (Fault.RATE_LIMIT, knobs.rate_limit),
            (Fault.SERVER_ERROR, knobs.server_error),
            (Fault.UNAVAILABLE, knobs.unavailable),
            (Fault.DROP, knobs.drop),
        ]
        if any(probability > 0 for _, probability in thresholds):
            draw = self._rng.random()
            cumulative = 0.0
            for candidate, probability in thresholds:
                cumulative += probability
                if draw < cumulative:
                    fault = candidate
                    break
        delay_ms = knobs.slow_ms if self._chance(knobs.slow) else 0
        after_handler = False
        if creates_video and fault in (Fault.SERVER_ERROR, Fault.UNAVAILABLE, Fault.DROP):
            after_handler = self._rng.random() < 0.5
        return RequestPlan(
            fault=fault, after_handler=after_handler, delay_ms=delay_ms, retry_after_ms=knobs.retry_after_ms
        )

    def plan_job(self) -> JobPlan:
        knobs = self._settings
        fail = self._chance(knobs.fail_job)
        early = self._chance(knobs.early_expiry)
        return JobPlan(fail=fail, expires_after_seconds=knobs.early_expiry_seconds if early else None)

    def refused_term(self, prompt: str) -> str | None:
        """The first refuse term the prompt contains (case-insensitive), if any. Draws nothing."""
        folded = prompt.casefold()
        return next((term for term in self._settings.refuse_terms if term.casefold() in folded), None)

    def _chance(self, probability: float) -> bool:
        return probability > 0 and self._rng.random() < probability
