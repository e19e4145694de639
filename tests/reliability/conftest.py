"""Reliability scenarios run twice over: small in CI (`make test`, as e2e tests) and full size with
`make test-reliability` (`RELIABILITY_FULL=1`)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Scale:
    full: bool

    def pick(self, ci: float, full: float) -> float:
        """The CI figure, or the issue's figure at full size."""
        return full if self.full else ci


@pytest.fixture(scope="session")
def scale() -> Scale:
    return Scale(full=os.environ.get("RELIABILITY_FULL") == "1")
