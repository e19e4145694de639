"""The metrics endpoint over real HTTP: Prometheus text with service labels, gauges refreshed before
each scrape, one shared endpoint per port, and METRICS_PORT parsing.

These use the process's global MeterProvider, as services do: `setup_metrics` is idempotent, and
each test's series carry a uuid label value of their own, so tests cannot see each other's numbers.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterable

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from servicekit import metrics
from servicekit.config import ConfigError
from servicekit.metrics import (
    DEFAULT_PORT,
    Reading,
    get_meter,
    listen_host,
    metrics_port_from_env,
    observed_gauge,
    serve_metrics,
    setup_metrics,
)

HOST = "127.0.0.1"


@pytest.fixture(autouse=True)
def _provider() -> None:
    """As `run_service` does first: measurements made before the provider exists are dropped."""
    setup_metrics()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


async def _scrape(port: int) -> tuple[str, list[Sample]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{HOST}:{port}/metrics", timeout=aiohttp.ClientTimeout(total=10)) as response,
    ):
        assert response.status == 200
        text = await response.text()
        return response.headers["Content-Type"], [
            sample for family in text_string_to_metric_families(text) for sample in family.samples
        ]


def _value(samples: Iterable[Sample], name: str, **labels: str) -> float | None:
    for sample in samples:
        if sample.name == name and all(sample.labels.get(key) == value for key, value in labels.items()):
            return sample.value
    return None


async def test_the_endpoint_serves_instruments_as_prometheus_text_with_their_labels() -> None:
    run = uuid.uuid4().hex
    meter = get_meter("servicekit.tests")
    counter = meter.create_counter("servicekit_test_requests", unit="1", description="test requests")
    histogram = meter.create_histogram(
        "servicekit_test_wait_seconds",
        unit="s",
        description="test waits",
        explicit_bucket_boundaries_advisory=(0.1, 1.0),
    )
    counter.add(3, {"service": "tests", "run": run, "outcome": "2xx"})
    counter.add(1, {"service": "tests", "run": run, "outcome": "5xx"})
    histogram.record(0.5, {"service": "tests", "run": run})
    port = _free_port()

    async with serve_metrics(HOST, port):
        content_type, samples = await _scrape(port)

    assert content_type.startswith("text/plain")
    assert _value(samples, "servicekit_test_requests_total", run=run, service="tests", outcome="2xx") == 3
    assert _value(samples, "servicekit_test_requests_total", run=run, outcome="5xx") == 1
    assert _value(samples, "servicekit_test_wait_seconds_bucket", run=run, le="0.1") == 0
    assert _value(samples, "servicekit_test_wait_seconds_bucket", run=run, le="1.0") == 1
    assert _value(samples, "servicekit_test_wait_seconds_count", run=run) == 1
    assert _value(samples, "servicekit_test_wait_seconds_sum", run=run) == 0.5


async def test_observed_gauges_report_what_the_refresh_stored_just_before_the_scrape() -> None:
    run = uuid.uuid4().hex
    gauge = observed_gauge("servicekit.tests", "servicekit_test_depth", description="test depth")
    readings: list[Reading] = []
    refreshes = 0

    async def refresh() -> None:
        nonlocal refreshes
        refreshes += 1
        readings[:] = [(float(refreshes * 10), {"service": "tests", "run": run})]

    port = _free_port()
    async with serve_metrics(HOST, port, refresh=[refresh]):
        with gauge.fed_by(lambda: readings):
            _, first = await _scrape(port)
            _, second = await _scrape(port)
        _, after = await _scrape(port)

    assert _value(first, "servicekit_test_depth", run=run) == 10
    assert _value(second, "servicekit_test_depth", run=run) == 20
    assert _value(after, "servicekit_test_depth", run=run) is None  # its source is gone


async def test_a_failing_or_hanging_refresh_costs_its_gauge_not_the_scrape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(metrics, "REFRESH_TIMEOUT_SECONDS", 0.05)
    run = uuid.uuid4().hex
    get_meter("servicekit.tests").create_counter("servicekit_test_alive", unit="1").add(
        1, {"service": "tests", "run": run}
    )
    never = asyncio.Event()

    async def broken() -> None:
        raise RuntimeError("database down")

    async def hanging() -> None:
        await never.wait()

    port = _free_port()
    async with serve_metrics(HOST, port, refresh=[broken, hanging]):
        _, samples = await _scrape(port)

    assert _value(samples, "servicekit_test_alive_total", run=run) == 1


async def test_services_asking_for_one_port_share_its_endpoint_until_the_last_stops() -> None:
    port = _free_port()
    outer_refreshes: list[str] = []
    inner_refreshes: list[str] = []

    async def outer() -> None:
        outer_refreshes.append("outer")

    async def inner() -> None:
        inner_refreshes.append("inner")

    async with serve_metrics(HOST, port, refresh=[outer]):
        async with serve_metrics(HOST, port, refresh=[inner]):
            await _scrape(port)
        await _scrape(port)  # still served: the outer user remains
        assert (len(outer_refreshes), len(inner_refreshes)) == (2, 1)

    with pytest.raises(aiohttp.ClientConnectionError):
        await _scrape(port)


async def test_a_port_in_use_fails_the_start_and_a_later_try_can_succeed() -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            async with serve_metrics(HOST, port):
                pass
    async with serve_metrics(HOST, port):
        await _scrape(port)


async def test_port_zero_opens_no_endpoint() -> None:
    before = dict(metrics._ENDPOINTS)
    async with serve_metrics(HOST, 0):
        assert metrics._ENDPOINTS == before


def test_setup_is_idempotent_so_in_process_stacks_share_one_provider() -> None:
    assert setup_metrics("vidflow-a") is setup_metrics("vidflow-b")


@pytest.mark.parametrize(
    ("environ", "port"),
    [({}, DEFAULT_PORT), ({"METRICS_PORT": "0"}, 0), ({"METRICS_PORT": "19464"}, 19464)],
)
def test_metrics_port_defaults_to_9464_and_zero_turns_it_off(environ: dict[str, str], port: int) -> None:
    assert metrics_port_from_env(environ) == port


@pytest.mark.parametrize("raw", ["-1", "65536", "metrics"])
def test_a_metrics_port_that_is_not_a_port_is_a_config_error(raw: str) -> None:
    with pytest.raises(ConfigError, match="METRICS_PORT"):
        metrics_port_from_env({"METRICS_PORT": raw})


@pytest.mark.parametrize(
    ("address", "host"),
    [("127.0.0.1:50051", "127.0.0.1"), ("[::]:50051", "::"), (":50051", "0.0.0.0"), ("0.0.0.0:0", "0.0.0.0")],
)
def test_metrics_listen_on_the_host_of_the_service_address(address: str, host: str) -> None:
    assert listen_host(address) == host
