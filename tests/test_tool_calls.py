"""The tool calls the server makes for its workers (executions/tool_calls.py), without V8.

:class:`ToolCalls` is driven against a fake :class:`ToolCaller` whose calls block until the
test releases them or the execution abandons them, and parked at its hand-off points, so each
interleaving of an answer with the end of its execution (or its deadline) is forced, not hoped
for. Every wait has a generous bound that only turns a hang into a failure.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Callable

import pytest

from mcp_v8.executions.gate import Gate
from mcp_v8.executions.protocol import ToolCall, ToolReply, Undeliverable
from mcp_v8.executions.tool_caller import ToolInfo, ToolTimeout, ToolUnavailable
from mcp_v8.executions.tool_calls import NO_TOOLS, ToolCallRecord, ToolCalls, ToolLimits
from mcp_v8.executions.tool_records import ToolCallRecorder
from mcp_v8.storage import ToolCallRow
from mcp_v8.tool_answers import result_answer

from .interleavings import HANG, ObservedLock, Parking

ADD_SCHEMA = {
    "type": "object",
    "properties": {
        "a": {"type": "number"},
        "b": {"type": "number"},
        "opts": {"type": "object", "properties": {"n": {"type": "integer"}}},
    },
    "required": ["a"],
    "additionalProperties": False,
}


class FakeCaller:
    """A ToolCaller whose ``calc`` server adds; ``slow.wait`` blocks until the test releases it
    (``release``) or the call is abandoned; ``calc.fail`` raises what ``raises`` says."""

    def __init__(self) -> None:
        self.catalogue: dict[str, dict[str, ToolInfo]] = {
            "calc": {"add": ToolInfo(ADD_SCHEMA), "odd-name": ToolInfo(), "fail": ToolInfo()},
            "slow": {"wait": ToolInfo()},
            "gated": {"drop": ToolInfo(needs_approval=True)},
        }
        self.calls: list[tuple[str, str, str]] = []
        self.release = threading.Event()
        self.started = threading.Event()
        self.abandoned: list[threading.Event] = []
        self.returned = threading.Event()
        self.raises: Exception = ToolUnavailable("the server is down")
        self.result: Mapping[str, Any] = {"content": [{"type": "text", "text": "done"}]}

    def tools(self) -> Mapping[str, Mapping[str, ToolInfo]]:
        return self.catalogue

    def call(
        self, server: str, tool: str, arguments_json: str, deadline: float, abandoned: threading.Event
    ) -> Mapping[str, Any]:
        self.calls.append((server, tool, arguments_json))
        if tool == "fail":
            raise self.raises
        if server == "slow":
            self.abandoned.append(abandoned)
            self.started.set()
            while not (self.release.is_set() or abandoned.is_set()):
                time.sleep(0.001)
            self.returned.set()
            return self.result
        args = json.loads(arguments_json)
        return {"content": [], "structuredContent": {"sum": args["a"] + args.get("b", 0)}}


class Sent:
    """The replies a ToolCalls sent, with a wait for the n-th."""

    def __init__(self) -> None:
        self.replies: list[ToolReply] = []
        self._cond = threading.Condition()

    def __call__(self, reply: ToolReply) -> None:
        with self._cond:
            self.replies.append(reply)
            self._cond.notify_all()

    def wait(self, n: int) -> list[ToolReply]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.replies) >= n, HANG), self.replies
            return list(self.replies)

    def answers(self) -> dict[int, Any]:
        return {r.call_id: json.loads(r.answer) for r in self.replies}


class ParkedCalls(Parking, ToolCalls):
    pass


def call(call_id: int, server: str = "calc", tool: str = "add", arguments: Any = None) -> ToolCall:
    return ToolCall("e", call_id, server, tool, json.dumps({"a": 1} if arguments is None else arguments))


def make(caller: FakeCaller | None = None, **kwargs: Any) -> tuple[ParkedCalls, Sent]:
    sent = Sent()
    return ParkedCalls("e", caller if caller is not None else FakeCaller(), sent, **kwargs), sent


def test_calls_run_in_parallel_and_each_is_answered_once() -> None:
    caller = FakeCaller()
    calls, sent = make(caller)
    calls.submit(call(1, "slow", "wait", {}))
    assert caller.started.wait(HANG)
    calls.submit(call(2, arguments={"a": 2, "b": 3}))  # answered while call 1 still runs
    assert sent.wait(1)[0] == ToolReply("e", 2, '{"value": {"sum": 5}}')
    caller.release.set()
    sent.wait(2)
    assert sent.answers()[1] == {"value": "done"}
    calls.end()
    assert len(sent.replies) == 2


def test_arguments_are_checked_before_anything_is_sent_naming_the_field() -> None:
    caller = FakeCaller()
    calls, sent = make(caller)
    calls.submit(call(1, arguments={"a": "one"}))
    calls.submit(call(2, arguments={"b": 1}))
    calls.submit(call(3, arguments={"a": 1, "opts": {"n": 1.5}}))
    calls.submit(call(4, arguments={"a": 1, "extra": True}))
    calls.submit(ToolCall("e", 5, "calc", "add", "[1]"))
    answers = {i: a["error"] for i, a in sorted((r.call_id, json.loads(r.answer)) for r in sent.wait(5))}
    assert {a["name"] for a in answers.values()} == {"TypeError"}
    assert answers[1]["message"] == "calc.add: arguments.a: 'one' is not of type 'number'"
    assert answers[2]["message"] == "calc.add: arguments: 'a' is a required property"
    assert answers[3]["message"] == "calc.add: arguments.opts.n: 1.5 is not of type 'integer'"
    assert "extra" in answers[4]["message"]
    assert answers[5]["message"] == "calc.add: the arguments must be an object"
    assert caller.calls == []


def test_unknown_servers_and_tools_and_no_caller_are_refused() -> None:
    calls, sent = make()
    calls.submit(call(1, "nope", "add"))
    calls.submit(call(2, "calc", "nope"))
    answers = {r.call_id: json.loads(r.answer)["error"] for r in sent.wait(2)}
    assert answers[1] == {
        "name": "TypeError",
        "message": "tool call refused: no tool server 'nope' (servers: calc, gated, slow)",
    }
    assert answers[2] == {"name": "TypeError", "message": "tool call refused: 'calc' has no tool 'nope'"}

    sent = Sent()
    ToolCalls("e", None, sent).submit(call(1))
    assert json.loads(sent.wait(1)[0].answer) == {"error": {"name": "TypeError", "message": NO_TOOLS}}


def test_the_call_after_max_calls_is_refused() -> None:
    caller = FakeCaller()
    calls, sent = make(caller, limits=ToolLimits(max_calls=3))
    for i in range(1, 6):
        calls.submit(call(i))
    answers = {r.call_id: json.loads(r.answer) for r in sent.wait(5)}
    assert [answers[i] for i in (1, 2, 3)] == [{"value": {"sum": 1}}] * 3
    for i in (4, 5):
        assert (
            answers[i]["error"]["message"]
            == "tool call refused: more than 3 tool calls in one execution (max_tool_calls)"
        )
    assert len(caller.calls) == 3
    assert calls.count == 5


def test_a_repeated_call_id_is_ignored() -> None:
    caller = FakeCaller()
    calls, sent = make(caller)
    calls.submit(call(1, "slow", "wait", {}))
    assert caller.started.wait(HANG)
    calls.submit(call(1))  # the worker is out of step: the first call stands
    caller.release.set()
    assert json.loads(sent.wait(1)[0].answer) == {"value": "done"}
    calls.end()
    assert len(sent.replies) == 1 and calls.count == 1


def test_a_gated_call_without_a_snapshot_is_denied_with_the_reason() -> None:
    caller = FakeCaller()
    calls, sent = make(caller)  # hold=False: the execution makes no snapshot
    calls.submit(call(1, "gated", "drop", {}))
    error = json.loads(sent.wait(1)[0].answer)["error"]
    assert error["name"] == "ToolDenied"
    assert error["reason"] == "a gated call cannot pause without a snapshot"
    assert caller.calls == [] and calls.held() == ()


def test_a_gated_call_is_held_when_the_execution_snapshots_and_named_by_the_servers_record() -> None:
    caller = FakeCaller()
    records: list[ToolCallRecord] = []
    calls, sent = make(caller, hold=True, made=3, on_record=records.append)
    calls.submit(call(7, "gated", "drop", {"x": 1}))
    calls.submit(call(2, arguments={"a": 2}))  # a free call beside it is made as ever
    sent.wait(2)
    assert sent.answers() == {7: {"held": True}, 2: {"value": {"sum": 2}}}
    assert caller.calls == [("calc", "add", '{"a": 2}')]  # the gated one never reached its server
    assert [(c.call_id, c.server, c.tool, c.arguments) for c in calls.held()] == [
        (7, "gated", "drop", '{"x": 1}')
    ]
    assert calls.count == 5  # counted on from the calls made before the pause
    assert sorted(r.outcome for r in records) == ["held", "ok"]
    calls.submit(call(7, "gated", "drop", {"x": 2}))  # a repeated id: the first stands
    assert calls.held()[0].arguments == '{"x": 1}'


def test_a_resumed_execution_counts_its_calls_on_from_before_its_pause() -> None:
    calls, sent = make(limits=ToolLimits(max_calls=2), made=2)
    calls.submit(call(1))
    error = json.loads(sent.wait(1)[0].answer)["error"]
    assert error["name"] == "TypeError" and "more than 2 tool calls" in error["message"]


@pytest.mark.parametrize(
    ("raised", "message"),
    [
        (ToolUnavailable("the server is down"), "tool call failed: calc.fail: the server is down"),
        (ToolTimeout("late"), "tool call failed: calc.fail did not answer within its time"),
        (RuntimeError("a bug"), "tool call failed: calc.fail: RuntimeError"),
    ],
)
def test_a_failed_call_rejects_with_an_error(raised: Exception, message: str) -> None:
    caller = FakeCaller()
    caller.raises = raised
    calls, sent = make(caller)
    calls.submit(call(1, "calc", "fail", {}))
    assert json.loads(sent.wait(1)[0].answer) == {"error": {"name": "Error", "message": message}}


def test_a_result_over_the_cap_fails_the_call() -> None:
    caller = FakeCaller()
    caller.result = {"content": [{"type": "text", "text": "x" * 2000}]}
    caller.release.set()
    calls, sent = make(caller, limits=ToolLimits(max_result_bytes=1000))
    calls.submit(call(1, "slow", "wait", {}))
    error = json.loads(sent.wait(1)[0].answer)["error"]
    assert (
        error["message"].startswith("tool call failed: slow.wait answered 2")
        and "tool_result_max_bytes" in error["message"]
    )


def test_a_call_past_its_deadline_is_abandoned_and_answered_once() -> None:
    caller = FakeCaller()
    calls, sent = make(caller, limits=ToolLimits(call_timeout=0.05))
    calls.submit(call(1, "slow", "wait", {}))
    reply = sent.wait(1)[0]
    assert (
        json.loads(reply.answer)["error"]["message"]
        == "tool call failed: slow.wait did not answer within its time"
    )
    assert caller.started.wait(HANG) and caller.abandoned[0].wait(HANG)
    assert caller.returned.wait(HANG)  # it returned after its answer: dropped
    calls.end()
    assert len(sent.replies) == 1


def test_the_executions_deadline_bounds_every_call() -> None:
    caller = FakeCaller()
    calls, sent = make(caller, deadline=time.monotonic() - 1)  # already passed
    calls.submit(call(1, "slow", "wait", {}))
    assert json.loads(sent.wait(1)[0].answer)["error"]["message"].endswith("did not answer within its time")


def test_end_abandons_the_calls_in_flight_and_drops_their_answers() -> None:
    caller = FakeCaller()
    calls, sent = make(caller)
    returned = calls.park("call:returned")
    calls.submit(call(1, "slow", "wait", {}))
    assert caller.started.wait(HANG)
    calls.end()
    assert caller.abandoned[0].is_set()  # the caller tells the tool server
    assert returned.reached.wait(HANG)  # the call returned after the end
    returned.release.set()
    calls.submit(call(2))  # later calls are ignored
    time.sleep(0.05)
    assert sent.replies == [] and caller.calls == [("slow", "wait", "{}")]


def test_no_reply_leaves_once_end_has_returned() -> None:
    """A reply checked just before ``end`` goes out before ``end`` returns (end waits for
    the lock), never after."""
    caller = FakeCaller()
    calls, sent = make(caller)
    calls._lock = ObservedLock()  # type: ignore[assignment]
    checked = calls.park("reply:checked")
    calls.submit(call(1, "slow", "wait", {}))
    caller.release.set()
    assert checked.reached.wait(HANG)
    ended = threading.Thread(target=calls.end)
    ended.start()
    assert calls._lock.waited.wait(HANG)  # type: ignore[attr-defined]
    assert sent.replies == []
    checked.release.set()
    ended.join(HANG)
    assert [r.call_id for r in sent.replies] == [1]


def test_a_timer_that_fires_as_the_call_answers_gives_one_answer() -> None:
    caller = FakeCaller()
    calls, sent = make(caller, limits=ToolLimits(call_timeout=0.05))
    fired = calls.park("timer:fired")
    calls.submit(call(1, "slow", "wait", {}))
    assert fired.reached.wait(HANG)  # the deadline passed: the timer waits here
    caller.release.set()
    assert sent.wait(1)[0].answer == '{"value": "done"}'  # the call answered first
    fired.release.set()
    time.sleep(0.05)
    assert len(sent.replies) == 1


def test_an_undeliverable_answer_fails_that_call_only() -> None:
    sent = Sent()

    def send(reply: ToolReply) -> None:
        if "sum" in reply.answer:
            raise Undeliverable("too big")
        sent(reply)

    calls = ToolCalls("e", FakeCaller(), send)
    calls.submit(call(1))
    error = json.loads(sent.wait(1)[0].answer)["error"]
    assert error["message"] == "tool call failed: the result could not be sent to the worker: too big"


def test_a_reply_the_worker_stops_taking_loses_the_channel() -> None:
    lost: list[str] = []

    def send(reply: ToolReply) -> None:
        raise TimeoutError("no progress")

    calls = ToolCalls("e", FakeCaller(), send, on_lost=lost.append)
    calls.submit(call(1))
    deadline = time.monotonic() + HANG
    while not lost and time.monotonic() < deadline:
        time.sleep(0.001)
    assert lost == ["the worker took no tool reply: no progress"] and calls.lost == lost[0]


def test_limits_are_checked() -> None:
    for bad in (
        {"max_calls": -1},
        {"call_timeout": 0},
        {"max_result_bytes": 0},
        {"max_result_bytes": 1 << 40},
    ):
        with pytest.raises(ValueError):
            ToolLimits(**bad)


# -- results as the script gets them ------------------------------------------------------


def answer(result: Mapping[str, Any]) -> Any:
    return json.loads(result_answer("s", "t", result))


def test_structured_content_wins() -> None:
    assert answer({"content": [{"type": "text", "text": "{}"}], "structuredContent": {"a": 1}}) == {
        "value": {"a": 1}
    }


def test_text_is_parsed_only_when_it_is_an_object_or_an_array() -> None:
    texts = ['{"a": 1}', "[1, 2]", "123", '"s"', "true", "null", "{not json", "plain"]
    values = [answer({"content": [{"type": "text", "text": t}]})["value"] for t in texts]
    assert values == [{"a": 1}, [1, 2], "123", '"s"', "true", "null", "{not json", "plain"]


def test_blocks_give_one_value_an_array_or_null() -> None:
    image = {"type": "image", "data": "aGk=", "mimeType": "image/png"}
    resource = {"type": "resource", "resource": {"uri": "file:///x", "text": "x"}}
    assert answer({"content": [image]}) == {"value": image}
    assert answer({"content": [{"type": "text", "text": "a"}, image, resource]}) == {
        "value": ["a", image, resource]
    }
    assert answer({"content": []}) == {"value": None}


def test_is_error_is_a_tool_error_with_its_content() -> None:
    content = [{"type": "text", "text": "bad input"}, {"type": "text", "text": "really"}]
    assert answer({"content": content, "isError": True}) == {
        "error": {"name": "ToolError", "message": "bad input\nreally", "content": content}
    }
    assert answer({"content": [], "isError": True})["error"]["message"] == "s.t failed"


def test_a_schema_that_refers_elsewhere_fetches_nothing_and_refuses_the_call() -> None:
    caller = FakeCaller()
    caller.catalogue["calc"]["remote"] = ToolInfo(
        {"type": "object", "properties": {"a": {"$ref": "http://127.0.0.1:9/s.json"}}}
    )
    caller.catalogue["calc"]["broken"] = ToolInfo({"type": 5})
    calls, sent = make(caller)
    calls.submit(call(1, "calc", "remote"))
    calls.submit(call(2, "calc", "broken"))
    answers = {r.call_id: json.loads(r.answer)["error"]["message"] for r in sent.wait(2)}
    assert answers[1].startswith("calc.remote: the tool's inputSchema cannot be used (")
    assert answers[2] == "calc.broken: the tool's inputSchema is not a valid JSON Schema"
    assert caller.calls == []


def test_every_call_is_recorded_once_answered_or_abandoned() -> None:
    caller = FakeCaller()
    records: list[ToolCallRecord] = []
    sent = Sent()
    calls = ToolCalls("e", caller, sent, limits=ToolLimits(max_calls=3), on_record=records.append)
    calls.submit(call(1, arguments={"a": 1, "b": 2}))
    calls.submit(call(2, arguments={"a": "x"}))
    calls.submit(call(3, "slow", "wait", {}))
    calls.submit(call(4))
    calls.submit(call(5))  # past the budget again: answered, not recorded
    sent.wait(4)
    assert caller.started.wait(HANG)
    calls.end()
    caller.release.set()
    by_id = {r.call_id: r for r in records}
    assert sorted(by_id) == [1, 2, 3, 4] and len(records) == 4
    assert (by_id[1].server, by_id[1].tool, by_id[1].outcome, by_id[1].message) == ("calc", "add", "ok", None)
    assert by_id[1].arguments_bytes == len('{"a": 1, "b": 2}')
    assert by_id[2].outcome == "TypeError" and "arguments.a" in (by_id[2].message or "")
    assert by_id[3].outcome == "abandoned"
    assert by_id[4].outcome == "TypeError" and "max_tool_calls" in (by_id[4].message or "")
    assert all(r.duration_ms >= 0 for r in records)


# -- the server's bound on the tool calls in flight ----------------------------------------------


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + HANG
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.001)


def test_a_call_past_the_servers_bound_waits_for_a_place_then_runs() -> None:
    """Two executions share a gate of one place: the second's call waits, reaching no tool
    server, until the first's returns."""
    gate, caller = Gate(1), FakeCaller()
    first, first_sent = make(caller, gate=gate)
    second, second_sent = make(caller, gate=gate)
    first.submit(call(1, "slow", "wait", {}))
    assert caller.started.wait(HANG)
    second.submit(call(1, arguments={"a": 2, "b": 3}))
    wait_until(lambda: gate.waiting == 1)
    assert caller.calls == [("slow", "wait", "{}")] and second_sent.replies == []
    caller.release.set()
    assert second_sent.wait(1)[0].answer == '{"value": {"sum": 5}}'
    assert first_sent.wait(1)[0].answer == '{"value": "done"}'
    wait_until(lambda: gate.in_flight == 0)


