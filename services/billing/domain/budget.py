"""Spend limits per API key, per UTC day and per UTC month.

Spend is what a key's holds take from the ledger, counted at reserve time: an open hold counts
its full amount, a captured one what was charged, a released one nothing. A reserve that would
take the day's or the month's spend over its limit is refused; zero means no limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from servicekit.errors import ErrorKind, ServiceError


@dataclass(frozen=True)
class Budget:
    api_key_id: str
    daily_limit: int = 0  # 0 = no limit
    monthly_limit: int = 0

    def __post_init__(self) -> None:
        for param, value in (("daily_limit", self.daily_limit), ("monthly_limit", self.monthly_limit)):
            if value < 0:
                raise ServiceError(
                    ErrorKind.INVALID_ARGUMENT,
                    f"{param} must be zero (no limit) or a positive number of credits",
                    param=param,
                )

    @property
    def limited(self) -> bool:
        return bool(self.daily_limit or self.monthly_limit)


@dataclass(frozen=True)
class Spend:
    today: int = 0
    this_month: int = 0


@dataclass(frozen=True)
class Windows:
    """The start of the current UTC day and month; a hold placed at or after it counts."""

    day: datetime
    month: datetime


def windows(now: datetime) -> Windows:
    if now.tzinfo is None:
        raise ValueError("budget windows need an aware datetime")
    utc = now.astimezone(UTC)
    day = utc.replace(hour=0, minute=0, second=0, microsecond=0)
    return Windows(day=day, month=day.replace(day=1))


def check_budget(budget: Budget, spend: Spend, needed: int) -> None:
    """Refuse a reserve of `needed` credits that would take the key over a limit (day first)."""
    for period, limit, spent, name in (
        ("day", budget.daily_limit, spend.today, "daily"),
        ("month", budget.monthly_limit, spend.this_month, "monthly"),
    ):
        if limit and spent + needed > limit:
            raise ServiceError(
                ErrorKind.INSUFFICIENT_QUOTA,
                f"This job costs {needed} credits, but API key {budget.api_key_id} has spent {spent} of "
                f"its {name} budget of {limit} credits this UTC {period}. Raise the budget or wait for "
                f"the next {period}.",
                code="budget_exceeded",
                metadata={"needed": str(needed), "spent": str(spent), "limit": str(limit), "period": period},
            )
