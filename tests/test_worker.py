"""The worker process's own machinery: its console-output batching, what it does to fit the
channel's limits, and its allocator setup."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mcp_v8.executions import worker, worker_common
from mcp_v8.executions.protocol import ERROR_LIMIT, OUTPUT_CHUNK, Done, JobResult, Output, decode, encode
from mcp_v8.executions.spec import RESULT_LIMIT
from mcp_v8.js_error import JsError
from mcp_v8.storage import SQLiteOutputLog


def _start_flusher(sent: list[Any]) -> worker_common.ConsoleOutput:
    output = worker_common.ConsoleOutput(sent.append, 1 << 20)
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
    assert _wait_for(lambda: sent == [Output("e1", "one\n[warn] two\n")])
    time.sleep(3 * worker_common.FLUSH_SECONDS)  # idle: nothing more is sent
    assert len(sent) == 1
    output.start("e2")
    output.write("log", "three")  # the next line wakes the sleeping flusher
    assert _wait_for(lambda: sent[1:] == [Output("e2", "three\n")])


def test_flusher_sends_early_at_flush_bytes() -> None:
    sent: list[Any] = []
    output = _start_flusher(sent)
    output.start("big")
    line = "x" * 1023
    for _ in range(worker_common.FLUSH_BYTES // 1024 + 1):
        output.write("log", line)
    assert _wait_for(lambda: bool(sent))
    assert sum(len(m.text) for m in sent) >= worker_common.FLUSH_BYTES


def test_a_flush_by_the_job_leaves_nothing_for_the_flusher() -> None:
    sent: list[Any] = []
    output = _start_flusher(sent)
    output.start("e")
    output.write("log", "done before the batch window ends")
    output.flush()  # what serve() does before it reports the job done
    assert sent == [Output("e", "done before the batch window ends\n")]
    time.sleep(3 * worker_common.FLUSH_SECONDS)
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
    output = worker_common.ConsoleOutput(sent.append, cap)
    output.start("e")
    for _ in range(20):
        output.write("log", text)
    output.flush()
    shipped = "".join(m.text for m in sent)
    line = text + "\n"
    size = len(line.encode("utf-8", "replace"))
    lines_to_cross = cap // size + 1  # the first line after which the total exceeds the cap
    stored = (line * lines_to_cross).encode("utf-8", "replace").decode("utf-8")  # a lone surrogate as "?"
    assert shipped == stored
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


@pytest.mark.parametrize("text", ["x" * (3 * OUTPUT_CHUNK + 5), "€🎉a" * (OUTPUT_CHUNK // 4), "\ud800" * 10])
def test_output_goes_in_chunks_the_channel_carries(text: str) -> None:
    sent: list[Any] = []
    output = worker_common.ConsoleOutput(sent.append, 1 << 30)
    output.start("e")
    output.write("log", text)  # one console call larger than a message may be
    output.flush()
    assert all(isinstance(m, Output) and len(m.text.encode("utf-8")) <= OUTPUT_CHUNK for m in sent)
    assert "".join(m.text for m in sent) == (text + "\n").encode("utf-8", "replace").decode("utf-8")
    for message in sent:
        assert decode(encode(message)[4:], "worker") == message  # every one within its limit


def test_an_outcome_is_made_to_fit_the_channel() -> None:
    huge = "€" * ERROR_LIMIT
    js = JsError("E" * 10_000, huge, "E: " + huge, 1, 2)
    fitted = worker_common.fit(JobResult(status="failed", error="E: " + huge, js_error=js, duration_ms=3.0))
    assert fitted.js_error is not None and fitted.error is not None
    for text in (fitted.error, fitted.js_error.message, fitted.js_error.stack):
        assert len(text.encode("utf-8")) <= ERROR_LIMIT and text.endswith(f"cut to {ERROR_LIMIT})")
    assert len(fitted.js_error.name or "") <= 4096 and (fitted.js_error.line, fitted.js_error.column) == (
        1,
        2,
    )
    assert decode(worker_common.done_frame("e", fitted)[0][4:], "worker") == Done("e", fitted)
    small = JobResult(status="completed", result='"ok"', duration_ms=1.0)
    assert worker_common.fit(small) == small  # what fits is left alone
    too_big = JobResult(status="completed", result="1" * (RESULT_LIMIT + 1), duration_ms=1.0)
    assert worker_common.fit(too_big) == JobResult(
        status="failed",
        error=f"the result is {RESULT_LIMIT + 1} bytes, more than the {RESULT_LIMIT} a worker may send",
        duration_ms=1.0,
    )


def test_an_outcome_that_still_cannot_be_sent_fails_in_words() -> None:
    odd = JobResult(status="completed", result="1", heap="not a heap key")
    assert decode(worker_common.done_frame("e", odd)[0][4:], "worker") == Done(
        "e",
        JobResult(
            status="failed",
            error="the worker could not send the outcome: a 'done' message cannot be sent: "
            "done.heap does not match [0-9a-f]{64}",
        ),
    )
