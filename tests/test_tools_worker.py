"""A worker process's tool calls, made by the server: a WorkerSlot running real worker processes
(V8, the worker's relay, the channel) against the fake ToolCaller of tests/test_tool_calls.py.
The script's calls reach the caller only through the server; cancel and the job's timeout
abandon the calls in flight."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_v8.executions import ExecutionSpec, Limits
from mcp_v8.executions.pool import WorkerOptions, WorkerSlot
from mcp_v8.executions.protocol import Job, JobResult
from mcp_v8.executions.tool_calls import ToolLimits

from .interleavings import HANG
from .test_tool_calls import FakeCaller


@pytest.fixture
def caller() -> FakeCaller:
    return FakeCaller()


@pytest.fixture
def slot(tmp_path: Path, caller: FakeCaller) -> Iterator[WorkerSlot]:
    slot = WorkerSlot(0, tmp_path, WorkerOptions(), tool_caller=caller)
    slot.start()
    yield slot
    slot.stop()


def job(execution_id: str, code: str, timeout: float = 60.0) -> Job:
    limits = Limits(
        heap_limit_mb=64, timeout_secs=timeout, max_result_bytes=1 << 20, max_output_bytes=1 << 20
    )
    # The tool limits come with each job's spec.
    return Job(
        execution_id, ExecutionSpec(code=code, limits=limits, snapshot=False, tools=ToolLimits(max_calls=4))
    )


def test_a_scripts_tool_calls_are_made_by_the_server(slot: WorkerSlot, caller: FakeCaller) -> None:
    code = """
    const sums = await Promise.all([tools.calc.add({a: 1, b: 2}), mcp.callTool('calc', 'add', {a: 10})]);
    const refused = [];
    for (const [tool, args] of [['add', {a: 'x'}], ['add', {a: 1}], ['add', {a: 2}]]) {
      try { await tools.calc[tool](args); } catch (e) { refused.push([e.name, e.message]); }
    }
    [sums, refused]
    """
    result = slot.run(job("a", code), lambda text: None)
    assert result.status == "completed", result
    assert json.loads(result.result or "null") == [
        [{"sum": 3}, {"sum": 10}],
        [
            ["TypeError", "calc.add: arguments.a: 'x' is not of type 'number'"],
            ["TypeError", "tool call refused: more than 4 tool calls in one execution (max_tool_calls)"],
        ],
    ]
    assert sorted(c[2] for c in caller.calls) == ['{"a":1,"b":2}', '{"a":10}', '{"a":1}']
    # The next execution counts from zero.
    assert slot.run(job("b", "await tools.calc.add({a: 5})"), lambda text: None).result == '{"sum":5}'


def test_cancel_abandons_the_call_in_flight(slot: WorkerSlot, caller: FakeCaller) -> None:
    results: list[JobResult] = []
    running = threading.Thread(
        target=lambda: results.append(slot.run(job("a", "await tools.slow.wait({})"), lambda text: None))
    )
    running.start()
    assert caller.started.wait(HANG), "the call never reached the caller"
    slot.cancel("a")
    assert caller.abandoned[0].wait(HANG), "the call outlived its cancel"
    running.join(HANG)
    assert results[0].status == "cancelled"
    assert slot.run(job("b", "1 + 1"), lambda text: None).result == "2"  # the worker lives on


def test_the_jobs_timeout_abandons_the_call_in_flight(slot: WorkerSlot, caller: FakeCaller) -> None:
    result = slot.run(job("a", "await tools.slow.wait({})", timeout=0.5), lambda text: None)
    assert result.status == "timed_out", result
    assert caller.abandoned[0].wait(HANG), "the call outlived its execution's timeout"
