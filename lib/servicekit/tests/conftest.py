"""Fixtures for servicekit's own tests.

`spans` records spans with a TracerProvider local to the test instead of the process-global one:
OpenTelemetry lets a process set its global provider once, and the end-to-end suite in tests/
installs its own exporter there, so these tests must not claim it first. servicekit takes its
tracers from `opentelemetry.trace.get_tracer` when a server or channel is built, so pointing
that function at the local provider for the test routes exactly the spans under test.
"""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


class RecordedSpans:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def tracer(self, name: str = "servicekit.tests") -> trace.Tracer:
        return self.provider.get_tracer(name)

    def finished(self) -> tuple:
        return self.exporter.get_finished_spans()


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> RecordedSpans:
    recorded = RecordedSpans()
    monkeypatch.setattr(trace, "get_tracer", lambda name, *args, **kwargs: recorded.provider.get_tracer(name))
    return recorded
