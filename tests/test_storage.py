"""Tests of mcp_v8.storage: the heap store, the execution store and the output log (SQLite)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import mcp_v8.storage.execution_store as executions_module
from mcp_v8.storage import (
    DuplicateExecution,
    ExecutionNotFound,
    FileHeapStore,
    HeapNotFound,
    HeapStore,
    InvalidHeapKey,
    OutputPage,
    OutputTotals,
    SQLiteExecutionStore,
    SQLiteOutputLog,
    open_database,
    truncation_marker,
    validate_heap_key,
)
from mcp_v8.storage.schema import database_path
from mcp_v8.storage.sql import render
from mcp_v8.storage.sqlite import SQLITE, SQLiteDatabase

ISO_MS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def key_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ================================================================================================
# Heap store
# ================================================================================================


@pytest.fixture
def store(tmp_path: Path) -> FileHeapStore:
    return FileHeapStore(tmp_path / "data")


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_heap_roundtrip_and_layout(store: FileHeapStore) -> None:
    blob = b"\x00envelope\xff" * 1000
    key = key_of(blob)
    assert not store.exists(key)
    store.put(key, blob, session="s1", tags={"a": "b", "ü": "ß"})
    assert store.exists(key)
    assert store.get(key) == blob
    path = Path(store.root) / "heaps" / key[:2] / key[2:]
    assert path.is_file() and path.read_bytes() == blob
    meta = store.meta(key)
    assert meta is not None
    assert (meta.key, meta.size, meta.session, meta.tags) == (key, len(blob), "s1", {"a": "b", "ü": "ß"})
    assert ISO_MS_Z.match(meta.created_at)
    assert store.delete(key) is True
    assert not store.exists(key)
    assert store.meta(key) is None
    assert store.delete(key) is False
    with pytest.raises(HeapNotFound):
        store.get(key)


def test_heap_store_satisfies_protocol(store: FileHeapStore) -> None:
    assert isinstance(store, HeapStore)


def test_missing_key(store: FileHeapStore) -> None:
    key = "0" * 64
    with pytest.raises(HeapNotFound) as info:
        store.get(key)
    assert isinstance(info.value, KeyError)
    assert store.exists(key) is False
    assert store.meta(key) is None
    assert store.delete(key) is False


BAD_KEYS: list[object] = [
    "",
    "a" * 63,
    "a" * 65,
    "A" * 64,
    "g" * 64,
    "../" + "a" * 61,
    "..",
    "/etc/passwd",
    "/" + "a" * 63,
    "ab/" + "c" * 61,
    "ab\\" + "c" * 61,
    "a" * 63 + "\x00",
    "\x00" + "a" * 63,
    "a" * 64 + "\n",
    " " + "a" * 63,
    "a" * 63 + " ",
    "\u0660" * 64,  # Arabic-Indic digit zero: a digit, but not ASCII
    "ａ" * 64,  # fullwidth a
    "0x" + "a" * 62,
    "./" + "a" * 62,
    "~" + "a" * 63,
    None,
    b"a" * 64,
    64,
]


@pytest.mark.parametrize("bad", BAD_KEYS, ids=repr)
def test_invalid_heap_keys_rejected_everywhere(store: FileHeapStore, bad: object) -> None:
    with pytest.raises(InvalidHeapKey):
        validate_heap_key(bad)
    calls: list[Callable[[], object]] = [
        lambda: store.put(bad, b"x", session=None, tags=None),  # type: ignore[arg-type]
        lambda: store.get(bad),  # type: ignore[arg-type]
        lambda: store.exists(bad),  # type: ignore[arg-type]
        lambda: store.meta(bad),  # type: ignore[arg-type]
        lambda: store.delete(bad),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(InvalidHeapKey) as info:
            call()
        assert isinstance(info.value, ValueError)
    # Nothing was created anywhere.
    assert [p.name for p in Path(store.root).rglob("*")] == ["heaps"]


def test_put_is_idempotent_and_keeps_first_meta(store: FileHeapStore) -> None:
    blob = b"same bytes"
    key = key_of(blob)
    store.put(key, blob, session="first", tags={"n": "1"})
    path = Path(store.root) / "heaps" / key[:2] / key[2:]
    before = path.stat()
    store.put(key, blob, session="second", tags={"n": "2"})
    after = path.stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)  # not rewritten
    meta = store.meta(key)
    assert meta is not None and meta.session == "first" and meta.tags == {"n": "1"}


def test_store_does_not_verify_bytes(store: FileHeapStore) -> None:
    key = "f" * 64  # not the hash of the bytes: the engine checks envelopes, not the store
    store.put(key, b"anything", session=None, tags=None)
    assert store.get(key) == b"anything"


def test_concurrent_puts_of_same_key(store: FileHeapStore) -> None:
    blob = os.urandom(256 * 1024)
    key = key_of(blob)
    n = 16
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            barrier.wait()
            store.put(key, blob, session=f"s{i}", tags={"i": str(i)})
            assert store.get(key) == blob
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.get(key) == blob
    meta = store.meta(key)
    assert meta is not None and meta.session is not None
    assert meta.tags == {"i": meta.session[1:]}  # session and tags of one and the same put
    assert temp_files(Path(store.root)) == []
    assert sorted(p.name for p in (Path(store.root) / "heaps" / key[:2]).iterdir()) == [
        key[2:],
        key[2:] + ".json",
    ]


def test_failed_write_leaves_nothing(store: FileHeapStore, monkeypatch: pytest.MonkeyPatch) -> None:
    blob = b"doomed"
    key = key_of(blob)

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "simulated I/O error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="simulated"):
        store.put(key, blob, session=None, tags=None)
    monkeypatch.undo()
    assert not store.exists(key)
    assert temp_files(Path(store.root)) == []
    store.put(key, blob, session=None, tags=None)
    assert store.get(key) == blob


def test_blob_without_meta_still_works(store: FileHeapStore) -> None:
    # The state a crash between the blob and its meta leaves behind.
    blob = b"no meta"
    key = key_of(blob)
    store.put(key, blob, session="s", tags=None)
    (Path(store.root) / "heaps" / key[:2] / (key[2:] + ".json")).unlink()
    meta = store.meta(key)
    assert meta is not None and meta.session is None and meta.size == len(blob)
    assert ISO_MS_Z.match(meta.created_at)
    store.put(key, blob, session="again", tags=None)  # records the missing meta
    meta = store.meta(key)
    assert meta is not None and meta.session == "again"


def test_put_without_session_or_tags_writes_the_blob_alone(store: FileHeapStore) -> None:
    blob = b"a heap nobody named"
    key = key_of(blob)
    store.put(key, blob, session=None, tags=None)
    fanout = Path(store.root) / "heaps" / key[:2]
    assert sorted(p.name for p in fanout.iterdir()) == [key[2:]]
    meta = store.meta(key)
    assert meta is not None and (meta.session, meta.tags, meta.size) == (None, None, len(blob))
    assert ISO_MS_Z.match(meta.created_at)
    # A restore is a use (the access time, which prune() reads), never a change: the creation
    # time, which created_at reports, stays.
    path = fanout / key[2:]
    created_ns = path.stat().st_mtime_ns
    os.utime(path, ns=(10**9, created_ns))
    assert store.get(key) == blob
    after = path.stat()
    assert after.st_mtime_ns == created_ns
    assert after.st_atime > time.time() - 3600
    meta_again = store.meta(key)
    assert meta_again is not None and meta_again.created_at == meta.created_at


def test_puts_publish_unnamed_files_where_the_system_has_them(
    store: FileHeapStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mcp_v8.storage import heaps as heaps_module

    try:
        os.close(os.open(tmp_path, os.O_WRONLY | heaps_module._O_TMPFILE))
    except (OSError, TypeError):
        pytest.skip("no O_TMPFILE here")
    if not heaps_module._O_TMPFILE or not os.path.isdir(heaps_module._PROC_SELF_FD):
        pytest.skip("no O_TMPFILE or /proc here")

    def no_named_temp_files(n: int) -> str:
        raise AssertionError("a named temp file was made")

    monkeypatch.setattr(heaps_module.secrets, "token_hex", no_named_temp_files)
    blob = b"unnamed until published"
    key = key_of(blob)
    store.put(key, blob, session="s", tags={"k": "v"})
    assert store.get(key) == blob
    meta = store.meta(key)
    assert meta is not None and (meta.session, meta.tags) == ("s", {"k": "v"})


@pytest.mark.parametrize("missing", ["O_TMPFILE", "/proc"])
def test_puts_fall_back_to_named_temp_files(
    store: FileHeapStore, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    from mcp_v8.storage import heaps as heaps_module

    if missing == "O_TMPFILE":
        monkeypatch.setattr(heaps_module, "_O_TMPFILE", 0)
    else:
        monkeypatch.setattr(heaps_module, "_PROC_SELF_FD", "/nonexistent/proc/self/fd")
    blob = missing.encode() * 100
    key = key_of(blob)
    store.put(key, blob, session="first", tags=None)
    store.put(key, blob, session="second", tags=None)
    assert store.get(key) == blob
    meta = store.meta(key)
    assert meta is not None and meta.session == "first"
    assert temp_files(Path(store.root)) == []


def test_symlinked_fanout_dir_is_not_followed(store: FileHeapStore, tmp_path: Path) -> None:
    key = "ab" + "1" * 62
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / key[2:]).write_bytes(b"secret")
    os.symlink(outside, Path(store.root) / "heaps" / "ab")
    with pytest.raises(HeapNotFound):
        store.get(key)
    assert store.exists(key) is False
    assert store.meta(key) is None
    with pytest.raises(OSError):
        store.put(key, b"payload", session=None, tags=None)
    assert store.delete(key) is False
    assert sorted(p.name for p in outside.iterdir()) == [key[2:]]
    assert (outside / key[2:]).read_bytes() == b"secret"


def test_symlinked_blob_is_not_followed_and_put_replaces_the_link(
    store: FileHeapStore, tmp_path: Path
) -> None:
    key = "cd" + "2" * 62
    target = tmp_path / "target"
    target.write_bytes(b"outside file")
    fanout = Path(store.root) / "heaps" / "cd"
    fanout.mkdir()
    os.symlink(target, fanout / key[2:])
    with pytest.raises(HeapNotFound):
        store.get(key)
    assert store.exists(key) is False
    assert store.meta(key) is None
    store.put(key, b"real blob", session=None, tags=None)
    assert not (fanout / key[2:]).is_symlink()
    assert store.get(key) == b"real blob"
    assert target.read_bytes() == b"outside file"


def test_symlinked_meta_is_not_followed(store: FileHeapStore, tmp_path: Path) -> None:
    blob = b"blob with planted meta"
    key = key_of(blob)
    store.put(key, blob, session="mine", tags=None)
    planted = tmp_path / "planted.json"
    planted.write_text('{"session": "planted", "tags": {"x": "y"}, "created_at": "1999-01-01T00:00:00.000Z"}')
    sidecar = Path(store.root) / "heaps" / key[:2] / (key[2:] + ".json")
    sidecar.unlink()
    os.symlink(planted, sidecar)
    meta = store.meta(key)
    assert meta is not None and meta.session is None and meta.tags is None


def test_symlinked_heaps_dir_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", root / "heaps")
    with pytest.raises(NotADirectoryError):
        FileHeapStore(root)


def test_keys_and_stale_temp_cleanup(store: FileHeapStore) -> None:
    blobs = [f"blob {i}".encode() for i in range(5)]
    for blob in blobs:
        store.put(key_of(blob), blob, session=None, tags=None)
    assert sorted(store.keys()) == sorted(key_of(b) for b in blobs)
    fanout = Path(store.root) / "heaps" / key_of(blobs[0])[:2]
    stale = fanout / ".deadbeef.0123456789abcdef.tmp"
    fresh = fanout / ".cafebabe.0123456789abcdef.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"in flight")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    assert store.remove_stale_temp_files(older_than_seconds=3600) == 1
    assert not stale.exists() and fresh.exists()


# ================================================================================================
# Stores on one database
# ================================================================================================


class Stores:
    """The execution store and the output log of one data directory, on one shared database, as
    the service holds them."""

    def __init__(self, root: Path, **output_options: Any) -> None:
        self.root = root
        self.db = open_database(root)
        self.executions = SQLiteExecutionStore(self.db)
        self.output = SQLiteOutputLog(self.db, **{"flush_interval": None, **output_options})

    def create(self, execution_id: str, **kwargs: Any) -> None:
        """Records an execution and starts its output log, in the service's order."""
        self.output.create(execution_id)
        self.executions.create(execution_id, **kwargs)

    def finish(self, execution_id: str, status: str = "completed", **kwargs: Any) -> bool:
        """Seals the output, then records the terminal status, in the service's order."""
        self.output.seal(execution_id)
        return self.executions.finish(execution_id, status, **kwargs)  # type: ignore[arg-type]

    def prune(self, max_age_seconds: float | None = None, max_count: int | None = None) -> int:
        doomed = self.executions.prunable(max_age_seconds=max_age_seconds, max_count=max_count)
        self.output.delete(doomed)
        return self.executions.delete(doomed)

    def close(self) -> None:
        self.output.close()
        self.executions.close()
        self.db.close()

    def __enter__(self) -> Stores:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sql(root: Path, query: str, *params: object) -> list[Any]:
    """Runs ``query`` on the database of ``root`` through a separate connection (committed)."""
    conn = sqlite3.connect(database_path(root))
    try:
        with conn:
            return conn.execute(query, params).fetchall()
    finally:
        conn.close()