def test_a_call_whose_deadline_passes_at_the_gate_fails_and_leaves_no_place_taken() -> None:
    gate, caller = Gate(1), FakeCaller()
    records: list[ToolCallRecord] = []
    holder, _ = make(caller, gate=gate)
    waiter, waiter_sent = make(
        caller, gate=gate, limits=ToolLimits(call_timeout=0.2), on_record=records.append
    )
    holder.submit(call(1, "slow", "wait", {}))
    assert caller.started.wait(HANG)
    waiter.submit(call(7))
    error = json.loads(waiter_sent.wait(1)[0].answer)["error"]
    assert error == {"name": "Error", "message": "tool call failed: calc.add did not answer within its time"}
    wait_until(lambda: gate.waiting == 0)  # it gave up its wait
    assert [r.outcome for r in records] == ["Error"]
    assert caller.calls == [("slow", "wait", "{}")]  # it never reached the tool server
    caller.release.set()
    wait_until(lambda: gate.in_flight == 0)
    later, later_sent = make(caller, gate=gate)
    later.submit(call(1))
    assert later_sent.wait(1)[0].answer == '{"value": {"sum": 1}}'


def test_end_stops_the_calls_waiting_at_the_gate() -> None:
    gate, caller = Gate(1), FakeCaller()
    holder, _ = make(caller, gate=gate)
    waiter, waiter_sent = make(caller, gate=gate)
    holder.submit(call(1, "slow", "wait", {}))
    assert caller.started.wait(HANG)
    waiter.submit(call(1))
    waiter.submit(call(2))
    wait_until(lambda: gate.waiting == 2)
    waiter.end()
    wait_until(lambda: gate.waiting == 0)
    assert gate.in_flight == 1 and waiter_sent.replies == []  # the holder's place only
    caller.release.set()
    wait_until(lambda: gate.in_flight == 0)
    assert caller.calls == [("slow", "wait", "{}")]


