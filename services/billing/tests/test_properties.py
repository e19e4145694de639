"""Property-based: random sequences of money calls against a fresh database, invariants after each.

A hypothesis state machine drives reserve, capture (partial delivered seconds), release, credit,
organisation moves, the next UTC day, a retry of any earlier call, and crash-and-replay, and
keeps an exact model of what each call must answer. After every step it checks that the ledger
audit is clean, that each account's balance equals the model (never negative), that no job was
settled twice or both ways, and that the holds' states equal the model. At the end it settles
every open hold and checks that each one was captured or released exactly once.

Two variants share the machine:
- the store (LedgerStore, same code the service runs), where "crash" cancels the asyncio task
  right after its N-th SQL statement or at COMMIT (so the commit's answer is lost), and then
  retries the same call as a client would;
- the real gRPC service, where "crash" runs the call, drops the answer and replays it.

The state machine is synchronous; the async service and store run on one long-lived event loop
in a helper thread (`LoopThread`), and each step waits for its coroutine's result.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Coroutine, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from servicekit.errors import ServiceError
from sqlalchemy import event, func, select
from vidflow.billing.v1 import billing_pb2
from vidflow.billing.v1 import billing_service_pb2 as pb

from services.billing import domain
from services.billing.domain import DEFAULT_USD_PER_SECOND, PriceTable, VideoSpec
from services.billing.store import holds, transactions
from services.billing.tests.harness import Billing, running_billing

pytestmark = pytest.mark.integration

T = TypeVar("T")
PRICES = PriceTable(DEFAULT_USD_PER_SECOND, credits_per_dollar=100)
MODEL, SIZE, CREDITS_PER_SECOND = "sora-2", "1280x720", 10
DAILY_LIMIT, MONTHLY_LIMIT = 120, 250
START = datetime(2032, 3, 1, 9, 0, tzinfo=UTC)
STEP_TIMEOUT = 60.0


class LoopThread:
    """An event loop running forever in a helper thread; `run` waits for one coroutine's result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="billing-props", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(STEP_TIMEOUT)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(STEP_TIMEOUT)
        self.loop.close()


@pytest.fixture
def service(fresh_database_url: str, infrastructure: Any) -> Iterator[tuple[LoopThread, Billing]]:
    thread = LoopThread()
    stack = AsyncExitStack()
    try:
        billing = thread.run(stack.enter_async_context(running_billing(fresh_database_url, infrastructure)))
        yield thread, billing
    finally:
        thread.run(stack.aclose())
        thread.close()


# --- calls, answers and the model -----------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    op: str  # credit, reserve, capture, release
    account: str = ""
    job: str = ""
    amount: int = 0  # credit amount, reserved seconds or delivered seconds
    key: str = ""  # request id of a credit, api key of a reserve
    reason: str = "failed"


Answer = tuple[Any, ...]


@dataclass
class ModelHold:
    payer: str
    requester: str
    seconds: int
    amount: int
    key: str
    day: int
    state: str = "held"
    captured: int = 0

    def answer(self) -> Answer:
        return ("hold", self.payer, self.amount, self.state, self.captured)

    def spend(self) -> int:
        return {"held": self.amount, "captured": self.captured, "released": 0}[self.state]


class Model:
    def __init__(self, accounts: list[str], budget_key: str) -> None:
        self.available = dict.fromkeys(accounts, 0)
        self.held = dict.fromkeys(accounts, 0)
        self.organisation: dict[str, str | None] = {}
        self.holds: dict[str, ModelHold] = {}
        self.credits: set[str] = set()
        self.budget_key = budget_key
        self.day = 0

    def apply(self, call: Call) -> Answer:
        return getattr(self, f"_{call.op}")(call)

    def _credit(self, call: Call) -> Answer:
        if call.key not in self.credits:
            self.credits.add(call.key)
            self.available[call.account] += call.amount
        return ("balance", call.account, self.available[call.account], self.held[call.account])

    def _reserve(self, call: Call) -> Answer:
        if (hold := self.holds.get(call.job)) is not None:
            assert (hold.requester, hold.seconds) == (call.account, call.amount), "retries repeat the call"
            return hold.answer()
        payer = self.organisation.get(call.account) or call.account
        cost = call.amount * CREDITS_PER_SECOND
        if call.key == self.budget_key:
            mine = [h for h in self.holds.values() if h.key == call.key]
            today = sum(h.spend() for h in mine if h.day == self.day)
            month = sum(h.spend() for h in mine)  # the machine never leaves the first month
            if today + cost > DAILY_LIMIT:
                return ("error", "INSUFFICIENT_QUOTA", "budget_exceeded", "day")
            if month + cost > MONTHLY_LIMIT:
                return ("error", "INSUFFICIENT_QUOTA", "budget_exceeded", "month")
        if self.available[payer] < cost:
            return ("error", "INSUFFICIENT_QUOTA", "insufficient_quota", None)
        self.available[payer] -= cost
        self.held[payer] += cost
        hold = ModelHold(payer, call.account, call.amount, cost, call.key, self.day)
        self.holds[call.job] = hold
        return hold.answer()

    def _capture(self, call: Call) -> Answer:
        return self._settle(call, "captured")

    def _release(self, call: Call) -> Answer:
        return self._settle(call, "released")

    def _settle(self, call: Call, wanted: str) -> Answer:
        hold = self.holds.get(call.job)
        if hold is None:
            return ("error", "NOT_FOUND", None, None)
        if hold.state == "held":
            charge = min(hold.amount, call.amount * CREDITS_PER_SECOND) if wanted == "captured" else 0
            self.held[hold.payer] -= hold.amount
            self.available[hold.payer] += hold.amount - charge
            hold.state, hold.captured = wanted, charge
        elif hold.state != wanted:
            return ("error", "FAILED_PRECONDITION", "hold_already_settled", None)
        return hold.answer()


