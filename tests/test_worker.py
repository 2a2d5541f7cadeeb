"""The worker process's own machinery: its console-output batching and its allocator setup."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mcp_v8.executions import worker
from mcp_v8.storage import SQLiteOutputLog


def _start_flusher(sent: list[Any]) -> worker._Output:
    output = worker._Output(sent.append, 1 << 20)
    threading.Thread(target=output.run_flusher, daemon=True).start()
    return output


def _wait_for(predicate: Any, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def test_flusher_sends_a_batch_after_output_and_again_after_idling() -> None:
    sent: list[Any] = []
    output = _start_flusher(sent)
    output.start("e1")
    output.write("log", "one")
    output.write("warn", "two")
    assert _wait_for(lambda: sent == [("output", "e1", "one\n[warn] two\n")])
    time.sleep(3 * worker.FLUSH_SECONDS)  # idle: nothing more is sent
    assert len(sent) == 1
    output.start("e2")
    output.write("log", "three")  # the next line wakes the sleeping flusher
    assert _wait_for(lambda: sent[1:] == [("output", "e2", "three\n")])


def test_flusher_sends_early_at_flush_bytes() -> None:
    sent: list[Any] = []
    output = _start_flusher(sent)
    output.start("big")
    line = "x" * 1023
    for _ in range(worker.FLUSH_BYTES // 1024 + 1):
        output.write("log", line)
    assert _wait_for(lambda: bool(sent))
    assert sum(len(m[2]) for m in sent) >= worker.FLUSH_BYTES


def test_a_flush_by_the_job_leaves_nothing_for_the_flusher() -> None:
    sent: list[Any] = []
    output = _start_flusher(sent)
    output.start("e")
    output.write("log", "done before the batch window ends")
    output.flush()  # what serve() does before it reports the job done
    assert sent == [("output", "e", "done before the batch window ends\n")]
    time.sleep(3 * worker.FLUSH_SECONDS)
    assert len(sent) == 1


@pytest.mark.parametrize(
    "text",
    ["€" * 99, "€" * 83, "a€" * 40 + "🎉" * 20, "x" * 297, "\ud800" * 99],
    ids=["euro", "euro-to-the-cap", "mixed", "ascii", "lone-surrogates"],
)
def test_the_worker_stops_shipping_where_the_server_truncates(tmp_path: Path, text: str) -> None:
    # Both count UTF-8 bytes: the worker ships the lines up to the one that takes the output
    # past the cap (so the server stores its marker) and nothing after it.
    cap = 1000
    sent: list[Any] = []
    output = worker._Output(sent.append, cap)
    output.start("e")
    for _ in range(20):
        output.write("log", text)
    output.flush()
    shipped = "".join(m[2] for m in sent)
    line = text + "\n"
    size = len(line.encode("utf-8", "replace"))
    lines_to_cross = cap // size + 1  # the first line after which the total exceeds the cap
    assert shipped == line * lines_to_cross
    with SQLiteOutputLog(tmp_path, max_output_bytes=cap, flush_interval=None) as log:
        log.create("all")
        log.append("all", line * 20)  # what the script printed
        log.create("shipped")
        log.append("shipped", shipped)  # what reached the server
        whole, kept = log.read_bytes("all", 0, 1 << 20), log.read_bytes("shipped", 0, 1 << 20)
        assert kept.data == whole.data and log.totals("shipped").truncated


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_worker_keeps_freed_memory_on_glibc() -> None:
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert worker._keep_freed_memory() is True