def test_a_stopped_waiter_passes_on_the_wake_up_of_a_freed_place() -> None:
    """A leave's single wake-up may reach a waiter whose call was stopped meanwhile (before its
    execution woke the gate): it passes the wake-up on, so the other waiter takes the place."""
    gate = Gate(1)
    stopped, other = threading.Event(), threading.Event()
    assert gate.enter(threading.Event())
    results: dict[str, bool] = {}
    first = threading.Thread(target=lambda: results.__setitem__("stopped", gate.enter(stopped)))
    first.start()
    wait_until(lambda: gate.waiting == 1)
    second = threading.Thread(target=lambda: results.__setitem__("other", gate.enter(other)))
    second.start()
    wait_until(lambda: gate.waiting == 2)
    stopped.set()  # no wake(): only the leave's notify can wake anyone
    gate.leave()
    first.join(HANG)
    second.join(HANG)
    assert results == {"stopped": False, "other": True} and gate.in_flight == 1


# -- the records on their way to the store -------------------------------------------------------


class SlowStore:
    """A ToolCallLog whose writes wait until the test lets them go (``open``), or fail."""

    def __init__(self) -> None:
        self.rows: dict[str, list[ToolCallRow]] = {}
        self.open = threading.Event()
        self.writing = threading.Event()
        self.fail = False

    def add(self, execution_id: str, calls: Sequence[ToolCallRow]) -> None:
        self.writing.set()
        assert self.open.wait(HANG)
        if self.fail:
            raise OSError("the database is away")
        self.rows.setdefault(execution_id, []).extend(calls)

    def list(self, execution_id: str, *, after: int | None = None, limit: int = 1000) -> list[ToolCallRow]:
        return sorted(self.rows.get(execution_id, []), key=lambda r: r.call_id)

    def delete(self, execution_ids: Iterable[str]) -> int:
        return 0

    def close(self) -> None:
        pass


