"""NATS JetStream: connections that survive outages, streams, and de-duplicated publishing.

NATS may come back without its data (a lost volume, a fresh pod): streams and consumers are then
gone. A stream is therefore described once (`StreamSpec`), by its publisher, and only the publisher
makes it (the outbox relay, which also refills it); consumers wait for it by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import PubAck, StreamConfig
from nats.js.errors import BadRequestError

from servicekit.config import ConfigError

log = logging.getLogger(__name__)

MSG_ID_HEADER = "Nats-Msg-Id"
# On an event the outbox relay published again into a stream made anew: history, not news.
REPLAYED_HEADER = "Vidflow-Replayed"
_SUBJECT_SAFE = re.compile(r"[A-Za-z0-9_-]+")
_SUBJECT_SAFE_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def subject_token(value: str) -> str:
    """`value` as exactly one NATS subject token, so ids can be filtered on in subjects.

    Letters, digits, `_` and `-` stay; every other UTF-8 byte (`.`, the `*`/`>` wildcards, spaces,
    `%` itself) becomes `%XX`. The mapping is one-to-one, so two different ids (say `a.b` and
    `a%2Eb`) can never share a subject. Publishers and subscribers must both use this function.
    """
    if not value:
        raise ValueError("a subject token cannot be empty")
    if _SUBJECT_SAFE.fullmatch(value):
        return value
    return "".join(chr(byte) if byte in _SUBJECT_SAFE_BYTES else f"%{byte:02X}" for byte in value.encode())


@dataclass(frozen=True)
class StreamSpec:
    """A stream as its publisher defines it, kept where its consumers can import it too."""

    name: str
    subjects: tuple[str, ...]
    duplicate_window_seconds: float = 600
    # Copies kept across a NATS cluster (`NATS_STREAM_REPLICAS`): 3 survives losing one server.
    replicas: int = 1

    def config(self) -> StreamConfig:
        return StreamConfig(
            name=self.name,
            subjects=list(self.subjects),
            duplicate_window=self.duplicate_window_seconds,
            num_replicas=self.replicas,
        )


def stream_replicas(value: int) -> int:
    """`NATS_STREAM_REPLICAS`, checked: JetStream keeps 1 to 5 copies of a stream."""
    if not 1 <= value <= 5:
        raise ConfigError(f"NATS_STREAM_REPLICAS must be between 1 and 5, got {value}")
    return value


def _client_options(url: str, name: str) -> dict[str, Any]:
    async def on_error(exc: Exception) -> None:
        log.warning("nats error", extra={"error": repr(exc)})

    # max_reconnect_attempts=-1 also makes the first connection retry until NATS answers.
    return {
        "servers": [url],
        "name": name,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "connect_timeout": 5,
        "error_cb": on_error,
    }


async def connect_nats(url: str, *, name: str) -> NatsClient:
    """Returns once connected, waiting as long as NATS is away; reconnects forever afterwards: an
    outage delays events (the outbox holds them), it never loses them."""
    return await nats.connect(**_client_options(url, name))


@contextlib.asynccontextmanager
async def nats_connection(url: str, *, name: str) -> AsyncIterator[NatsClient]:
    """A client that connects in the background, for services that must start while NATS is down.

    Until the first connection, requests time out exactly as they do during an outage, so callers
    that ride out outages (the outbox relay) need nothing more. Drained on exit if connected."""
    client = NatsClient()
    connecting = asyncio.create_task(
        client.connect(**_client_options(url, name)), name=f"nats-connect-{name}"
    )
    # Let `connect` set the client up (it does so before its first await): requests and `close`
    # on a client that has not are refused.
    await asyncio.sleep(0)
    try:
        yield client
    finally:
        connecting.cancel()  # if it is still trying
        await asyncio.gather(connecting, return_exceptions=True)
        if client.is_connected:
            await client.drain()
        else:
            # Never connected, or NATS is away now: nothing can be flushed; stop reconnecting.
            await client.close()


async def ensure_stream(js: JetStreamContext, stream: StreamSpec) -> None:
    """Create the stream, or converge an existing one to `stream` (the publisher's job)."""
    try:
        await js.add_stream(stream.config())
    except BadRequestError:
        # Exists with other settings (for example from an older release): converge it.
        await js.update_stream(stream.config())


async def publish(
    js: JetStreamContext,
    subject: str,
    payload: bytes,
    *,
    msg_id: str,
    headers: Mapping[str, str] | None = None,
    ack_timeout: float = 5.0,
) -> PubAck:
    all_headers = {**(headers or {}), MSG_ID_HEADER: msg_id}
    return await js.publish(subject, payload, timeout=ack_timeout, headers=all_headers)