def chunk_count(root: Path, execution_id: str | None = None) -> int:
    if execution_id is None:
        return int(sql(root, "SELECT count(*) FROM output_chunks")[0][0])
    return int(sql(root, "SELECT count(*) FROM output_chunks WHERE execution_id = ?", execution_id)[0][0])


@pytest.fixture
def st(tmp_path: Path) -> Iterator[Stores]:
    stores = Stores(tmp_path / "reg")
    yield stores
    stores.close()


# ================================================================================================
# Execution store
# ================================================================================================


def test_create_get_finish(st: Stores) -> None:
    ex = st.executions
    ex.create("e1", session="sess", tags={"k": "v"}, heap_in="a" * 64, code_bytes=12)
    rec = ex.get("e1")
    assert rec is not None
    assert rec.status == "running" and not rec.is_terminal
    assert ISO_MS_Z.match(rec.started_at)
    assert (rec.completed_at, rec.result, rec.error, rec.heap, rec.duration_ms) == (None,) * 5
    assert (rec.session, rec.tags, rec.heap_in, rec.code_bytes) == ("sess", {"k": "v"}, "a" * 64, 12)

    done = ex.finish("e1", "completed", result="[2,4]", heap_out="b" * 64, duration_ms=3.5)
    assert done is not None and done == ex.get("e1")
    rec = ex.get("e1")
    assert rec is not None and rec.status == "completed" and rec.is_terminal
    assert rec.completed_at is not None and ISO_MS_Z.match(rec.completed_at)
    assert (rec.result, rec.heap, rec.duration_ms, rec.error) == ("[2,4]", "b" * 64, 3.5, None)

    # The first terminal transition is never overwritten.
    assert ex.finish("e1", "failed", error="late") is None
    rec2 = ex.get("e1")
    assert rec2 == rec

    assert ex.get("nope") is None
    assert ex.finish("nope", "completed") is None
    with pytest.raises(DuplicateExecution):
        ex.create("e1")
    with pytest.raises(ValueError):
        ex.finish("e1", "running")  # type: ignore[arg-type]


