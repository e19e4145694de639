"""JSON lines: one object per line, standard fields, extra fields, and the current trace."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime

import pytest

from servicekit.logging import JsonFormatter

from .conftest import RecordedSpans


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("jobs"))
    logger = logging.getLogger(f"servicekit.tests.logging.{id(stream)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger, stream
    logger.handlers.clear()


def lines(stream: io.StringIO) -> list[dict]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_one_json_object_per_line_with_the_standard_fields(captured) -> None:
    logger, stream = captured
    logger.info("job %s started", "job_1")
    logger.warning("two\nlines")
    first, second = lines(stream)
    assert first["msg"] == "job job_1 started"
    assert (first["level"], first["service"], first["logger"]) == ("info", "jobs", logger.name)
    assert datetime.strptime(first["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert (second["level"], second["msg"]) == ("warning", "two\nlines")
    assert "trace_id" not in first and "span_id" not in first


def test_extra_fields_become_fields(captured) -> None:
    logger, stream = captured
    logger.info("charged", extra={"job_id": "job_9", "credits": 80, "when": datetime(2025, 1, 2)})
    (entry,) = lines(stream)
    assert (entry["job_id"], entry["credits"]) == ("job_9", 80)
    assert entry["when"] == "2025-01-02 00:00:00"  # not JSON-native: rendered with str()
    assert "args" not in entry and "exc_info" not in entry and "taskName" not in entry


def test_exception_traceback_rides_in_one_line(captured) -> None:
    logger, stream = captured
    try:
        raise RuntimeError("disk on fire")
    except RuntimeError:
        logger.exception("render failed")
    (entry,) = lines(stream)
    assert entry["level"] == "error"
    assert "Traceback" in entry["exc"] and "RuntimeError: disk on fire" in entry["exc"]


def test_trace_and_span_ids_inside_a_span(captured, spans: RecordedSpans) -> None:
    logger, stream = captured
    with spans.tracer().start_as_current_span("work") as span:
        logger.info("inside")
    logger.info("outside")
    inside, outside = lines(stream)
    assert inside["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert inside["span_id"] == format(span.get_span_context().span_id, "016x")
    assert "trace_id" not in outside
