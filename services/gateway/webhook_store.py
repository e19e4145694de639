"""PostgreSQL adapter for client webhooks (schema `gateway`): endpoints, the per-owner signing secret,
per-video subscriptions, and the deliveries queue.

Deliveries are leased, not locked for the length of a POST: `claim` picks due rows with
`FOR UPDATE SKIP LOCKED`, counts the try and pushes `next_attempt_at` to the lease's end in one
statement, then commits. Replicas therefore never pick the same row, and a replica that dies
mid-send leaves a row that falls due again when the lease runs out. The try count is the lease's
fencing token: a result is recorded only if no one has claimed the row since.

Webhook secrets are kept as they are (not hashed): signing needs them. They leave the gateway
once, in the answer that creates them, and never reach a log.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from servicekit.db import newest_first_page
from servicekit.webhooks import new_secret
from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from services.gateway.identity import SCHEMA
from services.gateway.webhook_events import FINAL_EVENTS

ENDPOINT_ID_PREFIX = "we_"
metadata = MetaData(schema=SCHEMA)

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("owner_id", String(64), nullable=False),
    Column("url", Text, nullable=False),
    Column("events", ARRAY(String(32)), nullable=False),
    Column("secret", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Set: only videos this API key created; unset: every video of the owner.
    Column("api_key_id", String(64)),
)
webhook_secrets = Table(
    "webhook_secrets",
    metadata,
    Column("owner_id", String(64), primary_key=True),
    Column("secret", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("previous_secret", Text),
    Column("previous_expires_at", DateTime(timezone=True)),
)
video_webhooks = Table(
    "video_webhooks",
    metadata,
    Column("video_id", String(128), primary_key=True),
    Column("owner_id", String(64), nullable=False),
    Column("url", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("owner_id", String(64), nullable=False),
    Column("video_id", String(128), nullable=False),
    Column("event_type", String(32), nullable=False),
    Column("endpoint_id", String(40), ForeignKey(webhook_endpoints.c.id, ondelete="CASCADE")),
    Column("url", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_status_code", Integer),
    Column("last_error", String(200)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
    CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="webhook_deliveries_status"),
)

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


@dataclass(frozen=True)
class Endpoint:
    id: str
    owner_id: str
    url: str
    events: tuple[str, ...]
    created_at: datetime
    api_key_id: str | None = None


@dataclass(frozen=True)
class SecretInfo:
    """The owner's signing secret for per-video webhooks, without the secret itself."""

    created_at: datetime
    # While set and in the future, deliveries are signed with the old secret too.
    previous_expires_at: datetime | None


@dataclass(frozen=True)
class Target:
    """Where one event goes: an endpoint, or (endpoint_id None) a video's own webhook_url."""

    endpoint_id: str | None
    url: str


@dataclass(frozen=True)
class NewDelivery:
    id: str
    owner_id: str
    video_id: str
    event_type: str
    endpoint_id: str | None
    url: str
    payload: bytes


@dataclass(frozen=True)
class ClaimedDelivery:
    id: str
    owner_id: str
    endpoint_id: str | None
    url: str
    payload: bytes
    # This try's number (1 for the first); the fencing token for recording its result.
    attempt: int
    # Every secret to sign with: one, or two during a rotation. Empty: nothing to sign with.
    secrets: tuple[str, ...]


def new_endpoint_id() -> str:
    return ENDPOINT_ID_PREFIX + secrets.token_hex(12)


def _endpoint(row: Any) -> Endpoint:
    return Endpoint(row.id, row.owner_id, row.url, tuple(row.events), row.created_at, row.api_key_id)


_ENDPOINT_COLUMNS = (
    webhook_endpoints.c.id,
    webhook_endpoints.c.owner_id,
    webhook_endpoints.c.url,
    webhook_endpoints.c.events,
    webhook_endpoints.c.created_at,
    webhook_endpoints.c.api_key_id,
)

# Deliveries due now, leased to the caller: the try is counted and the row is not due again until
# the lease ends. The secrets come along: the endpoint's, or the owner's (and the previous one
# while a rotation's overlap lasts).
_CLAIM = text(
    f"""
    WITH due AS (
        SELECT id FROM "{SCHEMA}".webhook_deliveries
        WHERE status = 'pending' AND next_attempt_at <= now() AND attempts < :max_attempts
        ORDER BY next_attempt_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE "{SCHEMA}".webhook_deliveries AS delivery
        SET attempts = delivery.attempts + 1,
            next_attempt_at = now() + make_interval(secs => :lease_seconds)
        FROM due WHERE delivery.id = due.id
        RETURNING delivery.id, delivery.owner_id, delivery.endpoint_id, delivery.url, delivery.payload,
                  delivery.attempts
    )
    SELECT claimed.*, endpoint.secret AS endpoint_secret, owner.secret AS owner_secret,
           CASE WHEN owner.previous_expires_at > now() THEN owner.previous_secret END AS previous_secret
    FROM claimed
    LEFT JOIN "{SCHEMA}".webhook_endpoints AS endpoint ON endpoint.id = claimed.endpoint_id
    LEFT JOIN "{SCHEMA}".webhook_secrets AS owner
        ON claimed.endpoint_id IS NULL AND owner.owner_id = claimed.owner_id
    """
)


class WebhookStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    # --- endpoints ------------------------------------------------------------------------------

    async def create_endpoint(
        self, *, owner_id: str, url: str, events: tuple[str, ...], api_key_id: str | None = None
    ) -> tuple[Endpoint, str]:
        """The new endpoint and its secret (shown this once)."""
        secret = new_secret()
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    insert(webhook_endpoints)
                    .values(
                        id=new_endpoint_id(),
                        owner_id=owner_id,
                        url=url,
                        events=list(events),
                        secret=secret,
                        api_key_id=api_key_id,
                    )
                    .returning(*_ENDPOINT_COLUMNS)
                )
            ).one()
        return _endpoint(row), secret

    async def count_endpoints(self, owner_id: str) -> int:
        async with self._engine.connect() as conn:
            count = await conn.scalar(
                select(func.count())
                .select_from(webhook_endpoints)
                .where(webhook_endpoints.c.owner_id == owner_id)
            )
        return int(count or 0)

    async def list_endpoints(self, owner_id: str, *, limit: int, after: str | None) -> list[Endpoint]:
        """Newest first; `after` is the last endpoint id of the previous page."""
        statement = newest_first_page(
            select(*_ENDPOINT_COLUMNS),
            webhook_endpoints,
            scope=webhook_endpoints.c.owner_id == owner_id,
            limit=limit,
            after=after,
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(statement)).all()
        return [_endpoint(row) for row in rows]

    async def get_endpoint(self, owner_id: str, endpoint_id: str) -> Endpoint | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(*_ENDPOINT_COLUMNS).where(
                        webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.owner_id == owner_id
                    )
                )
            ).one_or_none()
        return _endpoint(row) if row else None

    async def delete_endpoint(self, owner_id: str, endpoint_id: str) -> bool:
        """Its undelivered deliveries go with it."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                delete(webhook_endpoints).where(
                    webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.owner_id == owner_id
                )
            )
        return bool(result.rowcount)

    # --- the owner's signing secret for per-video webhooks ----------------------------------------

    async def rotate_secret(self, owner_id: str, *, overlap: timedelta) -> tuple[SecretInfo, str]:
        """A new secret (shown this once). A replaced one keeps signing alongside for `overlap`."""
        secret = new_secret()
        added = insert(webhook_secrets).values(owner_id=owner_id, secret=secret)
        upsert = added.on_conflict_do_update(
            index_elements=[webhook_secrets.c.owner_id],
            set_={
                "previous_secret": webhook_secrets.c.secret,
                "previous_expires_at": func.now() + overlap,
                "secret": added.excluded.secret,
                "created_at": func.now(),
            },
        ).returning(webhook_secrets.c.created_at, webhook_secrets.c.previous_expires_at)
        async with self._engine.begin() as conn:
            row = (await conn.execute(upsert)).one()
        return SecretInfo(row.created_at, row.previous_expires_at), secret

    async def secret_info(self, owner_id: str) -> SecretInfo | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(webhook_secrets.c.created_at, webhook_secrets.c.previous_expires_at).where(
                        webhook_secrets.c.owner_id == owner_id
                    )
                )
            ).one_or_none()
        return SecretInfo(row.created_at, row.previous_expires_at) if row else None

    # --- per-video subscriptions ------------------------------------------------------------------

    async def subscribe_video(self, *, owner_id: str, video_id: str, url: str) -> str:
        """The video's webhook URL: the first one it was created with stays (a replayed create
        keeps its webhook)."""
        async with self._engine.begin() as conn:
            added = await conn.scalar(
                insert(video_webhooks)
                .values(video_id=video_id, owner_id=owner_id, url=url)
                .on_conflict_do_nothing(index_elements=[video_webhooks.c.video_id])
                .returning(video_webhooks.c.url)
            )
            if added is not None:
                return str(added)
            kept = await conn.scalar(
                select(video_webhooks.c.url).where(video_webhooks.c.video_id == video_id)
            )
        return str(kept)

    # --- deliveries -------------------------------------------------------------------------------

    async def targets(
        self, *, owner_id: str, video_id: str, event_type: str, api_key_id: str = ""
    ) -> list[Target]:
        """Where an event of this owner's video goes: every endpoint of the owner that asked for
        this event type (a key's endpoint only for that key's videos), and for final events the
        video's own webhook_url, if it has one."""
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(webhook_endpoints.c.id, webhook_endpoints.c.url)
                    .where(
                        webhook_endpoints.c.owner_id == owner_id,
                        webhook_endpoints.c.events.contains([event_type]),
                        or_(
                            webhook_endpoints.c.api_key_id.is_(None),
                            webhook_endpoints.c.api_key_id == api_key_id,
                        ),
                    )
                    .order_by(webhook_endpoints.c.id)
                )
            ).all()
            found = [Target(row.id, row.url) for row in rows]
            if event_type in FINAL_EVENTS:
                url = await conn.scalar(
                    select(video_webhooks.c.url).where(
                        video_webhooks.c.video_id == video_id, video_webhooks.c.owner_id == owner_id
                    )
                )
                if url is not None:
                    found.append(Target(None, url))
        return found

    async def enqueue(self, deliveries: list[NewDelivery]) -> int:
        """Adds the deliveries not already there (ids are derived from the event); how many were new."""
        if not deliveries:
            return 0
        async with self._engine.begin() as conn:
            result = await conn.execute(
                insert(webhook_deliveries)
                .values(
                    [
                        {
                            "id": delivery.id,
                            "owner_id": delivery.owner_id,
                            "video_id": delivery.video_id,
                            "event_type": delivery.event_type,
                            "endpoint_id": delivery.endpoint_id,
                            "url": delivery.url,
                            "payload": delivery.payload.decode(),
                        }
                        for delivery in deliveries
                    ]
                )
                .on_conflict_do_nothing(index_elements=[webhook_deliveries.c.id])
                .returning(webhook_deliveries.c.id)
            )
            return len(result.all())

    async def claim(self, *, limit: int, lease_seconds: float, max_attempts: int) -> list[ClaimedDelivery]:
        async with self._engine.begin() as conn:
            rows = (
                await conn.execute(
                    _CLAIM,
                    {"limit": limit, "lease_seconds": lease_seconds, "max_attempts": max_attempts},
                )
            ).all()
        claimed = []
        for row in rows:
            signing = (row.endpoint_secret,) if row.endpoint_id else (row.owner_secret, row.previous_secret)
            claimed.append(
                ClaimedDelivery(
                    id=row.id,
                    owner_id=row.owner_id,
                    endpoint_id=row.endpoint_id,
                    url=row.url,
                    payload=row.payload.encode(),
                    attempt=row.attempts,
                    secrets=tuple(secret for secret in signing if secret),
                )
            )
        return claimed

    async def record_delivered(self, delivery: ClaimedDelivery, status_code: int) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                self._still_leased(delivery).values(
                    status=DELIVERED, finished_at=func.now(), last_status_code=status_code, last_error=None
                )
            )

    async def record_failure(
        self, delivery: ClaimedDelivery, *, status_code: int | None, error: str, retry_in: float | None
    ) -> None:
        """A failed try: due again in `retry_in` seconds, or (None) given up."""
        changes: dict[str, Any] = {"last_status_code": status_code, "last_error": error[:200]}
        if retry_in is None:
            changes |= {"status": FAILED, "finished_at": func.now()}
        else:
            changes["next_attempt_at"] = func.now() + timedelta(seconds=retry_in)
        async with self._engine.begin() as conn:
            await conn.execute(self._still_leased(delivery).values(**changes))

    async def tidy(self, *, max_attempts: int, keep_finished: timedelta) -> None:
        """Gives up rows whose last lease ran out at the last try (their replica died), and drops
        finished rows older than `keep_finished`."""
        async with self._engine.begin() as conn:
            await conn.execute(
                update(webhook_deliveries)
                .where(
                    webhook_deliveries.c.status == PENDING,
                    webhook_deliveries.c.attempts >= max_attempts,
                    webhook_deliveries.c.next_attempt_at <= func.now(),
                )
                .values(status=FAILED, finished_at=func.now(), last_error="lease expired on the last try")
            )
            await conn.execute(
                delete(webhook_deliveries).where(
                    webhook_deliveries.c.status != PENDING,
                    webhook_deliveries.c.finished_at < func.now() - keep_finished,
                )
            )

    @staticmethod
    def _still_leased(delivery: ClaimedDelivery) -> Any:
        return update(webhook_deliveries).where(
            webhook_deliveries.c.id == delivery.id,
            webhook_deliveries.c.attempts == delivery.attempt,
            webhook_deliveries.c.status == PENDING,
        )
