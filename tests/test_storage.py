"""Tests of mcp_v8.storage: the heap store and the execution registry."""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp_v8.storage import (
    DuplicateExecution,
    ExecutionNotFound,
    FileHeapStore,
    HeapNotFound,
    HeapStore,
    InvalidHeapKey,
    OutputPage,
    Registry,
    truncation_marker,
    validate_heap_key,
)

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
# Registry: records
# ================================================================================================


def sql(reg: Registry, query: str, *params: object) -> list[Any]:
    """Runs ``query`` on the registry's database through a separate connection (committed)."""
    conn = sqlite3.connect(reg.path)
    try:
        with conn:
            return conn.execute(query, params).fetchall()
    finally:
        conn.close()


def chunk_count(reg: Registry, execution_id: str | None = None) -> int:
    if execution_id is None:
        return int(sql(reg, "SELECT count(*) FROM output_chunks")[0][0])
    return int(sql(reg, "SELECT count(*) FROM output_chunks WHERE execution_id = ?", execution_id)[0][0])


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[Registry]:
    registry = Registry(tmp_path / "reg", flush_interval=None)
    yield registry
    registry.close()


def test_create_get_finish(reg: Registry) -> None:
    reg.create("e1", session="sess", tags={"k": "v"}, heap_in="a" * 64, code_bytes=12)
    rec = reg.get("e1")
    assert rec is not None
    assert rec.status == "running" and not rec.is_terminal
    assert ISO_MS_Z.match(rec.started_at)
    assert (rec.completed_at, rec.result, rec.error, rec.heap, rec.duration_ms) == (None,) * 5
    assert (rec.session, rec.tags, rec.heap_in, rec.code_bytes) == ("sess", {"k": "v"}, "a" * 64, 12)

    assert reg.finish("e1", "completed", result="[2,4]", heap_out="b" * 64, duration_ms=3.5) is True
    rec = reg.get("e1")
    assert rec is not None and rec.status == "completed" and rec.is_terminal
    assert rec.completed_at is not None and ISO_MS_Z.match(rec.completed_at)
    assert (rec.result, rec.heap, rec.duration_ms, rec.error) == ("[2,4]", "b" * 64, 3.5, None)

    # The first terminal transition is never overwritten.
    assert reg.finish("e1", "failed", error="late") is False
    rec2 = reg.get("e1")
    assert rec2 == rec

    assert reg.get("nope") is None
    assert reg.finish("nope", "completed") is False
    with pytest.raises(DuplicateExecution):
        reg.create("e1")
    with pytest.raises(ValueError):
        reg.finish("e1", "running")  # type: ignore[arg-type]


def test_duration_defaults_to_wall_clock(reg: Registry) -> None:
    reg.create("e")
    time.sleep(0.02)
    reg.finish("e", "timed_out", error="deadline")
    rec = reg.get("e")
    assert rec is not None and rec.duration_ms is not None and rec.duration_ms >= 10


