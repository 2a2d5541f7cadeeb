"""A worker process's tool calls, made by the server: a WorkerSlot running real worker processes
(V8, the worker's relay, the channel) against the fake ToolCaller of tests/test_tool_calls.py.
The script's calls reach the caller only through the server; cancel and the job's timeout
abandon the calls in flight."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp_v8.executions import ExecutionSpec, Limits
from mcp_v8.executions.approvals import resume_code
from mcp_v8.executions.heap_fds import sealed_heap
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


def test_a_gated_call_pauses_the_script_in_its_heap_and_a_resume_job_settles_it(
    slot: WorkerSlot, caller: FakeCaller
) -> None:
    code = """
    const [sum, dropped] = await Promise.all([tools.calc.add({a: 1}), tools.gated.drop({what: 'x'})]);
    let denied;
    try { await tools.gated.drop({what: 'y'}); } catch (e) { denied = [e.name, e.reason]; }
    ({sum, dropped, denied})
    """
    first = dataclasses.replace(job("a", code), spec=dataclasses.replace(job("a", code).spec, snapshot=True))
    paused = slot.run(first, lambda text: None)
    assert paused.status == "waiting", paused
    assert [(c.server, c.tool, c.arguments) for c in paused.pending_tool_calls] == [
        ("gated", "drop", '{"what":"x"}')
    ]
    assert paused.tool_calls_made == 2 and paused.heap is not None and paused.envelope is not None
    assert [c[:2] for c in caller.calls] == [("calc", "add")]  # the free call was made, the gated one held

    def resume(heap: str, envelope: bytes, answers: list[Any], made: int) -> JobResult:
        resume_code = f"await globalThis[Symbol.for('mcp-v8.resume')]({json.dumps(answers)})"
        spec = dataclasses.replace(job("a", resume_code).spec, heap=heap, snapshot=True)
        fd = sealed_heap(envelope)
        try:
            return slot.run(Job("a", spec, heap_fd=fd, tool_calls_made=made), lambda text: None)
        finally:
            os.close(fd)

    call_id = paused.pending_tool_calls[0].call_id
    again = resume(paused.heap, paused.envelope, [[call_id, {"value": "gone"}]], paused.tool_calls_made)
    assert again.status == "waiting", again  # its second gated call: paused again
    assert again.tool_calls_made == 3 and again.heap is not None and again.envelope is not None
    denial = {"error": {"name": "ToolDenied", "message": "no", "reason": "not today"}}
    done = resume(again.heap, again.envelope, [[again.pending_tool_calls[0].call_id, denial]], 3)
    assert done.status == "completed", done
    assert json.loads(done.result or "null") == {
        "sum": {"sum": 1},
        "dropped": "gone",
        "denied": ["ToolDenied", "not today"],
    }


def test_without_a_snapshot_a_gated_call_is_denied_in_the_script(slot: WorkerSlot) -> None:
    code = "try { await tools.gated.drop({}) } catch (e) { [e.name, e.reason] }"
    result = slot.run(job("a", code), lambda text: None)
    assert json.loads(result.result or "null") == [
        "ToolDenied",
        "a gated call cannot pause without a snapshot",
    ]


def test_a_resumes_answers_go_in_as_data_whatever_they_hold(slot: WorkerSlot) -> None:
    code = "const said = await tools.gated.drop({}); said"
    first = dataclasses.replace(job("a", code), spec=dataclasses.replace(job("a", code).spec, snapshot=True))
    paused = slot.run(first, lambda text: None)
    assert paused.status == "waiting" and paused.heap is not None and paused.envelope is not None
    hostile = "`); globalThis.pwned = 1; (`\u2028\u2029\"'\\ </script> ${1+1} \U0001f600"
    resume = resume_code([(paused.pending_tool_calls[0].call_id, {"value": hostile})])
    assert resume.isascii()
    spec = dataclasses.replace(job("a", resume).spec, heap=paused.heap, snapshot=True)
    fd = sealed_heap(paused.envelope)
    try:
        done = slot.run(Job("a", spec, heap_fd=fd, tool_calls_made=1), lambda text: None)
    finally:
        os.close(fd)
    assert done.status == "completed", done
    assert json.loads(done.result or "null") == hostile
