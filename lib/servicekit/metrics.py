"""OpenTelemetry metrics, scraped by Prometheus from `GET /metrics` on METRICS_PORT.

One MeterProvider per process with a Prometheus reader: OpenTelemetry allows one global provider,
and the in-process test stack runs five services in one process, so `setup_metrics` is idempotent
and every series carries a `service` label instead of relying on the resource. Likewise one
endpoint per host and port: services that ask for the same one share it, and it stops when the
last of them stops.

Gauges read from a database (`ObservedGauge`) cannot query inside OpenTelemetry's synchronous
callbacks, so each scrape first awaits the refresh functions its endpoint was given, and the
callbacks then report what those stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from aiohttp import web
from opentelemetry import metrics
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder

from servicekit.config import ConfigError, env_int

log = logging.getLogger(__name__)
DEFAULT_PORT = 9464
# Prometheus's default scrape timeout is 10 s; a slow query should cost its gauge, not the scrape.
REFRESH_TIMEOUT_SECONDS = 5.0

Refresh = Callable[[], Awaitable[None]]
# One gauge value and its labels.
Reading = tuple[float, Mapping[str, str]]


def metrics_port_from_env(environ: Mapping[str, str] | None = None) -> int:
    """METRICS_PORT, 9464 by default; 0 turns the endpoint off."""
    port = env_int("METRICS_PORT", DEFAULT_PORT, environ=environ)
    if not 0 <= port <= 65535:
        raise ConfigError(f"METRICS_PORT must be a port number (0 turns metrics off), got {port}")
    return port


def setup_metrics(service_name: str = "vidflow") -> MeterProvider:
    """The process's MeterProvider, with a Prometheus reader on prometheus_client's registry.

    The first call installs it; later calls (other services in the same process) get the same one.
    """
    current = metrics.get_meter_provider()
    if isinstance(current, MeterProvider):
        return current
    reader = PrometheusMetricReader(scope_info_enabled=False)
    provider = MeterProvider(
        metric_readers=[reader], resource=Resource.create({"service.name": service_name})
    )
    metrics.set_meter_provider(provider)
    return provider


def get_meter(name: str) -> Meter:
    """A meter of the global provider. Instruments made before `setup_metrics` (at import time,
    say) start recording once it runs; until then they cost nothing."""
    return metrics.get_meter(name)


class ObservedGauge:
    """An observable gauge whose readings come from any number of sources, each a function
    returning what its owner last stored (see the module docstring). OpenTelemetry keeps the
    first callbacks an instrument was created with, so sources come and go here instead."""

    def __init__(self, meter: Meter, name: str, *, description: str, unit: str = "") -> None:
        self._sources: list[Callable[[], Iterable[Reading]]] = []
        meter.create_observable_gauge(name, callbacks=[self._observe], unit=unit, description=description)

    @contextlib.contextmanager
    def fed_by(self, source: Callable[[], Iterable[Reading]]) -> Iterator[None]:
        self._sources.append(source)
        try:
            yield
        finally:
            self._sources.remove(source)

    def _observe(self, options: CallbackOptions) -> Iterable[Observation]:
        for source in list(self._sources):
            for value, labels in source():
                yield Observation(value, dict(labels))


_GAUGES: dict[tuple[str, str], ObservedGauge] = {}


def observed_gauge(meter_name: str, name: str, *, description: str, unit: str = "") -> ObservedGauge:
    """The process's one ObservedGauge of this name on the global provider, made on first use."""
    key = (meter_name, name)
    if key not in _GAUGES:
        _GAUGES[key] = ObservedGauge(get_meter(meter_name), name, description=description, unit=unit)
    return _GAUGES[key]


def listen_host(address: str) -> str:
    """The host part of a `host:port` listen address (`[::]:50051`, `:50051` = every interface)."""
    host, _, _ = address.rpartition(":")
    return host.strip("[]") or "0.0.0.0"


@dataclass
class _Endpoint:
    refreshes: list[Refresh] = field(default_factory=list)
    users: int = 0
    runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self.scrape)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        try:
            await web.TCPSite(self.runner, host, port).start()
        except BaseException:
            await self.runner.cleanup()
            raise

    async def scrape(self, request: web.Request) -> web.Response:
        await asyncio.gather(*(_refresh(each) for each in list(self.refreshes)))
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encode(REGISTRY), headers={"Content-Type": content_type})


_ENDPOINTS: dict[tuple[str, int], asyncio.Future[_Endpoint]] = {}


@contextlib.asynccontextmanager
async def serve_metrics(host: str, port: int, *, refresh: Sequence[Refresh] = ()) -> AsyncIterator[None]:
    """Serve `/metrics` (prometheus_client's registry, which the reader feeds) on host:port while
    inside; port 0 disables it. `refresh` functions run before each scrape of this endpoint (they
    feed this service's ObservedGauges). A port already taken fails the start, as it should."""
    if port == 0:
        yield
        return
    setup_metrics()
    endpoint = await _open_endpoint(host, port)
    endpoint.refreshes.extend(refresh)
    try:
        yield
    finally:
        for each in refresh:
            endpoint.refreshes.remove(each)
        endpoint.users -= 1
        if endpoint.users == 0:
            del _ENDPOINTS[(host, port)]
            assert endpoint.runner is not None
            await endpoint.runner.cleanup()


async def _open_endpoint(host: str, port: int) -> _Endpoint:
    key = (host, port)
    if key not in _ENDPOINTS:
        _ENDPOINTS[key] = asyncio.ensure_future(_started_endpoint(host, port))
    starting = _ENDPOINTS[key]
    try:
        endpoint = await asyncio.shield(starting)
    except BaseException:
        if _ENDPOINTS.get(key) is starting and starting.done():
            del _ENDPOINTS[key]
        raise
    endpoint.users += 1
    return endpoint


async def _started_endpoint(host: str, port: int) -> _Endpoint:
    endpoint = _Endpoint()
    await endpoint.start(host, port)
    log.info("metrics endpoint listening", extra={"host": host, "port": port})
    return endpoint


async def _refresh(refresh: Refresh) -> None:
    try:
        await asyncio.wait_for(refresh(), REFRESH_TIMEOUT_SECONDS)
    except Exception:
        log.warning("metrics refresh failed", exc_info=True)
