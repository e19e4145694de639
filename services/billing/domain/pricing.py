"""Prices in exact integers: USD per second as micro-dollars, charges as whole credits.

A price is kept as micro-dollars per second (0.10 USD/s -> 100_000), so the table never holds
a float. A charge converts to credits with one integer division that rounds up: a fraction of a
credit is charged as a whole one, and with the default 100 credits per dollar every default
price is a whole number of credits per second, so nothing rounds at all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import MappingProxyType

from servicekit.errors import ErrorKind, ServiceError

MICROS_PER_DOLLAR = 1_000_000

# USD per second of video, by model and size (both orientations of each size).
DEFAULT_USD_PER_SECOND: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "sora-2": MappingProxyType({"720x1280": "0.10", "1280x720": "0.10"}),
        "sora-2-pro": MappingProxyType(
            {
                "720x1280": "0.30",
                "1280x720": "0.30",
                "1024x1792": "0.50",
                "1792x1024": "0.50",
                "1080x1920": "0.70",
                "1920x1080": "0.70",
            }
        ),
    }
)

# "sora-2-pro-2025-10-06" is a dated snapshot of "sora-2-pro" and costs the same.
_SNAPSHOT = re.compile(r"^(?P<base>.+)-\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class VideoSpec:
    model: str
    size: str
    seconds: int


@dataclass(frozen=True)
class Rate:
    """What one second costs, and the credit conversion in force when the rate was taken."""

    micro_usd_per_second: int
    credits_per_dollar: int

    def __post_init__(self) -> None:
        if self.micro_usd_per_second <= 0 or self.credits_per_dollar <= 0:
            raise ValueError("a rate and its credit conversion must both be positive")

    def cost(self, seconds: int) -> int:
        """Credits for `seconds` of video, rounded up to a whole credit."""
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        micro_credits = self.micro_usd_per_second * seconds * self.credits_per_dollar
        return -(-micro_credits // MICROS_PER_DOLLAR)


def usd_to_micros(usd: str | int | Decimal) -> int:
    """Exact conversion; more precision than a micro-dollar, or a non-positive price, is refused."""
    try:
        value = Decimal(str(usd))
    except InvalidOperation as exc:
        raise ValueError(f"price {usd!r} is not a number") from exc
    micros = value * MICROS_PER_DOLLAR
    if not micros.is_finite() or micros != micros.to_integral_value() or micros <= 0:
        raise ValueError(f"price {usd!r} must be positive with at most 6 decimal places")
    return int(micros)


class PriceTable:
    def __init__(
        self, usd_per_second: Mapping[str, Mapping[str, str | int | Decimal]], credits_per_dollar: int
    ):
        if credits_per_dollar <= 0:
            raise ValueError("credits per dollar must be positive")
        self._credits_per_dollar = credits_per_dollar
        self._micros: dict[tuple[str, str], int] = {
            (model, size): usd_to_micros(price)
            for model, sizes in usd_per_second.items()
            for size, price in sizes.items()
        }
        if not self._micros:
            raise ValueError("the price table is empty")

    def rate(self, model: str, size: str) -> Rate:
        base = self._base_model(model)
        if base is None:
            known = ", ".join(sorted({m for m, _ in self._micros}))
            raise ServiceError(
                ErrorKind.INVALID_ARGUMENT,
                f"Model {model!r} is not priced. Priced models: {known}.",
                param="model",
                code="invalid_model",
            )
        micros = self._micros.get((base, size))
        if micros is None:
            sizes = ", ".join(sorted(s for m, s in self._micros if m == base))
            raise ServiceError(
                ErrorKind.INVALID_ARGUMENT,
                f"Size {size!r} is not available for model {model!r}. Available sizes: {sizes}.",
                param="size",
                code="invalid_size",
            )
        return Rate(micros, self._credits_per_dollar)

    def quote(self, spec: VideoSpec) -> int:
        if spec.seconds <= 0:
            raise ServiceError(
                ErrorKind.INVALID_ARGUMENT, "seconds must be a positive number of seconds", param="seconds"
            )
        return self.rate(spec.model, spec.size).cost(spec.seconds)

    def _base_model(self, model: str) -> str | None:
        models = {m for m, _ in self._micros}
        if model in models:
            return model
        snapshot = _SNAPSHOT.match(model)
        if snapshot and snapshot["base"] in models:
            return snapshot["base"]
        return None