# --- two ways to make the calls -------------------------------------------------------------------


def answer_of(result: Any) -> Answer:
    if isinstance(result, domain.Hold):
        return ("hold", result.account_id, result.amount, result.state.value, result.captured_amount)
    if isinstance(result, domain.Balance):
        return ("balance", result.account_id, result.available, result.held)
    if isinstance(result, billing_pb2.Hold):
        state = billing_pb2.HoldState.Name(result.state).removeprefix("HOLD_STATE_").lower()
        return ("hold", result.account_id, result.amount, state, result.captured_amount)
    if isinstance(result, billing_pb2.Balance):
        return ("balance", result.account_id, result.available, result.held)
    raise AssertionError(f"unexpected result {result!r}")


async def answered(call: Awaitable[Any]) -> Answer:
    try:
        return answer_of(await call)
    except ServiceError as error:
        return ("error", error.kind.name, error.code, error.metadata.get("period"))


def via_store(billing: Billing, call: Call) -> Awaitable[Any]:
    store = billing.store
    if call.op == "credit":
        transaction = domain.credit(call.account, call.amount, reason="props", request_id=call.key)
        return store.credit(transaction, request_id=call.key)
    if call.op == "reserve":
        spec = VideoSpec(MODEL, SIZE, call.amount)
        rate = PRICES.rate(MODEL, SIZE)
        return store.reserve(call.account, call.job, spec, rate, api_key_id=call.key or None)
    if call.op == "capture":
        return store.capture(call.job, call.amount)
    return store.release(call.job, call.reason)


async def via_grpc(billing: Billing, call: Call) -> Any:
    stub = billing.stub
    if call.op == "credit":
        request = pb.CreditRequest(
            account_id=call.account, amount=call.amount, reason="props", request_id=call.key
        )
        return (await stub.Credit(request)).balance
    if call.op == "reserve":
        spec = billing_pb2.VideoSpec(model=MODEL, size=SIZE, seconds=call.amount)
        reserve = pb.ReserveRequest(account_id=call.account, job_id=call.job, spec=spec, api_key_id=call.key)
        return (await stub.Reserve(reserve)).hold
    if call.op == "capture":
        return (await stub.Capture(pb.CaptureRequest(job_id=call.job, delivered_seconds=call.amount))).hold
    return (await stub.Release(pb.ReleaseRequest(job_id=call.job, reason=call.reason))).hold


class CrashAfter:
    """Cancel the running task right after its N-th SQL statement or commit on this engine."""

    def __init__(self, billing: Billing, statements: int) -> None:
        self._engine = billing.engine.sync_engine  # the engine behind billing.store
        self._remaining = statements
        self._task: asyncio.Task[Any] | None = None
        self.crashed = False

    def _tick(self, *_: Any) -> None:
        self._remaining -= 1
        if self._remaining == 0 and self._task is not None:
            self.crashed = True
            self._task.cancel()  # lands at the task's next await: the next statement or the commit

    async def run(self, call: Awaitable[Any]) -> None:
        for name in ("after_cursor_execute", "commit"):
            event.listen(self._engine, name, self._tick)
        try:
            self._task = asyncio.ensure_future(call)
            try:
                await self._task
            except (asyncio.CancelledError, ServiceError):
                pass
        finally:
            for name in ("after_cursor_execute", "commit"):
                event.remove(self._engine, name, self._tick)