def test_duration_defaults_to_time_since_start(st: Stores) -> None:
    st.executions.create("e")
    # Started five seconds ago, as far as the store knows: no sleeping, no clock race.
    sql(st.root, "UPDATE executions SET started_at = ?", iso_seconds_ago(5))
    st.executions.finish("e", "timed_out", error="deadline")
    rec = st.executions.get("e")
    assert rec is not None and rec.duration_ms is not None and rec.duration_ms >= 5000


def iso_seconds_ago(seconds: float) -> str:
    then = datetime.now(timezone.utc) - timedelta(seconds=seconds)
    return then.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_first_terminal_transition_wins_under_concurrency(st: Stores) -> None:
    statuses = ["completed", "failed", "cancelled", "timed_out"]
    n_exec, n_threads = 40, 8
    for i in range(n_exec):
        st.create(f"x{i}")
    wins: dict[str, list[tuple[int, str]]] = {f"x{i}": [] for i in range(n_exec)}
    lock = threading.Lock()
    barrier = threading.Barrier(n_threads)

    def racer(t: int) -> None:
        barrier.wait()
        for i in range(n_exec):
            status = statuses[(t + i) % len(statuses)]
            if st.finish(f"x{i}", status, error=f"thread {t}"):
                with lock:
                    wins[f"x{i}"].append((t, status))

    threads = [threading.Thread(target=racer, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for execution_id, won in wins.items():
        assert len(won) == 1, (execution_id, won)
        rec = st.executions.get(execution_id)
        assert rec is not None
        assert (rec.status, rec.error) == (won[0][1], f"thread {won[0][0]}")


def test_list_newest_first_limit_and_status(st: Stores) -> None:
    ex = st.executions
    for i in range(5):
        ex.create(f"e{i}")
    ex.finish("e1", "completed")
    ex.finish("e3", "failed", error="boom")
    # Same started_at for all: the tie is broken by insertion order, newest first.
    sql(st.root, "UPDATE executions SET started_at = '2024-01-01T00:00:00.000Z'")
    assert [r.execution_id for r in ex.list()] == ["e4", "e3", "e2", "e1", "e0"]
    assert [r.execution_id for r in ex.list(limit=2)] == ["e4", "e3"]
    assert [r.execution_id for r in ex.list(status="running")] == ["e4", "e2", "e0"]
    assert [r.execution_id for r in ex.list(status="failed")] == ["e3"]
    sql(st.root, "UPDATE executions SET started_at = '2030-01-01T00:00:00.000Z' WHERE execution_id = 'e0'")
    assert [r.execution_id for r in ex.list(limit=1)] == ["e0"]


def test_a_page_costs_the_same_at_any_depth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Listings page by keyset through an index: a page deep in a listing costs what the first
    does (an OFFSET would make the n-th page cost n times as much)."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0  # go on

    connect = SQLiteDatabase._connect

    def counting_connect(self: SQLiteDatabase) -> sqlite3.Connection:
        conn = connect(self)
        conn.set_progress_handler(count, 100)  # one step per 100 VM instructions
        return conn

    monkeypatch.setattr(SQLiteDatabase, "_connect", counting_connect)
    with Stores(tmp_path / "reg") as st:
        rows = [
            (f"e{i:05d}", "completed", f"2026-01-01T00:00:{i // 100 % 60:02d}.{i // 6000:03d}Z",
             f"s{i % 4}" if i % 5 else None, '{"k": "v"}')
            for i in range(6000)
        ]  # fmt: skip
        with st.db.write() as conn:
            conn.executemany(
                "INSERT INTO executions (execution_id, status, started_at, session, tags) VALUES (?, ?, ?, ?, ?)",
                rows,
            )

        listings: dict[str, Callable[[str | None], Any]] = {
            "executions": lambda c: st.executions.list_page(50, cursor=c),
            "by status": lambda c: st.executions.list_page(50, status="completed", cursor=c),
            "of a tenant": lambda c: st.executions.list_page(50, tenant="default", cursor=c),
            "by session": lambda c: st.executions.list_page(50, session="s1", cursor=c),
            "session log": lambda c: st.executions.session_log("s1", 50, cursor=c),
        }
        for name, fetch in listings.items():
            costs, cursor, seen = [], None, 0
            while True:
                before = steps[0]
                page = fetch(cursor)
                costs.append(steps[0] - before)
                seen += len(page.items)
                cursor = page.next_cursor
                if cursor is None:
                    break
            assert seen == (6000 if name in ("executions", "by status", "of a tenant") else 1200), name
            assert len(costs) >= 24
            assert max(costs[1:]) <= 2 * costs[1] + 20, (name, costs)  # no page costs more for its depth
        for tenant in ("", " AND tenant = 'default'"):  # every tenant's, one tenant's
            sessions = render(
                SQLITE, executions_module.SESSIONS_SQL.replace("{after}", "true").replace("{tenant}", tenant)
            )
            plan = sql(st.root, "EXPLAIN QUERY PLAN " + sessions.replace(":limit", "10"))
            assert any("executions_by_tenant_session" in row[-1] for row in plan), plan


def test_restart_keeps_data_and_fails_running(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    with Stores(root) as st:
        st.create("done", session="s")
        st.output.append("done", "hello\n")
        st.finish("done", "completed", result="1", heap_out="c" * 64)
        st.create("busy")
        st.output.append("busy", "working\n")  # buffered: close() flushes it
    with Stores(root) as st:
        done, busy = st.executions.get("done"), st.executions.get("busy")
        assert done is not None and done.status == "completed" and done.heap == "c" * 64
        assert busy is not None and busy.status == "running"
        assert st.output.read_lines("done").data == "hello\n"
        assert st.output.read_lines("busy").data == "working\n"
        assert st.executions.fail_running_on_startup("server restarted") == 1
        busy = st.executions.get("busy")
        assert busy is not None and busy.status == "failed" and busy.error == "server restarted"
        assert busy.completed_at is not None
        assert st.executions.fail_running_on_startup("again") == 0
        assert st.finish("busy", "completed") is None
        # Output may still be appended to a terminal execution after a restart; it is written
        # through (the log was not started by this process), so another reader sees it at once.
        st.output.append("busy", "late\n")
        assert st.output.read_lines("busy").data == "working\nlate\n"
        with SQLiteOutputLog(root, flush_interval=None) as other:
            assert other.read_lines("busy").data == "working\nlate\n"
    with Stores(root) as st:
        assert st.output.read_lines("busy").data == "working\nlate\n"


def test_committed_data_survives_a_kill(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    script = f"""
import os, signal, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from mcp_v8.storage import SQLiteExecutionStore, SQLiteOutputLog, open_database
db = open_database({str(root)!r})
executions, output = SQLiteExecutionStore(db), SQLiteOutputLog(db, flush_interval=None)
for execution_id in ("a", "b"):
    output.create(execution_id)
    executions.create(execution_id)
output.append("a", "line one\\n")
output.seal("a")
executions.finish("a", "completed", result="42")
output.append("b", "flushed\\n")
output.flush("b")
output.append("b", "only in memory\\n")
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr.decode()
    with Stores(root) as st:
        a = st.executions.get("a")
        assert a is not None and a.status == "completed" and a.result == "42"
        assert st.output.read_lines("a").data == "line one\n"
        assert st.output.read_lines("b").data == "flushed\n"
        assert st.executions.fail_running_on_startup("killed") == 1


def test_stores_write_only_their_own_tables(st: Stores) -> None:
    """The execution store never writes the output log's tables and the reverse, so either can
    move to another backend alone."""

    def rows(table: str) -> list[Any]:
        return sql(st.root, f"SELECT * FROM {table} ORDER BY 1, 2")

    st.output.create("o")
    st.output.append("o", "text\n")
    st.output.seal("o")
    output_tables = (rows("output_logs"), rows("output_chunks"))
    st.executions.create("o", session="s")
    st.executions.finish("o", "completed", result="1")
    st.executions.fail_running_on_startup("restart")
    st.executions.delete(st.executions.prunable(max_count=0))
    assert (rows("output_logs"), rows("output_chunks")) == output_tables

    st.executions.create("r")
    records = rows("executions")
    st.output.create("r")
    st.output.append("r", "more\n" * 10)
    st.output.seal("r")
    st.output.delete(["r", "o"])
    assert rows("executions") == records


# ================================================================================================
# Output log
# ================================================================================================


def all_lines(data: bytes) -> list[bytes]:
    """Reference line split: up to and including each newline, plus a final partial line."""
    lines = []
    start = 0
    while start < len(data):
        nl = data.find(b"\n", start)
        end = len(data) if nl < 0 else nl + 1
        lines.append(data[start:end])
        start = end
    return lines


def boundaries(text: str) -> list[int]:
    out = [0]
    for ch in text:
        out.append(out[-1] + len(ch.encode()))
    return out


MIXED = (
    "a\u00e9\u20ac\U0001f600\n" + "x\n" + "\u00e9\u00e9\n" + "\U0001f600\U0001f600z\n" + "\n" + "end\u20ac"
)


def feed(output: SQLiteOutputLog, execution_id: str, text: str, *, flush: bool) -> None:
    output.create(execution_id)
    # Uneven pieces, so chunk and buffer boundaries fall everywhere.
    pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
    for piece in pieces:
        output.append(execution_id, piece)
    if flush:
        output.flush(execution_id)


@pytest.mark.parametrize("flush", [True, False], ids=["flushed", "buffered"])
@pytest.mark.parametrize("chunk_bytes", [4, 5, 7, 64 * 1024])
def test_byte_mode_never_splits_utf8(tmp_path: Path, flush: bool, chunk_bytes: int) -> None:
    text = MIXED
    assert {len(c.encode()) for c in text} == {1, 2, 3, 4}
    raw = text.encode()
    total = len(raw)
    bounds = boundaries(text)
    root = tmp_path / "reg"
    with SQLiteOutputLog(root, flush_interval=None, chunk_bytes=chunk_bytes) as out:
        feed(out, "u", text, flush=flush)
        # flushed: also read back through another output log, from the database alone
        other = SQLiteOutputLog(root, flush_interval=None) if flush else None
        for reader in [out] if other is None else [out, other]:
            for offset in range(total + 3):
                for limit in range(0, 9):
                    page = reader.read_bytes("u", offset, limit)
                    s, e = page.start_byte, page.end_byte
                    where = (offset, limit, page)
                    # Starts at the first boundary at or after the offset; ends on a boundary.
                    assert s == min(b for b in bounds if b >= min(offset, total)), where
                    assert e in bounds, where
                    assert page.data.encode() == raw[s:e], where
                    if s < total and limit >= 1:
                        assert e > s, where  # always progress
                    if e - s > limit:
                        assert limit >= 1 and len(page.data) == 1, where  # only one oversized character
                    else:  # as much as fits
                        assert not any(e < b <= s + limit and b <= total for b in bounds), where
                    assert page.start_line == raw[:s].count(b"\n"), where
                    expected_end_line = raw[: e - 1].count(b"\n") + 1 if e > s else page.start_line
                    assert page.end_line == expected_end_line, where
                    assert (page.next_byte_offset, page.next_line_offset) == (e, page.end_line), where
                    assert page.has_more == (e < total), where
                    assert (page.total_bytes, page.total_lines) == (total, len(all_lines(raw))), where
        if other is not None:
            other.close()


@pytest.mark.parametrize("flush", [True, False], ids=["flushed", "buffered"])
@pytest.mark.parametrize("chunk_bytes", [4, 6, 64 * 1024])
def test_line_mode_matches_reference(tmp_path: Path, flush: bool, chunk_bytes: int) -> None:
    text = MIXED  # ends with a partial line, which counts as a line
    raw = text.encode()
    ref = all_lines(raw)
    root = tmp_path / "reg"
    with SQLiteOutputLog(root, flush_interval=None, chunk_bytes=chunk_bytes) as out:
        feed(out, "l", text, flush=flush)
        # flushed: also read back through another output log, from the database alone
        other = SQLiteOutputLog(root, flush_interval=None) if flush else None
        for reader in [out] if other is None else [out, other]:
            for offset in range(len(ref) + 3):
                for limit in range(0, len(ref) + 2):
                    page = reader.read_lines("l", offset, limit)
                    first = min(offset, len(ref))
                    last = min(first + limit, len(ref))
                    where = (offset, limit, page)
                    assert page.data.encode() == b"".join(ref[first:last]), where
                    assert (page.start_line, page.end_line) == (first, last), where
                    start_byte = len(b"".join(ref[:first]))
                    end_byte = len(b"".join(ref[:last]))
                    assert (page.start_byte, page.end_byte) == (start_byte, end_byte), where
                    assert (page.next_line_offset, page.next_byte_offset) == (last, end_byte), where
                    assert page.has_more == (last < len(ref)), where
                    assert (page.total_lines, page.total_bytes) == (len(ref), len(raw)), where
        if other is not None:
            other.close()


def test_empty_output(st: Stores) -> None:
    st.output.create("e")
    out = st.output
    for page in (out.read_lines("e", 0, 10), out.read_bytes("e", 0, 10), out.read_lines("e", 5, 10)):
        assert page == OutputPage("", 0, 0, 0, 0, 0, 0, False, 0, 0)
    assert out.totals("e") == OutputTotals(0, 0, False)


def test_unknown_execution(st: Stores) -> None:
    out = st.output
    with pytest.raises(ExecutionNotFound):
        out.read_lines("ghost")
    with pytest.raises(ExecutionNotFound):
        out.read_bytes("ghost")
    with pytest.raises(ExecutionNotFound):
        out.totals("ghost")
    with pytest.raises(ExecutionNotFound):
        out.append("ghost", "boo\n")
    st.executions.create("record-only")  # a record is not a log
    with pytest.raises(ExecutionNotFound):
        out.append("record-only", "boo\n")
    out.create("e")
    with pytest.raises(DuplicateExecution):
        out.create("e")
    with pytest.raises(ValueError):
        out.read_lines("e", -1, 10)
    with pytest.raises(ValueError):
        out.read_bytes("e", 0, -1)


def make_lines(n: int) -> list[str]:
    return [f"console line {i:06d}\n" for i in range(n)]


def test_line_paging_cost_does_not_grow_with_output(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    with SQLiteOutputLog(root, flush_interval=None, chunk_bytes=4096) as out:
        sizes = {"small": 1_000, "large": 100_000}
        for execution_id, n in sizes.items():
            out.create(execution_id)
            for line in make_lines(n):
                out.append(execution_id, line)
            out.seal(execution_id)
        n_chunks = chunk_count(root)
        assert n_chunks > 400  # many chunks, so a scan would show

        def rows_for(read: Callable[[str, int, int], OutputPage], *args: Any) -> int:
            before = out.chunk_rows_read
            read(*args)
            return out.chunk_rows_read - before

        costs = {}
        for execution_id, n in sizes.items():
            expected = make_lines(n)
            for offset in (0, 1, n // 2, n - 150, n - 100, n - 1):
                page = out.read_lines(execution_id, offset, 100)
                assert page.data == "".join(expected[offset : offset + 100])
                costs[(execution_id, "lines", offset)] = rows_for(out.read_lines, execution_id, offset, 100)
            for offset in (0, n * 10, n * 20 - 7):
                costs[(execution_id, "bytes", offset)] = rows_for(out.read_bytes, execution_id, offset, 2000)
        assert max(costs.values()) <= 3, costs

        # A full walk in pages reads each chunk about once (no rescans from the start).
        before = out.chunk_rows_read
        offset, pieces = 0, []
        while True:
            page = out.read_lines("large", offset, 1000)
            pieces.append(page.data)
            offset = page.next_line_offset
            if not page.has_more:
                break
        assert "".join(pieces) == "".join(make_lines(100_000))
        large_chunks = chunk_count(root, "large")
        pages = len(pieces)
        assert pages == 100
        assert out.chunk_rows_read - before <= large_chunks + pages


def test_reads_include_buffered_output(st: Stores) -> None:
    out = st.output
    out.create("b")
    out.append("b", "one\n")
    out.append("b", "two\n")
    assert chunk_count(st.root) == 0  # still in memory
    assert out.read_lines("b").data == "one\ntwo\n"
    assert out.read_bytes("b", 4, 100).data == "two\n"
    assert out.totals("b") == OutputTotals(8, 2, False)
    with SQLiteOutputLog(st.root, flush_interval=None) as other:
        assert other.totals("b") == OutputTotals(0, 0, False)  # another reader sees the database only
        # seal() writes everything appended before it: then every reader sees all output.
        out.seal("b")
        assert other.read_lines("b").data == "one\ntwo\n"
        assert other.totals("b") == OutputTotals(8, 2, False)


def test_console_flood_is_coalesced_into_chunks(st: Stores) -> None:
    out = st.output
    out.create("flood")
    for i in range(20_000):
        out.append("flood", f"tick {i}\n")
    # Full chunks are on disk, the tail is in memory: reads see both, totals add up.
    assert 0 < chunk_count(st.root, "flood") < 4
    page = out.read_lines("flood", 19_990, 100)
    assert page.data == "".join(f"tick {i}\n" for i in range(19_990, 20_000))
    assert (page.total_lines, page.end_line, page.has_more) == (20_000, 20_000, False)
    assert out.read_bytes("flood", page.start_byte, 1 << 20).data == page.data
    out.seal("flood")
    totals = out.totals("flood")
    assert totals.total_lines == 20_000
    n_chunks = chunk_count(st.root, "flood")
    assert n_chunks == -(-totals.total_bytes // (64 * 1024))  # full 64 KiB chunks, one write each


def test_failed_flush_keeps_output_buffered(st: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    st.output.create("w")

    def locked(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(st.db, "write", locked)
    big = "x" * 100 + "\n"
    for _ in range(1000):  # well past one chunk: every append tries to flush
        st.output.append("w", big)
    assert st.output.read_lines("w", 999, 10).data == big
    # A seal the database refuses keeps the output buffered and readable here.
    st.output.seal("w")
    assert st.output.totals("w").total_lines == 1000
    monkeypatch.undo()
    st.output.flush("w")
    assert chunk_count(st.root, "w") > 0
    with SQLiteOutputLog(st.root, flush_interval=None) as other:
        page = other.read_lines("w", 0, 2000)
        assert page.total_lines == 1000 and page.data == big * 1000


def test_background_flush(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    with SQLiteOutputLog(root, flush_interval=0.05) as out:
        out.create("f")
        out.append("f", "soon on disk\n")
        deadline = time.monotonic() + 60  # a bound for a stuck flusher, not a speed requirement
        while chunk_count(root) == 0:
            assert time.monotonic() < deadline, "the flusher never wrote the buffered output"
            time.sleep(0.01)


def test_big_append_is_split_into_bounded_chunks(tmp_path: Path) -> None:
    text = ("\u20ac" * 1000 + "\n") * 50
    root = tmp_path / "reg"
    with SQLiteOutputLog(root, flush_interval=None, chunk_bytes=1000) as out:
        out.create("big")
        out.append("big", text)
        out.flush("big")
        sizes = [row[0] for row in sql(root, "SELECT length(data) FROM output_chunks ORDER BY seq")]
        assert max(sizes) <= 1000 and sum(sizes) == len(text.encode())
        for (data,) in sql(root, "SELECT data FROM output_chunks"):
            bytes(data).decode("utf-8")  # every chunk is valid UTF-8 on its own
        assert out.read_lines("big", 10, 5).data == ("\u20ac" * 1000 + "\n") * 5


@pytest.mark.parametrize("chunk_bytes", [64, 64 * 1024])
def test_concurrent_appends_keep_entries_whole(tmp_path: Path, chunk_bytes: int) -> None:
    n_threads, per_thread = 8, 500
    with Stores(tmp_path / "reg", chunk_bytes=chunk_bytes) as st:
        st.create("c")
        start = threading.Barrier(n_threads)

        def writer(t: int) -> None:
            start.wait()
            for i in range(per_thread):
                st.output.append("c", f"thread {t} entry {i} \u00e9\U0001f600\n")

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(n_threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        st.finish("c", "completed")
        expected = {
            f"thread {t} entry {i} \u00e9\U0001f600\n" for t in range(n_threads) for i in range(per_thread)
        }
        with SQLiteOutputLog(st.root, flush_interval=None) as other:  # the database alone
            page = other.read_lines("c", 0, 10_000)
        got = page.data.splitlines(keepends=True)
        assert len(got) == len(expected) and set(got) == expected
        assert page.total_lines == len(expected)
        for t in range(n_threads):  # each writer's entries stay in order
            mine = [line for line in got if line.startswith(f"thread {t} ")]
            assert mine == [f"thread {t} entry {i} \u00e9\U0001f600\n" for i in range(per_thread)]


def test_appends_racing_a_seal_are_all_kept(tmp_path: Path) -> None:
    """A worker may still print while its cancel seals the log: every entry is kept, whole, in
    order, whether it landed before the seal (buffered) or after (written through)."""
    n_threads, per_thread = 4, 300
    with Stores(tmp_path / "reg", chunk_bytes=256) as st:
        st.create("s")
        start = threading.Barrier(n_threads + 1)

        def writer(t: int) -> None:
            start.wait()
            for i in range(per_thread):
                st.output.append("s", f"w{t} {i}\n")

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(n_threads)]
        for thread in threads:
            thread.start()
        start.wait()
        assert st.finish("s", "cancelled", error="execution cancelled")
        for thread in threads:
            thread.join()
        with SQLiteOutputLog(st.root, flush_interval=None) as other:  # nothing left in memory only
            got = other.read_lines("s", 0, 10_000).data.splitlines(keepends=True)
        assert sorted(got) == sorted(f"w{t} {i}\n" for t in range(n_threads) for i in range(per_thread))
        for t in range(n_threads):
            assert [line for line in got if line.startswith(f"w{t} ")] == [
                f"w{t} {i}\n" for i in range(per_thread)
            ]


class ObservedLock:
    """Wraps a lock that another thread holds; ``waited`` is set when a thread has to wait for it."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.waited = threading.Event()

    def acquire(self, blocking: bool = True) -> bool:
        if self._inner.acquire(blocking=False):
            return True
        if not blocking:
            return False
        self.waited.set()
        return bool(self._inner.acquire())

    def release(self) -> None:
        self._inner.release()

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


COLD_HANG = 30.0  # seconds; only ever reached when the code under test is broken


class ParkedLoad:
    """An append to a log not in memory, run by ``thread``, parked inside its first database read
    (the load of the log): ``parked`` while it is held there."""

    def __init__(self, thread: threading.Thread) -> None:
        self.thread = thread
        self.reached = threading.Event()
        self.release = threading.Event()
        self.parked = False


@contextlib.contextmanager
def parked_cold_append(
    st: Stores, monkeypatch: pytest.MonkeyPatch, execution_id: str, text: str
) -> Iterator[ParkedLoad]:
    """Appends ``text`` to ``execution_id`` (a log not in memory) in a thread parked inside its
    first database read until the block ends."""
    original = st.db.connection
    park = ParkedLoad(threading.Thread(target=st.output.append, args=(execution_id, text)))

    @contextlib.contextmanager
    def connection() -> Iterator[sqlite3.Connection]:
        with original() as conn:
            if threading.current_thread() is park.thread and not park.reached.is_set():
                park.parked = True
                park.reached.set()
                park.release.wait(COLD_HANG)
                park.parked = False
            yield conn

    monkeypatch.setattr(st.db, "connection", connection)
    park.thread.start()
    try:
        assert park.reached.wait(COLD_HANG)
        yield park
    finally:
        park.release.set()
        park.thread.join(COLD_HANG)
        monkeypatch.setattr(st.db, "connection", original)
    assert not park.thread.is_alive()


def test_a_slow_cold_load_of_one_log_holds_up_no_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An append to a log that is not in memory (sealed, or written by an earlier process) loads it
    # from the database. While that load is parked inside its database read, appends and reads of
    # other logs, warm and cold, complete; an append to the same log waits for the load and then
    # goes on from what it loaded.
    with Stores(tmp_path / "reg") as st:
        for eid in ("cold", "other-cold", "warm"):
            st.create(eid)
            st.output.append(eid, f"{eid} 1\n")
        st.finish("cold")
        st.finish("other-cold")  # sealed: neither is in memory any more

        with parked_cold_append(st, monkeypatch, "cold", "cold 2\n") as park:
            others: list[Any] = []

            def use_other_logs() -> None:
                st.output.append("warm", "warm 2\n")
                others.append(st.output.read_lines("warm").data)
                others.append(st.output.read_lines("other-cold").data)
                st.output.append("other-cold", "other-cold 2\n")  # a cold load of its own
                others.append(st.output.read_bytes("other-cold").data)

            elsewhere = threading.Thread(target=use_other_logs)
            elsewhere.start()
            elsewhere.join(COLD_HANG)
            assert not elsewhere.is_alive() and park.parked, "other logs waited for one log's cold load"
            assert others == ["warm 1\nwarm 2\n", "other-cold 1\n", "other-cold 1\nother-cold 2\n"]

            loading = st.output._states["cold"]  # published while it loads, its lock held
            observed = ObservedLock(loading.lock)
            loading.lock = observed  # type: ignore[assignment]
            same = threading.Thread(target=st.output.append, args=("cold", "cold 3\n"))
            same.start()
            assert observed.waited.wait(COLD_HANG)  # waits for the load, loads no copy of its own
        same.join(COLD_HANG)
        assert not same.is_alive()
        with SQLiteOutputLog(st.root, flush_interval=None) as other:  # the database alone
            page = other.read_lines("cold")
        assert page.data in ("cold 1\ncold 2\ncold 3\n", "cold 1\ncold 3\ncold 2\n")
        assert (page.total_lines, page.total_bytes) == (3, len(page.data))


def test_the_flusher_does_not_wait_for_a_slow_cold_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Stores(tmp_path / "reg", flush_interval=0.01) as st:
        st.create("cold")
        st.output.append("cold", "cold 1\n")
        st.finish("cold")
        with parked_cold_append(st, monkeypatch, "cold", "cold 2\n") as park:
            # Created now, the log comes after the loading one in the flusher's round.
            writer = threading.Thread(
                target=lambda: (st.create("warm"), st.output.append("warm", "buffered\n"))
            )
            writer.start()
            writer.join(COLD_HANG)
            assert not writer.is_alive()
            deadline = time.monotonic() + COLD_HANG
            while not chunk_count(st.root, "warm"):  # only the flusher writes it now
                assert time.monotonic() < deadline, "the flusher waited for another log's cold load"
                time.sleep(0.01)
            assert park.parked


# ================================================================================================
# Output log: truncation; retention
# ================================================================================================


def test_truncation_marker(tmp_path: Path) -> None:
    cap = 100
    marker = truncation_marker(cap)
    assert marker == "[output truncated: limit of 100 bytes reached]\n"
    root = tmp_path / "reg"
    with SQLiteOutputLog(root, flush_interval=None, max_output_bytes=cap) as out:
        out.create("t")
        lines = [f"line {i:02d}\n" for i in range(30)]  # 8 bytes each
        for line in lines:
            out.append("t", line)
        data = out.read_lines("t", 0, 1000).data
        # 12 whole lines (96 bytes), then 4 bytes of the 13th, then the marker on its own line.
        assert data == "".join(lines[:12]) + "line\n" + marker
        assert data.count("[output truncated") == 1
        assert out.totals("t").truncated
        out.append("t", "more\n")
        out.seal("t")
        assert out.read_lines("t", 0, 1000).data == data
        assert out.totals("t") == OutputTotals(len(data.encode()), 14, True)
    with SQLiteOutputLog(root, flush_interval=None, max_output_bytes=cap) as out:
        assert out.totals("t").truncated
        out.append("t", "after restart\n")
        assert out.read_lines("t", 0, 1000).data == data


def test_truncation_never_splits_a_character(tmp_path: Path) -> None:
    with SQLiteOutputLog(tmp_path / "reg", flush_interval=None, max_output_bytes=10) as out:
        out.create("t")
        out.append("t", "\U0001f600" * 5 + "\n")  # 21 bytes; 2 characters fit in 10
        page = out.read_lines("t", 0, 10)
        assert page.data == "\U0001f600\U0001f600\n" + truncation_marker(10)
        assert page.total_lines == 2


def test_exactly_at_cap_is_not_truncated(tmp_path: Path) -> None:
    with SQLiteOutputLog(tmp_path / "reg", flush_interval=None, max_output_bytes=8) as out:
        out.create("t")
        out.append("t", "1234567\n")
        assert not out.totals("t").truncated
        out.append("t", "x\n")
        assert out.read_lines("t").data == "1234567\n" + truncation_marker(8)


def test_prune_by_count_and_age(st: Stores) -> None:
    for i in range(6):
        st.create(f"p{i}")
        st.output.append(f"p{i}", f"output {i}\n")
    for i in (0, 1, 2, 3):
        st.finish(f"p{i}", "completed")
    # p4 and p5 stay running; they are never pruned and do not count.
    assert st.prune(max_count=2) == 2
    assert [r.execution_id for r in st.executions.list()] == ["p5", "p4", "p3", "p2"]
    assert chunk_count(st.root, "p0") == 0 and chunk_count(st.root, "p1") == 0
    with pytest.raises(ExecutionNotFound):
        st.output.read_lines("p0")
    assert st.prune(max_count=2) == 0

    # Age: make p2 old, p3 recent.
    sql(st.root, "UPDATE executions SET completed_at = '2000-01-01T00:00:00.000Z' WHERE execution_id = 'p2'")
    assert st.prune(max_age_seconds=3600) == 1
    assert [r.execution_id for r in st.executions.list()] == ["p5", "p4", "p3"]

    assert st.prune(max_age_seconds=0, max_count=0) == 1
    assert [r.execution_id for r in st.executions.list()] == ["p5", "p4"]
    assert st.output.read_lines("p4").data == "output 4\n"
    assert st.prune() == 0
    # Running executions are refused by delete() whoever asks.
    assert st.executions.delete(["p4", "p5"]) == 0
    with pytest.raises(ValueError):
        st.executions.prunable(max_count=-1)


def test_service_prune_removes_records_and_their_output(tmp_path: Path) -> None:
    from mcp_v8.app import Service
    from mcp_v8.config import Settings

    service = Service(Settings(data_dir=tmp_path, workers=1, retention_max_count=1))  # never started
    try:
        for name in ("old", "new"):
            service.output.create(name)
            service.executions.create(name)
            service.output.append(name, f"{name}\n")
            service.output.seal(name)
            service.executions.finish(name, "completed")
        assert service.prune() == 1
        assert [r.execution_id for r in service.executions.list()] == ["new"]
        with pytest.raises(ExecutionNotFound):
            service.output.totals("old")
        assert service.output.read_lines("new").data == "new\n"
        assert sql(tmp_path, "SELECT execution_id FROM output_logs") == [("new",)]
    finally:
        service.close()


def test_closed_stores_refuse_work(tmp_path: Path) -> None:
    st = Stores(tmp_path / "reg", flush_interval=0.05)
    st.create("z")
    st.close()
    st.close()  # idempotent
    assert not any(t.name == "mcp-v8-output-flusher" and t.is_alive() for t in threading.enumerate())
    with pytest.raises(RuntimeError):
        st.executions.get("z")
    with pytest.raises(RuntimeError):
        st.output.append("z", "late\n")
    with pytest.raises(RuntimeError):
        st.output.read_lines("z")


def test_connections_are_never_shared_between_threads(tmp_path: Path) -> None:
    """The pool lends each connection to one thread at a time: eight threads holding one at
    once hold eight different ones, and a connection comes back to the pool for the next."""
    n = 8
    with open_database(tmp_path) as db:
        with db.connection() as warm:  # one idle connection for all of them to race for
            pass
        held: list[int] = []
        lock = threading.Lock()
        all_holding = threading.Barrier(n)

        def borrow() -> None:
            with db.connection() as conn:
                with lock:
                    held.append(id(conn))
                all_holding.wait()  # nobody returns theirs before everyone has one
                conn.execute("SELECT 1").fetchone()

        threads = [threading.Thread(target=borrow) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(held)) == n and id(warm) in held
        with db.connection() as again:
            assert id(again) in held  # reused, not opened anew


def test_service_removes_stale_heap_temp_files_at_start(tmp_path: Path) -> None:
    from mcp_v8.app import Service
    from mcp_v8.config import Settings

    fanout = tmp_path / "heaps" / "ab"
    fanout.mkdir(parents=True)
    stale = fanout / ".cdef.0123456789abcdef.tmp"
    stale.write_bytes(b"half a snapshot")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    service = Service(Settings(data_dir=tmp_path, workers=1))  # never started
    service.close()
    assert not stale.exists()


def test_prune_heaps_by_last_use(tmp_path: Path) -> None:
    store = FileHeapStore(tmp_path, durable=False)
    old, used, fresh = (hashlib.sha256(bytes([i])).hexdigest() for i in range(3))
    for key in (old, used, fresh):
        store.put(key, b"envelope " + key.encode(), session=None, tags=None)
    long_ago = time.time() - 7200
    for key in (old, used):
        os.utime(tmp_path / "heaps" / key[:2] / key[2:], (long_ago, long_ago))
    store.get(used)  # a restore counts as a use
    assert store.prune(3600) == 1
    assert not store.exists(old) and store.meta(old) is None
    assert store.exists(used) and store.exists(fresh)


def test_a_heap_key_matches_its_envelope_payload_or_its_bytes() -> None:
    from mcp_v8.storage.blobs import matches_key

    payload = b"compressed snapshot bytes" * 10
    digest = hashlib.sha256(payload).digest()
    envelope = b"MAGIC\x02\x00header-of-any-length" + digest + payload  # the key precedes the payload
    assert matches_key(digest.hex(), envelope)
    assert not matches_key(digest.hex(), envelope[:-1] + b"x")  # a changed payload
    assert not matches_key(digest.hex(), b"other" + digest + payload + b"tail")
    plain = b"not an envelope"
    assert matches_key(hashlib.sha256(plain).hexdigest(), plain)
    assert not matches_key(hashlib.sha256(plain).hexdigest(), plain + b"!")


# ================================================================================================
# Statements written once
# ================================================================================================


def test_a_statement_is_spelt_for_each_driver() -> None:
    """Parameters, fragments and percent signs become each driver's; literals, quoted names and
    casts stay as written."""
    postgres = pytest.importorskip("mcp_v8.storage.postgres.database")
    statement = (
        "SELECT 'a:b {x} 5%' AS \"c:d\", :p::text, 100 % 7 FROM t"
        " WHERE k {any:keys} AND v = {json:doc} AND m = {greatest}(a, :p){for_update}"
    )
    assert render(SQLITE, statement) == (
        "SELECT 'a:b {x} 5%' AS \"c:d\", :p::text, 100 % 7 FROM t"
        " WHERE k IN (SELECT value FROM json_each(:keys)) AND v = :doc AND m = max(a, :p)"
    )
    assert render(postgres.POSTGRES, statement) == (
        "SELECT 'a:b {x} 5%%' AS \"c:d\", %(p)s::text, 100 %% 7 FROM t"
        " WHERE k = ANY(%(keys)s) AND v = %(doc)s::jsonb AND m = greatest(a, %(p)s) FOR UPDATE"
    )
    with pytest.raises(ValueError, match="no fragment 'nothing'"):
        render(SQLITE, "SELECT {nothing}")
