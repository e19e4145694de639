"""While the gateway's database restarts, requests answer 503 with an OpenAI error body (a client may
retry), not 500; once it is back, the same gateway process serves again."""

from __future__ import annotations

import aiohttp
import pytest

from devstack.servers import Infrastructure
from services.gateway.tests.running_gateway import migrated, new_tenant, running_gateway, settings_for
from tests.helpers import database_away

pytestmark = pytest.mark.integration


async def test_requests_during_a_database_outage_answer_503_and_recover(
    infrastructure: Infrastructure, fresh_database_url: str
) -> None:
    database = await migrated(fresh_database_url)
    tenant = await new_tenant(database)
    async with (
        running_gateway(settings_for(database)) as gateway,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http,
    ):

        async def list_keys() -> tuple[int, dict]:
            async with http.get(f"{gateway}/v1/api_keys", headers=tenant.auth) as answer:
                assert "X-Request-Id" in answer.headers
                return answer.status, await answer.json(content_type=None)

        assert (await list_keys())[0] == 200
        with database_away(infrastructure.database_url, database):
            status, body = await list_keys()
        assert status == 503, body
        assert body["error"]["type"] == "server_error"
        assert body["error"]["code"] == "service_unavailable"
        assert set(body["error"]) == {"message", "type", "param", "code"}
        assert (await list_keys())[0] == 200