def test_first_terminal_transition_wins_under_concurrency(reg: Registry) -> None:
    statuses = ["completed", "failed", "cancelled", "timed_out"]
    n_exec, n_threads = 40, 8
    for i in range(n_exec):
        reg.create(f"x{i}")
    wins: dict[str, list[tuple[int, str]]] = {f"x{i}": [] for i in range(n_exec)}
    lock = threading.Lock()
    barrier = threading.Barrier(n_threads)

    def racer(t: int) -> None:
        barrier.wait()
        for i in range(n_exec):
            status = statuses[(t + i) % len(statuses)]
            if reg.finish(f"x{i}", status, error=f"thread {t}"):  # type: ignore[arg-type]
                with lock:
                    wins[f"x{i}"].append((t, status))

    threads = [threading.Thread(target=racer, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for execution_id, won in wins.items():
        assert len(won) == 1, (execution_id, won)
        rec = reg.get(execution_id)
        assert rec is not None
        assert (rec.status, rec.error) == (won[0][1], f"thread {won[0][0]}")


def test_list_newest_first_limit_and_status(reg: Registry) -> None:
    for i in range(5):
        reg.create(f"e{i}")
    reg.finish("e1", "completed")
    reg.finish("e3", "failed", error="boom")
    # Same started_at for all: the tie is broken by insertion order, newest first.
    sql(reg, "UPDATE executions SET started_at = '2024-01-01T00:00:00.000Z'")
    assert [r.execution_id for r in reg.list()] == ["e4", "e3", "e2", "e1", "e0"]
    assert [r.execution_id for r in reg.list(limit=2)] == ["e4", "e3"]
    assert [r.execution_id for r in reg.list(status="running")] == ["e4", "e2", "e0"]
    assert [r.execution_id for r in reg.list(status="failed")] == ["e3"]
    sql(reg, "UPDATE executions SET started_at = '2030-01-01T00:00:00.000Z' WHERE execution_id = 'e0'")
    assert [r.execution_id for r in reg.list(limit=1)] == ["e0"]


def test_restart_keeps_data_and_fails_running(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    with Registry(root, flush_interval=None) as reg:
        reg.create("done", session="s")
        reg.append_output("done", "hello\n")
        reg.finish("done", "completed", result="1", heap_out="c" * 64)
        reg.create("busy")
        reg.append_output("busy", "working\n")  # buffered: close() flushes it
    with Registry(root, flush_interval=None) as reg:
        done, busy = reg.get("done"), reg.get("busy")
        assert done is not None and done.status == "completed" and done.heap == "c" * 64
        assert busy is not None and busy.status == "running"
        assert reg.read_lines("done").data == "hello\n"
        assert reg.read_lines("busy").data == "working\n"
        assert reg.fail_running_on_startup("server restarted") == 1
        busy = reg.get("busy")
        assert busy is not None and busy.status == "failed" and busy.error == "server restarted"
        assert busy.completed_at is not None
        assert reg.fail_running_on_startup("again") == 0
        assert reg.finish("busy", "completed") is False
        # Output may still be appended to a terminal execution after a restart.
        reg.append_output("busy", "late\n")
        assert reg.read_lines("busy").data == "working\nlate\n"
    with Registry(root, flush_interval=None) as reg:
        assert reg.read_lines("busy").data == "working\nlate\n"


def test_committed_data_survives_a_kill(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    script = f"""
import os, signal, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from mcp_v8.storage import Registry
reg = Registry({str(root)!r}, flush_interval=None)
reg.create("a")
reg.append_output("a", "line one\\n")
reg.finish("a", "completed", result="42")
reg.create("b")
reg.append_output("b", "flushed\\n")
reg.flush("b")
reg.append_output("b", "only in memory\\n")
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr.decode()
    with Registry(root, flush_interval=None) as reg:
        a = reg.get("a")
        assert a is not None and a.status == "completed" and a.result == "42"
        assert reg.read_lines("a").data == "line one\n"
        assert reg.read_lines("b").data == "flushed\n"
        assert reg.fail_running_on_startup("killed") == 1


# ================================================================================================
# Registry: console output
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


def feed(reg: Registry, execution_id: str, text: str, *, flush: bool) -> None:
    reg.create(execution_id)
    # Uneven pieces, so chunk and buffer boundaries fall everywhere.
    pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
    for piece in pieces:
        reg.append_output(execution_id, piece)
    if flush:
        reg.flush(execution_id)


@pytest.mark.parametrize("flush", [True, False], ids=["flushed", "buffered"])
@pytest.mark.parametrize("chunk_bytes", [4, 5, 7, 64 * 1024])
def test_byte_mode_never_splits_utf8(tmp_path: Path, flush: bool, chunk_bytes: int) -> None:
    text = MIXED
    assert {len(c.encode()) for c in text} == {1, 2, 3, 4}
    raw = text.encode()
    total = len(raw)
    bounds = boundaries(text)
    with Registry(tmp_path / "reg", flush_interval=None, chunk_bytes=chunk_bytes) as reg:
        feed(reg, "u", text, flush=flush)
        # flushed: also read back through another registry, from the database alone
        other = Registry(reg.root, flush_interval=None) if flush else None
        for reader in [reg] if other is None else [reg, other]:
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
    with Registry(tmp_path / "reg", flush_interval=None, chunk_bytes=chunk_bytes) as reg:
        feed(reg, "l", text, flush=flush)
        # flushed: also read back through another registry, from the database alone
        other = Registry(reg.root, flush_interval=None) if flush else None
        for reader in [reg] if other is None else [reg, other]:
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


def test_empty_output(reg: Registry) -> None:
    reg.create("e")
    for page in (reg.read_lines("e", 0, 10), reg.read_bytes("e", 0, 10), reg.read_lines("e", 5, 10)):
        assert page == OutputPage("", 0, 0, 0, 0, 0, 0, False, 0, 0)


def test_unknown_execution(reg: Registry) -> None:
    with pytest.raises(ExecutionNotFound):
        reg.read_lines("ghost")
    with pytest.raises(ExecutionNotFound):
        reg.read_bytes("ghost")
    with pytest.raises(ExecutionNotFound):
        reg.append_output("ghost", "boo\n")
    reg.create("e")
    with pytest.raises(ValueError):
        reg.read_lines("e", -1, 10)
    with pytest.raises(ValueError):
        reg.read_bytes("e", 0, -1)


def make_lines(n: int) -> list[str]:
    return [f"console line {i:06d}\n" for i in range(n)]


def test_line_paging_cost_does_not_grow_with_output(tmp_path: Path) -> None:
    with Registry(tmp_path / "reg", flush_interval=None, chunk_bytes=4096) as reg:
        sizes = {"small": 1_000, "large": 100_000}
        for execution_id, n in sizes.items():
            reg.create(execution_id)
            for line in make_lines(n):
                reg.append_output(execution_id, line)
            reg.finish(execution_id, "completed")
        n_chunks = chunk_count(reg)
        assert n_chunks > 400  # many chunks, so a scan would show

        def rows_for(read: Callable[[str, int, int], OutputPage], *args: Any) -> int:
            before = reg.chunk_rows_read
            read(*args)
            return reg.chunk_rows_read - before

        costs = {}
        for execution_id, n in sizes.items():
            expected = make_lines(n)
            for offset in (0, 1, n // 2, n - 150, n - 100, n - 1):
                page = reg.read_lines(execution_id, offset, 100)
                assert page.data == "".join(expected[offset : offset + 100])
                costs[(execution_id, "lines", offset)] = rows_for(reg.read_lines, execution_id, offset, 100)
            for offset in (0, n * 10, n * 20 - 7):
                costs[(execution_id, "bytes", offset)] = rows_for(reg.read_bytes, execution_id, offset, 2000)
        assert max(costs.values()) <= 3, costs

        # A full walk in pages reads each chunk about once (no rescans from the start).
        before = reg.chunk_rows_read
        offset, pieces = 0, []
        while True:
            page = reg.read_lines("large", offset, 1000)
            pieces.append(page.data)
            offset = page.next_line_offset
            if not page.has_more:
                break
        assert "".join(pieces) == "".join(make_lines(100_000))
        large_chunks = chunk_count(reg, "large")
        pages = len(pieces)
        assert pages == 100
        assert reg.chunk_rows_read - before <= large_chunks + pages


def test_reads_include_buffered_output(reg: Registry) -> None:
    reg.create("b")
    reg.append_output("b", "one\n")
    reg.append_output("b", "two\n")
    assert chunk_count(reg) == 0  # still in memory
    assert reg.read_lines("b").data == "one\ntwo\n"
    assert reg.read_bytes("b", 4, 100).data == "two\n"
    rec = reg.get("b")
    assert rec is not None and (rec.total_bytes, rec.total_lines) == (8, 2)
    # finish() flushes before the transition: another reader of the database sees all output.
    reg.finish("b", "completed")
    with Registry(reg.root, flush_interval=None) as other:
        assert other.read_lines("b").data == "one\ntwo\n"


def test_console_flood_is_coalesced_into_chunks(tmp_path: Path) -> None:
    with Registry(tmp_path / "reg", flush_interval=None) as reg:
        reg.create("flood")
        for i in range(20_000):
            reg.append_output("flood", f"tick {i}\n")
        # Full chunks are on disk, the tail is in memory: reads see both, totals add up.
        assert 0 < chunk_count(reg, "flood") < 4
        page = reg.read_lines("flood", 19_990, 100)
        assert page.data == "".join(f"tick {i}\n" for i in range(19_990, 20_000))
        assert (page.total_lines, page.end_line, page.has_more) == (20_000, 20_000, False)
        assert reg.read_bytes("flood", page.start_byte, 1 << 20).data == page.data
        reg.finish("flood", "completed")
        rec = reg.get("flood")
        assert rec is not None and rec.total_lines == 20_000
        n_chunks = chunk_count(reg, "flood")
        assert n_chunks == -(-rec.total_bytes // (64 * 1024))  # full 64 KiB chunks, one write each


def test_failed_flush_keeps_output_buffered(reg: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    reg.create("w")

    def locked(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(reg, "_write", locked)
    big = "x" * 100 + "\n"
    for _ in range(1000):  # well past one chunk: every append tries to flush
        reg.append_output("w", big)
    assert reg.read_lines("w", 999, 10).data == big
    monkeypatch.undo()
    reg.flush("w")
    assert chunk_count(reg, "w") > 0
    with Registry(reg.root, flush_interval=None) as other:
        page = other.read_lines("w", 0, 2000)
        assert page.total_lines == 1000 and page.data == big * 1000


def test_background_flush(tmp_path: Path) -> None:
    with Registry(tmp_path / "reg", flush_interval=0.05) as reg:
        reg.create("f")
        reg.append_output("f", "soon on disk\n")
        deadline = time.monotonic() + 10
        while chunk_count(reg) == 0:
            assert time.monotonic() < deadline, "the flusher never wrote the buffered output"
            time.sleep(0.01)


def test_big_append_is_split_into_bounded_chunks(tmp_path: Path) -> None:
    text = ("\u20ac" * 1000 + "\n") * 50
    with Registry(tmp_path / "reg", flush_interval=None, chunk_bytes=1000) as reg:
        reg.create("big")
        reg.append_output("big", text)
        reg.flush("big")
        sizes = [row[0] for row in sql(reg, "SELECT length(data) FROM output_chunks ORDER BY seq")]
        assert max(sizes) <= 1000 and sum(sizes) == len(text.encode())
        for (data,) in sql(reg, "SELECT data FROM output_chunks"):
            bytes(data).decode("utf-8")  # every chunk is valid UTF-8 on its own
        assert reg.read_lines("big", 10, 5).data == ("\u20ac" * 1000 + "\n") * 5


def test_concurrent_appends_keep_entries_whole(reg: Registry) -> None:
    reg.create("c")
    n_threads, per_thread = 8, 500

    def writer(t: int) -> None:
        for i in range(per_thread):
            reg.append_output("c", f"thread {t} entry {i} \u00e9\U0001f600\n")

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    reg.finish("c", "completed")
    expected = {
        f"thread {t} entry {i} \u00e9\U0001f600\n" for t in range(n_threads) for i in range(per_thread)
    }
    page = reg.read_lines("c", 0, 10_000)
    got = page.data.splitlines(keepends=True)
    assert len(got) == len(expected) and set(got) == expected
    assert page.total_lines == len(expected)
    for t in range(n_threads):  # each writer's entries stay in order
        mine = [line for line in got if line.startswith(f"thread {t} ")]
        assert mine == [f"thread {t} entry {i} \u00e9\U0001f600\n" for i in range(per_thread)]


# ================================================================================================
# Registry: truncation and retention
# ================================================================================================


def test_truncation_marker(tmp_path: Path) -> None:
    cap = 100
    marker = truncation_marker(cap)
    assert marker == "[output truncated: limit of 100 bytes reached]\n"
    with Registry(tmp_path / "reg", flush_interval=None, max_output_bytes=cap) as reg:
        reg.create("t")
        lines = [f"line {i:02d}\n" for i in range(30)]  # 8 bytes each
        for line in lines:
            reg.append_output("t", line)
        data = reg.read_lines("t", 0, 1000).data
        # 12 whole lines (96 bytes), then 4 bytes of the 13th, then the marker on its own line.
        assert data == "".join(lines[:12]) + "line\n" + marker
        assert data.count("[output truncated") == 1
        rec = reg.get("t")
        assert rec is not None and rec.truncated
        reg.append_output("t", "more\n")
        reg.finish("t", "completed")
        assert reg.read_lines("t", 0, 1000).data == data
        rec = reg.get("t")
        assert rec is not None and rec.truncated and rec.total_bytes == len(data.encode())
    with Registry(tmp_path / "reg", flush_interval=None, max_output_bytes=cap) as reg:
        rec = reg.get("t")
        assert rec is not None and rec.truncated
        reg.append_output("t", "after restart\n")
        assert reg.read_lines("t", 0, 1000).data == data


def test_truncation_never_splits_a_character(tmp_path: Path) -> None:
    with Registry(tmp_path / "reg", flush_interval=None, max_output_bytes=10) as reg:
        reg.create("t")
        reg.append_output("t", "\U0001f600" * 5 + "\n")  # 21 bytes; 2 characters fit in 10
        page = reg.read_lines("t", 0, 10)
        assert page.data == "\U0001f600\U0001f600\n" + truncation_marker(10)
        assert page.total_lines == 2


def test_exactly_at_cap_is_not_truncated(tmp_path: Path) -> None:
    with Registry(tmp_path / "reg", flush_interval=None, max_output_bytes=8) as reg:
        reg.create("t")
        reg.append_output("t", "1234567\n")
        rec = reg.get("t")
        assert rec is not None and not rec.truncated
        reg.append_output("t", "x\n")
        assert reg.read_lines("t").data == "1234567\n" + truncation_marker(8)


def test_prune_by_count_and_age(reg: Registry) -> None:
    for i in range(6):
        reg.create(f"p{i}")
        reg.append_output(f"p{i}", f"output {i}\n")
    for i in (0, 1, 2, 3):
        reg.finish(f"p{i}", "completed")
    # p4 and p5 stay running; they are never pruned and do not count.
    assert reg.prune(max_count=2) == 2
    assert [r.execution_id for r in reg.list()] == ["p5", "p4", "p3", "p2"]
    assert chunk_count(reg, "p0") == 0 and chunk_count(reg, "p1") == 0
    with pytest.raises(ExecutionNotFound):
        reg.read_lines("p0")
    assert reg.prune(max_count=2) == 0

    # Age: make p2 old, p3 recent.
    sql(reg, "UPDATE executions SET completed_at = '2000-01-01T00:00:00.000Z' WHERE execution_id = 'p2'")
    assert reg.prune(max_age_seconds=3600) == 1
    assert [r.execution_id for r in reg.list()] == ["p5", "p4", "p3"]

    assert reg.prune(max_age_seconds=0, max_count=0) == 1
    assert [r.execution_id for r in reg.list()] == ["p5", "p4"]
    assert reg.read_lines("p4").data == "output 4\n"
    assert reg.prune() == 0


def test_closed_registry_refuses_work(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg", flush_interval=0.05)
    reg.create("z")
    reg.close()
    reg.close()  # idempotent
    assert not any(t.name == "mcp-v8-registry-flusher" and t.is_alive() for t in threading.enumerate())
    with pytest.raises(RuntimeError):
        reg.get("z")


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
