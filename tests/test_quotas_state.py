"""Each tenant's quotas (mcp_v8/quotas.py) without V8: the vocabulary, the per-minute counter on a
pinned clock, and the quotas a submit passes through real execution managers (never started: an
accepted execution stays queued) on a real SQLite data directory, two of them sharing one as two
processes do, their submits racing; the live sessions' quota against the fakes of the live
sessions' state tests; the tool servers and tool calls a tenant's scripts may use against a fake
caller."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from mcp_v8.backends import Stores, open_stores
from mcp_v8.config import Settings
from mcp_v8.executions import CancelOutcome, ExecutionManager, ExecutionSpec, Limits
from mcp_v8.executions.live import LiveSessions
from mcp_v8.executions.tenant_tools import TenantTools
from mcp_v8.executions.tool_caller import ToolInfo, ToolUnavailable
from mcp_v8.metrics import Metrics
from mcp_v8.quotas import (
    UNLIMITED,
    MinuteCounter,
    QuotaReached,
    TenantQuotas,
    from_limits,
    seconds_left_in_minute,
)
from mcp_v8.storage import FileHeapStore
from mcp_v8.storage import execution_store as store_module

from .interleavings import HANG
from .test_live_state import FakeHost, FakeSlot

LIMITS = Limits(heap_limit_mb=8, timeout_secs=60, max_result_bytes=1 << 20, max_output_bytes=1 << 20)
ACME, OTHER = "acme", "other-co"


def spec(tenant: str = ACME, **fields: Any) -> ExecutionSpec:
    return ExecutionSpec(**{"code": "1", "limits": LIMITS, "tenant": tenant, **fields})


def no_worker(*args: Any) -> Any:
    raise AssertionError("these managers are never started: no worker runs")


# -- the vocabulary ---------------------------------------------------------------------------


def test_quotas_are_whole_numbers_or_absent() -> None:
    with pytest.raises(ValueError, match="concurrent_executions"):
        TenantQuotas(concurrent_executions=-1)
    with pytest.raises(ValueError, match="heap_bytes"):
        TenantQuotas(heap_bytes=True)
    assert from_limits([("concurrent_executions", 0), ("queued_executions", 3)]) == TenantQuotas(
        queued_executions=3
    )
    mine = TenantQuotas(live_sessions=1, tool_servers=frozenset({"calc"}))
    assert mine.or_else(TenantQuotas(live_sessions=5, heap_bytes=10)) == TenantQuotas(
        live_sessions=1, heap_bytes=10, tool_servers=frozenset({"calc"})
    )
    assert mine.may_call("calc") and not mine.may_call("mail") and UNLIMITED.may_call("mail")
    assert not UNLIMITED.limits_admission and not mine.limits_admission
    assert TenantQuotas(executions_per_minute=1).limits_admission


def test_the_minute_counter_refuses_past_its_limit_until_the_next_minute() -> None:
    now = [datetime(2026, 1, 1, 12, 0, 45, tzinfo=timezone.utc)]
    counter = MinuteCounter("tool_calls_per_minute", clock=lambda: now[0])
    counter.take(ACME, 2, "calls")
    counter.take(ACME, 2, "calls")
    with pytest.raises(QuotaReached) as refused:
        counter.take(ACME, 2, "calls")
    assert refused.value.quota == "tool_calls_per_minute" and refused.value.limit == 2
    assert refused.value.retry_after == 15  # the rest of the minute
    assert str(refused.value) == "tenant 'acme' quota tool_calls_per_minute (2) reached: 2 calls this minute"
    counter.take(OTHER, 2, "calls")  # each tenant its own
    assert counter.used(ACME) == 2  # the refused one is not counted
    counter.take(ACME, None, "calls")  # unlimited: counted, never refused
    now[0] += timedelta(seconds=15)
    assert counter.used(ACME) == 0
    counter.take(ACME, 2, "calls")
    assert seconds_left_in_minute(datetime(2026, 1, 1, 12, 0, 59, 900000, tzinfo=timezone.utc)) == 1


# -- the quotas of a submit, on one machine ------------------------------------------------


class Machine:
    """A process on a data directory: its stores and its manager (never started)."""

    def __init__(
        self, data_dir: Path, quotas: dict[str, TenantQuotas], metrics: Metrics | None = None
    ) -> None:
        self.quotas = quotas
        self.stores: Stores = open_stores(Settings(data_dir=data_dir), FileHeapStore(data_dir, durable=False))
        self.manager = ExecutionManager(
            executions=self.stores.executions,
            output=self.stores.output,
            catalogue=self.stores.catalogue,
            data_dir=data_dir,
            workers=1,
            queue_limit=1000,
            spawn_worker=no_worker,
            owner=f"process-{id(self)}",
            quotas=lambda tenant: self.quotas.get(tenant, UNLIMITED),
            metrics=metrics,
            live_workers=0,
        )

    def refused(self, s: ExecutionSpec) -> QuotaReached:
        with pytest.raises(QuotaReached) as refused:
            self.manager.submit(s)
        return refused.value

    def running(self, tenant: str) -> int:
        return self.stores.executions.tenant_usage(tenant).running

    def close(self) -> None:  # as the service closes them
        self.manager.close()
        self.stores.output.close()
        self.stores.executions.close()
        self.stores.close()


@pytest.fixture
def machines(tmp_path: Path) -> Iterator[Callable[..., Machine]]:
    made: list[Machine] = []

    def make(quotas: dict[str, TenantQuotas], metrics: Metrics | None = None) -> Machine:
        machine = Machine(tmp_path / "data", quotas, metrics)
        made.append(machine)
        return machine

    yield make
    for machine in made:
        machine.close()


def test_concurrent_executions_are_refused_at_the_quota_and_a_cancel_frees_a_place(
    machines: Callable[..., Machine],
) -> None:
    metrics = Metrics()
    metrics.named_tenants = frozenset({ACME})
    m = machines({ACME: TenantQuotas(concurrent_executions=2)}, metrics)
    first, _ = m.manager.submit(spec()), m.manager.submit(spec())
    refused = m.refused(spec())
    assert (refused.quota, refused.limit, refused.retry_after) == ("concurrent_executions", 2, 1)
    assert str(refused) == "tenant 'acme' quota concurrent_executions (2) reached: 2 executions running"
    assert m.running(ACME) == 2  # the refused one recorded nothing
    assert m.manager.queued_of(ACME) == 2  # the refused one holds no place of the queue either
    m.manager.submit(spec(OTHER))  # another tenant's quota is its own
    m.manager.cancel(first)
    m.manager.submit(spec())
    assert m.running(ACME) == 2
    assert metrics.quota_refusals.labels(ACME, "concurrent_executions")._value.get() == 1


def test_queued_executions_count_this_processs_queue(machines: Callable[..., Machine]) -> None:
    m = machines({ACME: TenantQuotas(queued_executions=1)})
    queued = m.manager.submit(spec())
    refused = m.refused(spec())
    assert (refused.quota, refused.limit) == ("queued_executions", 1)
    assert m.manager.queued_of(ACME) == 1 and m.manager.queued_of(OTHER) == 0
    m.manager.submit(spec(OTHER))
    m.manager.cancel(queued)
    assert m.manager.queued_of(ACME) == 0
    m.manager.submit(spec())


class GatedStore:
    """The real execution store, whose ``create`` waits for ``release`` once ``entered`` is set."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.entered, self.release = threading.Event(), threading.Event()

    def create(self, execution_id: str, **fields: Any) -> None:
        self.entered.set()
        assert self.release.wait(HANG)
        self._inner.create(execution_id, **fields)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_a_submit_whose_record_is_being_written_holds_its_place_of_the_queue(
    machines: Callable[..., Machine],
) -> None:
    m = machines({ACME: TenantQuotas(queued_executions=1)})
    gated = GatedStore(m.stores.executions)
    m.manager._executions = gated  # type: ignore[assignment]
    first: list[str] = []
    writer = threading.Thread(target=lambda: first.append(m.manager.submit(spec())))
    writer.start()
    assert gated.entered.wait(HANG)  # its place taken, its record not written yet
    assert m.manager.queued_of(ACME) == 1
    gated.release.set()  # the second's create would pass through at once
    assert m.refused(spec()).quota == "queued_executions"
    writer.join(HANG)
    assert len(first) == 1 and m.manager.queued_of(ACME) == 1
    m.manager.cancel(first[0])
    assert m.manager.queued_of(ACME) == 0


