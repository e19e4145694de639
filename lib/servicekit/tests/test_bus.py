"""Streams and connections against a real nats-server: copies, converging settings, and a client that
starts while NATS is down.

Each test uses a uuid-named stream on the session's NATS server; deleting it is what NATS coming
back without its data looks like to a client (test_outbox.py wipes a real server's data too).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import pytest
from nats.js import JetStreamContext

from servicekit.bus import (
    StreamSpec,
    connect_nats,
    ensure_stream,
    nats_connection,
    stream_replicas,
)
from servicekit.config import ConfigError

pytestmark = pytest.mark.integration


@pytest.fixture
async def js(infrastructure) -> AsyncIterator[JetStreamContext]:
    nc = await connect_nats(infrastructure.nats_url, name="servicekit-bus-tests")
    yield nc.jetstream()
    await nc.close()


@pytest.fixture
def stream(unique_name) -> StreamSpec:
    name = unique_name("BUS")
    return StreamSpec(name, (f"{name}.>",), duplicate_window_seconds=120)


async def test_a_connection_made_while_nats_is_down_closes_at_once_without_ever_connecting():
    with _port_nobody_listens_on() as port:
        async with asyncio.timeout(10):
            async with nats_connection(f"nats://127.0.0.1:{port}", name="never-connects") as nc:
                assert not nc.is_connected
                # Requests wait for a connection and time out, as they do during an outage.
                with pytest.raises(TimeoutError):
                    await nc.jetstream(timeout=0.2).stream_info("ANY")


@contextlib.contextmanager
def _port_nobody_listens_on() -> Iterator[int]:
    """A loopback port held (bound, never listening) for the block, so nothing answers there."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield int(held.getsockname()[1])


def test_a_stream_keeps_as_many_copies_as_asked_within_what_jetstream_allows():
    assert StreamSpec("S", ("s.>",), replicas=3).config().num_replicas == 3
    assert stream_replicas(1) == 1 and stream_replicas(5) == 5
    for wrong in (0, 6, -1):
        with pytest.raises(ConfigError, match="NATS_STREAM_REPLICAS"):
            stream_replicas(wrong)


async def test_the_relays_stream_converges_to_the_configured_copies(js, stream):
    """A single server can only keep one copy: asking for it explicitly converges an existing stream."""
    await ensure_stream(js, stream)
    try:
        await ensure_stream(js, replace(stream, replicas=1, duplicate_window_seconds=60))
        info = await js.stream_info(stream.name)
        assert (info.config.num_replicas, info.config.duplicate_window) == (1, 60)
    finally:
        await js.delete_stream(stream.name)
