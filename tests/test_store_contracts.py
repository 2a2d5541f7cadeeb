"""The contracts of :class:`ExecutionStore` and :class:`OutputLog`, run against every backend.

Each backend is a :class:`Backend` in ``BACKENDS``: how to open its execution store and its output log
on a location (a fresh directory per test). Opening twice on one location must give two handles on
the same data, which is how these tests read "from another process". Only the Protocols' methods are
used here; what one implementation does beyond them (SQLite's chunk sizes, buffering, row counters)
is tested in test_storage.py. A PostgreSQL backend joins by adding an entry whose openers connect to
a test database (one schema per location).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mcp_v8.storage import (
    DuplicateExecution,
    ExecutionNotFound,
    ExecutionStore,
    OutputLog,
    OutputPage,
    OutputTotals,
    SQLiteExecutionStore,
    SQLiteOutputLog,
    truncation_marker,
)

CAP = 4096


@dataclass(frozen=True)
class Backend:
    name: str
    open_executions: Callable[[Path], ExecutionStore]
    open_output: Callable[[Path, int], OutputLog]  # location, max_output_bytes


def _sqlite_output(location: Path, max_output_bytes: int) -> OutputLog:
    # No background flusher: what another handle sees must follow from the contract alone.
    return SQLiteOutputLog(location, max_output_bytes=max_output_bytes, flush_interval=None)


BACKENDS = [Backend("sqlite", SQLiteExecutionStore, _sqlite_output)]


@pytest.fixture(params=BACKENDS, ids=lambda b: b.name)
def backend(request: pytest.FixtureRequest) -> Backend:
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
