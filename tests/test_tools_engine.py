"""The tools surface of the engine (web.js's `tools` / `mcp.callTool`, `_engine.ToolRelay`).

A relay made by each test answers the calls from threads of its own, as the service's worker
does with the server's answers. The snapshot tests take a heap while a call is held (its
resolver in the JS heap only), restore it in a new isolate and settle the call there by its
call id: the suspended script runs on.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from typing import Any, Callable

import pytest

from mcp_v8 import Engine, _engine

SETTLE = "globalThis[Symbol.for('mcp-v8.settleToolCall')]"


class Relay:
    """A tool relay whose answers `answer(request) -> answer object` computes, posted later
    from another thread."""

    def __init__(self, answer: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.requests: list[dict[str, Any]] = []
        self._answer = answer
        self._threads: list[threading.Thread] = []
        self.relay = _engine.ToolRelay(self._on_call)

    def _on_call(self, call_id: int, request_json: str) -> None:
        request = json.loads(request_json)
        self.requests.append(request)
        answer = json.dumps(self._answer(request))
        thread = threading.Thread(target=self.relay.reply, args=(call_id, answer))
        thread.start()
        self._threads.append(thread)

    def join(self) -> None:
        for t in self._threads:
            t.join(timeout=30)


def adder(request: dict[str, Any]) -> dict[str, Any]:
    args = json.loads(request["arguments"])
    if request["tool"] == "fail":
        return {
            "error": {
                "name": "ToolError",
                "message": "it failed",
                "content": [{"type": "text", "text": "no"}],
            }
        }
    if request["tool"] == "deny":
        return {"error": {"name": "ToolDenied", "message": "denied by a person", "reason": "not today"}}
    if request["tool"] == "bad":
        return {"error": {"name": "TypeError", "message": "calc.bad: a: must be a number"}}
    return {"value": {"sum": args.get("a", 0) + args.get("b", 0), "tool": request["tool"]}}


def run(code: str, relay: Relay | None, **kwargs: Any) -> Any:
    outcome = _engine.execute(code, tool_relay=relay.relay if relay else None, timeout=30, **kwargs)
    if relay is not None:
        relay.join()
    assert outcome.completed, outcome.error
    return json.loads(outcome.result or "null")


def test_calls_in_parallel_by_namespace_and_by_call_tool() -> None:
    relay = Relay(adder)
    value = run(
        "const [x, y, z] = await Promise.all([tools.calc.add({a: 1, b: 2}), mcp.callTool('calc', 'add', {a: 5}),"
        " tools.calc['odd-name']()]); [x, y, z]",
        relay,
    )
    assert value == [{"sum": 3, "tool": "add"}, {"sum": 5, "tool": "add"}, {"sum": 0, "tool": "odd-name"}]
    assert sorted(r["call_id"] for r in relay.requests) == [1, 2, 3]
    assert {r["server"] for r in relay.requests} == {"calc"}
    assert sorted(r["arguments"] for r in relay.requests) == ['{"a":1,"b":2}', '{"a":5}', "{}"]


def test_errors_are_tool_error_tool_denied_and_type_error() -> None:
    value = run(
        """
        const seen = [];
        for (const tool of ['fail', 'deny', 'bad']) {
          try { await tools.calc[tool]({}); } catch (e) {
            seen.push([e.name, e.message, e instanceof ToolError, e instanceof ToolDenied, e instanceof TypeError,
                       e.server ?? null, e.tool ?? null, e.content ?? null, e.reason ?? null]);
          }
        }
        seen
        """,
        Relay(adder),
    )
    assert value == [
        [
            "ToolError",
            "it failed",
            True,
            False,
            False,
            "calc",
            "fail",
            [{"type": "text", "text": "no"}],
            None,
        ],
        ["ToolDenied", "denied by a person", False, True, False, "calc", "deny", None, "not today"],
        ["TypeError", "calc.bad: a: must be a number", False, False, True, None, None, None, None],
    ]


def test_bad_arguments_are_refused_in_the_script_without_a_call() -> None:
    relay = Relay(adder)
    value = run(
        """
        const seen = [];
        const cyclic = {}; cyclic.self = cyclic;
        for (const args of [[1], null, 'x', cyclic, {n: 1n}]) {
          try { await tools.calc.add(args); } catch (e) { seen.push(e.name); }
        }
        for (const [s, t] of [['', 'x'], ['x', ''], [1, 'x']]) {
          try { await mcp.callTool(s, t, {}); } catch (e) { seen.push(e.name); }
        }
        seen
        """,
        relay,
    )
    assert value == ["TypeError"] * 8
    assert relay.requests == []


def test_namespaces_are_not_thenables_and_cannot_be_written() -> None:
    value = run(
        """
        const ns = await tools.srv;  // awaiting a namespace makes no call
        let wrote = 'no error';
        try { 'use strict'; tools.srv = 1; } catch (e) { wrote = e.name; }
        [tools.then, tools.srv.then, typeof ns.tool, typeof tools.srv.tool, tools.srv.tool.name,
         typeof tools[Symbol.iterator], 'anything' in tools.srv]
        """,
        Relay(adder),
    )
    assert value == [None, None, "function", "function", "tool", "undefined", True]


def test_without_a_relay_a_call_is_refused_saying_so() -> None:
    value = run("try { await tools.calc.add({}) } catch (e) { [e.name, e.message] }", None)
    assert value == ["TypeError", "tool call refused: no tools are available in this execution"]


def test_a_relay_that_raises_rejects_the_call() -> None:
    def on_call(call_id: int, request_json: str) -> None:
        raise ValueError("the relay is broken")

    relay = _engine.ToolRelay(on_call)
    outcome = _engine.execute(
        "try { await tools.a.b({}) } catch (e) { [e.name, e.message] }", tool_relay=relay, timeout=30
    )
    assert json.loads(outcome.result or "null") == ["Error", "the relay is broken"]


def test_fetch_and_tools_share_the_inbox_of_one_execution() -> None:
    relay = Relay(adder)
    fetches: list[str] = []
    fetch_relay: _engine.FetchRelay

    def on_fetch(call_id: int, args_json: str, body: bytes | None) -> None:
        fetches.append(args_json)
        error = json.dumps({"name": "TypeError", "message": "fetch refused: test"})
        threading.Thread(target=fetch_relay.reply, args=(call_id, False, error)).start()

    fetch_relay = _engine.FetchRelay(on_fetch)
    outcome = _engine.execute(
        "let f; try { await fetch('http://example.test/') } catch (e) { f = e.message }"
        " [f, await tools.calc.add({a: 4})]",
        tool_relay=relay.relay,
        fetch_relay=fetch_relay,
        timeout=30,
    )
    relay.join()
    assert json.loads(outcome.result or "null") == ["fetch refused: test", {"sum": 4, "tool": "add"}]
    assert len(fetches) == 1


def held(request: dict[str, Any]) -> dict[str, Any]:
    return {"held": True}


PAUSE = """
globalThis.done = (async () => {
  const first = await tools.calc.add({a: 2, b: 3});
  let second;
  try { second = await tools.calc.drop({}); } catch (e) { second = [e.name, e.message, e.reason]; }
  return {first, second};
})();
'paused'
"""


def test_a_held_call_survives_a_snapshot_and_is_settled_after_restore() -> None:
    first = _engine.execute(PAUSE, tool_relay=Relay(held).relay, snapshot=True, timeout=30)
    assert first.completed, first.error
    assert first.snapshot is not None

    # Restored in a new isolate: call 1 is settled there by its call id, and the script runs
    # on to its second call, which is held again and goes into a second snapshot.
    second = _engine.execute(
        f"[{SETTLE}(1, {{value: {{sum: 5}}}}), {SETTLE}(1, {{value: 0}})]",
        heap=first.snapshot,
        tool_relay=Relay(held).relay,
        snapshot=True,
        timeout=30,
    )
    assert second.completed, second.error
    assert json.loads(second.result or "null") == [True, False]  # settled once only
    assert second.snapshot is not None

    third = _engine.execute(
        f"{SETTLE}(2, {{error: {{name: 'ToolDenied', message: 'denied', reason: 'no'}}}}); await done",
        heap=second.snapshot,
        timeout=30,
    )
    assert third.completed, third.error
    assert json.loads(third.result or "null") == {
        "first": {"sum": 5},
        "second": ["ToolDenied", "denied", "no"],
    }


def test_call_ids_go_on_after_a_restore() -> None:
    first = _engine.execute(
        "tools.a.b({}); tools.a.c({}); 1", tool_relay=Relay(held).relay, snapshot=True, timeout=30
    )
    assert first.completed, first.error
    relay = Relay(adder)
    _engine.execute("await tools.a.d({})", heap=first.snapshot, tool_relay=relay.relay, timeout=30)
    relay.join()
    assert [r["call_id"] for r in relay.requests] == [3]


# -- the library: tools from Python callables (mcp_v8.local_tools) -------------------------


def test_python_callables_are_the_scripts_tools() -> None:
    both = threading.Barrier(2, timeout=30)  # only calls that run at once pass it

    def add(a: float, b: float = 0) -> float:
        return a + b

    def meet(who: str) -> str:
        both.wait()
        return f"met {who}"

    async def double(x: int) -> dict[str, int]:
        return {"x": x * 2}

    def fail() -> None:
        raise ValueError("no such thing")

    def not_json() -> object:
        return object()

    outcome = Engine().execute(
        """
        const seen = [await tools.calc.add({a: 1, b: 2}), await mcp.callTool('calc', 'double', {x: 4}),
                      await Promise.all([tools.calc.meet({who: 'a'}), tools.calc.meet({who: 'b'})])];
        for (const [tool, args] of [['fail', {}], ['add', {c: 1}], ['not_json', {}], ['missing', {}]]) {
          try { await tools.calc[tool](args); } catch (e) { seen.push([e.name, e.message]); }
        }
        seen
        """,
        tools={"calc": {"add": add, "double": double, "meet": meet, "fail": fail, "not_json": not_json}},
        timeout=30,
    )
    assert outcome.completed, outcome.error
    assert json.loads(outcome.result or "null") == [
        3,
        {"x": 8},
        ["met a", "met b"],
        ["ToolError", "ValueError: no such thing"],
        ["TypeError", "calc.add: arguments: 'a' is a required property"],
        [
            "TypeError",
            "calc.not_json returned a value that is not JSON: Object of type object is not JSON serializable",
        ],
        ["TypeError", "tool call refused: no tool calc.missing"],
    ]


def test_a_typescript_script_calls_library_tools_with_no_import() -> None:
    """`language="typescript"`: `tools`, `mcp` and the error classes are ambient."""

    def add(a: int, b: int) -> int:
        return a + b

    outcome = Engine().execute(
        """
        const sum: number = (await tools.calc.add({a: 2, b: 3})) as number;
        const again = <number>(await mcp.callTool('calc', 'add', {a: sum, b: 1}));
        let caught: string = '';
        try { await tools.calc.add({a: 1}); } catch (e: unknown) { caught = (e as Error).name; }
        [sum, again, caught, typeof ToolError, typeof ToolDenied]
        """,
        language="typescript",
        tools={"calc": {"add": add}},
        timeout=30,
    )
    assert outcome.completed, outcome.error
    assert json.loads(outcome.result or "null") == [5, 6, "TypeError", "function", "function"]


def test_tools_must_be_callables_by_name() -> None:

    for bad in ({"calc": {"add": 1}}, {"": {}}, {"calc": [len]}):
        with pytest.raises(TypeError):
            Engine().execute("1", tools=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not both"):
        Engine().execute("1", tools={}, tool_relay=Relay(adder).relay)


def test_a_live_context_gets_the_same_tools() -> None:
    seen: list[int] = []

    def record(n: int) -> int:
        seen.append(n)
        return n * 3

    with Engine().context(tools={"log": {"record": record}}, timeout=30) as context:
        assert context.eval("await tools.log.record({n: 2})") == 6
        assert context.eval("await mcp.callTool('log', 'record', {n: 5})") == 15
        assert context.eval("try { await tools.log.nope() } catch (e) { e.name + ': ' + e.message }") == (
            "TypeError: tool call refused: no tool log.nope"
        )
    assert seen == [2, 5]
    with Engine().context(timeout=30) as bare:
        assert bare.eval("try { await tools.a.b() } catch (e) { e.name }") == "TypeError"


# -- suspending: a script that waits only on held calls ------------------------------------

RESUME = "globalThis[Symbol.for('mcp-v8.resume')]"


def test_a_script_waiting_only_on_held_calls_suspends_into_a_snapshot_and_resumes() -> None:
    def answer(request: dict[str, Any]) -> dict[str, Any]:
        return {"held": True} if request["tool"] == "gated" else adder(request)

    code = """
    const free = await tools.calc.add({a: 1});
    const [gated, other] = await Promise.all([tools.calc.gated({a: 2}), tools.calc.add({a: 3})]);
    const slow = await new Promise((resolve) => setTimeout(() => resolve('timer'), 10));
    let denied;
    try { await tools.calc.gated({a: 4}); } catch (e) { denied = [e.name, e.reason]; }
    ({free: free.sum, gated, other: other.sum, slow, denied})
    """
    relay = Relay(answer)
    first = _engine.execute(code, tool_relay=relay.relay, snapshot=True, timeout=30)
    relay.join()
    assert first.status == "suspended", first.error
    assert first.error is None and first.result is None
    assert first.snapshot is not None
    # The free calls were made before it suspended; the gated one waits.
    assert [r["tool"] for r in relay.requests] == ["add", "gated", "add"]

    # Resumed in a new isolate: call 2 approved with its result, the script runs on to a
    # second gated call and suspends again.
    relay = Relay(answer)
    second = _engine.execute(
        f"await {RESUME}([[2, {{value: {{sum: 20}}}}]])",
        heap=first.snapshot,
        tool_relay=relay.relay,
        snapshot=True,
        timeout=30,
    )
    relay.join()
    assert second.status == "suspended", second.error
    assert [(r["call_id"], r["tool"]) for r in relay.requests] == [(4, "gated")]

    third = _engine.execute(
        f"await {RESUME}([[4, {{error: {{name: 'ToolDenied', message: 'no', reason: 'by a person'}}}}]])",
        heap=second.snapshot,
        timeout=30,
    )
    assert third.completed, third.error
    assert json.loads(third.result or "null") == {
        "free": 1,
        "gated": {"sum": 20},
        "other": 3,
        "slow": "timer",
        "denied": ["ToolDenied", "by a person"],
    }


def test_without_snapshots_a_suspended_run_ends_with_no_heap() -> None:
    outcome = _engine.execute("await tools.calc.x({})", tool_relay=Relay(held).relay, timeout=30)
    assert outcome.status == "suspended" and outcome.snapshot is None


def test_a_run_with_a_live_timer_or_a_call_out_waits_for_them_before_suspending() -> None:
    code = """
    globalThis.order = [];
    tools.calc.later({}).then(() => order.push('late'));
    setTimeout(() => order.push('timer'), 10);
    await tools.calc.held({});
    """
    timers: list[threading.Timer] = []

    def on_call(call_id: int, request_json: str) -> None:
        if json.loads(request_json)["tool"] == "later":  # answered well after the timer
            timers.append(threading.Timer(0.3, relay.reply, (call_id, '{"value": 1}')))
            timers[-1].start()
        else:
            relay.reply(call_id, '{"held": true}')

    relay = _engine.ToolRelay(on_call)
    first = _engine.execute(code, tool_relay=relay, snapshot=True, timeout=30)
    for t in timers:
        t.join(30)
    assert first.status == "suspended", first.error
    later = _engine.execute("order", heap=first.snapshot, timeout=30)
    assert json.loads(later.result or "null") == ["timer", "late"]


def test_resume_without_a_suspended_script_is_a_type_error() -> None:
    outcome = _engine.execute(f"{RESUME}([])", timeout=30)
    assert outcome.status == "failed" and outcome.error_name == "TypeError"


EXIT_WHILE_REPLYING = """
import threading, time
from mcp_v8 import _engine
calls = []
relay = _engine.ToolRelay(lambda call_id, request: calls.append(call_id))
threading.Thread(target=lambda: _engine.execute("await tools.t.never()", tool_relay=relay), daemon=True).start()
while not calls:
    time.sleep(0.01)
def spin():
    while True:
        relay.reply(calls[0] + 1000, '{"value": 1}')  # an id nobody waits for: dropped
threading.Thread(target=spin, daemon=True).start()
time.sleep(0.1)
print("exiting", flush=True)
"""


def test_a_daemon_thread_replying_as_the_interpreter_exits_does_not_abort_it() -> None:
    # A library tool answers on a daemon thread; one still answering at exit used to be
    # stopped inside the reply (which released the GIL), and the process aborted.
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", EXIT_WHILE_REPLYING], capture_output=True, text=True, timeout=120
        )
        assert (out.returncode, out.stdout) == (0, "exiting\n"), out.stderr[-2000:]
