"""Slow clients through a real gateway server: a body that stops coming or trickles forever gets a
408 and its connection is closed; headers sent byte by byte (slowloris) do not hold a connection
past the idle timeout; a body that arrives in pieces at a normal pace still works.

The clients here are raw sockets, so the test controls every byte and its timing. Their pauses are
the slowness under test, not waits for the server; every wait for the server is a read.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import pytest

from services.gateway.tests.running_gateway import Tenant, migrated, new_tenant, running_gateway, settings_for

pytestmark = pytest.mark.integration
IDLE_SECONDS = 0.5
DEADLINE_SECONDS = 2.0
CONNECTION_IDLE_SECONDS = 1.0
# Far longer than any timeout above: a server that never gives up fails the test instead of hanging it.
GIVE_UP_SECONDS = 30.0


@pytest.fixture
async def database(fresh_database_url: str) -> str:
    return await migrated(fresh_database_url)


@pytest.fixture
async def gateway(database: str) -> AsyncIterator[tuple[str, int]]:
    settings = settings_for(
        database,
        body_idle_seconds=IDLE_SECONDS,
        body_deadline_seconds=DEADLINE_SECONDS,
        idle_timeout_seconds=CONNECTION_IDLE_SECONDS,
    )
    async with running_gateway(settings) as url:
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)


@pytest.fixture
async def alice(database: str) -> Tenant:
    return await new_tenant(database)


def _head(tenant: Tenant, content_length: int) -> bytes:
    return (
        "POST /v1/api_keys HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {tenant.key}\r\nContent-Length: {content_length}\r\n\r\n"
    ).encode()


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one answer, then the server's end of the connection."""
    raw = await asyncio.wait_for(reader.read(), GIVE_UP_SECONDS)  # until the server closes
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


async def test_a_body_that_stops_coming_is_a_408_and_the_connection_is_closed(gateway, alice, caplog):
    caplog.set_level(logging.INFO)
    reader, writer = await asyncio.open_connection(*gateway)
    body = json.dumps({"name": "never finished"}).encode()
    writer.write(_head(alice, len(body)) + body[:5])  # and nothing more
    await writer.drain()
    status, headers, answer = await _answer(reader)
    assert status == 408
    assert json.loads(answer)["error"]["code"] == "request_timeout"
    assert headers["x-request-id"].startswith("req_")
    writer.close()
    # A client's slowness is no server error: nothing at ERROR (aiohttp's read of the rest once
    # answered logged one for every such client).
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []


async def test_a_body_that_trickles_forever_is_cut_off_at_the_deadline(gateway, alice):
    reader, writer = await asyncio.open_connection(*gateway)
    declared = 10_000  # far more than this client will ever get through
    writer.write(_head(alice, declared))
    await writer.drain()

    async def trickle() -> int:
        sent = 0
        while sent < declared:
            writer.write(b" ")
            await writer.drain()
            sent += 1
            await asyncio.sleep(IDLE_SECONDS / 5)  # always within the idle timeout
        return sent

    sender = asyncio.create_task(trickle())
    try:
        status, _, answer = await _answer(reader)
    finally:
        sender.cancel()
    assert status == 408
    assert json.loads(answer)["error"]["code"] == "request_timeout"
    assert not sender.done() or sender.cancelled()  # the server gave up before the client did
    writer.close()


async def test_a_body_sent_in_pieces_at_a_normal_pace_is_accepted(gateway, alice):
    reader, writer = await asyncio.open_connection(*gateway)
    body = json.dumps({"name": "sent in three pieces"}).encode()
    writer.write(_head(alice, len(body)).replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    for start in range(0, len(body), len(body) // 3 + 1):
        writer.write(body[start : start + len(body) // 3 + 1])
        await writer.drain()
        await asyncio.sleep(IDLE_SECONDS / 4)
    status, _, answer = await _answer(reader)
    assert status == 200, answer
    assert json.loads(answer)["name"] == "sent in three pieces"
    writer.close()


async def test_headers_sent_byte_by_byte_do_not_hold_the_connection(gateway, alice):
    reader, writer = await asyncio.open_connection(*gateway)
    # Endless headers, one byte at a time, each well within any per-byte patience.
    endless = b"GET /v1/api_keys HTTP/1.1\r\nHost: gateway\r\n" + b"X-Padding: " + b"a" * 100_000

    async def trickle() -> None:
        for byte in endless:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.05)

    sender = asyncio.create_task(trickle())
    try:
        closed = await asyncio.wait_for(reader.read(), GIVE_UP_SECONDS)
    except ConnectionResetError:
        closed = b""
    finally:
        sender.cancel()
    assert closed == b""  # closed by the server, with nothing to say to a request never finished
    writer.close()
