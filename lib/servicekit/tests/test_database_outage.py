"""A database that restarts or fails over is a passing state: callers get UNAVAILABLE (503, worth
retrying), never INTERNAL (500), and the same engine works again once the database is back.

The outage is real: the test database stops taking connections and its sessions are ended, as a
PostgreSQL restart does to the services using it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from vidflow.moderation.v1 import moderation_pb2, moderation_service_pb2, moderation_service_pb2_grpc

from devstack.servers import Infrastructure
from servicekit.db import DATABASE_UNAVAILABLE_MESSAGE, database_unavailable, make_engine
from servicekit.errors import ErrorKind, ServiceError
from servicekit.grpcclient import open_channel
from servicekit.grpcserver import create_server
from tests.helpers import database_away

from .conftest import RecordedSpans

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(fresh_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(fresh_database_url, pool_size=1)
    yield engine
    await engine.dispose()


async def _select_one(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text("SELECT 1")) or 0)


async def test_a_database_going_away_is_unavailable_and_the_engine_recovers(
    infrastructure: Infrastructure, fresh_database_url: str, engine: AsyncEngine
) -> None:
    assert await _select_one(engine) == 1  # a pooled connection, which the outage will cut
    with database_away(infrastructure.database_url, fresh_database_url):
        for _ in range(2):  # the cut pooled connection, then a refused new one
            with pytest.raises(Exception) as caught:
                await _select_one(engine)
            error = database_unavailable(caught.value)
            assert error is not None and error.kind is ErrorKind.UNAVAILABLE
            assert error.message == DATABASE_UNAVAILABLE_MESSAGE
    assert await _select_one(engine) == 1


async def test_other_database_errors_stay_internal(engine: AsyncEngine) -> None:
    with pytest.raises(Exception) as caught:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT no_such_column FROM no_such_table"))
    assert database_unavailable(caught.value) is None
    assert database_unavailable(RuntimeError("not a database error")) is None


class _Moderation(moderation_service_pb2_grpc.ModerationServiceServicer):
    """Reads the database on every call, as any of our services does."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def ModeratePrompt(
        self, request: moderation_service_pb2.ModeratePromptRequest, context: grpc.aio.ServicerContext
    ) -> moderation_service_pb2.ModeratePromptResponse:
        await _select_one(self._engine)
        return moderation_service_pb2.ModeratePromptResponse(
            decision=moderation_pb2.ModerationDecision(job_id=request.job_id)
        )

    async def ModerateImages(
        self, request: moderation_service_pb2.ModerateImagesRequest, context: grpc.aio.ServicerContext
    ) -> moderation_service_pb2.ModerateImagesResponse:
        raise ServiceError(ErrorKind.FAILED_PRECONDITION, "not used here")


async def test_an_rpc_that_meets_a_database_outage_answers_unavailable(
    infrastructure: Infrastructure, fresh_database_url: str, engine: AsyncEngine, spans: RecordedSpans
) -> None:
    servicer = _Moderation(engine)
    running = await create_server(
        "127.0.0.1:0",
        service_names=[moderation_service_pb2.DESCRIPTOR.services_by_name["ModerationService"].full_name],
        register=lambda server: moderation_service_pb2_grpc.add_ModerationServiceServicer_to_server(
            servicer, server
        ),
        tracer_name="servicekit.tests.server",
    )
    channel = open_channel(f"127.0.0.1:{running.port}", tracer_name="servicekit.tests.client")
    stub = moderation_service_pb2_grpc.ModerationServiceStub(channel)
    request = moderation_service_pb2.ModeratePromptRequest(job_id="job_1", owner_id="user_1", prompt="a cat")
    try:
        with database_away(infrastructure.database_url, fresh_database_url):
            with pytest.raises(ServiceError) as caught:
                await stub.ModeratePrompt(request)
        assert caught.value.kind is ErrorKind.UNAVAILABLE
        assert caught.value.message == DATABASE_UNAVAILABLE_MESSAGE
        assert (await stub.ModeratePrompt(request)).decision.job_id == "job_1"
    finally:
        await channel.close()
        await running.server.stop(0)
