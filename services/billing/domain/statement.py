"""The ledger as an account holder sees it: one entry per transaction, newest first, in pages."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime

from servicekit.errors import ErrorKind, ServiceError

from services.billing.domain.ledger import TransactionKind

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
_TOKEN_VERSION = "l1"


@dataclass(frozen=True)
class LedgerEntry:
    id: int  # the transaction id; newer transactions have larger ids
    account_id: str
    kind: TransactionKind
    available_delta: int
    held_delta: int
    job_id: str | None
    reason: str
    initiated_by: str | None
    created_at: datetime


@dataclass(frozen=True)
class Page:
    entries: list[LedgerEntry]
    next_page_token: str = ""


def page_size(requested: int) -> int:
    """AIP-158: 0 means the default, above the maximum is coerced down, negative is refused."""
    if requested < 0:
        raise ServiceError(ErrorKind.INVALID_ARGUMENT, "page_size must not be negative", param="page_size")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def page_token(account_id: str, last_id: int) -> str:
    raw = f"{_TOKEN_VERSION}:{last_id}:{account_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def before_id(account_id: str, token: str) -> int | None:
    """The id the next page starts below, or None for the first page; refuses foreign tokens."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        version, last_id, owner = raw.split(":", 2)
        if version != _TOKEN_VERSION or owner != account_id:
            raise ValueError(raw)
        return int(last_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ServiceError(
            ErrorKind.INVALID_ARGUMENT,
            "page_token is not a token from a previous ListLedger call for this account",
            param="page_token",
        ) from None
