"""Warm isolates: the engine's prepared isolate as the Python API shows it, the worker's choice of
the next one (:func:`mcp_v8.executions.worker._prepare_next`, with the real engine on this
thread), and executions in a worker process that prepares them (a WorkerSlot with real
processes): same results, nothing left from one execution to the next, the clock of each its
own."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp_v8 import Engine
from mcp_v8.executions import ExecutionSpec, Limits
from mcp_v8.executions.pool import WorkerOptions, WorkerSlot
from mcp_v8.executions.protocol import Job
from mcp_v8.executions.worker import _prepare_next


def job(
    execution_id: str, code: str, heap_limit_mb: int = 64, snapshot: bool = False, timeout: float = 60.0
) -> Job:
    limits = Limits(
        heap_limit_mb=heap_limit_mb, timeout_secs=timeout, max_result_bytes=1 << 20, max_output_bytes=1 << 20
    )
    return Job(execution_id, ExecutionSpec(code=code, limits=limits, snapshot=snapshot))


@pytest.fixture
def engine() -> Iterator[Engine]:
    engine = Engine()
    yield engine
    engine.discard_prepared()


def test_an_execution_runs_in_the_isolate_its_thread_prepared(engine: Engine) -> None:
    assert engine.prepared() is None
    engine.prepare(heap_limit_mb=32)
    assert engine.prepared() == {"heap_limit_mb": 32}
    # Another cap, a snapshot: each makes its own isolate and leaves the prepared one.
    assert engine.execute("1", heap_limit_mb=64).result == "1"
    assert engine.execute("2", heap_limit_mb=32, snapshot=True).result == "2"
    assert engine.prepared() == {"heap_limit_mb": 32}
    assert engine.execute("globalThis.left = 3; typeof WebAssembly", heap_limit_mb=32).result == '"object"'
    assert engine.prepared() is None  # used once
    engine.prepare(heap_limit_mb=32)
    assert engine.execute("typeof left", heap_limit_mb=32).result == '"undefined"'
    engine.prepare()  # the engine's default: no cap
    assert engine.prepared() == {"heap_limit_mb": None}
    with pytest.raises(ValueError):
        engine.prepare(heap_limit_mb=0)


def test_the_worker_prepares_the_next_isolate_like_its_last_stateless_job(engine: Engine) -> None:
    jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
    _prepare_next(engine, None, 64, jobs)  # at start: the server's default cap
    assert engine.prepared() == {"heap_limit_mb": 64}
    engine.execute("1", heap_limit_mb=64)  # a stateless job took it
    _prepare_next(engine, job("a", "1", heap_limit_mb=64), 64, jobs)
    assert engine.prepared() == {"heap_limit_mb": 64}
    # A stateless job with its own cap: the next isolate has that cap.
    engine.execute("1", heap_limit_mb=128)
    _prepare_next(engine, job("b", "1", heap_limit_mb=128), 64, jobs)
    assert engine.prepared() == {"heap_limit_mb": 128}
    # A job that makes a snapshot ran in an isolate of its own: the prepared one stays.
    engine.execute("1", heap_limit_mb=64, snapshot=True)
    _prepare_next(engine, job("c", "1", heap_limit_mb=64, snapshot=True), 64, jobs)
    assert engine.prepared() == {"heap_limit_mb": 128}
    # While a job waits, nothing is prepared: that job runs now.
    engine.discard_prepared()
    jobs.put(job("d", "1"))
    _prepare_next(engine, job("c", "1"), 64, jobs)
    assert engine.prepared() is None


@pytest.fixture
def warm_slot(tmp_path: Path) -> Iterator[WorkerSlot]:
    slot = WorkerSlot(0, tmp_path, WorkerOptions(warm_heap_mb=64))
    slot.start()
    yield slot
    slot.stop()


def test_executions_in_a_warm_worker_behave_as_in_fresh_isolates(warm_slot: WorkerSlot) -> None:
    def run(code: str, **kwargs: Any) -> Any:
        return warm_slot.run(job(f"e{time.monotonic_ns()}", code, **kwargs), lambda text: None)

    left = run("globalThis.left = 1; var declared = 2; Object.prototype.extra = 3; 'left'")
    assert left.status == "completed", left
    looked = run("[typeof left, typeof declared, typeof ({}).extra, typeof WebAssembly]")
    assert json.loads(looked.result) == ["undefined", "undefined", "undefined", "object"]
    # The heap cap holds, and the worker goes on.
    hog = run("const hog = []; while (true) hog.push(new Array(10000).fill(1.5));", heap_limit_mb=16)
    assert hog.status == "failed" and "heap limit" in (hog.error or ""), hog
    timed = run("while (true) {}", timeout=0.3)
    assert timed.status == "timed_out", timed
    # Another cap (the worker prepared one for 64 MB): an isolate of its own, the same answer.
    assert run("[1, 2].map(x => x * 2)", heap_limit_mb=128).result == "[2,4]"
    assert run("[1, 2].map(x => x * 2)").result == "[2,4]"
    # A snapshot execution and its resumption are untouched.
    made = run("var kept = 41; 'made'", snapshot=True)
    assert made.status == "completed" and made.heap is not None, made


def test_the_clock_of_a_warm_isolate_starts_with_its_execution(warm_slot: WorkerSlot) -> None:
    first = warm_slot.run(job("first", "1"), lambda text: None)
    assert first.status == "completed", first
    # The worker prepared the next isolate right after sending the result; it waits this long.
    idle_ms = 1500
    time.sleep(idle_ms / 1000)
    before_ms = time.time() * 1000
    out = warm_slot.run(job("second", "[performance.now(), performance.timeOrigin]"), lambda text: None)
    now, origin = json.loads(out.result)
    assert now < idle_ms, f"performance.now() = {now}: the clock started when the isolate was made"
    assert origin >= before_ms - 50, (origin, before_ms)
