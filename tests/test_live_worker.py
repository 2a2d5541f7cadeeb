"""Live sessions in real worker processes, through a LiveSlot: the channel's ``open``, ``step``,
``snapshot`` and ``close``; a step's limits, console, cancel, timeout and tool calls as for an
execution; what a heap-cap step and a killed worker leave behind."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_v8.executions import ExecutionSpec, Limits
from mcp_v8.executions.heap_fds import sealed_heap
from mcp_v8.executions.live_slot import LiveSessionError, LiveSlot
from mcp_v8.executions.pool import WorkerOptions
from mcp_v8.executions.protocol import Job, JobResult
from mcp_v8.executions.tool_calls import ToolLimits

from .interleavings import HANG
from .test_tool_calls import FakeCaller


@pytest.fixture
def caller() -> FakeCaller:
    return FakeCaller()


@pytest.fixture
def slot(tmp_path: Path, caller: FakeCaller) -> Iterator[LiveSlot]:
    slot = LiveSlot(0, tmp_path, WorkerOptions(), tool_caller=caller)
    slot.start()
    yield slot
    slot.stop()


def step(
    execution_id: str, code: str, *, timeout: float = 60.0, snapshot: bool = False, heap_mb: int = 64
) -> Job:
    limits = Limits(
        heap_limit_mb=heap_mb, timeout_secs=timeout, max_result_bytes=1 << 20, max_output_bytes=1 << 20
    )
    spec = ExecutionSpec(code=code, limits=limits, snapshot=snapshot, tools=ToolLimits(max_calls=4))
    return Job(execution_id, spec)


def run(slot: LiveSlot, session: str, job: Job, output: list[str] | None = None) -> JobResult:
    return slot.step(job, session, (output if output is not None else []).append)


def test_a_sessions_globals_live_between_steps_and_sessions_are_apart(slot: LiveSlot) -> None:
    slot.open("a", 64)
    slot.open("b", 64)
    assert run(slot, "a", step("1", "let n = 1; var log = []; n")).result == "1"
    assert run(slot, "b", step("2", "typeof n")).result == '"undefined"'
    out: list[str] = []
    result = run(slot, "a", step("3", "n += 1; console.log('n is', n); log.push(n); n"), out)
    assert (result.status, result.result, result.heap) == ("completed", "2", None)  # no snapshot asked
    assert "".join(out) == "n is 2\n"
    assert run(slot, "a", step("4", "let n = 10; n")).result == "10"  # REPL mode: redeclared
    assert slot.sessions() == {"a", "b"}


def test_a_step_that_asks_for_a_snapshot_returns_its_heap_and_the_context_goes_on(
    slot: LiveSlot, tmp_path: Path, caller: FakeCaller
) -> None:
    slot.open("a", 64)
    made = run(slot, "a", step("1", "var n = 41; n", snapshot=True))
    assert made.status == "completed" and made.heap is not None and made.envelope is not None
    assert made.heap_size == len(made.envelope)
    assert run(slot, "a", step("2", "n += 1")).result == "42"
    # The heap is a snapshot like any: a new session starts from it in another worker.
    other = LiveSlot(1, tmp_path, WorkerOptions(), tool_caller=caller)
    try:
        fd = sealed_heap(made.envelope)
        try:
            other.open("b", 64, made.heap, fd)
        finally:
            os.close(fd)
        assert run(other, "b", step("3", "n")).result == "41"
    finally:
        other.stop()


def test_snapshot_and_close_hand_back_the_heap_of_the_context_now(slot: LiveSlot) -> None:
    slot.open("a", 64)
    run(slot, "a", step("1", "var items = ['x']"))
    key, envelope = slot.snapshot("a")
    assert run(slot, "a", step("2", "items.push('y'); items.length")).result == "2"
    closed = slot.close("a", snapshot=True)
    assert closed is not None and closed[0] != key
    assert slot.sessions() == frozenset()
    assert run(slot, "a", step("3", "items")).status == "failed"  # closed: not live here
    fd = sealed_heap(closed[1])
    try:
        slot.open("a", 64, closed[0], fd)
    finally:
        os.close(fd)
    assert json.loads(run(slot, "a", step("4", "items")).result or "null") == ["x", "y"]
    assert slot.close("a", snapshot=False) is None
    with pytest.raises(LiveSessionError, match="not live"):
        slot.snapshot("a")


def test_a_heap_that_is_no_snapshot_is_refused_and_nothing_opens(slot: LiveSlot) -> None:
    fd = sealed_heap(b"not a heap")
    try:
        with pytest.raises(LiveSessionError, match="cannot restore heap"):
            slot.open("a", 64, "0" * 64, fd)
    finally:
        os.close(fd)
    assert slot.sessions() == frozenset()
    slot.open("b", 64)  # the worker lives on
    assert run(slot, "b", step("1", "1 + 1")).result == "2"


def test_a_timeout_or_a_cancel_leaves_the_context_usable(slot: LiveSlot) -> None:
    slot.open("a", 64)
    run(slot, "a", step("1", "var kept = 'yes'"))
    timed_out = run(slot, "a", step("2", "while (true) {}", timeout=0.5))
    assert timed_out.status == "timed_out", timed_out
    results: list[JobResult] = []
    started = threading.Event()

    def long_step() -> None:
        started.set()
        results.append(run(slot, "a", step("3", "while (true) {}")))

    worker = threading.Thread(target=long_step)
    worker.start()
    assert started.wait(HANG)
    while slot.running() != "3":  # the step reached the worker
        threading.Event().wait(0.01)
    slot.cancel("3")
    worker.join(HANG)
    assert results and results[0].status == "cancelled", results
    assert run(slot, "a", step("4", "kept")).result == '"yes"'


def test_a_steps_tool_calls_are_made_by_the_server(slot: LiveSlot, caller: FakeCaller) -> None:
    slot.open("a", 64)
    result = run(slot, "a", step("1", "var s = await tools.calc.add({a: 1, b: 2}); s.sum"))
    assert result.result == "3", result
    assert run(slot, "a", step("2", "s.sum + 1")).result == "4"
    fetched = run(slot, "a", step("3", "try { await fetch('https://example.com') } catch (e) { e.name }"))
    assert fetched.result == '"TypeError"'  # no origin in the step's policy: refused by the server
    # A gated call pauses the step in its context's heap, and the context ends.
    paused = run(slot, "a", step("4", "var dropped = await tools.gated.drop({}); 'after'"))
    assert paused.status == "waiting" and paused.heap is not None and paused.envelope is not None, paused
    assert [(c.server, c.tool) for c in paused.pending_tool_calls] == [("gated", "drop")]
    assert paused.session_ended is not None and slot.sessions() == frozenset()


def test_a_step_over_its_heap_cap_ends_only_its_session(slot: LiveSlot) -> None:
    slot.open("big", 16)
    slot.open("small", 64)
    run(slot, "small", step("1", "var kept = 1"))
    grown = run(
        slot, "big", step("2", "const a = []; while (true) a.push(new Array(1e5).fill(1))", heap_mb=16)
    )
    assert grown.status == "failed" and grown.session_ended is not None, grown
    assert "heap limit" in grown.session_ended
    assert slot.sessions() == {"small"}
    assert run(slot, "small", step("3", "kept")).result == "1"
    assert slot.lost() == {}  # ended, not lost with a worker


def test_a_killed_worker_takes_its_sessions_and_says_so(slot: LiveSlot) -> None:
    slot.open("a", 64)
    slot.open("b", 64)
    pid = slot._process.pid  # type: ignore[union-attr]
    os.kill(pid, signal.SIGKILL)
    slot._process.wait(HANG)  # type: ignore[union-attr]
    result = run(slot, "a", step("1", "1"))
    assert result.status == "failed" and "not live" in (result.error or "")
    assert slot.lost().keys() == {"a", "b"}
    assert slot.sessions() == frozenset()
    slot.open("a", 64)  # a new worker, a fresh context
    assert run(slot, "a", step("2", "typeof n")).result == '"undefined"'