# --- the machine ----------------------------------------------------------------------------------


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self, thread: LoopThread, billing: Billing, *, grpc: bool) -> None:
        super().__init__()
        self.thread, self.billing, self.grpc = thread, billing, grpc
        tag = uuid.uuid4().hex[:10]
        self.users = [f"u1_{tag}", f"u2_{tag}"]
        self.org = f"org_{tag}"
        self.budget_key, self.free_key = f"kb_{tag}", f"kf_{tag}"
        self.model = Model([*self.users, self.org], self.budget_key)
        self.calls: list[Call] = []
        self.jobs: list[str] = []
        self.crashes = 0

    # plumbing

    @staticmethod
    async def _rpc(method: Any, request: Any) -> Any:
        return await method(request)  # the call object is made on the loop's thread

    def invoke(self, call: Call) -> Awaitable[Any]:
        return via_grpc(self.billing, call) if self.grpc else via_store(self.billing, call)

    def check(self, call: Call) -> None:
        """Make the call and compare its answer with the model's, which then moves on."""
        got = self.thread.run(answered(self.invoke(call)))
        expected = self.model.apply(call)
        assert got == expected, f"{call}: got {got}, model says {expected}"

    def new_call(self, op: str, data: st.DataObject) -> Call:
        if op == "credit":
            account = data.draw(st.sampled_from([*self.users, self.org]))
            return Call(
                "credit", account=account, amount=data.draw(st.integers(1, 300)), key=uuid.uuid4().hex
            )
        if op == "reserve":
            job = f"job_{uuid.uuid4().hex}"
            self.jobs.append(job)
            return Call(
                "reserve",
                account=data.draw(st.sampled_from([*self.users, self.org])),
                job=job,
                amount=data.draw(st.integers(1, 12)),
                key=data.draw(st.sampled_from(["", self.budget_key, self.budget_key, self.free_key])),
            )
        open_jobs = [job for job, hold in self.model.holds.items() if hold.state == "held"]
        settle_an_open_hold = data.draw(st.booleans())
        if open_jobs and settle_an_open_hold:  # mostly settle open holds, sometimes any job
            job = data.draw(st.sampled_from(open_jobs))
        else:
            job = data.draw(st.sampled_from(self.jobs)) if self.jobs else f"job_{uuid.uuid4().hex}"
        if op == "capture":
            return Call("capture", job=job, amount=data.draw(st.integers(0, 14)))
        return Call("release", job=job, reason=data.draw(st.sampled_from(["failed", "cancelled"])))

    # rules

    @initialize()
    def start(self) -> None:
        self.billing.clock.now = START
        budget = billing_pb2.Budget(
            api_key_id=self.budget_key, daily_limit=DAILY_LIMIT, monthly_limit=MONTHLY_LIMIT
        )
        self.thread.run(self._rpc(self.billing.stub.SetBudget, pb.SetBudgetRequest(budget=budget)))
        for account in [*self.users, self.org]:
            self.check(Call("credit", account=account, amount=250, key=uuid.uuid4().hex))

    def _new(self, op: str, data: st.DataObject) -> None:
        call = self.new_call(op, data)
        self.calls.append(call)
        self.check(call)

    @rule(data=st.data())
    def credit(self, data: st.DataObject) -> None:
        self._new("credit", data)

    @rule(data=st.data())
    def reserve(self, data: st.DataObject) -> None:
        self._new("reserve", data)

    @rule(data=st.data())
    def reserve_again(self, data: st.DataObject) -> None:  # reserves twice as often as the rest
        self._new("reserve", data)

    @rule(data=st.data())
    def capture(self, data: st.DataObject) -> None:
        self._new("capture", data)

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        self._new("release", data)

    @rule(data=st.data())
    def retry_an_earlier_call(self, data: st.DataObject) -> None:
        if self.calls:
            self.check(data.draw(st.sampled_from(self.calls)))

    @rule(
        op=st.sampled_from(["credit", "reserve", "capture", "release"]), at=st.integers(1, 9), data=st.data()
    )
    def crash_and_replay(self, op: str, at: int, data: st.DataObject) -> None:
        """The call dies part-way (store) or its answer is lost (gRPC); the client retries it."""
        call = self.new_call(op, data)
        self.calls.append(call)
        if self.grpc:
            self.thread.run(answered(self.invoke(call)))  # the answer never reaches the client
        else:
            crash = CrashAfter(self.billing, at)
            self.thread.run(crash.run(self.invoke(call)))
            self.crashes += crash.crashed
        self.check(call)

    @rule(user=st.integers(0, 1), joins=st.booleans())
    def move_member(self, user: int, joins: bool) -> None:
        account = self.users[user]
        request = pb.SetOrganisationRequest(account_id=account, organisation_id=self.org if joins else "")
        result = self.thread.run(self._rpc(self.billing.stub.SetOrganisation, request)).account
        assert (result.id, result.organisation_id) == (account, self.org if joins else "")
        self.model.organisation[account] = self.org if joins else None

    @rule()
    def next_utc_day(self) -> None:
        if self.model.day < 27:  # stay within the month the clock started in
            self.model.day += 1
            self.billing.clock.now = START + timedelta(days=self.model.day)

    # invariants

    @invariant()
    def ledger_is_sound(self) -> None:
        self.thread.run(self._check_invariants())

    async def _check_invariants(self) -> None:
        assert await self.billing.store.audit() == []
        for account in self.model.available:
            balance = await self.billing.store.balance(account)
            assert balance.available >= 0
            assert (balance.available, balance.held) == (
                self.model.available[account],
                self.model.held[account],
            ), account
        if not self.jobs:
            return
        async with self.billing.engine.connect() as conn:
            settlements = (
                await conn.execute(
                    select(
                        transactions.c.job_id,
                        func.count().filter(transactions.c.kind == "reserve"),
                        func.count().filter(transactions.c.kind == "capture"),
                        func.count().filter(transactions.c.kind == "release"),
                    )
                    .where(transactions.c.job_id.in_(self.jobs))
                    .group_by(transactions.c.job_id)
                )
            ).all()
            query = select(holds.c.job_id, holds.c.state).where(holds.c.job_id.in_(self.jobs))
            states = {job: state for job, state in (await conn.execute(query)).all()}
        for job, reserves, captures, releases in settlements:
            assert reserves == 1 and captures + releases <= 1, f"{job}: {reserves}/{captures}/{releases}"
        assert states == {job: hold.state for job, hold in self.model.holds.items()}

    def teardown(self) -> None:
        open_jobs = [job for job, hold in self.model.holds.items() if hold.state == "held"]
        for n, job in enumerate(open_jobs):
            self.check(Call("capture", job=job, amount=n % 9) if n % 2 else Call("release", job=job))
        self.thread.run(self._check_invariants())
        assert {hold.state for hold in self.model.holds.values()} <= {"captured", "released"}


