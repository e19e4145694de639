"""Downloading a finished video while media storage is unreachable, or reachable but hung (it takes
connections and never answers), answers 503 with an OpenAI error body (a client may retry), not 500
and not a wait of minutes; once storage is back, the same request streams the video. Storage that
hangs in the middle of a download cuts the download short at once, rather than leaving the client
waiting for the rest.

The stack's S3 traffic goes through a proxy the test cuts or stalls, so storage goes away for this
stack only.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from minio import Minio
from servicekit.storage import S3Timeouts

from devstack.servers import Infrastructure
from simulator.config import Settings as SimulatorSettings
from tests.conftest import Stack, running_stack
from tests.helpers import credit, eventually
from tests.reliability.outage_control import TcpProxy, s3_behind_a_proxy

pytestmark = pytest.mark.e2e

# Short enough that a download from the hung store gives up well inside the client's 30 s.
STORAGE_TIMEOUTS = S3Timeouts(connect_seconds=2, read_seconds=2)


@dataclass
class Download:
    stack: Stack
    proxy: TcpProxy
    http: aiohttp.ClientSession
    video_id: str
    headers: dict[str, str]

    @property
    def content_url(self) -> str:
        return f"{self.stack.gateway_url}/v1/videos/{self.video_id}/content"


@contextlib.asynccontextmanager
async def completed_video_behind_a_proxy(infrastructure: Infrastructure) -> AsyncIterator[Download]:
    """A stack whose S3 traffic (presigned URLs included) goes through a proxy, with one video made."""
    async with (
        s3_behind_a_proxy(infrastructure) as (proxied, proxy),
        running_stack(
            proxied,
            SimulatorSettings(generation_seconds=0.5),
            storage_timeouts=STORAGE_TIMEOUTS,
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
        yield Download(stack, proxy, http, video_id, headers)


@pytest.mark.parametrize("outage", ["refused", "hung"])
async def test_content_answers_503_while_storage_is_unreachable_and_streams_once_it_is_back(
    infrastructure: Infrastructure, outage: str
) -> None:
    async with completed_video_behind_a_proxy(infrastructure) as download:
        http, proxy = download.http, download.proxy
        await (proxy.cut() if outage == "refused" else proxy.stall())
        async with http.get(download.content_url, headers=download.headers) as answer:
            assert answer.status == 503, await answer.text()
            error = (await answer.json())["error"]
        assert (error["type"], error["code"]) == ("server_error", "service_unavailable")
        assert set(error) == {"message", "type", "param", "code"}

        await proxy.restore()
        async with http.get(download.content_url, headers=download.headers) as answer:
            assert answer.status == 200
            assert (await answer.read())[4:8] == b"ftyp"


# More than every socket buffer between S3 and the client holds, so the download is still coming
# from S3 when the store hangs.
LARGE_OBJECT_BYTES = 64 * 1024 * 1024


async def test_storage_hanging_mid_download_cuts_the_download_short_at_once(
    infrastructure: Infrastructure, s3: Minio
) -> None:
    async with completed_video_behind_a_proxy(infrastructure) as download:
        # The stored video, made large: the gateway relays its bytes as they are.
        key = f"media/user_alice/{download.video_id}/video.mp4"
        data = b"\0\0\0\x18ftypmp42" + os.urandom(LARGE_OBJECT_BYTES - 12)
        await asyncio.to_thread(
            s3.put_object,
            download.stack.s3.bucket,
            key,
            io.BytesIO(data),
            len(data),
            content_type="video/mp4",
        )
        async with download.http.get(download.content_url, headers=download.headers) as answer:
            assert answer.status == 200
            assert int(answer.headers["Content-Length"]) == LARGE_OBJECT_BYTES
            assert (await answer.content.readexactly(1 << 16))[4:8] == b"ftyp"
            await download.proxy.stall()
            # Cut off within the gateway's read timeout (2 s), far inside this client's 30 s: a
            # gateway that left the connection open would end this with a TimeoutError instead.
            with pytest.raises(aiohttp.ClientPayloadError):
                await answer.read()
