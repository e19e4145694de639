"""S3 clients wait a bounded time. A server that accepts connections and then never answers (a hung
disk, a network black hole) fails each call within the client's timeouts, as UNAVAILABLE, instead of
holding it for minio's default of five minutes a read, tried six times; and the read timeout is about
silence on the socket, so a transfer that takes longer than it still completes.

The black hole is a real TCP server here; the large transfer goes to the real S3 (SeaweedFS) through
a loopback link that paces what S3 sends back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

from devstack.servers import Infrastructure
from servicekit.config import ConfigError
from servicekit.errors import ErrorKind
from servicekit.storage import (
    STORAGE_UNAVAILABLE_MESSAGE,
    S3Settings,
    S3Timeouts,
    make_s3_client,
    storage_unavailable,
)

pytestmark = pytest.mark.integration

# Far below minio's own wait (5 min a read, 6 tries): a call still running after this hung.
CALL_BOUND_SECONDS = 30


@dataclass
class BlackHole:
    """Accepts connections and reads whatever comes, never answering; counts the connections."""

    port: int = 0
    connections: int = 0
    held: list[asyncio.StreamWriter] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def swallow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.held.append(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.read(1 << 16):
                pass


@contextlib.asynccontextmanager
async def black_hole() -> AsyncIterator[BlackHole]:
    hole = BlackHole()
    server = await asyncio.start_server(hole.swallow, "127.0.0.1", 0)
    hole.port = server.sockets[0].getsockname()[1]
    try:
        yield hole
    finally:
        server.close()
        for writer in hole.held:
            writer.transport.abort()


async def _fails_unavailable(call: Callable[[], Any]) -> None:
    async with asyncio.timeout(CALL_BOUND_SECONDS):
        with pytest.raises(Exception) as caught:
            await asyncio.to_thread(call)
    error = storage_unavailable(caught.value)
    assert error is not None, repr(caught.value)
    assert error.kind is ErrorKind.UNAVAILABLE
    assert (error.message, error.code) == (STORAGE_UNAVAILABLE_MESSAGE, "service_unavailable")


async def test_a_server_that_never_answers_fails_each_call_within_the_timeouts_as_unavailable() -> None:
    timeouts = S3Timeouts(connect_seconds=2, read_seconds=0.5)
    async with black_hole() as hole:
        client = make_s3_client(S3Settings(hole.url, "key", "secret", "us-east-1", "media", timeouts))
        # (call, connections it may open): a read that times out is tried once more, and only for
        # requests safe to repeat; a POST (a batch delete) is never sent twice.
        calls: list[tuple[Callable[[], Any], int]] = [
            (lambda: client.stat_object(bucket_name="media", object_name="a.mp4"), 2),
            (lambda: client.get_object(bucket_name="media", object_name="a.mp4"), 2),
            (
                lambda: client.put_object(
                    bucket_name="media", object_name="a.mp4", data=io.BytesIO(b"x" * 1024), length=1024
                ),
                2,
            ),
            (
                lambda: list(
                    client.remove_objects(bucket_name="media", delete_object_list=[DeleteObject("a.mp4")])
                ),
                1,
            ),
        ]
        for call, tries in calls:
            before = hole.connections
            await _fails_unavailable(call)
            assert hole.connections - before == tries

        # Presigned URLs are signed locally (the region is configured): the hung server is not asked.
        before = hole.connections
        url = await asyncio.to_thread(
            client.presigned_get_object,
            bucket_name="media",
            object_name="a.mp4",
            expires=timedelta(minutes=5),
        )
        assert url.startswith(f"{hole.url}/media/a.mp4?") and "X-Amz-Signature=" in url
        assert hole.connections == before


async def test_a_refused_connection_is_unavailable_too_and_s3_refusals_are_not(
    infrastructure: Infrastructure, s3_bucket: str
) -> None:
    async with black_hole() as hole:
        port = hole.port
    refused = make_s3_client(S3Settings(f"http://127.0.0.1:{port}", "key", "secret", "us-east-1", "media"))
    await _fails_unavailable(lambda: refused.stat_object(bucket_name="media", object_name="a.mp4"))

    client = make_s3_client(_settings(infrastructure, infrastructure.s3_endpoint, s3_bucket, S3Timeouts()))
    with pytest.raises(S3Error) as caught:
        await asyncio.to_thread(client.stat_object, bucket_name=s3_bucket, object_name="missing.mp4")
    assert storage_unavailable(caught.value) is None
    assert storage_unavailable(RuntimeError("not a storage error")) is None


@pytest.mark.parametrize("timeouts", [{"connect_seconds": 0}, {"read_seconds": -1.0}])
def test_timeouts_must_be_positive(timeouts: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="S3_READ_TIMEOUT_SECONDS"):
        S3Timeouts(**timeouts)


# --- a large object over a slow link ---------------------------------------------------------------

# The link hands on S3's answer 16 KiB at a time, one piece every 8 ms (about 2 MB/s): no read waits
# long, but a 6 MiB download takes at least 384 x 8 ms, about 3 s, twice the read timeout below.
PACE_BYTES, PACE_SECONDS = 16 * 1024, 0.008
READ_TIMEOUT_SECONDS = 1.5
OBJECT_BYTES = 6 * 1024 * 1024  # two parts of a multipart upload


@contextlib.asynccontextmanager
async def paced_link(target_port: int) -> AsyncIterator[str]:
    """A loopback relay to `target_port` that paces the answers coming back (the pause sets the
    link's speed; nothing waits on it for synchronisation)."""
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, paced: bool) -> None:
        try:
            while data := await reader.read(PACE_BYTES if paced else 1 << 16):
                writer.write(data)
                await writer.drain()
                if paced:
                    await asyncio.sleep(PACE_SECONDS)
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def accept(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target_port)
        for task in (
            asyncio.create_task(pipe(client_reader, upstream_writer, paced=False)),
            asyncio.create_task(pipe(upstream_reader, client_writer, paced=True)),
        ):
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _settings(infrastructure: Infrastructure, endpoint: str, bucket: str, timeouts: S3Timeouts) -> S3Settings:
    return S3Settings(
        endpoint=endpoint,
        access_key=infrastructure.s3_access_key,
        secret_key=infrastructure.s3_secret_key,
        region=infrastructure.s3_region,
        bucket=bucket,
        timeouts=timeouts,
    )