def run_machine(thread: LoopThread, billing: Billing, *, grpc: bool, examples: int, steps: int) -> None:
    run_state_machine_as_test(
        lambda: LedgerMachine(thread, billing, grpc=grpc),  # type: ignore[arg-type]  # any factory works
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


def test_random_operations_on_the_store_keep_the_ledger_sound(service: tuple[LoopThread, Billing]) -> None:
    thread, billing = service
    run_machine(thread, billing, grpc=False, examples=25, steps=40)


def test_random_operations_over_grpc_keep_the_ledger_sound(service: tuple[LoopThread, Billing]) -> None:
    thread, billing = service
    run_machine(thread, billing, grpc=True, examples=12, steps=25)


def test_a_crash_at_every_statement_of_each_call_is_recovered_by_a_retry(
    service: tuple[LoopThread, Billing],
) -> None:
    """The machine's crash, made systematic: each kind of call dies after its 1st, 2nd, ... statement
    (and at COMMIT), is retried, and must then have happened exactly once."""
    thread, billing = service
    machine = LedgerMachine(thread, billing, grpc=False)
    machine.start()
    payer = machine.users[0]
    for op in ("credit", "reserve", "capture", "release"):
        outcomes = set()
        for at in range(1, 16):
            machine.check(Call("credit", account=payer, amount=100, key=uuid.uuid4().hex))
            job = f"job_{uuid.uuid4().hex}"
            machine.jobs.append(job)
            if op == "credit":
                call = Call("credit", account=payer, amount=7, key=uuid.uuid4().hex)
            elif op == "reserve":
                machine.next_utc_day()  # keeps the key's daily budget out of the way
                call = Call("reserve", account=payer, job=job, amount=5, key=machine.budget_key)
            else:
                machine.check(Call("reserve", account=payer, job=job, amount=5))
                call = Call(op, job=job, amount=3)
            crash = CrashAfter(billing, at)
            thread.run(crash.run(machine.invoke(call)))
            outcomes.add(crash.crashed)
            machine.check(call)
            machine.ledger_is_sound()
        # Crashed at some statements, and finished before the later ones: every point was covered.
        assert outcomes == {True, False}, op
    machine.teardown()
