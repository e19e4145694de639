"""S3 hangs: it keeps accepting connections and never answers (a stuck disk, a network black hole, a
stuck load balancer), unlike `test_outages.py`'s S3 that is stopped and refuses them. Videos are made
meanwhile; then S3 answers again.

The stack's S3 traffic, downloads' presigned URLs included, goes through a proxy that the test
stalls. The services wait on S3 only as long as their timeouts (short here, so the scenario stays
small), so a hung call ends, the worker schedules the step again, and downloads answer 503 at once
instead of holding the request. The audit is `test_outages.py`'s: every video completed, none
failed, one upstream video per job, each hold captured once, the ledger clean and the balance exact.
Sizes and the hang's length are `scale.pick(CI, full)`.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from minio import Minio
from servicekit.storage import S3Timeouts

from devstack.servers import Infrastructure
from simulator.config import Settings as SimulatorSettings
from tests.conftest import running_stack
from tests.reliability.outage_control import s3_behind_a_proxy
from tests.reliability.test_outages import (
    GENERATION_SECONDS,
    JOBS_CI,
    JOBS_FULL,
    Tenant,
    _stage_of,
    _wait_until,
    _wait_until_stage,
    assert_held_during_outage,
    assert_nothing_lost_or_doubled,
    new_tenant,
)

# CI keeps hung storage in tests/test_media_storage_outage.py and the renderer's test_storage_hang.py.
pytestmark = [pytest.mark.reliability, pytest.mark.e2e, pytest.mark.full_size_only]

# Short waits keep the scenario small: a hung call gives up after about twice the read timeout.
STORAGE_TIMEOUTS = S3Timeouts(connect_seconds=2, read_seconds=2)
HANG_SECONDS_CI, HANG_SECONDS_FULL = 10, 60


async def _download(tenant: Tenant, video_id: str) -> tuple[int, bytes]:
    async with tenant.http.get(
        f"{tenant.stack.gateway_url}/v1/videos/{video_id}/content", headers=tenant.headers
    ) as answer:
        return answer.status, await answer.read()


async def test_videos_wait_out_a_hung_s3_and_downloads_answer_503_until_it_answers(
    infrastructure: Infrastructure, s3: Minio, scale
) -> None:
    async with (
        s3_behind_a_proxy(infrastructure) as (proxied, proxy),
        running_stack(
            proxied,
            SimulatorSettings(generation_seconds=GENERATION_SECONDS),
            storage_timeouts=STORAGE_TIMEOUTS,
        ) as stack,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
    ):
        tenant = await new_tenant(http, stack, "s3_hang")
        (finished,) = await tenant.create(1)
        await tenant.wait_all_ended()
        jobs = int(scale.pick(JOBS_CI, JOBS_FULL))
        await tenant.create(jobs // 2)
        await _wait_until_stage(stack, tenant.ids, {"generating"}, at_least=1)
        before = await _stage_of(stack, tenant.ids)

        await proxy.stall()
        try:
            loop = asyncio.get_running_loop()
            hang_ends = loop.time() + scale.pick(HANG_SECONDS_CI, HANG_SECONDS_FULL)
            downloads = [await _download(tenant, finished)]
            # Admission needs no storage.
            await tenant.create(jobs - jobs // 2)
            # A video the provider finished cannot be staged: the upload gives up on the hung S3
            # and the step is scheduled again, rather than holding the worker's lease.
            await _wait_until(stack, tenant.ids, lambda row: row.stage == "downloading" and row.attempts > 0)
            await asyncio.sleep(max(0.0, hang_ends - loop.time()))
            downloads.append(await _download(tenant, finished))
            during = await _stage_of(stack, tenant.ids)
        finally:
            await proxy.restore()

        # Nothing failed, and nothing that still needed S3 completed while it hung...
        assert_held_during_outage(before, during)
        # ...and downloads answered at once, 503 with an OpenAI error body, for the whole hang.
        for status, body in downloads:
            assert status == 503, body
            error = json.loads(body)["error"]
            assert (error["type"], error["code"]) == ("server_error", "service_unavailable")
            assert set(error) == {"message", "type", "param", "code"}

        await assert_nothing_lost_or_doubled(tenant)
        for video_id in tenant.ids:
            status, content = await _download(tenant, video_id)
            assert status == 200
            stored = await asyncio.to_thread(
                s3.stat_object, stack.s3.bucket, f"media/{tenant.user}/{video_id}/video.mp4"
            )
            assert len(content) == stored.size and content[4:8] == b"ftyp"  # the MP4, whole
