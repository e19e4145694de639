"""Downloading a finished video while media storage is unreachable answers 503 with an OpenAI error
body (a client may retry), not 500; once storage is back, the same request streams the video.

The stack's S3 traffic goes through a proxy the test cuts, so storage goes away for this stack only.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from urllib.parse import urlsplit

import aiohttp
import pytest

from devstack.servers import Infrastructure
from simulator.config import Settings as SimulatorSettings
from tests.conftest import running_stack
from tests.helpers import credit, eventually
from tests.reliability.outage_control import TcpProxy

pytestmark = pytest.mark.e2e


async def test_content_answers_503_while_storage_is_unreachable_and_streams_once_it_is_back(
    infrastructure: Infrastructure,
) -> None:
    storage = urlsplit(infrastructure.s3_endpoint)
    proxy = TcpProxy(storage.port or 80, storage.hostname or "127.0.0.1")
    await proxy.restore()
    try:
        async with (
            running_stack(
                replace(infrastructure, s3_endpoint=proxy.url), SimulatorSettings(generation_seconds=0.5)
            ) as stack,
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
        ):
            await credit(stack.billing_address, "user_alice", 100, request_id=f"topup-{uuid.uuid4()}")
            headers = {"Authorization": f"Bearer {stack.key('user_alice')}"}
            body = {"model": "sora-2", "seconds": "4", "prompt": "A lighthouse at dusk"}
            async with http.post(f"{stack.gateway_url}/v1/videos", json=body, headers=headers) as answer:
                video_id = (await answer.json())["id"]

            async def completed() -> bool | None:
                async with http.get(f"{stack.gateway_url}/v1/videos/{video_id}", headers=headers) as answer:
                    status = (await answer.json())["status"]
                assert status != "failed"
                return True if status == "completed" else None

            await eventually(completed, deadline_seconds=90)
            content = f"{stack.gateway_url}/v1/videos/{video_id}/content"

            await proxy.cut()
            async with http.get(content, headers=headers) as answer:
                assert answer.status == 503, await answer.text()
                error = (await answer.json())["error"]
            assert error["type"] == "server_error"
            assert set(error) == {"message", "type", "param", "code"}

            await proxy.restore()
            async with http.get(content, headers=headers) as answer:
                assert answer.status == 200
                assert (await answer.read())[4:8] == b"ftyp"
    finally:
        await proxy.cut()
