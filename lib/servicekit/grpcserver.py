"""Async gRPC server bootstrap: health, reflection, tracing, error translation, graceful stop.

Follows grpc's examples/python: `create_server(address) -> (server, port)` so tests bind
port 0 and talk over a real channel, and a cleanup that enters graceful shutdown first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import context as otel_context
from opentelemetry import trace

from servicekit.db import database_unavailable
from servicekit.errors import GENERIC_INTERNAL_MESSAGE, ErrorKind, ServiceError
from servicekit.grpcerrors import to_rpc_status
from servicekit.metrics import get_meter
from servicekit.storage import storage_unavailable
from servicekit.telemetry import context_from_headers

log = logging.getLogger(__name__)
# Reference images ride in requests: four of up to 10 MB each, with room to spare.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MESSAGE_SIZE_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]
_meter = get_meter("servicekit.grpcserver")
_handled = _meter.create_counter(
    "vidflow_grpc_server_handled", unit="1", description="Unary RPCs by status code"
)
_handling_time = _meter.create_histogram(
    "vidflow_grpc_server_handling_seconds",
    unit="s",
    description="Time to handle a unary RPC",
    explicit_bucket_boundaries_advisory=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer

    async def stop_gracefully(self, grace_seconds: float) -> None:
        """Health goes NOT_SERVING, new RPCs are refused, in-flight ones get `grace_seconds`."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_seconds)


async def create_server(
    address: str,
    *,
    service_names: Iterable[str],
    register: Callable[[grpc.aio.Server], None],
    tracer_name: str,
) -> RunningServer:
    server = grpc.aio.server(
        interceptors=[ServiceBoundaryInterceptor(tracer_name)],
        options=[("grpc.so_reuseport", 0), *MESSAGE_SIZE_OPTIONS],
    )
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = list(service_names)
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"could not bind gRPC server to {address}")
    await server.start()
    for name in ["", *names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, port, health_servicer)


class ServiceBoundaryInterceptor(grpc.aio.ServerInterceptor):
    """Joins the caller's trace, times the call, and turns exceptions into rich statuses."""

    def __init__(self, tracer_name: str) -> None:
        self._tracer = trace.get_tracer(tracer_name)
        # Metrics label: "vidflow.jobs" -> "jobs".
        self._service = tracer_name.removeprefix("vidflow.")

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler  # health Watch and reflection streams pass through untouched
        method = handler_call_details.method
        headers = {
            key: value
            for key, value in (handler_call_details.invocation_metadata or ())
            if isinstance(value, str)
        }
        inner = handler.unary_unary
        tracer = self._tracer
        grpc_service, _, grpc_method = method.lstrip("/").rpartition("/")
        labels = {"service": self._service, "grpc_service": grpc_service, "grpc_method": grpc_method}

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            token = otel_context.attach(context_from_headers(headers))
            started = time.perf_counter()
            code = "CANCELLED"  # unless the handler returns or fails
            try:
                with tracer.start_as_current_span(method.lstrip("/"), kind=trace.SpanKind.SERVER) as span:
                    span.set_attribute("rpc.system", "grpc")
                    try:
                        answer = await inner(request, context)
                        code = "OK"
                        return answer
                    except ServiceError as error:
                        code = error.kind.grpc_code
                        span.set_attribute("rpc.error_kind", error.kind.name)
                        log.info("rpc refused", extra={"rpc": method, "error": str(error)})
                        await context.abort_with_status(to_rpc_status(error))
                    except (grpc.aio.AbortError, grpc.aio.UsageError):
                        code = getattr(context.code(), "name", "UNKNOWN")
                        raise
                    except Exception as exc:
                        # The database or media storage went away, hung or is restarting: a passing
                        # state the caller may retry, not a fault of ours.
                        unavailable = database_unavailable(exc) or storage_unavailable(exc)
                        if unavailable is not None:
                            code = unavailable.kind.grpc_code
                            log.warning(
                                "rpc failed: a backing server is unavailable",
                                extra={"rpc": method, "error": repr(exc)},
                            )
                            await context.abort_with_status(to_rpc_status(unavailable))
                        code = "INTERNAL"
                        log.exception("rpc failed", extra={"rpc": method})
                        await context.abort_with_status(
                            to_rpc_status(ServiceError(ErrorKind.INTERNAL, GENERIC_INTERNAL_MESSAGE))
                        )
            finally:
                elapsed = time.perf_counter() - started
                _handled.add(1, {**labels, "grpc_code": code})
                _handling_time.record(elapsed, labels)
                log.debug("rpc done", extra={"rpc": method, "ms": round(elapsed * 1e3)})
                otel_context.detach(token)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
