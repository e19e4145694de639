"""The credit ledger in PostgreSQL (schema `billing`).

Tables: `accounts` (the row each money movement locks, a cached balance, and organisation
membership), `transactions` (one row per money movement, unique by idempotency key),
`ledger_entries` (append-only signed postings; each transaction's postings sum to zero), `holds`
(one per job, on the paying account), `budgets` (spend limits per API key) and `outbox`.

Concurrency: every operation that moves an account's money first takes that account's row lock
(SELECT ... FOR UPDATE), so reads of the balance and of the job's hold are serialised per
account and concurrent reserves can never overdraw. The database backs this up on its own:
CHECK (available >= 0), one transaction per key (so one settlement per job, one credit per
request id), hold state checks and triggers that keep the ledger append-only and balanced.

Lock order, the same in every transaction so none can deadlock:
  1. the API key's `budgets` row (Reserve with a key that has a budget; SetBudget),
  2. `accounts` rows, in ascending id order (Reserve locks only the paying account; Capture,
     Release and Credit lock one account; SetOrganisation locks the member and the organisation),
  3. the job's `holds` row.
A transaction may skip a level but never goes back up one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from psycopg import errors as pg_errors
from servicekit.errors import ErrorKind, ServiceError
from servicekit.outbox import outbox_insert, outbox_table
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    case,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.schema import Identity

from services.billing import domain, events
from services.billing.domain import (
    Account,
    Balance,
    Bucket,
    Budget,
    Hold,
    HoldState,
    LedgerEntry,
    Page,
    Rate,
    Spend,
    Transaction,
    TransactionKind,
    VideoSpec,
)

SCHEMA = "billing"
metadata = MetaData(schema=SCHEMA)

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(64), primary_key=True),
    # A cache of the ledger, updated in the same transaction; `LedgerStore.audit` recomputes it.
    Column("available", BigInteger, nullable=False, server_default="0"),
    Column("held", BigInteger, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # A member's videos are paid from its organisation's account (one level deep).
    Column("organisation_id", String(64), ForeignKey(f"{SCHEMA}.accounts.id")),
    Column("is_organisation", Boolean, nullable=False, server_default="false"),
    CheckConstraint("available >= 0", name="accounts_available_not_negative"),
    CheckConstraint("held >= 0", name="accounts_held_not_negative"),
)

transactions = Table(
    "transactions",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("key", Text, nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("account_id", String(64), ForeignKey(accounts.c.id), nullable=False),
    Column("job_id", String(64)),
    Column("amount", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("initiated_by", String(64)),  # the member, when an organisation's account pays
    CheckConstraint("kind IN ('credit', 'reserve', 'capture', 'release')", name="transactions_kind"),
    CheckConstraint("amount >= 0", name="transactions_amount_not_negative"),
)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("transaction_id", BigInteger, ForeignKey(transactions.c.id), nullable=False, index=True),
    Column("account_id", String(64), ForeignKey(accounts.c.id), nullable=False),
    Column("bucket", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("bucket IN ('available', 'held', 'revenue', 'funding')", name="ledger_entries_bucket"),
    CheckConstraint("amount <> 0", name="ledger_entries_amount_not_zero"),
    Index("ledger_entries_account_bucket", "account_id", "bucket"),
)

holds = Table(
    "holds",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("account_id", String(64), ForeignKey(accounts.c.id), nullable=False, index=True),
    Column("model", Text, nullable=False),
    Column("size", Text, nullable=False),
    Column("seconds", Integer, nullable=False),
    # The rate in force at reserve time, so a price change never alters a running job's charge.
    Column("micro_usd_per_second", BigInteger, nullable=False),
    Column("credits_per_dollar", Integer, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("captured_amount", BigInteger, nullable=False, server_default="0"),
    Column("state", String(16), nullable=False, server_default="held"),
    Column("reason", Text, nullable=False, server_default=""),
    # Reserve time from the store's clock: budgets count a hold in the UTC day and month it was placed.
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("settled_at", DateTime(timezone=True)),
    Column("initiated_by", String(64)),  # the member, when account_id is its organisation's account
    Column("api_key_id", String(64)),
    CheckConstraint("amount > 0", name="holds_amount_positive"),
    CheckConstraint("state IN ('held', 'captured', 'released')", name="holds_state"),
    CheckConstraint("captured_amount BETWEEN 0 AND amount", name="holds_captured_within_hold"),
    CheckConstraint("state = 'captured' OR captured_amount = 0", name="holds_captured_only_when_captured"),
    CheckConstraint("(state = 'held') = (settled_at IS NULL)", name="holds_settled_when_not_held"),
)

budgets = Table(
    "budgets",
    metadata,
    Column("api_key_id", String(64), primary_key=True),
    Column("daily_limit", BigInteger, nullable=False, server_default="0"),
    Column("monthly_limit", BigInteger, nullable=False, server_default="0"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

outbox = outbox_table(metadata)

T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(UTC)


class LedgerStore:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        on_commit: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = utc_now,
        on_hold_changed: Callable[[Hold], None] = lambda hold: None,
    ) -> None:
        self._engine = engine
        self._on_commit = on_commit  # wakes the outbox relay
        self._clock = clock  # reserve time, for budgets
        # Called once per hold placed, captured or released, after its commit (metrics); never for repeats.
        self._on_hold_changed = on_hold_changed

    async def balance(self, account_id: str) -> Balance:
        """The account's own balance (zero for an account never seen)."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(accounts).where(accounts.c.id == account_id))).first()
        return Balance(account_id, row.available, row.held) if row else Balance(account_id)

    async def paying_balance(self, account_id: str) -> Balance:
        """The balance of the account that pays for `account_id`'s videos: its organisation's, if any."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(accounts).where(accounts.c.id == account_id))).first()
            if row is not None and row.organisation_id is not None:
                row = (await conn.execute(select(accounts).where(accounts.c.id == row.organisation_id))).one()
        return Balance(row.id, row.available, row.held) if row else Balance(account_id)

    async def account(self, account_id: str) -> Account:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(accounts).where(accounts.c.id == account_id))).first()
        return _account_from_row(row) if row else Account(account_id)

    async def set_organisation(self, account_id: str, organisation_id: str | None) -> Account:
        """Put the account in the organisation (None takes it out); the organisation's account is
        created on first use. Open holds stay on the account that was paying when they were placed."""

        async def attempt(conn: AsyncConnection) -> Account:
            ids = sorted({account_id, organisation_id or account_id})
            for each in ids:
                await _ensure_account(conn, each)
            locked = {each: await _lock_account_row(conn, each) for each in ids}  # ascending id order
            member = locked[account_id]
            if organisation_id is None:
                if member.organisation_id is None:
                    return member
            else:
                domain.check_membership(member, locked[organisation_id])
                if member.organisation_id == organisation_id:
                    return member
                await conn.execute(
                    accounts.update()
                    .where(accounts.c.id == organisation_id, accounts.c.is_organisation.is_(False))
                    .values(is_organisation=True, updated_at=func.now())
                )
            row = (
                await conn.execute(
                    accounts.update()
                    .where(accounts.c.id == account_id)
                    .values(organisation_id=organisation_id, updated_at=func.now())
                    .returning(*accounts.c)
                )
            ).one()
            return _account_from_row(row)

        return await self._run(attempt)

    async def set_budget(self, budget: Budget) -> Budget:
        async def attempt(conn: AsyncConnection) -> Budget:
            values = {"daily_limit": budget.daily_limit, "monthly_limit": budget.monthly_limit}
            await conn.execute(
                pg_insert(budgets)
                .values(api_key_id=budget.api_key_id, **values)
                .on_conflict_do_update(
                    index_elements=[budgets.c.api_key_id], set_={**values, "updated_at": func.now()}
                )
            )
            return budget

        return await self._run(attempt)

    async def budget(self, api_key_id: str) -> tuple[Budget, Spend]:
        """The key's limits (zeros when none were set) and what it has spent this UTC day and month."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(budgets).where(budgets.c.api_key_id == api_key_id))).first()
            spend = await _spend(conn, api_key_id, domain.windows(self._clock()))
        budget = Budget(api_key_id, row.daily_limit, row.monthly_limit) if row else Budget(api_key_id)
        return budget, spend

    async def list_ledger(self, account_id: str, size: int, before: int | None = None) -> Page:
        """The account's transactions, newest first: `size` of them with ids below `before`."""
        available = func.coalesce(
            func.sum(ledger_entries.c.amount).filter(ledger_entries.c.bucket == Bucket.AVAILABLE.value), 0
        )
        held = func.coalesce(
            func.sum(ledger_entries.c.amount).filter(ledger_entries.c.bucket == Bucket.HELD.value), 0
        )
        query = (
            select(
                transactions.c.id,
                transactions.c.kind,
                transactions.c.job_id,
                transactions.c.reason,
                transactions.c.initiated_by,
                transactions.c.created_at,
                available.label("available_delta"),
                held.label("held_delta"),
            )
            .select_from(
                transactions.outerjoin(
                    ledger_entries,
                    (ledger_entries.c.transaction_id == transactions.c.id)
                    & (ledger_entries.c.account_id == account_id),
                )
            )
            .where(transactions.c.account_id == account_id)
            .group_by(transactions.c.id)
            .order_by(transactions.c.id.desc())
            .limit(size + 1)
        )
        if before is not None:
            query = query.where(transactions.c.id < before)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        entries = [
            LedgerEntry(
                id=row.id,
                account_id=account_id,
                kind=TransactionKind(row.kind),
                available_delta=int(row.available_delta),  # SUM(bigint) is numeric
                held_delta=int(row.held_delta),
                job_id=row.job_id,
                reason=row.reason,
                initiated_by=row.initiated_by,
                created_at=row.created_at,
            )
            for row in rows[:size]
        ]
        more = len(rows) > size
        return Page(entries, domain.page_token(account_id, entries[-1].id) if more else "")

    async def credit(self, transaction: Transaction, *, request_id: str) -> Balance:
        async def attempt(conn: AsyncConnection) -> Balance:
            await _ensure_account(conn, transaction.account_id)
            balance = await _lock_account(conn, transaction.account_id)
            existing = (
                await conn.execute(select(transactions).where(transactions.c.key == transaction.key))
            ).first()
            if existing is not None:
                if (existing.account_id, existing.amount) != (transaction.account_id, transaction.amount):
                    raise ServiceError(
                        ErrorKind.ALREADY_EXISTS,
                        f"request_id {request_id!r} was already used for a different credit.",
                        param="request_id",
                    )
                return balance
            occurred = await _record(conn, transaction)
            await _publish(
                conn,
                events.account_credited(
                    request_id=request_id,
                    account_id=transaction.account_id,
                    amount=transaction.amount,
                    reason=transaction.reason,
                    occurred=occurred,
                ),
            )
            return balance.apply(transaction.postings)

        return await self._run(attempt)

    async def reserve(
        self, account_id: str, job_id: str, spec: VideoSpec, rate: Rate, *, api_key_id: str | None = None
    ) -> Hold:
        """Hold the job's price on the paying account: the organisation's if `account_id` is a member.

        With `api_key_id`, the key's budget is checked under its row lock, so concurrent reserves
        on one key cannot together exceed it. A repeat returns the first hold unchanged.
        """
        placed: list[Hold] = []

        async def attempt(conn: AsyncConnection) -> Hold:
            placed.clear()
            budget = await _lock_budget(conn, api_key_id) if api_key_id else None
            await _ensure_account(conn, account_id)
            # Membership is read, not locked: a reserve racing a move serialises before or after
            # it, and the hold records whichever account paid.
            payer = (await _get_account(conn, account_id)).paying_account_id
            balance = await _lock_account(conn, payer)
            existing = await _get_hold(conn, job_id)
            if existing is not None:
                if not domain.same_request(existing, account_id, spec):
                    raise ServiceError(
                        ErrorKind.ALREADY_EXISTS,
                        f"Job {job_id} already has a hold for a different account or video.",
                        param="job_id",
                        code="hold_exists",
                    )
                return existing
            now = self._clock()
            wanted = Hold(
                job_id=job_id,
                account_id=payer,
                spec=spec,
                rate=rate,
                amount=rate.cost(spec.seconds),
                initiated_by=account_id if payer != account_id else None,
                api_key_id=api_key_id,
            )
            if budget is not None and budget.limited:
                assert api_key_id is not None
                spend = await _spend(conn, api_key_id, domain.windows(now))
                domain.check_budget(budget, spend, wanted.amount)
            transaction = domain.reserve(wanted, balance)
            await _record(conn, transaction)
            row = (
                await conn.execute(
                    holds.insert()
                    .values(
                        job_id=job_id,
                        account_id=payer,
                        initiated_by=wanted.initiated_by,
                        api_key_id=api_key_id,
                        created_at=now,
                        model=spec.model,
                        size=spec.size,
                        seconds=spec.seconds,
                        micro_usd_per_second=rate.micro_usd_per_second,
                        credits_per_dollar=rate.credits_per_dollar,
                        amount=wanted.amount,
                    )
                    .returning(*holds.c)
                )
            ).one()
            hold = _hold_from_row(row)
            await _publish(conn, events.hold_changed(hold))
            placed.append(hold)
            return hold

        return self._notify(await self._run(attempt), placed)

    async def capture(self, job_id: str, delivered_seconds: int) -> Hold:
        captured: list[Hold] = []

        async def attempt(conn: AsyncConnection) -> Hold:
            captured.clear()
            hold = await _lock_hold(conn, job_id)
            if domain.settled_already(hold, HoldState.CAPTURED):
                return hold
            charge = domain.capture_charge(hold, delivered_seconds)
            settled = await _settle(
                conn, hold, domain.capture(hold, charge), HoldState.CAPTURED, charge, "delivered"
            )
            captured.append(settled)
            return settled

        return self._notify(await self._run(attempt), captured)

    async def release(self, job_id: str, reason: str) -> Hold:
        released: list[Hold] = []

        async def attempt(conn: AsyncConnection) -> Hold:
            released.clear()
            hold = await _lock_hold(conn, job_id)
            if domain.settled_already(hold, HoldState.RELEASED):
                return hold
            settled = await _settle(conn, hold, domain.release(hold, reason), HoldState.RELEASED, 0, reason)
            released.append(settled)
            return settled

        return self._notify(await self._run(attempt), released)

    async def audit(self) -> list[str]:
        """Recompute everything from the ledger in one snapshot; returns the problems found."""
        problems: list[str] = []
        async with self._engine.connect() as conn:
            await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                for query in _AUDIT_QUERIES:
                    problems.extend(str(row[0]) for row in await conn.execute(text(query)))
        return problems

    def _notify(self, hold: Hold, changed: list[Hold]) -> Hold:
        """Report the holds the committed attempt changed (none when the call was a repeat)."""
        for each in changed:
            self._on_hold_changed(each)
        return hold

    async def _run(self, attempt: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """One short transaction; a lost race on a unique key is retried once, and then reads as a repeat."""
        for tries_left in (1, 0):
            try:
                async with self._engine.begin() as conn:
                    result = await attempt(conn)
            except IntegrityError as exc:
                if tries_left and isinstance(exc.orig, pg_errors.UniqueViolation):
                    continue
                raise
            self._on_commit()
            return result
        raise AssertionError("unreachable")


async def _ensure_account(conn: AsyncConnection, account_id: str) -> None:
    await conn.execute(pg_insert(accounts).values(id=account_id).on_conflict_do_nothing())


async def _lock_account(conn: AsyncConnection, account_id: str) -> Balance:
    row = (await conn.execute(select(accounts).where(accounts.c.id == account_id).with_for_update())).one()
    return Balance(account_id, row.available, row.held)


async def _lock_account_row(conn: AsyncConnection, account_id: str) -> Account:
    row = (await conn.execute(select(accounts).where(accounts.c.id == account_id).with_for_update())).one()
    return _account_from_row(row)


async def _get_account(conn: AsyncConnection, account_id: str) -> Account:
    row = (await conn.execute(select(accounts).where(accounts.c.id == account_id))).one()
    return _account_from_row(row)


def _account_from_row(row: Any) -> Account:
    return Account(row.id, row.organisation_id, row.is_organisation)


async def _lock_budget(conn: AsyncConnection, api_key_id: str) -> Budget | None:
    """Lock the key's budget row (first in the lock order); None when the key has no budget."""
    row = (
        await conn.execute(select(budgets).where(budgets.c.api_key_id == api_key_id).with_for_update())
    ).first()
    return Budget(api_key_id, row.daily_limit, row.monthly_limit) if row else None


async def _spend(conn: AsyncConnection, api_key_id: str, since: domain.Windows) -> Spend:
    """Open holds at their amount plus captured holds at their charge, by reserve time."""
    counted = case((holds.c.state == HoldState.HELD.value, holds.c.amount), else_=holds.c.captured_amount)
    row = (
        await conn.execute(
            select(
                func.coalesce(func.sum(counted).filter(holds.c.created_at >= since.day), 0).label("today"),
                func.coalesce(func.sum(counted), 0).label("this_month"),
            ).where(
                holds.c.api_key_id == api_key_id,
                holds.c.created_at >= since.month,
                holds.c.state != HoldState.RELEASED.value,
            )
        )
    ).one()
    return Spend(today=int(row.today), this_month=int(row.this_month))


async def _get_hold(conn: AsyncConnection, job_id: str, *, for_update: bool = False) -> Hold | None:
    query = select(holds).where(holds.c.job_id == job_id)
    row = (await conn.execute(query.with_for_update() if for_update else query)).first()
    return _hold_from_row(row) if row else None


async def _lock_hold(conn: AsyncConnection, job_id: str) -> Hold:
    """Lock the hold's account, then the hold: the same order as Reserve, so no deadlocks."""
    hold = await _get_hold(conn, job_id)
    if hold is None:
        raise ServiceError(ErrorKind.NOT_FOUND, f"No hold exists for job {job_id}.", param="job_id")
    await _lock_account(conn, hold.account_id)
    locked = await _get_hold(conn, job_id, for_update=True)
    assert locked is not None  # holds are never deleted
    return locked


async def _settle(
    conn: AsyncConnection, hold: Hold, transaction: Transaction, state: HoldState, charge: int, reason: str
) -> Hold:
    settled_at = await _record(conn, transaction)
    row = (
        await conn.execute(
            holds.update()
            .where(holds.c.job_id == hold.job_id, holds.c.state == HoldState.HELD.value)
            .values(state=state.value, captured_amount=charge, reason=reason, settled_at=settled_at)
            .returning(*holds.c)
        )
    ).one()
    settled = _hold_from_row(row)
    await _publish(conn, events.hold_changed(settled))
    return settled


async def _record(conn: AsyncConnection, transaction: Transaction) -> datetime:
    """Append the transaction and its postings and move the cached balances; returns its time."""
    row = (
        await conn.execute(
            transactions.insert()
            .values(
                key=transaction.key,
                kind=transaction.kind.value,
                account_id=transaction.account_id,
                job_id=transaction.job_id,
                amount=transaction.amount,
                reason=transaction.reason,
                initiated_by=transaction.initiated_by,
            )
            .returning(transactions.c.id, transactions.c.created_at)
        )
    ).one()
    await conn.execute(
        ledger_entries.insert(),
        [
            {
                "transaction_id": row.id,
                "account_id": p.account_id,
                "bucket": p.bucket.value,
                "amount": p.amount,
            }
            for p in transaction.postings
        ],
    )
    deltas: dict[str, dict[str, int]] = {}
    for posting in transaction.postings:
        if posting.bucket in (Bucket.AVAILABLE, Bucket.HELD):
            account = deltas.setdefault(posting.account_id, {"available": 0, "held": 0})
            account[posting.bucket.value] += posting.amount
    for account_id, delta in deltas.items():
        await conn.execute(
            accounts.update()
            .where(accounts.c.id == account_id)
            .values(
                available=accounts.c.available + delta["available"],
                held=accounts.c.held + delta["held"],
                updated_at=func.now(),
            )
        )
    return row.created_at


async def _publish(conn: AsyncConnection, event: events.OutboxEvent) -> None:
    await conn.execute(
        outbox_insert(outbox, subject=event.subject, payload=event.payload, msg_id=event.msg_id)
    )


def _hold_from_row(row: Any) -> Hold:
    return Hold(
        job_id=row.job_id,
        account_id=row.account_id,
        spec=VideoSpec(row.model, row.size, row.seconds),
        rate=Rate(row.micro_usd_per_second, row.credits_per_dollar),
        amount=row.amount,
        state=HoldState(row.state),
        captured_amount=row.captured_amount,
        reason=row.reason,
        created_at=row.created_at,
        settled_at=row.settled_at,
        initiated_by=row.initiated_by,
        api_key_id=row.api_key_id,
    )


# Each query returns one text column, one row per problem; no rows means the ledger is sound.
_AUDIT_QUERIES = (
    # Every transaction has postings, and they sum to zero.
    f"""
    SELECT format('transaction %s sums to %s over %s postings',
                  t.key, COALESCE(SUM(e.amount), 0), COUNT(e.id))
    FROM {SCHEMA}.transactions t LEFT JOIN {SCHEMA}.ledger_entries e ON e.transaction_id = t.id
    GROUP BY t.id, t.key HAVING COUNT(e.id) = 0 OR SUM(e.amount) <> 0
    """,
    # The cached balance equals the ledger, and the ledger never shows a negative balance.
    f"""
    SELECT format('account %s: cached available=%s held=%s, ledger available=%s held=%s',
                  a.id, a.available, a.held, l.available, l.held)
    FROM {SCHEMA}.accounts a
    CROSS JOIN LATERAL (
        SELECT COALESCE(SUM(amount) FILTER (WHERE bucket = 'available'), 0) AS available,
               COALESCE(SUM(amount) FILTER (WHERE bucket = 'held'), 0) AS held
        FROM {SCHEMA}.ledger_entries e WHERE e.account_id = a.id
    ) l
    WHERE a.available <> l.available OR a.held <> l.held OR l.available < 0 OR l.held < 0
    """,
    # Credits held equal the open holds.
    f"""
    SELECT format('account %s: held=%s but open holds total %s', a.id, a.held, COALESCE(h.total, 0))
    FROM {SCHEMA}.accounts a
    LEFT JOIN (
        SELECT account_id, SUM(amount) AS total FROM {SCHEMA}.holds WHERE state = 'held' GROUP BY account_id
    ) h ON h.account_id = a.id
    WHERE a.held <> COALESCE(h.total, 0)
    """,
    # Each hold has its reserve, and a settlement exactly when settled, of the matching kind and amount.
    f"""
    SELECT format('hold %s (%s): reserve=%s settlement=%s/%s', h.job_id, h.state, r.amount, s.kind, s.amount)
    FROM {SCHEMA}.holds h
    LEFT JOIN {SCHEMA}.transactions r ON r.key = 'reserve:' || h.job_id
    LEFT JOIN {SCHEMA}.transactions s ON s.key = 'settle:' || h.job_id
    WHERE r.amount IS DISTINCT FROM h.amount
       OR (h.state = 'held' AND s.id IS NOT NULL)
       OR (h.state = 'captured' AND (s.kind IS DISTINCT FROM 'capture' OR s.amount <> h.captured_amount))
       OR (h.state = 'released' AND (s.kind IS DISTINCT FROM 'release' OR s.amount <> h.amount))
    """,
    # Money for a job moves on the paying account recorded on its hold, whoever is a member now.
    f"""
    SELECT format('hold %s on %s (initiated by %s): transaction %s on %s (initiated by %s)',
                  h.job_id, h.account_id, h.initiated_by, t.key, t.account_id, t.initiated_by)
    FROM {SCHEMA}.holds h JOIN {SCHEMA}.transactions t ON t.job_id = h.job_id
    WHERE t.account_id <> h.account_id OR t.initiated_by IS DISTINCT FROM h.initiated_by
    """,
    # Membership is one level deep, and only into organisation accounts.
    f"""
    SELECT format('account %s is a member of %s, which is not an organisation account of its own',
                  a.id, o.id)
    FROM {SCHEMA}.accounts a JOIN {SCHEMA}.accounts o ON o.id = a.organisation_id
    WHERE NOT o.is_organisation OR o.organisation_id IS NOT NULL OR a.is_organisation
    """,
)
