"""Standard Webhooks (https://www.standardwebhooks.com) signing and verification.

One implementation for every webhook the platform sends or receives: the provider simulator signs,
the gateway verifies provider webhooks, and client webhooks are signed the same way.

- A secret is `whsec_<base64>`; the HMAC key is the base64-decoded part.
- Each message carries `webhook-id` (stable across retries, so receivers can de-duplicate),
  `webhook-timestamp` (unix seconds) and `webhook-signature`: a space-separated list of
  `v1,<base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}"))>`. Verification accepts the message if
  any `v1` entry matches, which lets a sender sign with an old and a new secret during rotation.

Pure functions: no I/O, and the current time is a parameter (defaulting to the wall clock).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
DEFAULT_TOLERANCE_SECONDS = 300
SECRET_BYTES = 32

__all__ = [
    "DEFAULT_TOLERANCE_SECONDS",
    "ID_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookVerificationError",
    "decode_secret",
    "headers_for",
    "new_secret",
    "sign",
    "verify",
]


class WebhookVerificationError(ValueError):
    """The message cannot be trusted: a header is missing or malformed, the signature does not
    match, or the timestamp is outside the tolerance. The message says which."""


def new_secret() -> str:
    """A fresh random signing secret in the `whsec_<base64>` form."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def decode_secret(secret: str) -> bytes:
    """The HMAC key inside a `whsec_` secret; ValueError if it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"webhook secret must start with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error as exc:
        raise ValueError("webhook secret is not valid base64 after the whsec_ prefix") from exc
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<base64>` signature of one message (a single entry of the signature header)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(decode_secret(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def headers_for(secret: str, msg_id: str, body: bytes, *, now: float | None = None) -> dict[str, str]:
    """The three headers to send with `body`; reuse `msg_id` on every retry of the same event."""
    timestamp = int(time.time() if now is None else now)
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, msg_id, timestamp, body),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Return if `body` was signed with `secret` within `tolerance_seconds` of `now` (either way).

    `headers` may be any mapping; names are matched case-insensitively, so aiohttp's and plain
    dicts both work. Raises WebhookVerificationError otherwise.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    missing = [name for name in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER) if not lowered.get(name)]
    if missing:
        raise WebhookVerificationError(f"missing webhook header(s): {', '.join(missing)}")
    msg_id = lowered[ID_HEADER]
    try:
        timestamp = int(lowered[TIMESTAMP_HEADER])
    except ValueError as exc:
        raise WebhookVerificationError(f"invalid {TIMESTAMP_HEADER}: not an integer") from exc
    current = time.time() if now is None else now
    if timestamp < current - tolerance_seconds:
        raise WebhookVerificationError("webhook timestamp is too old")
    if timestamp > current + tolerance_seconds:
        raise WebhookVerificationError("webhook timestamp is too far in the future")
    try:
        expected = sign(secret, msg_id, timestamp, body).encode()
    except ValueError as exc:
        raise WebhookVerificationError(f"cannot verify with this secret: {exc}") from exc
    # Compare against every v1 entry without stopping early, each in constant time.
    matched = False
    for entry in lowered[SIGNATURE_HEADER].split():
        version, _, _ = entry.partition(",")
        if version == SIGNATURE_VERSION:
            matched |= hmac.compare_digest(entry.encode(), expected)
    if not matched:
        raise WebhookVerificationError("no matching webhook signature")