def record(call_id: int) -> ToolCallRecord:
    return ToolCallRecord(call_id, "calc", "add", 8, "ok", None, 1.25, "2026-01-01T00:00:00.000Z")


def test_recording_never_waits_for_the_database() -> None:
    """The reader reports refused calls itself: a record must not wait for a write under way."""
    store = SlowStore()
    recorder = ToolCallRecorder(store, interval=None)
    recorder.record("e", record(1))
    flushing = threading.Thread(target=recorder.flush)
    flushing.start()
    assert store.writing.wait(HANG)  # a write holds the database
    done = threading.Event()
    threading.Thread(target=lambda: (recorder.record("e", record(2)), done.set())).start()
    assert done.wait(HANG) and recorder.pending("e") == 1  # buffered while the write waits
    store.open.set()
    flushing.join(HANG)
    recorder.flush("e")
    assert [r.call_id for r in store.list("e")] == [1, 2]


def test_a_refused_write_keeps_its_records_for_the_next_one() -> None:
    store = SlowStore()
    store.open.set()
    store.fail = True
    recorder = ToolCallRecorder(store, interval=None)
    recorder.record("e", record(1))
    recorder.record("e", record(2))
    recorder.flush("e")
    assert recorder.pending("e") == 2 and store.rows == {}
    store.fail = False
    recorder.record("e", record(3))
    recorder.flush("e")
    assert [r.call_id for r in store.list("e")] == [1, 2, 3] and recorder.pending("e") == 0


