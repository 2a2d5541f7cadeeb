"""Heap cap (on-heap and off-heap), timeouts and cancellation."""

from __future__ import annotations

import threading
import time

import pytest

from mcp_v8 import Control, Engine, ExecutionCancelled, ExecutionTimeout, HeapLimitExceeded

HEAP_LOOP = "const keep = []; while (true) keep.push({n: keep.length, s: 'x' + keep.length});"


@pytest.mark.parametrize("snapshot", [False, True], ids=["plain", "snapshot-creator"])
def test_heap_loop_hits_the_cap(engine: Engine, snapshot: bool) -> None:
    outcome = engine.execute(HEAP_LOOP, heap_limit_mb=32, timeout=60, snapshot=snapshot)
    assert outcome.failed
    assert outcome.heap_limit_exceeded
    assert outcome.snapshot is None
    assert "heap limit exceeded" in (outcome.error or "")
    with pytest.raises(HeapLimitExceeded):
        outcome.raise_for_error()
    # the engine stays usable
    assert engine.execute("1 + 1", heap_limit_mb=32).result == "2"


@pytest.mark.parametrize("snapshot", [False, True], ids=["plain", "snapshot-creator"])
def test_typed_array_allocation_counts_against_the_cap(engine: Engine, snapshot: bool) -> None:
    outcome = engine.execute("new Uint8Array(2 ** 31).length", heap_limit_mb=64, snapshot=snapshot)
    assert outcome.failed
    assert outcome.error_name == "RangeError"
    assert outcome.heap_limit_exceeded
    assert outcome.external_peak_bytes < 64 << 20


def test_off_heap_budget_is_catchable_and_freed_by_gc(engine: Engine) -> None:
    code = """
    let caught = 0, held = null;
    for (let i = 0; i < 3; i++) {
      try { const a = new ArrayBuffer(48 << 20); const b = new ArrayBuffer(48 << 20); held = [a, b]; }
      catch (e) { caught += e instanceof RangeError; }
    }
    const small = new Float64Array(1024); small[3] = 1.5;
    [caught, small[3]]
    """
    outcome = engine.execute(code, heap_limit_mb=64)
    assert outcome.result == "[3,1.5]"


def test_typed_arrays_within_the_cap_work(engine: Engine) -> None:
    outcome = engine.execute("const b = new Uint8Array(16 << 20); b.fill(7); b[12345]", heap_limit_mb=64)
    assert outcome.result == "7"
    assert outcome.external_peak_bytes >= 16 << 20


@pytest.mark.parametrize(
    "code",
    [
        "'x'.repeat(2 ** 30)",
        "function r() { return r() + 1; } r()",
        "new ArrayBuffer(2 ** 40)",
        "let s = 'ab'; while (true) s += s;",
    ],
    ids=["string-bomb", "stack-overflow", "huge-arraybuffer", "doubling-string"],
)
def test_recoverable_cases_are_errors(engine: Engine, code: str) -> None:
    outcome = engine.execute(code, heap_limit_mb=64, timeout=60)
    assert outcome.failed, outcome.status
    assert outcome.error_name in ("RangeError", None)
    assert engine.execute("'still ok'").result == '"still ok"'


def test_webassembly_memory_growth_is_bounded(engine: Engine) -> None:
    code = """
    const mem = new WebAssembly.Memory({initial: 1, maximum: 65536});
    let grown = 0;
    try { while (true) { mem.grow(16); grown += 16; } } catch (e) { }
    grown * 64 * 1024
    """
    outcome = engine.execute(code, heap_limit_mb=64)
    assert outcome.completed, outcome.error
    assert outcome.result is not None and int(outcome.result) <= 64 << 20


PARKED = {
    "busy-loop": "while (true) {}",
    "long-timer": "setTimeout(() => {}, 1e9); 'scheduled'",
    "pending-promise": "new Promise(() => {})",
    "interval": "setInterval(() => {}, 5)",
    "microtask-flood": "function again() { queueMicrotask(again); } again();",
    "try-finally": "while (true) { try { while (true) {} } finally { continue; } }",
}


@pytest.mark.parametrize("code", PARKED.values(), ids=PARKED.keys())
def test_timeout_stops_every_kind_of_wait(engine: Engine, code: str) -> None:
    outcome = engine.execute(code, timeout=0.3)
    assert outcome.timed_out, (outcome.status, outcome.error)
    assert not outcome.completed and not outcome.cancelled
    assert outcome.error is not None and "timed out" in outcome.error
    with pytest.raises(ExecutionTimeout):
        outcome.raise_for_error()
    assert isinstance(ExecutionTimeout("x"), TimeoutError)


def test_a_deadline_earlier_than_every_armed_one_still_fires() -> None:
    # The watchdog thread sleeps until the earliest deadline it was told of and is woken only by
    # an earlier one: a long timeout (still armed here, in another thread's run) must not delay a
    # short one armed after it.
    engine = Engine()
    long_run = Control()
    started = threading.Event()
    runner = threading.Thread(
        target=lambda: engine.execute(
            "console.log('go'); while (true) {}",
            timeout=600,
            control=long_run,
            on_console=lambda *_: started.set(),
        )
    )
    runner.start()
    try:
        assert started.wait(30)
        assert engine.execute("1", timeout=600).completed  # disarmed: its deadline stays queued
        t0 = time.monotonic()
        assert engine.execute("while (true) {}", timeout=0.2).timed_out
        assert time.monotonic() - t0 < 60  # not the 600 s the thread was sleeping towards
    finally:
        long_run.cancel()
        runner.join()


@pytest.mark.parametrize("code", PARKED.values(), ids=PARKED.keys())
def test_cancel_from_another_thread_stops_every_kind_of_wait(engine: Engine, code: str) -> None:
    control = Control()
    started = threading.Event()
    box: dict[str, object] = {}

    def run() -> None:
        box["outcome"] = engine.execute(
            "console.log('go');\n" + code, control=control, timeout=120, on_console=lambda *_: started.set()
        )

    worker = threading.Thread(target=run)
    worker.start()
    assert started.wait(30)
    time.sleep(0.05)
    assert worker.is_alive()
    control.cancel()
    worker.join(30)
    assert not worker.is_alive(), "cancel did not stop the execution"
    outcome = box["outcome"]
    assert outcome.cancelled, outcome.status  # type: ignore[attr-defined]
    with pytest.raises(ExecutionCancelled):
        outcome.raise_for_error()  # type: ignore[attr-defined]


def test_cancel_before_start_and_after_end(engine: Engine) -> None:
    control = Control()
    control.cancel()
    assert engine.execute("1", control=control).cancelled
    done = Control()
    assert engine.execute("1", control=done).completed
    done.cancel()  # harmless after the end


def test_first_termination_reason_wins(engine: Engine) -> None:
    control = Control()
    threading.Timer(0.1, control.cancel).start()
    # the cancel arrives long before the 60 s deadline
    assert engine.execute("while (true) {}", control=control, timeout=60).cancelled


def test_engine_healthy_after_many_terminations(engine: Engine) -> None:
    for _ in range(10):
        assert engine.execute("while (true) {}", timeout=0.02).timed_out
    assert engine.execute("[1, 2, 3].length").result == "3"


def test_max_result_bytes() -> None:
    small = Engine(max_result_bytes=1000)
    outcome = small.execute("'x'.repeat(5000)")
    assert outcome.failed
    assert "more than the limit" in (outcome.error or "")
    assert small.execute("'x'.repeat(10)").completed
