"""Outages on demand: backing servers that stop and come back on the same port with the same data
(or, for NATS, without it), and a TCP proxy that cuts a provider off the network.

`RestartableInfrastructure` runs its own PostgreSQL, NATS JetStream and S3 (SeaweedFS) through
`devstack.servers`, each on a port fixed at the first start and with its data in `base_dir`, so a
restart looks to the services exactly like a real server going away and coming back. Starting and
stopping block (they wait for readiness or exit), so they run in a thread: the services under test
share this event loop and keep running meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from devstack.servers import LOOPBACK, Infrastructure, S3Endpoint, run_nats, run_postgres, run_seaweedfs


class Server(enum.StrEnum):
    POSTGRES = "postgres"
    NATS = "nats"
    S3 = "s3"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RestartableInfrastructure:
    """PostgreSQL, NATS and S3 in `base_dir`, each stoppable and restartable on its own."""

    def __init__(self, base_dir: Path) -> None:
        self._base_dir = base_dir
        self._postgres_port = _free_port()
        self._nats_port = _free_port()
        self._s3_port = _free_port()
        self._s3: S3Endpoint | None = None  # its secret key is generated at the first start, then kept
        self._running: dict[Server, contextlib.ExitStack] = {}
        self._urls: dict[Server, str] = {}
        self._infrastructure: Infrastructure | None = None

    @property
    def infrastructure(self) -> Infrastructure:
        """Endpoints that stay valid across restarts; only after `start_all`."""
        assert self._infrastructure is not None, "start_all() first"
        return self._infrastructure

    async def start_all(self) -> Infrastructure:
        for server in Server:
            await self.start(server)
        return self.infrastructure

    async def stop_all(self) -> None:
        for server in reversed(Server):
            await self.stop(server)

    async def start(self, server: Server) -> None:
        assert server not in self._running, f"{server} is already running"
        await asyncio.to_thread(self._start_blocking, server)

    def is_up(self, server: Server) -> bool:
        return server in self._running

    @property
    def nats_url(self) -> str:
        """Known before NATS first starts, for services that must start while it is down."""
        return f"nats://{LOOPBACK}:{self._nats_port}"

    async def stop(self, server: Server) -> None:
        running = self._running.pop(server, None)
        if running is not None:
            await asyncio.to_thread(running.close)

    async def lose_data(self, server: Server) -> None:
        """Delete a stopped server's data, as a lost volume or a fresh pod would: it starts empty.
        NATS only: PostgreSQL and S3 hold the records, which nothing could rebuild."""
        assert server is Server.NATS, f"{server} cannot lose its data here"
        assert server not in self._running, f"stop {server} first"
        # Where devstack's run_nats keeps JetStream's streams and consumers.
        await asyncio.to_thread(shutil.rmtree, self._base_dir / "nats", ignore_errors=True)

    @contextlib.asynccontextmanager
    async def down(self, server: Server, *, lose_data: bool = False) -> AsyncIterator[None]:
        """The server is stopped inside the block and started again on the same port after it, with
        the same data, or with none (`lose_data`)."""
        await self.stop(server)
        try:
            if lose_data:
                await self.lose_data(server)
            yield
        finally:
            await self.start(server)

    def _start_blocking(self, server: Server) -> None:
        running = contextlib.ExitStack()
        with running:  # closes what was started if the start fails half-way
            match server:
                case Server.POSTGRES:
                    self._urls[server] = running.enter_context(
                        run_postgres(self._base_dir, port=self._postgres_port)
                    )
                case Server.NATS:
                    self._urls[server] = running.enter_context(run_nats(self._base_dir, port=self._nats_port))
                case Server.S3:
                    secret_key = self._s3.secret_key if self._s3 else None
                    self._s3 = running.enter_context(
                        run_seaweedfs(self._base_dir, port=self._s3_port, secret_key=secret_key)
                    )
                    self._urls[server] = self._s3.endpoint
            self._running[server] = running.pop_all()
        if self._infrastructure is None and self._s3 is not None and len(self._urls) == len(Server):
            self._infrastructure = Infrastructure(
                database_url=self._urls[Server.POSTGRES],
                nats_url=self._urls[Server.NATS],
                s3_endpoint=self._s3.endpoint,
                s3_access_key=self._s3.access_key,
                s3_secret_key=self._s3.secret_key,
                s3_region=self._s3.region,
            )


class TcpProxy:
    """A loopback TCP proxy in front of `target_host:target_port`. `cut()` drops every open connection
    and refuses new ones, as a network outage would, while the server behind it keeps its state.
    `stall()` accepts connections but answers none, new or open: what either side sends is read and
    dropped, as with a server whose disk hung or a network black hole. `restore()` forwards again on
    the same port (after a stall it first drops the held connections, whose requests went nowhere)."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self._target_host = target_host
        self._target_port = target_port
        self.port = _free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()
        self._stalled = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def restore(self) -> None:
        if self._stalled:
            self._stalled = False
            await self._drop_connections()
            return
        assert self._server is None, "the proxy is already up"
        self._server = await self._listen()

    async def stall(self) -> None:
        self._stalled = True
        if self._server is None:
            self._server = await self._listen()

    async def cut(self) -> None:
        self._stalled = False
        if self._server is not None:
            self._server.close()
            self._server = None
        await self._drop_connections()

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)

    async def _drop_connections(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self._stalled:
            self._writers.add(client_writer)
            self._track(asyncio.create_task(self._swallow(client_reader, client_writer)))
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                self._target_host, self._target_port
            )
        except OSError:
            client_writer.transport.abort()
            return
        self._writers.update((client_writer, upstream_writer))
        pipes = [
            asyncio.create_task(self._pipe(client_reader, upstream_writer)),
            asyncio.create_task(self._pipe(upstream_reader, client_writer)),
        ]
        for pipe in pipes:
            self._track(pipe)

    def _track(self, task: asyncio.Task[None]) -> None:
        self._pipes.add(task)
        task.add_done_callback(self._pipes.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1 << 16):
                if not self._stalled:  # stalled: swallowed, like everything sent to a hung server
                    writer.write(data)
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _swallow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A connection made during a stall: read until the client gives up, never answer."""
        try:
            while await reader.read(1 << 16):
                pass
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


@contextlib.asynccontextmanager
async def s3_behind_a_proxy(infrastructure: Infrastructure) -> AsyncIterator[tuple[Infrastructure, TcpProxy]]:
    """`infrastructure` with its S3 endpoint (presigned URLs included) behind a proxy the test can
    cut or stall; the proxy is cut at the end."""
    storage = urlsplit(infrastructure.s3_endpoint)
    proxy = TcpProxy(storage.port or 80, storage.hostname or "127.0.0.1")
    await proxy.restore()
    try:
        yield replace(infrastructure, s3_endpoint=proxy.url), proxy
    finally:
        await proxy.cut()
