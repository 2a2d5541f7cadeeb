"""The worker process's own machinery: its console-output batching and its allocator setup."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import pytest

from mcp_v8.executions import worker


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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_worker_keeps_freed_memory_on_glibc() -> None:
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert worker._keep_freed_memory() is True
