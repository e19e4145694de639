"""Client channels that propagate trace context, set a deadline on every call, and raise ServiceError."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from opentelemetry import trace

from servicekit.grpcerrors import from_rpc_error
from servicekit.grpcserver import MESSAGE_SIZE_OPTIONS
from servicekit.telemetry import inject_trace_headers

# While a peer is down, calls fail at once and the channel redials on a backoff. gRPC's default
# backoff grows to 120 s, so a caller kept failing for many seconds after a crashed peer was back
# (14 s after a 30 s outage); capped, it calls the peer again within about this long.
RECONNECT_BACKOFF_INITIAL_MS = 250
RECONNECT_BACKOFF_MAX_MS = 2000


class _TracingTimeoutInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, tracer_name: str, default_timeout: float) -> None:
        self._tracer = trace.get_tracer(tracer_name)
        self._default_timeout = default_timeout

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Any],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        method = client_call_details.method
        name = method.decode() if isinstance(method, bytes) else method
        with self._tracer.start_as_current_span(name.lstrip("/"), kind=trace.SpanKind.CLIENT):
            metadata = list(client_call_details.metadata or [])
            metadata.extend(inject_trace_headers().items())
            details = grpc.aio.ClientCallDetails(
                method=client_call_details.method,
                timeout=client_call_details.timeout or self._default_timeout,
                metadata=grpc.aio.Metadata(*metadata),
                credentials=client_call_details.credentials,
                wait_for_ready=client_call_details.wait_for_ready,
            )
            call = await continuation(details, request)
            try:
                await call
            except grpc.aio.AioRpcError as exc:
                raise from_rpc_error(exc) from None
            return call


def open_channel(target: str, *, tracer_name: str, default_timeout: float = 10.0) -> grpc.aio.Channel:
    """An insecure channel (mesh or NetworkPolicy provides transport security in-cluster)."""
    return grpc.aio.insecure_channel(
        target,
        interceptors=[_TracingTimeoutInterceptor(tracer_name, default_timeout)],
        options=[
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.enable_retries", 1),
            ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_INITIAL_MS),
            ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MAX_MS),
            *MESSAGE_SIZE_OPTIONS,
        ],
    )
