"""The contracts of :class:`ExecutionStore` and :class:`OutputLog`, run against every backend.

Each backend is a :class:`Backend` in ``BACKENDS``: how to open its execution store and its output log
on a location (a fresh directory per test), and how to pin the clock its execution store stamps
records with (so that tests can start executions in the same millisecond without racing a real
clock). Opening twice on one location must give two handles on the same data, which is how these
tests read "from another process". Only the Protocols' methods are
used here; what one implementation does beyond them (SQLite's chunk sizes, buffering, row counters)
is tested in test_storage.py. A PostgreSQL backend joins by adding an entry whose openers connect to
a test database (one schema per location).
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mcp_v8.storage.execution_store
from mcp_v8.js_error import JsError
from mcp_v8.quotas import QuotaReached, TenantQuotas
from mcp_v8.storage import (
    DuplicateExecution,
    ExecutionNotFound,
    ExecutionRecord,
    ExecutionStore,
    InvalidCursor,
    OutputLog,
    OutputPage,
    OutputTotals,
    Page,
    PendingToolCall,
    SessionSummary,
    SQLiteExecutionStore,
    SQLiteOutputLog,
    SQLiteToolCallLog,
    ToolCallLog,
    ToolCallRow,
    truncation_marker,
)
from mcp_v8.storage.tenant_usage import TenantUsage

from .pg_server import running_server, schema_for

CAP = 4096


@dataclass(frozen=True)
class Backend:
    name: str
    open_executions: Callable[[Path], ExecutionStore]
    open_output: Callable[[Path, int], OutputLog]  # location, max_output_bytes
    pin_clock: Callable[[pytest.MonkeyPatch, Callable[[], datetime]], None]
    open_tool_calls: Callable[[Path], ToolCallLog]


def _sqlite_output(location: Path, max_output_bytes: int) -> OutputLog:
    # No background flusher: what another handle sees must follow from the contract alone.
    return SQLiteOutputLog(location, max_output_bytes=max_output_bytes, flush_interval=None)


def _pin_clock(monkeypatch: pytest.MonkeyPatch, now: Callable[[], datetime]) -> None:
    monkeypatch.setattr(mcp_v8.storage.execution_store, "_now", now)  # one store, both backends


def _pg_schema(location: Path) -> tuple[str, str]:
    """The session's server URL and the schema of ``location`` (created on first use)."""
    server = running_server()
    return server.url, server.create_schema(schema_for(location))


def _pg_executions(location: Path) -> ExecutionStore:
    from mcp_v8.storage.postgres import PostgresExecutionStore

    url, schema = _pg_schema(location)
    return PostgresExecutionStore(url, schema=schema)


def _pg_output(location: Path, max_output_bytes: int) -> OutputLog:
    from mcp_v8.storage.postgres import PostgresOutputLog

    url, schema = _pg_schema(location)
    return PostgresOutputLog(url, schema=schema, max_output_bytes=max_output_bytes, flush_interval=None)


def _pg_tool_calls(location: Path) -> ToolCallLog:
    from mcp_v8.storage.postgres import PostgresToolCallLog

    url, schema = _pg_schema(location)
    return PostgresToolCallLog(url, schema=schema)


BACKENDS = [
    Backend("sqlite", SQLiteExecutionStore, _sqlite_output, _pin_clock, SQLiteToolCallLog),
    Backend("postgres", _pg_executions, _pg_output, _pin_clock, _pg_tool_calls),  # one schema per location
]


