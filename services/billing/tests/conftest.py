from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.billing.tests.harness import Billing, running_billing


@pytest.fixture
async def billing(fresh_database_url: str, infrastructure: Any) -> AsyncIterator[Billing]:
    async with running_billing(fresh_database_url, infrastructure) as running:
        yield running
