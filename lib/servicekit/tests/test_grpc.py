"""ServiceError, trace context and graceful shutdown over a real gRPC port.

A small ModerationService servicer stands in for a service: each test tells it what to do, then
talks to it through `open_channel`, exactly as one service calls another.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from vidflow.moderation.v1 import moderation_pb2, moderation_service_pb2, moderation_service_pb2_grpc

from servicekit.errors import GENERIC_INTERNAL_MESSAGE, ErrorKind, ServiceError
from servicekit.grpcclient import RECONNECT_BACKOFF_MAX_MS, open_channel
from servicekit.grpcserver import RunningServer, create_server

from .conftest import RecordedSpans

pytestmark = pytest.mark.integration

METHOD = "vidflow.moderation.v1.ModerationService/ModeratePrompt"
SERVICE_NAME = moderation_service_pb2.DESCRIPTOR.services_by_name["ModerationService"].full_name
Request = moderation_service_pb2.ModeratePromptRequest
Response = moderation_service_pb2.ModeratePromptResponse
Behaviour = Callable[[Request], Awaitable[Response]]


async def approve(request: Request) -> Response:
    return Response(decision=moderation_pb2.ModerationDecision(job_id=request.job_id))


class ScriptedModeration(moderation_service_pb2_grpc.ModerationServiceServicer):
    def __init__(self) -> None:
        self.behaviour: Behaviour = approve

    async def ModeratePrompt(self, request: Request, context: grpc.aio.ServicerContext) -> Response:
        return await self.behaviour(request)

    async def ModerateImages(
        self, request: moderation_service_pb2.ModerateImagesRequest, context: grpc.aio.ServicerContext
    ) -> moderation_service_pb2.ModerateImagesResponse:
        # Only ModeratePrompt is scripted; the library is exercised through that one RPC.
        raise ServiceError(ErrorKind.FAILED_PRECONDITION, "not scripted")


@dataclass
class Harness:
    servicer: ScriptedModeration
    running: RunningServer
    channel: grpc.aio.Channel

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.running.port}"

    async def moderate(self, job_id: str = "job_1") -> Response:
        stub = moderation_service_pb2_grpc.ModerationServiceStub(self.channel)
        return await stub.ModeratePrompt(Request(job_id=job_id, owner_id="user_1", prompt="a cat"))


@pytest.fixture
async def harness(spans: RecordedSpans) -> AsyncIterator[Harness]:
    servicer = ScriptedModeration()
    running = await create_server(
        "127.0.0.1:0",
        service_names=[SERVICE_NAME],
        register=lambda server: moderation_service_pb2_grpc.add_ModerationServiceServicer_to_server(
            servicer, server
        ),
        tracer_name="servicekit.tests.server",
    )
    channel = open_channel(f"127.0.0.1:{running.port}", tracer_name="servicekit.tests.client")
    try:
        yield Harness(servicer, running, channel)
    finally:
        await channel.close()
        await running.server.stop(0)


async def test_a_successful_call_passes_through(harness: Harness) -> None:
    response = await harness.moderate("job_42")
    assert response.decision.job_id == "job_42"


@pytest.mark.parametrize("kind", list(ErrorKind), ids=lambda kind: kind.name)
async def test_service_error_crosses_the_wire_intact(harness: Harness, kind: ErrorKind) -> None:
    raised = ServiceError(
        kind,
        f"{kind.name} happened: ünïcode is fine",
        param="prompt",
        code="some_code",
        metadata={"needed": "80", "available": "3"},
    )

    async def refuse(request: Request) -> Response:
        raise raised

    harness.servicer.behaviour = refuse
    with pytest.raises(ServiceError) as caught:
        await harness.moderate()
    received = caught.value
    assert (received.kind, received.message, received.param, received.code, received.metadata) == (
        kind,
        raised.message,
        "prompt",
        "some_code",
        {"needed": "80", "available": "3"},
    )


async def test_service_error_without_optional_fields(harness: Harness) -> None:
    async def refuse(request: Request) -> Response:
        raise ServiceError(ErrorKind.NOT_FOUND, "no such job")

    harness.servicer.behaviour = refuse
    with pytest.raises(ServiceError) as caught:
        await harness.moderate()
    assert caught.value == ServiceError(ErrorKind.NOT_FOUND, "no such job")


async def test_unexpected_exception_is_internal_with_a_generic_message_and_a_logged_traceback(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    async def crash(request: Request) -> Response:
        raise RuntimeError("password=hunter2 leaked into an exception")

    harness.servicer.behaviour = crash
    with (
        caplog.at_level(logging.ERROR, logger="servicekit.grpcserver"),
        pytest.raises(ServiceError) as caught,
    ):
        await harness.moderate()
    assert caught.value.kind is ErrorKind.INTERNAL
    assert caught.value.message == GENERIC_INTERNAL_MESSAGE
    assert "hunter2" not in repr(caught.value)
    (record,) = [r for r in caplog.records if r.name == "servicekit.grpcserver" and r.exc_info]
    assert record.getMessage() == "rpc failed"
    assert getattr(record, "rpc") == f"/{METHOD}"  # noqa: B009 - an `extra=` field
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
    assert "hunter2" in str(record.exc_info[1])


async def test_every_call_gets_the_default_deadline(spans: RecordedSpans) -> None:
    release = asyncio.Event()
    servicer = ScriptedModeration()

    async def hang(request: Request) -> Response:
        await release.wait()
        return await approve(request)

    servicer.behaviour = hang
    running = await create_server(
        "127.0.0.1:0",
        service_names=[SERVICE_NAME],
        register=lambda server: moderation_service_pb2_grpc.add_ModerationServiceServicer_to_server(
            servicer, server
        ),
        tracer_name="servicekit.tests.server",
    )
    channel = open_channel(f"127.0.0.1:{running.port}", tracer_name="t", default_timeout=0.3)
    try:
        stub = moderation_service_pb2_grpc.ModerationServiceStub(channel)
        with pytest.raises(ServiceError) as caught:
            await stub.ModeratePrompt(Request(job_id="job_1"))
        assert caught.value.kind is ErrorKind.DEADLINE_EXCEEDED
    finally:
        release.set()
        await channel.close()
        await running.server.stop(0)


async def test_unreachable_peer_is_unavailable() -> None:
    with socket_bound_but_not_listening() as port:
        channel = open_channel(f"127.0.0.1:{port}", tracer_name="t", default_timeout=5)
        try:
            stub = moderation_service_pb2_grpc.ModerationServiceStub(channel)
            with pytest.raises(ServiceError) as caught:
                await stub.ModeratePrompt(Request(job_id="job_1"))
        finally:
            await channel.close()
    assert caught.value.kind is ErrorKind.UNAVAILABLE


# Long enough for gRPC's default reconnect backoff to have grown past the cap (to ~6 s).
OUTAGE_SECONDS = 12.0


async def test_a_peer_back_after_an_outage_is_called_again_within_the_capped_backoff() -> None:
    """A crashed peer restarts on its port while its callers keep calling: the calls fail fast
    while it is away and succeed again within the capped backoff once it is back (with gRPC's
    default backoff they kept failing for seconds more, the longer the outage the longer)."""
    servicer = ScriptedModeration()

    async def start(address: str) -> RunningServer:
        return await create_server(
            address,
            service_names=[SERVICE_NAME],
            register=lambda server: moderation_service_pb2_grpc.add_ModerationServiceServicer_to_server(
                servicer, server
            ),
            tracer_name="servicekit.tests.server",
        )

    running = await start("127.0.0.1:0")
    target = f"127.0.0.1:{running.port}"
    channel = open_channel(target, tracer_name="t", default_timeout=2)
    stub = moderation_service_pb2_grpc.ModerationServiceStub(channel)
    try:
        assert (await stub.ModeratePrompt(Request(job_id="before"))).decision.job_id == "before"
        await running.server.stop(0)
        loop = asyncio.get_running_loop()
        back_at = loop.time() + OUTAGE_SECONDS
        while loop.time() < back_at:
            with pytest.raises(ServiceError) as refused:
                await stub.ModeratePrompt(Request(job_id="during"))
            assert refused.value.kind is ErrorKind.UNAVAILABLE
            await asyncio.sleep(0.1)  # the callers' pace while the peer is away
        running = await start(target)

        async def answered() -> bool:
            try:
                return (await stub.ModeratePrompt(Request(job_id="after"))).decision.job_id == "after"
            except ServiceError:
                return False

        assert await poll_until(answered, deadline_seconds=RECONNECT_BACKOFF_MAX_MS / 1000 + 1)
    finally:
        await channel.close()
        await running.server.stop(0)


async def test_server_span_joins_the_client_trace(harness: Harness, spans: RecordedSpans) -> None:
    with spans.tracer().start_as_current_span("caller") as caller:
        await harness.moderate()
    finished = spans.finished()
    (client,) = [s for s in finished if s.name == METHOD and s.kind.name == "CLIENT"]
    (server,) = [s for s in finished if s.name == METHOD and s.kind.name == "SERVER"]
    trace_id = caller.get_span_context().trace_id
    assert client.context.trace_id == server.context.trace_id == trace_id
    assert client.parent.span_id == caller.get_span_context().span_id
    assert server.parent is not None and server.parent.is_remote
    assert server.parent.span_id == client.context.span_id
    assert server.attributes["rpc.system"] == "grpc"


async def test_refused_call_is_marked_on_the_server_span(harness: Harness, spans: RecordedSpans) -> None:
    async def refuse(request: Request) -> Response:
        raise ServiceError(ErrorKind.PERMISSION_DENIED, "not yours")

    harness.servicer.behaviour = refuse
    with pytest.raises(ServiceError):
        await harness.moderate()
    (server,) = [s for s in spans.finished() if s.kind.name == "SERVER"]
    assert server.attributes["rpc.error_kind"] == "PERMISSION_DENIED"


async def test_graceful_stop_drains_in_flight_calls_and_turns_away_new_ones(harness: Harness) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(request: Request) -> Response:
        entered.set()
        await release.wait()
        return await approve(request)

    harness.servicer.behaviour = slow
    health = health_pb2_grpc.HealthStub(harness.channel)
    serving = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
    assert serving.status == health_pb2.HealthCheckResponse.SERVING

    in_flight = asyncio.create_task(harness.moderate("job_in_flight"))
    await asyncio.wait_for(entered.wait(), 5)
    stopping = asyncio.create_task(harness.running.stop_gracefully(30))

    # Health flips to NOT_SERVING first; then the server stops accepting calls altogether.
    assert await poll_until(lambda: health_says_not_serving(harness.target))
    assert await poll_until(lambda: new_call_is_refused(harness.target))
    assert not in_flight.done() and not stopping.done()

    release.set()
    response = await asyncio.wait_for(in_flight, 5)
    assert response.decision.job_id == "job_in_flight"
    # Finishes as soon as the last call drains, long before the 30 s grace.
    await asyncio.wait_for(stopping, 10)


async def poll_until(check: Callable[[], Awaitable[bool]], deadline_seconds: float = 10) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_seconds
    while loop.time() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.02)
    return False


async def health_says_not_serving(target: str) -> bool:
    async with grpc.aio.insecure_channel(target) as channel:
        try:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=2
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code() is grpc.StatusCode.UNAVAILABLE
    return response.status == health_pb2.HealthCheckResponse.NOT_SERVING


async def new_call_is_refused(target: str) -> bool:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = moderation_service_pb2_grpc.ModerationServiceStub(channel)
        try:
            await stub.ModeratePrompt(Request(job_id="job_late"), timeout=2)
        except grpc.aio.AioRpcError as exc:
            return exc.code() is grpc.StatusCode.UNAVAILABLE
    return False


class socket_bound_but_not_listening:
    """A loopback port nobody listens on (held bound so no other test can take it meanwhile)."""

    def __enter__(self) -> int:
        import socket

        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        return self._socket.getsockname()[1]

    def __exit__(self, *exc_info: object) -> None:
        self._socket.close()
