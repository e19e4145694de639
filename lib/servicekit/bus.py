"""NATS JetStream: connections that survive outages, streams, and de-duplicated publishing."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence

import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import PubAck, StreamConfig
from nats.js.errors import BadRequestError

log = logging.getLogger(__name__)

MSG_ID_HEADER = "Nats-Msg-Id"
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


async def connect_nats(url: str, *, name: str) -> NatsClient:
    """Reconnects forever: an outage delays events (the outbox holds them), it never loses them."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats error", extra={"error": repr(exc)})

    return await nats.connect(
        servers=[url],
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        error_cb=on_error,
    )


async def ensure_stream(
    js: JetStreamContext, name: str, subjects: Sequence[str], *, duplicate_window_seconds: float = 600
) -> None:
    config = StreamConfig(name=name, subjects=list(subjects), duplicate_window=duplicate_window_seconds)
    try:
        await js.add_stream(config)
    except BadRequestError:
        # Exists with other settings (for example from an older release): converge it.
        await js.update_stream(config)


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
