"""OpenTelemetry tracing, and trace context carried through gRPC metadata and NATS headers.

The OTLP exporter is attached only when OTEL_EXPORTER_OTLP_ENDPOINT is set. Tests install
their own provider with an in-memory exporter before services start; `setup_tracing` keeps it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def setup_tracing(service_name: str, environ: Mapping[str, str] | None = None) -> TracerProvider:
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    env = os.environ if environ is None else environ
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def shutdown_tracing() -> None:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush()


def inject_trace_headers(carrier: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Headers (traceparent, tracestate) describing the current span."""
    headers: dict[str, str] = dict(carrier or {})
    propagate.inject(headers)
    return headers


def context_from_headers(headers: Mapping[str, str] | None) -> otel_context.Context:
    return propagate.extract(dict(headers or {}))


def current_traceparent() -> str:
    return inject_trace_headers().get("traceparent", "")