def test_the_recorders_thread_writes_what_is_buffered_and_close_writes_the_rest() -> None:
    store = SlowStore()
    store.open.set()
    recorder = ToolCallRecorder(store, interval=0.01)
    recorder.record("a", record(1))
    wait_until(lambda: len(store.list("a")) == 1)
    recorder.close()
    recorder.record("b", record(1))  # after the close: only an explicit flush writes it
    assert store.list("b") == []
    recorder.flush()
    assert store.list("b")[0] == ToolCallRow(
        1, "calc", "add", 8, "ok", None, "2026-01-01T00:00:00.000Z", 1.25
    )


# -- the time an execution waits on tools ---------------------------------------------------------


def test_the_time_waited_on_tools_runs_while_a_call_is_in_flight_only() -> None:
    caller = FakeCaller()
    calls, sent = make(caller)
    assert calls.waited() == 0.0 and not calls.busy
    calls.submit(call(1, "slow", "wait", {}))
    assert caller.started.wait(HANG) and calls.busy
    time.sleep(0.2)
    during = calls.waited()
    assert during >= 0.2
    caller.release.set()
    sent.wait(1)
    wait_until(lambda: not calls.busy)
    after = calls.waited()
    time.sleep(0.1)
    assert calls.waited() == after >= during  # no call in flight: it stands still