@pytest.fixture(
    params=[
        pytest.param(b, id=b.name, marks=[pytest.mark.database] if b.name == "postgres" else [])
        for b in BACKENDS
    ]
)
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param.name == "postgres":
        request.getfixturevalue("postgres_server")  # started once per session; skips without binaries
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def location(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def executions(backend: Backend, location: Path) -> Iterator[ExecutionStore]:
    store = backend.open_executions(location)
    yield store
    store.close()


@pytest.fixture
def output(backend: Backend, location: Path) -> Iterator[OutputLog]:
    log = backend.open_output(location, CAP)
    yield log
    log.close()


@pytest.fixture
def tool_calls(backend: Backend, location: Path) -> Iterator[ToolCallLog]:
    store = backend.open_tool_calls(location)
    yield store
    store.close()


@pytest.fixture
def roomy_output(backend: Backend, location: Path) -> Iterator[OutputLog]:
    """An output log whose cap the concurrency tests do not reach."""
    log = backend.open_output(location, 1 << 20)
    yield log
    log.close()


def run_together(n: int, target: Callable[[int], None]) -> None:
    """Runs ``target(0..n-1)`` on ``n`` threads released at once; re-raises the first error."""
    start = threading.Barrier(n)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        start.wait()
        try:
            target(i)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


# ================================================================================================
# ExecutionStore
# ================================================================================================


def test_execution_store_protocol(executions: ExecutionStore) -> None:
    assert isinstance(executions, ExecutionStore)


def test_create_and_get(executions: ExecutionStore) -> None:
    executions.create("a", session="s", tags={"k": "v", "ü": "ß"}, heap_in="f" * 64, code_bytes=7)
    rec = executions.get("a")
    assert rec is not None and rec.status == "running" and not rec.is_terminal
    assert (rec.session, rec.tags, rec.heap_in, rec.code_bytes) == ("s", {"k": "v", "ü": "ß"}, "f" * 64, 7)
    assert (rec.completed_at, rec.result, rec.error, rec.heap, rec.duration_ms) == (None,) * 5
    executions.create("b")
    b = executions.get("b")
    assert b is not None and (b.session, b.tags, b.heap_in, b.code_bytes) == (None, None, None, 0)
    assert executions.get("nobody") is None
    assert (rec.trace_id, b.trace_id) == (None, None)  # not traced


def test_the_trace_id_is_kept_through_the_end(executions: ExecutionStore) -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    executions.create("t", trace_id=trace)
    assert executions.get("t").trace_id == trace  # type: ignore[union-attr]
    ended = executions.finish("t", "completed", result="1")
    assert ended is not None and ended.trace_id == trace
    assert [r.trace_id for r in executions.list(limit=10)] == [trace]


def test_the_tenant_is_kept_through_the_end(executions: ExecutionStore) -> None:
    executions.create("t", tenant="acme")
    executions.create("u")
    assert executions.get("t").tenant == "acme"  # type: ignore[union-attr]
    ended = executions.finish("t", "completed", result="1")
    assert ended is not None and ended.tenant == "acme"
    assert {r.execution_id: r.tenant for r in executions.list(limit=10)} == {"t": "acme", "u": "default"}


def test_a_create_passes_its_tenants_quotas(
    executions: ExecutionStore, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [datetime(2026, 1, 1, 12, 0, 10, tzinfo=timezone.utc)]
    backend.pin_clock(monkeypatch, lambda: now[0])
    quotas = TenantQuotas(concurrent_executions=2, executions_per_minute=3)
    executions.create("a", tenant="acme", quotas=quotas)
    executions.create("b", tenant="acme", quotas=quotas)
    with pytest.raises(QuotaReached) as refused:
        executions.create("c", tenant="acme", quotas=quotas)
    assert (refused.value.quota, refused.value.retry_after) == ("concurrent_executions", 1)
    assert executions.get("c") is None  # nothing recorded
    executions.create("x", tenant="other", quotas=quotas)  # its own count
    executions.finish("a", "completed", result="1")
    executions.create("c", tenant="acme", quotas=quotas)
    executions.finish("c", "failed", error="x")
    with pytest.raises(QuotaReached) as refused:
        executions.create("d", tenant="acme", quotas=quotas)
    assert (refused.value.quota, refused.value.retry_after) == ("executions_per_minute", 50)
    assert executions.tenant_usage("acme") == TenantUsage(running=1, started_this_minute=3, heap_bytes=0)
    now[0] = datetime(2026, 1, 1, 12, 1, tzinfo=timezone.utc)
    executions.create("d", tenant="acme", quotas=quotas)
    assert executions.tenant_usage("acme").started_this_minute == 1


def test_creates_racing_on_two_handles_never_pass_a_concurrency_quota(
    backend: Backend, location: Path
) -> None:
    handles = [backend.open_executions(location) for _ in range(2)]
    quotas = TenantQuotas(concurrent_executions=4)
    try:

        def create(t: int) -> None:
            with contextlib.suppress(QuotaReached):
                handles[t % 2].create(f"e{t}", tenant="acme", quotas=quotas)

        run_together(16, create)
        assert handles[0].tenant_usage("acme").running == 4
        assert len(handles[1].list(limit=100)) == 4
    finally:
        for handle in handles:
            handle.close()


def test_a_duplicate_create_changes_nothing(executions: ExecutionStore) -> None:
    executions.create("a", session="first")
    before = executions.get("a")
    with pytest.raises(DuplicateExecution):
        executions.create("a", session="second")
    assert executions.get("a") == before


def test_the_first_terminal_transition_wins(executions: ExecutionStore) -> None:
    executions.create("a")
    won = executions.finish("a", "cancelled", error="execution cancelled", duration_ms=2.0)
    assert executions.finish("a", "completed", result="1", heap_out="e" * 64, duration_ms=3.0) is None
    rec = executions.get("a")
    assert won == rec  # the terminal record, as a later read sees it
    assert rec is not None and rec.is_terminal and rec.completed_at is not None
    assert (rec.status, rec.result, rec.error, rec.heap, rec.duration_ms) == (
        "cancelled",
        None,
        "execution cancelled",
        None,
        2.0,
    )
    assert executions.finish("unknown", "failed") is None
    executions.create("b")
    with pytest.raises(ValueError):
        executions.finish("b", "running")  # type: ignore[arg-type]
    rec_b = executions.get("b")
    assert rec_b is not None and rec_b.status == "running"


def test_a_scripts_structured_error_is_kept_and_read_back_everywhere(
    backend: Backend, location: Path, executions: ExecutionStore
) -> None:
    thrown = JsError(
        name="TypeError",
        message="Cannot read properties of null (reading 'x') \u00fc \U0001f600",
        stack="TypeError: Cannot read properties of null (reading 'x')\n    at <input>:2:6",
        line=2,
        column=6,
    )
    plain = JsError(name=None, message="Uncaught 5", stack="Uncaught 5")
    executions.create("thrown", session="s")
    executions.create("plain", session="s")
    executions.create("crashed", session="s")
    won = executions.finish("thrown", "failed", error=thrown.stack, js_error=thrown, duration_ms=1.0)
    assert won is not None and won.js_error == thrown  # the terminal record carries it
    executions.finish("plain", "failed", error=plain.stack, js_error=plain, duration_ms=1.0)
    executions.finish("crashed", "failed", error="worker crashed: killed by signal SIGKILL")
    # A later finish changes nothing, its error included.
    assert executions.finish("thrown", "failed", error="late", js_error=plain) is None
    other = backend.open_executions(location)  # what another process reads
    try:
        expected = {"thrown": thrown, "plain": plain, "crashed": None}
        for store in (executions, other):
            records = [store.get(i) for i in expected]
            assert {r.execution_id: r.js_error for r in records if r is not None} == expected
            assert {r.execution_id: r.js_error for r in store.list()} == expected
            assert {r.execution_id: r.js_error for r in store.list_page(10).items} == expected
            log = store.session_log("s")
            assert log is not None and {r.execution_id: r.js_error for r in log.items} == expected
    finally:
        other.close()
    executions.create("running")
    running = executions.get("running")
    assert running is not None and running.js_error is None


def test_the_first_terminal_transition_wins_across_threads_and_handles(
    backend: Backend, location: Path, executions: ExecutionStore
) -> None:
    other = backend.open_executions(location)  # a second handle, as another process would hold
    statuses = ["completed", "failed", "cancelled", "timed_out"]
    ids = [f"x{i}" for i in range(30)]
    for execution_id in ids:
        executions.create(execution_id)
    wins: list[tuple[str, int]] = []
    lock = threading.Lock()

    def racer(t: int) -> None:
        store = executions if t % 2 else other
        for i, execution_id in enumerate(ids):
            status = statuses[(t + i) % len(statuses)]
            if store.finish(execution_id, status, error=f"racer {t}"):  # type: ignore[arg-type]
                with lock:
                    wins.append((execution_id, t))

    try:
        run_together(8, racer)
        assert sorted(w[0] for w in wins) == sorted(ids)  # exactly one winner each
        for execution_id, t in wins:
            rec = other.get(execution_id)
            assert rec is not None
            assert (rec.status, rec.error) == (statuses[(t + ids.index(execution_id)) % 4], f"racer {t}")
    finally:
        other.close()


def _pause(store: ExecutionStore, execution_id: str, timeout: float = 3600.0) -> ExecutionRecord | None:
    return store.pause(
        execution_id,
        pending=[PendingToolCall(3, "gh", "delete ü", '{"repo": "x"}'), PendingToolCall(5, "s", "t", "{}")],
        heap="d" * 64,
        tool_calls_made=4,
        resume_spec={"version": 1, "limits": {"timeout_secs": 5}},
        approval_timeout_secs=timeout,
        duration_ms=7.0,
    )


def test_a_running_execution_waits_for_a_decision_and_each_way_out_of_waiting_is_one_transition(
    backend: Backend, location: Path, executions: ExecutionStore
) -> None:
    executions.create("w", session="s")
    waiting = _pause(executions, "w")
    assert waiting is not None and waiting == executions.get("w")
    assert (waiting.status, waiting.is_terminal, waiting.stopped, waiting.completed_at) == (
        "waiting",
        False,
        True,
        None,
    )
    assert waiting.pending_tool_calls == (
        PendingToolCall(3, "gh", "delete ü", '{"repo": "x"}'),
        PendingToolCall(5, "s", "t", "{}"),
    )
    assert (waiting.waiting_heap, waiting.tool_calls_made) == ("d" * 64, 4)
    assert waiting.resume_spec == {"version": 1, "limits": {"timeout_secs": 5}}
    assert waiting.waiting_since is not None and waiting.approval_deadline is not None
    assert waiting.approval_deadline > waiting.waiting_since
    assert _pause(executions, "w") is None  # only a running execution pauses
    assert executions.finish("w", "completed", result="1") is None  # a worker's late word: nothing
    assert [r.execution_id for r in executions.list(status="waiting")] == ["w"]
    # Startup recovery and lost nodes leave it alone, and retention neither deletes it nor its heap.
    assert executions.fail_running_on_startup("restarted") == 0
    assert executions.fail_running_of({None}, "gone") == 0
    assert executions.prunable(max_age_seconds=0, max_count=0) == []
    assert executions.delete(["w"]) == 0
    assert "d" * 64 in executions.heaps_used_since(0)
    # Two deciders at once (two handles, as two nodes): one resumes it.
    other = backend.open_executions(location)
    try:
        won: list[ExecutionRecord] = []
        lock = threading.Lock()

        def decide(t: int) -> None:
            record = (executions if t % 2 else other).resume("w", owner=f"node {t}")
            if record is not None:
                with lock:
                    won.append(record)

        run_together(8, decide)
        assert len(won) == 1 and won[0].status == "running" and won[0].pending_tool_calls is not None
        assert executions.resume("w", owner="late") is None
        assert "d" * 64 in executions.heaps_used_since(0)  # its resume, running, restores it
        rec = other.get("w")
        assert rec is not None and rec.status == "running"
    finally:
        other.close()
    # Paused again, then cancelled: a cancel ends a waiting execution, a resume then finds nothing.
    assert _pause(executions, "w") is not None
    assert executions.finish("w", "cancelled", error="execution cancelled") is None  # not without ``waiting``
    cancelled = executions.finish("w", "cancelled", error="execution cancelled", waiting=True)
    assert cancelled is not None and cancelled.status == "cancelled" and cancelled.completed_at is not None
    assert executions.resume("w", owner="late") is None
    assert executions.prunable(max_age_seconds=None, max_count=0) == ["w"]


def test_a_wait_past_its_approval_deadline_fails_once(
    backend: Backend, location: Path, executions: ExecutionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = datetime(2030, 1, 1, tzinfo=timezone.utc)
    clock = [start]
    backend.pin_clock(monkeypatch, lambda: clock[0])
    for execution_id in ("soon", "later", "running"):
        executions.create(execution_id)
    _pause(executions, "soon", timeout=60)
    _pause(executions, "later", timeout=600)
    assert executions.expire_waiting("undecided") == []
    clock[0] = start + timedelta(seconds=61)
    expired = executions.expire_waiting("no decision within 60 s")
    assert [(r.execution_id, r.status, r.error) for r in expired] == [
        ("soon", "failed", "no decision within 60 s")
    ]
    assert executions.expire_waiting("again") == []  # once
    assert executions.resume("soon", owner="late") is None
    later, running = executions.get("later"), executions.get("running")
    assert later is not None and later.status == "waiting"
    assert running is not None and running.status == "running"


def test_concurrent_creates_of_one_id_record_it_once(executions: ExecutionStore) -> None:
    created: list[int] = []

    def create(t: int) -> None:
        try:
            executions.create("same", session=f"thread {t}")
        except DuplicateExecution:
            return
        created.append(t)

    run_together(8, create)
    rec = executions.get("same")
    assert len(created) == 1 and rec is not None and rec.session == f"thread {created[0]}"


def test_list_is_newest_first(executions: ExecutionStore) -> None:
    for i in range(6):
        executions.create(f"e{i}")
    executions.finish("e1", "completed")
    executions.finish("e4", "failed")
    assert [r.execution_id for r in executions.list()] == ["e5", "e4", "e3", "e2", "e1", "e0"]
    assert [r.execution_id for r in executions.list(limit=2)] == ["e5", "e4"]
    assert [r.execution_id for r in executions.list(status="running")] == ["e5", "e3", "e2", "e0"]
    assert [r.execution_id for r in executions.list(status="failed")] == ["e4"]
    assert executions.list(limit=0) == []


def test_fail_running_on_startup(executions: ExecutionStore) -> None:
    for name in ("done", "busy", "queued"):
        executions.create(name)
    executions.finish("done", "completed", result="1")
    done = executions.get("done")
    assert executions.fail_running_on_startup("the server stopped") == 2
    for name in ("busy", "queued"):
        rec = executions.get(name)
        assert rec is not None and (rec.status, rec.error) == ("failed", "the server stopped")
        assert rec.completed_at is not None
    assert executions.get("done") == done
    assert executions.fail_running_on_startup("again") == 0


def test_pruning_never_touches_running_executions(executions: ExecutionStore) -> None:
    for i in range(5):
        executions.create(f"p{i}")
    for i in (0, 1, 2):
        executions.finish(f"p{i}", "completed")
    assert sorted(executions.prunable(max_count=1)) == ["p0", "p1"]
    assert executions.prunable(max_age_seconds=3600) == []
    assert executions.prunable() == []
    assert executions.delete(["p0", "p1", "p3", "p4", "unknown"]) == 2  # p3 and p4 are running
    assert [r.execution_id for r in executions.list()] == ["p4", "p3", "p2"]
    assert sorted(executions.prunable(max_count=0)) == ["p2"]


# ================================================================================================
# ExecutionStore: pages, sessions, session logs
# ================================================================================================

T = TypeVar("T")
HEAPS = [f"{i:064x}" for i in range(1, 100)]


class Clock:
    """The time the store stamps records with, moved by the test: ``tick(0)`` keeps the same
    millisecond, as executions submitted together under load share one."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def tick(self, ms: int) -> None:
        self.now += timedelta(milliseconds=ms)


@pytest.fixture
def clock(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> Clock:
    pinned = Clock()
    backend.pin_clock(monkeypatch, pinned)
    return pinned


def test_heaps_used_since(executions: ExecutionStore, clock: Clock) -> None:
    """What retention of a shared heap store keeps: heaps started from or produced within the age,
    and those of running executions however old."""
    executions.create("old", heap_in=HEAPS[0])
    executions.finish("old", "completed", heap_out=HEAPS[1])
    executions.create("old-running", heap_in=HEAPS[2])  # queued or running for long: still in use
    clock.tick(60_000)
    executions.create("new", heap_in=HEAPS[3])
    executions.finish("new", "completed", heap_out=HEAPS[4])
    executions.create("plain")
    executions.finish("plain", "failed")
    assert executions.heaps_used_since(30) == {HEAPS[2], HEAPS[3], HEAPS[4]}
    assert executions.heaps_used_since(120) == set(HEAPS[:5])


def follow(fetch: Callable[[str | None], Page[T] | None], limit: int) -> list[list[T]]:
    """Every page of a listing, from the first, following ``next_cursor``: each page but the last
    is full, and the last is not empty (unless the whole listing is)."""
    pages: list[list[T]] = []
    cursor: str | None = None
    while True:
        page = fetch(cursor)
        assert page is not None
        assert len(page.items) <= limit
        pages.append(page.items)
        if page.next_cursor is None:
            break
        assert len(page.items) == limit, "a page before the last is full"
        assert len(pages) < 1000, "the cursor does not advance"
        cursor = page.next_cursor
    assert pages[-1] or len(pages) == 1, "no empty page after a full one"
    return pages


def ids(records: list[ExecutionRecord]) -> list[str]:
    return [r.execution_id for r in records]


TIES = ["tie-b", "tie-a", "tie-c"]
SESSIONS = ["alpha", "beta/γ 🎉", "", *TIES]


class History:
    """Executions recorded through the store with a pinned clock, and what the contract says
    about them, worked out here from the records alone (the oracle)."""

    def __init__(self, executions: ExecutionStore, clock: Clock, n: int = 45, seed: int = 7) -> None:
        self.executions = executions
        self.created: list[str] = []  # in the order of create()
        rng = random.Random(seed)
        for i in range(n):
            clock.tick(rng.choice([0, 0, 0, 1, 2]))  # many share a millisecond
            execution_id = f"e{i:02d}"
            session = rng.choice([*SESSIONS[:3], None])
            executions.create(
                execution_id, session=session, tags={"i": str(i)}, heap_in=rng.choice([None, *HEAPS[:3]])
            )
            self.created.append(execution_id)
            if rng.random() < 0.4:  # finish some of the earlier ones, out of order
                clock.tick(rng.choice([0, 1]))
                earlier = rng.choice(self.created)
                status = rng.choice(["completed", "completed", "failed", "cancelled"])
                heap = HEAPS[i] if status == "completed" and rng.random() < 0.7 else None
                executions.finish(earlier, status, heap_out=heap, duration_ms=1.0)  # type: ignore[arg-type]
        # Sessions whose last activity ties: ordered by name, whatever the order of creation.
        clock.tick(1)
        for name in TIES:
            executions.create(f"{name}-1", session=name)
            self.created.append(f"{name}-1")
        clock.tick(1)
        for name in TIES:
            executions.finish(f"{name}-1", "completed", heap_out=HEAPS[-1], duration_ms=1.0)

    def records(self) -> list[ExecutionRecord]:
        """The retained records, in the order of create()."""
        got = [self.executions.get(e) for e in self.created]
        return [r for r in got if r is not None]

    def newest_first(self, **match: Any) -> list[str]:
        order = {e: n for n, e in enumerate(self.created)}
        chosen = [r for r in self.records() if all(getattr(r, k) == v for k, v in match.items())]
        return [
            r.execution_id
            for r in sorted(chosen, key=lambda r: (r.started_at, order[r.execution_id]), reverse=True)
        ]

    def log(self, session: str) -> list[str]:
        return self.newest_first(session=session)[::-1]

    def sessions(self) -> list[SessionSummary]:
        summaries = []
        for name in {r.session for r in self.records() if r.session is not None}:
            log = [self.executions.get(e) for e in self.log(name)]
            assert all(log)
            times = [t for r in log if r for t in (r.started_at, r.completed_at) if t is not None]
            heaps = [r.heap for r in log if r and r.heap is not None]
            summaries.append(
                SessionSummary(
                    session=name,
                    executions=len(log),
                    first_activity_at=min(r.started_at for r in log if r),
                    last_activity_at=max(times),
                    latest_heap=heaps[-1] if heaps else None,
                )
            )
        # Latest activity first, then by name: sort by name, then (stable) by activity.
        summaries.sort(key=lambda s: s.session)
        summaries.sort(key=lambda s: s.last_activity_at, reverse=True)
        return summaries


@pytest.fixture
def history(executions: ExecutionStore, clock: Clock) -> History:
    return History(executions, clock)


LIMITS = [1, 2, 3, 7, 100]


@pytest.mark.parametrize("limit", LIMITS)
def test_pages_of_executions_hold_each_once_newest_first(history: History, limit: int) -> None:
    executions = history.executions
    expected = history.newest_first()
    assert len(set(r.started_at for r in history.records())) < len(expected) - 10  # many ties
    pages = follow(lambda cursor: executions.list_page(limit, cursor=cursor), limit)
    assert [ids(p) for p in pages] == [expected[i : i + limit] for i in range(0, len(expected), limit)]
    assert ids(executions.list(limit=1000)) == expected  # the same order as list()


@pytest.mark.parametrize("limit", [1, 3])
def test_pages_of_executions_by_status_and_session(history: History, limit: int) -> None:
    executions = history.executions
    cases: list[dict[str, Any]] = [
        {"status": "running"},
        {"status": "completed"},
        {"session": "alpha"},
        {"session": "beta/γ 🎉"},
        {"session": ""},
        {"session": "alpha", "status": "completed"},
        {"session": "nobody"},
    ]
    for match in cases:
        pages = follow(lambda cursor, m=match: executions.list_page(limit, cursor=cursor, **m), limit)  # type: ignore[misc]
        got = [r for p in pages for r in p]
        assert ids(got) == history.newest_first(**match), match
        assert all(getattr(r, k) == v for r in got for k, v in match.items())
    assert history.newest_first(session="alpha", status="completed"), "the filters select something"


@pytest.mark.parametrize("limit", LIMITS)
def test_a_session_log_is_oldest_first_page_by_page(history: History, limit: int) -> None:
    executions = history.executions
    for session in SESSIONS:
        pages = follow(lambda cursor, s=session: executions.session_log(s, limit, cursor=cursor), limit)  # type: ignore[misc]
        records = [r for p in pages for r in p]
        assert ids(records) == history.log(session), session
        assert records == [executions.get(e) for e in ids(records)]  # whole records
    assert len(history.log("alpha")) > 7


def test_a_session_without_retained_executions_has_no_log(history: History) -> None:
    executions = history.executions
    assert executions.session_log("nobody") is None
    assert executions.session_log("ALPHA") is None  # names match exactly
    page = executions.session_log("alpha", 1)
    assert page is not None and page.next_cursor is not None
    assert executions.session_log("nobody", cursor=page.next_cursor) is None
    executions.create("solo", session="solo")
    assert executions.session_log("solo") == Page([executions.get("solo")], None)
    executions.finish("solo", "completed", duration_ms=1.0)
    assert executions.delete(["solo"]) == 1
    assert executions.session_log("solo") is None
    assert "solo" not in [s.session for s in executions.sessions(1000).items]


@pytest.mark.parametrize("limit", LIMITS)
def test_sessions_latest_activity_first_page_by_page(history: History, limit: int) -> None:
    executions = history.executions
    expected = history.sessions()
    assert {s.session for s in expected} == set(SESSIONS)  # executions without a session make none
    assert [s.session for s in expected][:3] == sorted(TIES)  # the latest activity, tied
    pages = follow(lambda cursor: executions.sessions(limit, cursor=cursor), limit)
    assert [s for p in pages for s in p] == expected


def test_session_activity_and_latest_heap(executions: ExecutionStore, clock: Clock) -> None:
    def at(ms: int) -> str:
        return f"2026-01-01T00:00:00.{ms:03d}Z"

    def session_a() -> SessionSummary:
        found = [s for s in executions.sessions().items if s.session == "a"]
        assert len(found) == 1
        return found[0]

    executions.create("a1", session="a")
    clock.tick(10)
    executions.create("b1", session="b")
    clock.tick(10)
    executions.finish("a1", "completed", heap_out=HEAPS[0], duration_ms=1.0)  # a's activity is now later
    assert executions.sessions() == Page(
        [SessionSummary("a", 1, at(0), at(20), HEAPS[0]), SessionSummary("b", 1, at(10), at(10), None)], None
    )
    clock.tick(10)
    executions.create("a2", session="a", heap_in=HEAPS[0])  # running: it counts, its start is activity
    clock.tick(10)
    executions.create("a3", session="a")
    executions.finish("a3", "completed", heap_out=None, duration_ms=1.0)  # produced no heap
    assert session_a() == SessionSummary("a", 3, at(0), at(40), HEAPS[0])
    clock.tick(10)
    executions.create("a4", session="a")
    executions.finish("a4", "completed", heap_out=HEAPS[4], duration_ms=1.0)
    clock.tick(10)
    # a2 started before a4 and produces its heap after a4 did: the log's order decides, and a4
    # is the log's last entry with a heap.
    executions.finish("a2", "completed", heap_out=HEAPS[2], duration_ms=1.0)
    assert session_a() == SessionSummary("a", 4, at(0), at(60), HEAPS[4])
    log = executions.session_log("a")
    assert log is not None and [(r.execution_id, r.heap_in, r.heap) for r in log.items] == [
        ("a1", None, HEAPS[0]),
        ("a2", HEAPS[0], HEAPS[2]),
        ("a3", None, None),
        ("a4", None, HEAPS[4]),
    ]
    # Retention: the latest heap is one a retained execution recorded, never a pruned one's.
    assert executions.delete(["a4"]) == 1
    assert session_a() == SessionSummary("a", 3, at(0), at(60), HEAPS[2])
    assert executions.delete(["a2"]) == 1
    assert session_a() == SessionSummary("a", 2, at(0), at(40), HEAPS[0])
    assert executions.delete(["a1"]) == 1
    assert session_a() == SessionSummary("a", 1, at(40), at(40), None)
    assert executions.delete(["a3", "b1"]) == 1  # b1 is running: never deleted
    assert executions.sessions() == Page([SessionSummary("b", 1, at(10), at(10), None)], None)
    assert executions.session_log("a") is None


def _cursor(payload: Any) -> str:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


BAD_CURSORS = [
    "",
    "!",
    "abc",  # not a whole number of bytes
    "e31",  # "{}" spelt with stray bits
    "e30=",  # padded
    "e30\n",
    "e30",  # {}
    _cursor([1, 2]),
    _cursor("x"),
    _cursor(b"\xff\xfe"),  # not UTF-8
    _cursor(b"[" * 100_000),  # nested past any parser's recursion
    _cursor({"list": "executions"}),
    _cursor({"list": "executions", "after": ["2026-01-01T00:00:00.000Z", 1], "extra": 1}),
    _cursor({"list": "executions", "after": ["2026-01-01T00:00:00.000Z"]}),
    _cursor({"list": "executions", "after": ["2026-01-01T00:00:00.000Z", True]}),
    _cursor({"list": "executions", "after": ["2026-01-01T00:00:00.000Z", 0]}),
    _cursor({"list": "executions", "after": ["2026-01-01T00:00:00.000Z", 2**63]}),
    _cursor({"list": "executions", "after": ["2026-01-01T00:00:00.000Z", 1.5]}),
    _cursor({"list": "executions", "after": ["2026-01-01 00:00:00", 1]}),
    _cursor({"list": "executions", "after": [None, 1]}),
    _cursor({"list": "sessions", "after": ["2026-01-01T00:00:00.000Z", 1]}),
    _cursor({"list": "sessions", "after": ["2026-01-01T00:00:00.000Z", "\ud800"]}),
    _cursor({"list": "session-log", "after": ["2026-01-01T00:00:00.000Z", "a"]}),
    _cursor({"list": "nothing", "after": []}),
]


def _listings(executions: ExecutionStore) -> dict[str, Callable[[str], object]]:
    return {
        "executions": lambda c: executions.list_page(10, cursor=c),
        "executions of a session": lambda c: executions.list_page(10, session="alpha", cursor=c),
        "session log": lambda c: executions.session_log("alpha", 10, cursor=c),
        "sessions": lambda c: executions.sessions(10, cursor=c),
    }


@pytest.mark.parametrize("cursor", BAD_CURSORS, ids=range(len(BAD_CURSORS)))
def test_a_bad_cursor_is_refused(history: History, cursor: str) -> None:
    for name, fetch in _listings(history.executions).items():
        with pytest.raises(InvalidCursor, match="invalid cursor"):
            fetch(cursor)
        assert isinstance(InvalidCursor(), ValueError), name


def test_a_cursor_spelt_otherwise_is_refused(history: History) -> None:
    # base64 leaves the low bits of a last partial character unused: flipping one spells the same
    # bytes, a cursor this store never wrote.
    for row_id in range(1, 10):
        cursor = _cursor({"list": "executions", "after": ["2999-01-01T00:00:00.000Z", row_id]})
        if len(cursor) % 4:
            break
    assert len(cursor) % 4
    assert len(history.executions.list_page(1, cursor=cursor).items) == 1
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    respelt = cursor[:-1] + alphabet[alphabet.index(cursor[-1]) ^ 1]
    assert base64.urlsafe_b64decode(respelt + "==") == base64.urlsafe_b64decode(cursor + "==")
    with pytest.raises(InvalidCursor, match="not base64url"):
        history.executions.list_page(1, cursor=respelt)


def test_a_cursor_serves_only_its_own_listing(history: History) -> None:
    executions = history.executions
    listings = _listings(executions)
    cursors = {
        "executions": executions.list_page(1).next_cursor,
        "session log": executions.session_log("alpha", 1).next_cursor,  # type: ignore[union-attr]
        "sessions": executions.sessions(1).next_cursor,
    }
    for issued_by, cursor in cursors.items():
        assert cursor is not None
        for name, fetch in listings.items():
            if name.startswith(issued_by):
                fetch(cursor)
            else:
                with pytest.raises(InvalidCursor, match="another listing"):
                    fetch(cursor)


def test_a_forged_position_is_just_a_position(history: History) -> None:
    executions = history.executions
    # Well-formed but never issued: the listing continues after that position, nothing more.
    before_all = _cursor({"list": "executions", "after": ["2000-01-01T00:00:00.000Z", 1]})
    assert executions.list_page(5, cursor=before_all) == Page([], None)
    after_all = _cursor({"list": "executions", "after": ["2999-01-01T00:00:00.000Z", 2**63 - 1]})
    assert ids(executions.list_page(1000, cursor=after_all).items) == history.newest_first()
    far = _cursor({"list": "sessions", "after": ["2000-01-01T00:00:00.000Z", "z"]})
    assert executions.sessions(5, cursor=far) == Page([], None)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    cursor=st.one_of(
        st.text(max_size=40),
        st.binary(max_size=60).map(_cursor),
        st.from_regex(r"[A-Za-z0-9_-]{1,24}", fullmatch=True),
    )
)
def test_any_cursor_gives_a_page_or_invalid_cursor(history: History, cursor: str) -> None:
    for fetch in _listings(history.executions).values():
        with contextlib.suppress(InvalidCursor):
            fetch(cursor)


def test_limits_below_one_are_refused(executions: ExecutionStore) -> None:
    for fetch in (
        lambda n: executions.list_page(n),
        lambda n: executions.session_log("s", n),
        lambda n: executions.sessions(n),
    ):
        for bad in (0, -1):
            with pytest.raises(ValueError, match="limit"):
                fetch(bad)


# ================================================================================================
# OutputLog
# ================================================================================================

MIXED = "a\u00e9\u20ac\U0001f600\n" + "x\n" + "\u00e9\u00e9\n" + "\U0001f600z\n" + "\n" + "end\u20ac"


def test_output_log_protocol(output: OutputLog) -> None:
    assert isinstance(output, OutputLog)
    assert output.max_output_bytes == CAP


def test_logs_exist_once_created(output: OutputLog) -> None:
    for call in (
        lambda: output.append("ghost", "boo\n"),
        lambda: output.totals("ghost"),
        lambda: output.read_lines("ghost"),
        lambda: output.read_bytes("ghost"),
    ):
        with pytest.raises(ExecutionNotFound):
            call()
    output.create("a")
    output.append("a", "one\n")
    with pytest.raises(DuplicateExecution):
        output.create("a")
    assert output.read_lines("a").data == "one\n"
    assert output.totals("a") == OutputTotals(4, 1, False)
    output.seal("ghost")  # nothing to seal: not an error


def test_pages_by_line_and_by_byte(output: OutputLog) -> None:
    output.create("m")
    for i in range(0, len(MIXED), 2):
        output.append("m", MIXED[i : i + 2])
    raw = MIXED.encode()
    lines = MIXED.splitlines(keepends=True)
    assert output.totals("m") == OutputTotals(len(raw), len(lines), False)
    for offset in range(len(lines) + 2):
        for limit in range(len(lines) + 2):
            page = output.read_lines("m", offset, limit)
            first, last = min(offset, len(lines)), min(offset + limit, len(lines))
            start = len("".join(lines[:first]).encode())
            end = len("".join(lines[:last]).encode())
            assert page == OutputPage(
                "".join(lines[first:last]), first, last, start, end, last, end, last < len(lines),
                len(lines), len(raw),
            )  # fmt: skip
    for offset in range(len(raw) + 2):
        for limit in range(6):
            page = output.read_bytes("m", offset, limit)
            assert page.data.encode() == raw[page.start_byte : page.end_byte]  # whole characters
            assert page.start_byte >= min(offset, len(raw)) and page.start_byte - offset < 4
            if page.start_byte < len(raw) and limit:
                assert page.end_byte > page.start_byte
            assert page.has_more == (page.end_byte < len(raw))


def test_the_cap_keeps_one_marker_line(output: OutputLog) -> None:
    output.create("t")
    line = "\u20ac" * 10 + "\n"  # 31 bytes: the cap falls inside a character
    for _ in range(CAP // len(line.encode()) + 10):
        output.append("t", line)
    data = output.read_lines("t", 0, 10_000).data
    body, marker = data[: -len(truncation_marker(CAP))], data[-len(truncation_marker(CAP)) :]
    assert marker == truncation_marker(CAP)
    assert len(body.encode()) <= CAP + 1 and body.endswith("\n") and body.strip("\u20ac\n") == ""
    totals = output.totals("t")
    assert totals.truncated and totals.total_bytes == len(data.encode())
    output.append("t", "dropped\n")
    output.seal("t")
    output.append("t", "dropped too\n")
    assert output.read_lines("t", 0, 10_000).data == data


def test_sealed_output_is_visible_to_every_reader(
    backend: Backend, location: Path, output: OutputLog
) -> None:
    output.create("s")
    output.append("s", "before\n")
    assert output.read_lines("s").data == "before\n"  # the appending handle sees it at once
    output.seal("s")
    other = backend.open_output(location, CAP)
    try:
        assert other.read_lines("s").data == "before\n"
        output.append("s", "after the seal\n")  # a worker printing after a cancel
        assert other.read_lines("s").data == "before\nafter the seal\n"
        assert other.totals("s") == OutputTotals(22, 2, False)
    finally:
        other.close()


def test_a_log_created_by_one_store_is_appended_to_by_the_one_that_adopts_it(
    backend: Backend, location: Path, output: OutputLog
) -> None:
    """A node accepts an execution (its log created empty); another node claims it and appends
    its output: every reader sees it once that one seals the log."""
    output.create("a")
    claimant = backend.open_output(location, CAP)
    try:
        claimant.adopt("a")
        claimant.append("a", "one\n")
        assert claimant.read_lines("a").data == "one\n"  # its own appends, at once
        claimant.append("a", "two\n")
        claimant.seal("a")
        assert output.read_lines("a").data == "one\ntwo\n"
        assert output.totals("a") == OutputTotals(8, 2, False)
        claimant.append("a", "after the seal\n")
        assert output.read_lines("a", 2).data == "after the seal\n"
        claimant.adopt("ghost")  # no log: what it is given goes nowhere, and no error
        claimant.append("ghost", "lost\n")
        claimant.seal("ghost")
        with pytest.raises(ExecutionNotFound):
            output.totals("ghost")
    finally:
        claimant.close()


def test_delete(output: OutputLog) -> None:
    for name in ("a", "b", "c"):
        output.create(name)
        output.append(name, f"{name}\n")
    output.seal("a")
    assert output.delete(["a", "b", "unknown"]) == 2
    for name in ("a", "b"):
        with pytest.raises(ExecutionNotFound):
            output.read_lines(name)
    assert output.read_lines("c").data == "c\n"
    assert output.delete([]) == 0
    output.create("a")  # the id is free again
    assert output.totals("a") == OutputTotals(0, 0, False)


def test_concurrent_appends_keep_entries_whole_and_in_order(
    backend: Backend, location: Path, roomy_output: OutputLog
) -> None:
    roomy_output.create("c")
    n, per_thread = 6, 200

    def writer(t: int) -> None:
        for i in range(per_thread):
            roomy_output.append("c", f"t{t} {i} \u00e9\n")

    run_together(n, writer)
    roomy_output.seal("c")
    other = backend.open_output(location, 1 << 20)
    try:
        got = other.read_lines("c", 0, 10_000).data.splitlines(keepends=True)
    finally:
        other.close()
    assert len(got) == n * per_thread
    for t in range(n):
        assert [x for x in got if x.startswith(f"t{t} ")] == [f"t{t} {i} \u00e9\n" for i in range(per_thread)]


def test_a_seal_racing_appends_loses_nothing(
    backend: Backend, location: Path, roomy_output: OutputLog
) -> None:
    roomy_output.create("r")
    n, per_thread = 4, 200

    def work(t: int) -> None:
        if t == n:
            roomy_output.seal("r")
            return
        for i in range(per_thread):
            roomy_output.append("r", f"t{t} {i}\n")

    run_together(n + 1, work)
    other = backend.open_output(location, 1 << 20)
    try:
        got = other.read_lines("r", 0, 10_000).data.splitlines(keepends=True)
    finally:
        other.close()
    assert sorted(got) == sorted(f"t{t} {i}\n" for t in range(n) for i in range(per_thread))


# -- the records of tool calls ---------------------------------------------------------------


def _call(call_id: int, outcome: str = "ok", message: str | None = None, **fields: Any) -> ToolCallRow:
    values: dict[str, Any] = {
        "call_id": call_id,
        "server": "calc",
        "tool": "add",
        "arguments_bytes": 14,
        "outcome": outcome,
        "message": message,
        "started_at": f"2026-01-01T12:00:00.{call_id:03d}Z",
        "duration_ms": 1.5,
    }
    return ToolCallRow(**{**values, **fields})


def test_tool_call_log_protocol(tool_calls: ToolCallLog) -> None:
    assert isinstance(tool_calls, ToolCallLog)


def test_tool_calls_are_read_back_in_call_order_from_another_handle(
    tool_calls: ToolCallLog, backend: Backend, location: Path
) -> None:
    tool_calls.add("e1", [_call(3, "abandoned"), _call(1)])
    tool_calls.add("e1", [_call(2, "TypeError", "calc.add: arguments.a: 'x' is not of type 'number'")])
    tool_calls.add("e2", [_call(1, server="other", tool="t-1", arguments_bytes=2, duration_ms=0.25)])
    tool_calls.add("e3", [])
    other = backend.open_tool_calls(location)
    try:
        got = other.list("e1")
    finally:
        other.close()
    assert [c.call_id for c in got] == [1, 2, 3]
    assert got[1] == _call(2, "TypeError", "calc.add: arguments.a: 'x' is not of type 'number'")
    assert got[0] == _call(1) and got[2] == _call(3, "abandoned")
    assert tool_calls.list("e2") == [
        _call(1, server="other", tool="t-1", arguments_bytes=2, duration_ms=0.25)
    ]
    assert tool_calls.list("e1", after=1, limit=1) == [got[1]]
    assert tool_calls.list("unknown") == [] and tool_calls.list("e3") == []


def test_a_call_is_recorded_once_and_a_long_message_is_cut(tool_calls: ToolCallLog) -> None:
    tool_calls.add("e", [_call(1)])
    tool_calls.add("e", [_call(1, "Error", "later"), _call(2, "Error", "x" * 10_000)])
    got = tool_calls.list("e")
    assert got[0] == _call(1)  # the first record stands
    assert got[1].message == "x" * 4096


def test_tool_calls_hold_any_text(tool_calls: ToolCallLog) -> None:
    odd = "s\u00e9rv\U0001f600 'q' \"d\" %s :x"
    tool_calls.add(odd, [_call(1, server=odd, tool=odd, message=odd, outcome="Error")])
    (got,) = tool_calls.list(odd)
    assert (got.server, got.tool, got.message) == (odd, odd, odd)
    tool_calls.add("nul", [_call(1, message="a\x00b", outcome="Error")])  # PostgreSQL text holds no NUL
    assert (tool_calls.list("nul")[0].message or "").startswith("a")


def test_tool_calls_are_deleted_with_their_executions(tool_calls: ToolCallLog) -> None:
    for eid in ("a", "b", "c"):
        tool_calls.add(eid, [_call(1), _call(2)])
    assert tool_calls.delete(["a", "b", "unknown"]) == 4
    assert tool_calls.list("a") == [] and tool_calls.list("b") == []
    assert len(tool_calls.list("c")) == 2
    assert tool_calls.delete([]) == 0


# -- tenants ------------------------------------------------------------------------------------


def test_listings_of_a_tenant_hold_its_executions_only_and_a_cursor_serves_its_own(
    executions: ExecutionStore, clock: Clock
) -> None:
    """Two tenants with a session of one name: each listing, session log and sessions page of one
    tenant holds its own only; a cursor of one tenant's listing given to another's yields that
    other's rows (never the first's); every tenant's (None) holds both, each (tenant, session) a
    session of its own."""
    made: dict[str, list[str]] = {"acme": [], "beta": []}
    for n in range(6):
        tenant = ("acme", "beta")[n % 2]
        executions.create(f"{tenant}-{n}", session="main", tenant=tenant)
        executions.finish(f"{tenant}-{n}", "completed", heap_out=HEAPS[n], duration_ms=1.0)
        made[tenant].append(f"{tenant}-{n}")
        clock.tick(1 if n % 3 else 0)  # ties too
    executions.create("acme-only", session="only", tenant="acme")
    made["acme"].append("acme-only")
    for tenant, other in (("acme", "beta"), ("beta", "acme")):
        listed = [
            r for p in follow(lambda c, t=tenant: executions.list_page(1, cursor=c, tenant=t), 1) for r in p
        ]
        assert sorted(ids(listed)) == sorted(made[tenant]) and {r.tenant for r in listed} == {tenant}
        log = [
            r
            for p in follow(lambda c, t=tenant: executions.session_log("main", 1, cursor=c, tenant=t), 1)
            for r in p
        ]
        assert ids(log) == [e for e in made[tenant] if e != "acme-only"]
        assert executions.list_page(10, session="only", tenant=tenant).items == (
            [executions.get("acme-only")] if tenant == "acme" else []
        )
        assert (executions.session_log("only", tenant=tenant) is None) == (tenant == "beta")
        (main,) = [s for s in executions.sessions(10, tenant=tenant).items if s.session == "main"]
        assert (main.tenant, main.executions, main.latest_heap) == (
            tenant,
            3,
            HEAPS[4 if tenant == "acme" else 5],
        )
        # Another tenant's cursors, given to this tenant's listings: this tenant's rows only.
        theirs = executions.list_page(1, tenant=other).next_cursor
        assert theirs is not None
        assert set(ids(executions.list_page(100, cursor=theirs, tenant=tenant).items)) <= set(made[tenant])
        their_log = executions.session_log("main", 1, tenant=other)
        assert their_log is not None and their_log.next_cursor is not None
        page = executions.session_log("main", 100, cursor=their_log.next_cursor, tenant=tenant)
        assert page is not None and set(ids(page.items)) <= set(made[tenant])
        their_sessions = executions.sessions(1, tenant=other).next_cursor
        if their_sessions is not None:
            assert {
                s.tenant for s in executions.sessions(100, cursor=their_sessions, tenant=tenant).items
            } <= {tenant}
    every = [s for p in follow(lambda c: executions.sessions(1, cursor=c), 1) for s in p]
    assert sorted((s.tenant, s.session) for s in every) == [
        ("acme", "main"),
        ("acme", "only"),
        ("beta", "main"),
    ]
    assert len(ids(executions.list_page(100).items)) == 7
    assert len(ids(executions.session_log("main", 100).items)) == 6  # type: ignore[union-attr]


def test_a_sessions_cursor_of_a_release_before_tenants_is_read(
    executions: ExecutionStore, clock: Clock
) -> None:
    """(last activity, session): a cursor without a tenant goes on after that place, after every
    tenant's session of that name and time."""
    from mcp_v8.storage.paging import encode_cursor

    for name, tenant in (("a", "default"), ("a", "zz"), ("b", "default"), ("c", "acme")):
        executions.create(f"{name}-{tenant}", session=name, tenant=tenant)  # one time: by name, tenant
    at = executions.get("a-default").started_at  # type: ignore[union-attr]
    page = executions.sessions(10, cursor=encode_cursor("sessions", [at, "a"]))
    assert [(s.session, s.tenant) for s in page.items] == [("b", "default"), ("c", "acme")]
    assert [(s.session, s.tenant) for s in executions.sessions(10).items] == [
        ("a", "default"),
        ("a", "zz"),
        ("b", "default"),
        ("c", "acme"),
    ]