def test_the_minute_counter_takes_exactly_its_limit_from_racing_threads() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    counter = MinuteCounter("tool_calls_per_minute", clock=lambda: now)
    start = threading.Barrier(12)
    taken: list[int] = []

    def take(i: int) -> None:
        start.wait(HANG)
        try:
            counter.take(ACME, 5, "calls")
        except QuotaReached:
            return
        taken.append(i)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG)
    assert len(taken) == 5 and counter.used(ACME) == 5


def test_executions_per_minute_hold_for_the_clock_minute(
    machines: Callable[..., Machine], monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [datetime(2026, 1, 1, 12, 0, 20, tzinfo=timezone.utc)]
    monkeypatch.setattr(store_module, "_now", lambda: now[0])
    m = machines({ACME: TenantQuotas(executions_per_minute=2)})
    for _ in range(2):
        m.manager.cancel(m.manager.submit(spec()))  # ended ones count: they started this minute
    refused = m.refused(spec())
    assert (refused.quota, refused.limit, refused.retry_after) == ("executions_per_minute", 2, 40)
    assert m.stores.executions.tenant_usage(ACME).started_this_minute == 2
    now[0] = datetime(2026, 1, 1, 12, 1, 0, tzinfo=timezone.utc)
    m.manager.submit(spec())
    assert m.stores.executions.tenant_usage(ACME).started_this_minute == 1


def test_heap_bytes_refuse_a_submit_while_the_tenant_is_at_its_quota(
    machines: Callable[..., Machine],
) -> None:
    m = machines({ACME: TenantQuotas(heap_bytes=1000)})
    made = m.manager.submit(spec())
    key = "ab" * 32
    m.stores.heap_index.add(key, size=1000, session=None, tags=None, tenant=ACME)  # acme owns it
    m.stores.executions.finish(made, "completed", result="1", heap_out=key)
    refused = m.refused(spec())
    assert (refused.quota, refused.limit) == ("heap_bytes", 1000)
    assert "1000 bytes of heaps stored" in str(refused)
    m.manager.submit(spec(OTHER))  # the heap is acme's, not theirs
    assert m.stores.heap_index.remove(key, lambda found: None, tenant=ACME)
    m.manager.submit(spec())


def submit_together(machines: list[Machine], threads: int) -> list[tuple[Machine, str]]:
    """``threads`` submits of acme released at once, alternating between ``machines``: those
    accepted (a quota's refusals are expected; any other error fails the test)."""
    start = threading.Barrier(threads)
    accepted: list[tuple[Machine, str]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def submit(i: int) -> None:
        start.wait(HANG)
        machine = machines[i % len(machines)]
        try:
            execution_id = machine.manager.submit(spec())
        except QuotaReached:
            return
        except BaseException as e:
            with lock:
                errors.append(e)
        else:
            with lock:
                accepted.append((machine, execution_id))

    workers = [threading.Thread(target=submit, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(HANG)
    assert not errors, errors
    return accepted


def test_two_processes_on_one_data_directory_never_pass_the_concurrency_quota(
    machines: Callable[..., Machine],
) -> None:
    limit = 3
    quotas = {ACME: TenantQuotas(concurrent_executions=limit)}
    a, b = machines(quotas), machines(quotas)
    for _ in range(6):
        accepted = submit_together([a, b], 16)
        assert len(accepted) == limit and a.running(ACME) == limit
        for machine, execution_id in accepted:  # each cancelled by the process that queued it
            assert machine.manager.cancel(execution_id) is CancelOutcome.ACCEPTED
        assert a.running(ACME) == 0


# -- live sessions -----------------------------------------------------------------------------


def test_a_live_session_past_the_tenants_quota_is_refused_and_an_end_frees_it() -> None:
    host, slots = FakeHost(), [FakeSlot(0), FakeSlot(1)]  # a worker each: tenants never share one
    refusals: list[QuotaReached] = []
    quotas = {ACME: TenantQuotas(live_sessions=1)}
    live = LiveSessions(
        host,  # type: ignore[arg-type]
        slots,  # type: ignore[arg-type]
        sessions_per_worker=4,
        snapshot_secs=3600,
        idle_secs=3600,
        quotas=lambda tenant: quotas.get(tenant, UNLIMITED),
        on_refused=refusals.append,
    )
    live.start()
    try:
        host.wait(live.submit(spec(session="one")))
        host.wait(live.submit(spec(session="one")))  # a step of an open session: never refused
        with pytest.raises(QuotaReached) as refused:
            live.submit(spec(session="two"))
        assert (refused.value.quota, refused.value.limit) == ("live_sessions", 1)
        assert [r.quota for r in refusals] == ["live_sessions"]
        host.wait(live.submit(spec(OTHER, session="two")))  # another tenant's own quota
        assert live.open_of(ACME) == 1 and live.open_of(OTHER) == 1
        live.end("one", snapshot=False, tenant=ACME)
        assert live.open_of(ACME) == 0
        host.wait(live.submit(spec(session="two-acme")))
    finally:
        live.close(join_timeout=HANG)


# -- tool servers and tool calls --------------------------------------------------------------


class FakeCaller:
    def __init__(self) -> None:
        self.made: list[tuple[str, str]] = []

    def tools(self) -> dict[str, dict[str, ToolInfo]]:
        return {"calc": {"add": ToolInfo()}, "mail": {"send": ToolInfo()}}

    def call(
        self, server: str, tool: str, arguments_json: str, deadline: float, abandoned: threading.Event
    ) -> dict[str, Any]:
        self.made.append((server, tool))
        return {"content": [], "isError": False}


def test_a_tenants_scripts_see_only_its_tool_servers_and_their_calls_per_minute() -> None:
    now = datetime(2026, 1, 1, 12, 0, 50, tzinfo=timezone.utc)
    quotas = {ACME: TenantQuotas(tool_servers=frozenset({"calc"}), tool_calls_per_minute=2)}
    refusals: list[QuotaReached] = []
    tools = TenantTools(
        lambda tenant: quotas.get(tenant, UNLIMITED), on_refused=refusals.append, clock=lambda: now
    )
    inner = FakeCaller()
    assert tools.caller(None, ACME) is None
    acme, other = tools.caller(inner, ACME), tools.caller(inner, OTHER)
    assert acme is not None and other is not None
    assert set(acme.tools()) == {"calc"} and set(other.tools()) == {"calc", "mail"}
    with pytest.raises(ToolUnavailable, match="no tool server 'mail'"):
        acme.call("mail", "send", "{}", 0.0, threading.Event())
    acme.call("calc", "add", "{}", 0.0, threading.Event())
    acme.call("calc", "add", "{}", 0.0, threading.Event())
    with pytest.raises(ToolUnavailable, match=r"tenant 'acme' quota tool_calls_per_minute \(2\) reached"):
        acme.call("calc", "add", "{}", 0.0, threading.Event())
    for _ in range(3):
        other.call("mail", "send", "{}", 0.0, threading.Event())
    assert inner.made == [("calc", "add")] * 2 + [("mail", "send")] * 3  # the refused reached no server
    assert [(r.tenant, r.retry_after) for r in refusals] == [(ACME, 10)]
    assert tools.calls.used(ACME) == 2


def test_the_running_count_walks_the_tenants_running_executions_only(tmp_path: Path) -> None:
    """A submit under a concurrency quota counts under the database's write lock: through the
    partial index of running executions, never the tenant's whole history."""
    from mcp_v8.storage.schema import open_database
    from mcp_v8.storage.tenant_usage import RUNNING

    db = open_database(tmp_path)
    try:
        plan = " ".join(str(row[-1]) for row in db.run(f"EXPLAIN QUERY PLAN {RUNNING}", {"tenant": ACME}))
    finally:
        db.close()
    assert "executions_running_by_tenant" in plan, plan
