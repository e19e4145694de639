"""Reliability scenarios run twice over: small in CI (`make test`, as e2e tests) and full size with
`make test-reliability` (`RELIABILITY_FULL=1`)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from tests.reliability.outage_control import RestartableInfrastructure


@dataclass(frozen=True)
class Scale:
    full: bool

    def pick(self, ci: float, full: float) -> float:
        """The CI figure, or the issue's figure at full size."""
        return full if self.full else ci


@pytest.fixture(scope="session")
def scale() -> Scale:
    return Scale(full=os.environ.get("RELIABILITY_FULL") == "1")


@pytest.fixture(scope="module")
async def servers(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RestartableInfrastructure]:
    """PostgreSQL, NATS and S3 of the module's own, which its scenarios stop and start again."""
    servers = RestartableInfrastructure(tmp_path_factory.mktemp("restartable-servers"))
    try:
        await servers.start_all()
        yield servers
    finally:
        await servers.stop_all()


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session