async def test_a_large_object_outlasting_the_read_timeout_still_transfers_whole(
    infrastructure: Infrastructure, s3_bucket: str, tmp_path
) -> None:
    data = os.urandom(OBJECT_BYTES)
    source = tmp_path / "large.bin"
    source.write_bytes(data)
    s3_port = int(infrastructure.s3_endpoint.rsplit(":", 1)[1])
    timeouts = S3Timeouts(connect_seconds=5, read_seconds=READ_TIMEOUT_SECONDS)
    async with paced_link(s3_port) as link:
        client = make_s3_client(_settings(infrastructure, link, s3_bucket, timeouts))
        await asyncio.to_thread(
            client.fput_object, bucket_name=s3_bucket, object_name="large.bin", file_path=str(source)
        )
        copy = tmp_path / "copy.bin"
        await asyncio.to_thread(
            client.fget_object, bucket_name=s3_bucket, object_name="large.bin", file_path=str(copy)
        )
        assert hashlib.sha256(copy.read_bytes()).digest() == hashlib.sha256(data).digest()

        # The gateway reads presigned URLs with the same timeouts, per socket read too.
        url = await asyncio.to_thread(
            client.presigned_get_object, bucket_name=s3_bucket, object_name="large.bin"
        )
        gateway_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeouts.connect_seconds, sock_read=timeouts.read_seconds
        )
        async with aiohttp.ClientSession() as http, http.get(url, timeout=gateway_timeout) as answer:
            assert answer.status == 200
            assert hashlib.sha256(await answer.read()).digest() == hashlib.sha256(data).digest()