class FakeControl:
    def __init__(self) -> None:
        self.cancelled = threading.Event()

    def cancel(self) -> None:
        self.cancelled.set()


def test_the_script_clock_stops_while_a_call_is_outstanding() -> None:
    from mcp_v8.executions.worker_common import ScriptClock

    control = FakeControl()
    started = time.monotonic()
    clock = ScriptClock(0.3, control)
    clock.calls(+1)
    held = 1.0  # well past the timeout: waiting on a tool is not the script's time
    time.sleep(held)
    assert not control.cancelled.is_set() and not clock.expired
    clock.calls(-1)
    assert control.cancelled.wait(HANG) and clock.expired
    assert time.monotonic() - started >= held + 0.3 * 0.9


def test_a_stopped_script_clock_cancels_nothing() -> None:
    from mcp_v8.executions.worker_common import ScriptClock

    control = FakeControl()
    clock = ScriptClock(0.1, control)
    clock.stop()
    time.sleep(0.3)
    assert not control.cancelled.is_set() and not clock.expired


def test_script_clocks_share_one_thread_whatever_the_number_of_jobs() -> None:
    from mcp_v8.executions.worker_common import ScriptClock

    ScriptClock(60, FakeControl()).stop()  # the process's clocks' thread, if not started yet
    before = threading.active_count()
    clocks = [ScriptClock(60, FakeControl()) for _ in range(20)]  # a thread each would show
    assert threading.active_count() == before
    for clock in clocks:
        clock.stop()


def test_a_clock_due_before_the_one_its_thread_waits_for_expires_on_time() -> None:
    from mcp_v8.executions.worker_common import ScriptClock, ScriptClocks

    clocks = ScriptClocks()
    slow, quick = FakeControl(), FakeControl()
    ScriptClock(600, slow, clocks)  # the thread sleeps until its deadline
    started = time.monotonic()
    short = ScriptClock(0.2, quick, clocks)  # due long before: the thread is woken for it
    assert quick.cancelled.wait(HANG) and short.expired
    assert time.monotonic() - started >= 0.2 * 0.9
    assert not slow.cancelled.is_set()
    later = FakeControl()
    back = ScriptClock(0.2, later, clocks)
    back.calls(+1)  # waits on a tool: no deadline, and the thread sleeps on
    time.sleep(0.4)
    assert not back.expired
    back.calls(-1)  # its time runs again: due in about 0.2 s, the thread is woken for it
    assert later.cancelled.wait(HANG) and back.expired
