"""Scripts run in V8's REPL mode: the completion value after `await` for every statement kind,
top-level `let`/`const`/`class` declared again by a later script, names and positions in
stack traces, and `Error.stackTraceLimit` in every run (snapshot runs and restored heaps
included) without ever being written into a heap."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from mcp_v8 import Control, Engine

HEAPS = Path(__file__).parent / "fixtures" / "heaps"
# Stored by the engine of commit cfa4b8e (classic scripts, before REPL mode) from
# `let kept = 1; const fixed = 2; class Shape {}; var plain = 3` with snapshot=True.
CLASSIC_HEAP = HEAPS / "classic-bindings-cfa4b8e.snap"

# Each statement kind, and the completion value ECMAScript gives it.
STATEMENTS: dict[str, tuple[str, object]] = {
    "expression": ("1 + 1", 2),
    "try": ("try { 1 } catch (e) { 2 }", 1),
    "catch": ("try { throw 0 } catch (e) { 2 }", 2),
    "finally": ("try { 3 } finally { 4 }", 3),
    "if": ("if (true) { 5 }", 5),
    "else": ("if (c) { 5 } else { 6 }", 6),
    "for": ("for (let i = 0; i < 3; i++) { i * 10 }", 20),
    "for-of": ("for (const x of [7, 8]) { x }", 8),
    "for-in": ("for (const k in {a: 1}) { k }", "a"),
    "while": ("let w = 0; while (w < 2) { w++ }", 1),
    "do-while": ("do { 'd' } while (false)", "d"),
    "switch": ("switch (2) { case 1: 'one'; break; case 2: 'two'; break; default: 'other' }", "two"),
    "block": ("{ 'block' }", "block"),
    "labelled": ("out: { 'kept'; break out; 'skipped' }", "kept"),
    "break-in-loop": ("for (;;) { 'looped'; break }", "looped"),
    "declaration-after": ("9; var after = 1;", 9),
    "function-after": ("10; function fnAfter() {}", 10),
    "class-after": ("11; class ClassAfter {}", 11),
    "empty-after": ("12; ;", 12),
    "object": ("({a: [1, {b: 2}]})", {"a": [1, {"b": 2}]}),
    "promise": ("Promise.resolve(13)", 13),
}


def completion(engine: Engine, code: str, *, snapshot: bool) -> object:
    outcome = engine.execute("const c = false;\n" + code, snapshot=snapshot)
    assert outcome.completed, (code, outcome.error)
    return json.loads(outcome.result or "null")


@pytest.mark.parametrize("snapshot", [False, True], ids=["plain", "snapshot"])
@pytest.mark.parametrize("kind", sorted(STATEMENTS))
def test_completion_value_after_await_is_the_scripts(engine: Engine, kind: str, snapshot: bool) -> None:
    code, expected = STATEMENTS[kind]
    assert completion(engine, code, snapshot=snapshot) == expected
    # The same after an `await`, before the statement and inside it where it has a block.
    assert completion(engine, "await null;\n" + code, snapshot=snapshot) == expected
    if "{ " in code and not code.startswith("switch"):
        inner = code.replace("{ ", "{ await null; ", 1)
        assert completion(engine, inner, snapshot=snapshot) == expected, inner


def test_the_reported_cases() -> None:
    engine = Engine()
    assert engine.execute("try { await null; 1 } catch (e) { 2 }").result == "1"
    assert engine.execute("if (true) { await null; 5 }").result == "5"
    assert engine.execute("const c = 0; await null; if (c) { 5 } else { 6 }").result == "6"


def test_completion_values_in_a_live_context(engine: Engine) -> None:
    with engine.context(snapshot=True) as ctx:
        assert ctx.eval("try { await null; 1 } catch (e) { 2 }") == 1
        assert ctx.eval("let n = await Promise.resolve(41); switch (n) { case 41: n + 1 }") == 42
        assert ctx.eval("n") == 41


def test_a_promise_completion_value_is_awaited_and_its_rejection_is_the_error(engine: Engine) -> None:
    assert engine.execute("await null; new Promise(r => setTimeout(() => r('late'), 10))").result == '"late"'
    outcome = engine.execute("await null;\nPromise.reject(new RangeError('rejected'))")
    assert outcome.failed and outcome.error_name == "RangeError"
    assert outcome.error is not None and not outcome.error.startswith("Unhandled")
    assert (outcome.error_line, outcome.error_column) == (2, 16)
    # Another promise rejected and never handled is still an unhandled rejection.
    outcome = engine.execute("await null;\nPromise.reject(new Error('nobody'));\n'value'")
    assert (
        outcome.failed
        and outcome.error is not None
        and outcome.error.startswith("Unhandled promise rejection")
    )


def test_declarations_made_after_await_are_globals_kept_by_snapshots(engine: Engine) -> None:
    first = engine.execute(
        "var v = await Promise.resolve(1);\nlet l = await 2;\nconst k = 3;\nclass C {}\nfunction f() { return 4 }\n[v, l]",
        snapshot=True,
    )
    assert first.result == "[1,2]"
    again = engine.execute(
        "[v, l, k, new C() instanceof C, f(), typeof globalThis.v, typeof globalThis.l]", heap=first.snapshot
    )
    assert again.result == '[1,2,3,true,4,"number","undefined"]'


@pytest.mark.parametrize("snapshot", [False, True], ids=["plain", "snapshot"])
def test_let_const_and_class_may_be_declared_again_by_a_later_script(engine: Engine, snapshot: bool) -> None:
    heap = engine.execute("let a = 1; const b = 2; class C { m() { return 'old' } }", snapshot=True).snapshot
    outcome = engine.execute(
        "let a = 10; const b = 20; class C { m() { return 'new' } }; [a, b, new C().m()]",
        heap=heap,
        snapshot=snapshot,
    )
    assert outcome.result == '[10,20,"new"]', outcome.error
    # A `let` may become a class and back; `const` stays `const`.
    assert engine.execute("class a {}; typeof a", heap=heap).result == '"function"'
    for code in ("const a = 5", "let b = 5", "var a = 5", "let a = 1; let a = 2"):
        outcome = engine.execute(code, heap=heap)
        assert outcome.failed and outcome.syntax_error and outcome.error_name == "SyntaxError", code
    # `var` and functions keep their rule: never redeclared as lexical names.
    heap = engine.execute("var v = 1; function f() {}", snapshot=True).snapshot
    for code in ("let v = 2", "class f {}"):
        assert engine.execute(code, heap=heap).error_name == "SyntaxError", code


def test_declaring_again_in_a_live_context(engine: Engine) -> None:
    with engine.context() as ctx:
        ctx.eval("let state = {n: 1}; const LIMIT = 3")
        assert ctx.eval("let state = {n: 2}; const LIMIT = 4; [state.n, LIMIT]") == [2, 4]


def test_a_binding_left_uninitialised_by_a_failed_await_can_be_declared_again(engine: Engine) -> None:
    with engine.context() as ctx:
        assert ctx.execute("let u = await Promise.reject(new Error('no'))").failed
        assert ctx.execute("u").error_name == "ReferenceError"
        assert ctx.eval("let u = 5; u") == 5


def test_bindings_of_heaps_made_before_repl_mode_keep_the_classic_rule(engine: Engine) -> None:
    envelope = CLASSIC_HEAP.read_bytes()
    assert engine.execute("[kept, fixed, typeof Shape, plain]", heap=envelope).result == '[1,2,"function",3]'
    outcome = engine.execute("let kept = 5", heap=envelope)
    assert outcome.failed and outcome.error_name == "SyntaxError"
    # Names the old heap does not have are declared and declared again under the new rule.
    heap = engine.execute("let fresh = 1", heap=envelope, snapshot=True).snapshot
    assert engine.execute("let fresh = 2; [fresh, kept]", heap=heap).result == "[2,1]"


def test_top_level_await_waits_for_timers_and_host_work(engine: Engine) -> None:
    outcome = engine.execute(
        "const t0 = Date.now(); await new Promise(r => setTimeout(r, 30)); Date.now() - t0 >= 25"
    )
    assert outcome.result == "true"


def test_a_timeout_ends_a_script_parked_on_await(engine: Engine) -> None:
    outcome = engine.execute("await new Promise(() => {}); 1", timeout=0.3)
    assert outcome.timed_out
    outcome = engine.execute("await null; while (true) {}", timeout=0.3, snapshot=True)
    assert outcome.timed_out and outcome.snapshot is None


def test_a_cancel_ends_a_script_parked_on_await(engine: Engine) -> None:
    control = Control()
    timer = threading.Timer(0.2, control.cancel)
    timer.start()
    started = time.monotonic()
    outcome = engine.execute("await new Promise(r => setTimeout(r, 60_000)); 1", control=control, timeout=120)
    timer.join()
    assert outcome.cancelled
    assert time.monotonic() - started < 60  # ended by the cancel, not by the timer


# --- names and positions --------------------------------------------------------------------


@pytest.mark.parametrize("snapshot", [False, True], ids=["plain", "snapshot"])
def test_errors_carry_the_script_name_and_position(engine: Engine, snapshot: bool) -> None:
    code = "const x = 1;\nawait null;\nfunction f() {\n  throw new TypeError('deep');\n}\nf();"
    outcome = engine.execute(code, snapshot=snapshot, filename="job.js")
    assert outcome.failed and outcome.error_name == "TypeError"
    assert (outcome.error_line, outcome.error_column) == (4, 9)
    assert outcome.error == "TypeError: deep\n    at f (job.js:4:9)\n    at job.js:6:1"


def test_names_with_spaces_and_quotes_are_percent_encoded_in_stacks(engine: Engine) -> None:
    outcome = engine.execute("new Error('here').stack", filename="my 'odd' file.js")
    assert outcome.result == json.dumps("Error: here\n    at my%20%27odd%27%20file.js:1:1")
    assert (
        json.loads(engine.execute("new Error().stack", filename="ünï.js").result or "")
        == "Error\n    at ünï.js:1:1"
    )


def test_a_syntax_error_is_positioned_in_the_users_code(engine: Engine) -> None:
    outcome = engine.execute("let a = 1;\nlet b = (a +", filename="cut.js")
    assert outcome.syntax_error and outcome.error_name == "SyntaxError"
    assert (outcome.error_line, outcome.error_column) == (2, 13)
    assert outcome.error == "SyntaxError: Unexpected end of input\n    at cut.js:2:13"
    outcome = engine.execute("1 +\u2028 2 +")  # U+2028 ends a line too
    assert (outcome.error_line, outcome.error_column) == (2, 5)
    outcome = engine.execute("let a = 1;\nlet a = 2;")
    assert (outcome.error_line, outcome.error_column) == (2, 5)


def test_typescript_keeps_positions_after_await(engine: Engine) -> None:
    code = "interface P { x: number }\nconst p: P = await Promise.resolve({x: 1}) as P;\nconst q: number = p.x;\n(null as any).boom;"
    outcome = engine.execute(code, language="typescript")
    assert outcome.failed and outcome.error_name == "TypeError"
    assert (outcome.error_line, outcome.error_column) == (4, 15)


# --- Error.stackTraceLimit ------------------------------------------------------------------


@pytest.mark.parametrize("snapshot", [False, True], ids=["plain", "snapshot"])
def test_every_run_has_stack_traces(engine: Engine, snapshot: bool) -> None:
    probe = "[Error.stackTraceLimit, typeof new Error().stack]"
    assert engine.execute(probe, snapshot=snapshot).result == '[10,"string"]'
    heap = engine.execute("var kept = 1", snapshot=True).snapshot
    assert engine.execute(probe, heap=heap, snapshot=snapshot).result == '[10,"string"]'
    # A heap made before: restored into either kind of isolate.
    assert engine.execute(probe, heap=CLASSIC_HEAP.read_bytes(), snapshot=snapshot).result == '[10,"string"]'
    with engine.context(snapshot=snapshot) as ctx:
        assert ctx.eval(probe) == [10, "string"]


def test_a_thrown_error_in_a_function_has_its_position_in_snapshot_runs(engine: Engine) -> None:
    outcome = engine.execute("function f() {\n  return null.x;\n}\nf()", snapshot=True)
    assert (outcome.error_line, outcome.error_column) == (2, 15)
    assert outcome.error is not None and "at f (<input>:2:15)" in outcome.error


@pytest.mark.parametrize("restore_with_snapshot", [False, True], ids=["into-plain", "into-snapshot"])
def test_a_stack_trace_limit_the_script_sets_is_kept_by_its_heap(
    engine: Engine, restore_with_snapshot: bool
) -> None:
    heap = engine.execute("Error.stackTraceLimit = 3; 1", snapshot=True).snapshot
    probe = (
        "JSON.stringify([Error.stackTraceLimit, Object.getOwnPropertyDescriptor(Error, 'stackTraceLimit')])"
    )
    expected = [3, {"value": 3, "writable": True, "enumerable": True, "configurable": True}]
    outcome = engine.execute(probe, heap=heap, snapshot=restore_with_snapshot)
    assert json.loads(json.loads(outcome.result or "null")) == expected
    # A deleted one is not kept: the next run has V8's default again.
    heap = engine.execute("delete Error.stackTraceLimit", snapshot=True).snapshot
    outcome = engine.execute(
        "[Error.stackTraceLimit, new Error().stack]", heap=heap, snapshot=restore_with_snapshot
    )
    assert json.loads(outcome.result or "null") == [10, "Error\n    at <input>:1:25"]
    # An accessor stays an accessor, found on the intrinsic Error under a replaced global one.
    heap = engine.execute(
        "Object.defineProperty(Error, 'stackTraceLimit', {get() { return 1 }, configurable: true}); globalThis.Error = function Fake() {}",
        snapshot=True,
    ).snapshot
    probe = "const E = Object.getPrototypeOf(RangeError); [typeof Object.getOwnPropertyDescriptor(E, 'stackTraceLimit').get, E.stackTraceLimit]"
    assert engine.execute(probe, heap=heap, snapshot=restore_with_snapshot).result == '["function",1]'


def test_a_non_configurable_stack_trace_limit_refuses_the_snapshot(engine: Engine) -> None:
    outcome = engine.execute(
        "Object.defineProperty(Error, 'stackTraceLimit', {value: 2, configurable: false}); 1", snapshot=True
    )
    assert outcome.failed and outcome.snapshot is None
    assert outcome.error is not None and "Error.stackTraceLimit non-configurable" in outcome.error
    with engine.context(snapshot=True) as ctx:
        ctx.eval("Object.defineProperty(Error, 'stackTraceLimit', {value: 2, configurable: false})")
        with pytest.raises(Exception, match="non-configurable"):
            ctx.snapshot()
        assert ctx.eval("1 + 1") == 2  # the context goes on
