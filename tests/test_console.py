"""Console formatting (Node's util.format/util.inspect conventions) and robustness."""

from __future__ import annotations

import pytest

from mcp_v8 import Engine


def logged(engine: Engine, code: str) -> str:
    outcome = engine.execute(code)
    assert outcome.completed, outcome.error
    return outcome.output


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("console.log({a: 1, b: 'x'})", "{ a: 1, b: 'x' }\n"),
        ("console.log([1, 'two', [3, [4, [5, [6]]]]])", "[ 1, 'two', [ 3, [ 4, [Array] ] ] ]\n"),
        ("console.log('a', 1, true, null, undefined, 5n)", "a 1 true null undefined 5n\n"),
        ("console.log(new Map([['k', {v: 1}]]), new Set([1]))", "Map(1) { 'k' => { v: 1 } } Set(1) { 1 }\n"),
        ("const o = {}; o.me = o; console.log(o)", "<ref *1> { me: [Circular *1] }\n"),
        (
            "console.log(function named() {}, class K {}, Symbol('s'))",
            "[Function: named] [class K] Symbol(s)\n",
        ),
        ("console.log('%s=%d %j %%', 'n', 42, {a: [1]})", 'n=42 {"a":[1]} %\n'),
        ("console.log(Promise.resolve(3), new Uint8Array([1, 2]))", "Promise { 3 } Uint8Array(2) [ 1, 2 ]\n"),
        ("console.log([, 1], -0, [undefined])", "[ <1 empty item>, 1 ] -0 [ undefined ]\n"),
        ("console.log({get g() { throw 1; }})", "{ g: [Getter] }\n"),
        ("console.log('multi\\nline')", "multi\nline\n"),
        ("console.group('G'); console.log('in'); console.groupEnd(); console.log('out')", "G\n  in\nout\n"),
        ("console.assert(1 === 2, 'math')", "[error] Assertion failed: math\n"),
        ("console.count(); console.count()", "default: 1\ndefault: 2\n"),
    ],
)
def test_node_style_formatting(engine: Engine, code: str, expected: str) -> None:
    assert logged(engine, code) == expected


def test_errors_are_printed_with_their_stack(engine: Engine) -> None:
    out = logged(engine, "console.error(new TypeError('bad'))")
    assert out.startswith("[error] TypeError: bad\n    at <input>:1:15")


def test_trace_prints_a_stack_without_host_frames(engine: Engine) -> None:
    out = logged(engine, "function f() { console.trace('here'); }\nf()")
    assert out.startswith("[trace] Trace: here\n    at f (<input>:1:24)\n    at <input>:2:1")
    assert "console.js" not in out


def test_long_objects_break_lines(engine: Engine) -> None:
    out = logged(engine, "console.log({alpha: 'a'.repeat(30), beta: 'b'.repeat(30), gamma: 'c'.repeat(30)})")
    assert out.count("\n") == 5
    assert out.startswith("{\n  alpha: '")


def test_proxies_and_getters_are_not_run(engine: Engine) -> None:
    code = """
    let ran = 0;
    const p = new Proxy({x: 1}, {get() { ran++; return 1; }, ownKeys() { ran++; return []; }});
    console.log(p, {get g() { ran++; return 1; }});
    ran
    """
    outcome = engine.execute(code)
    assert outcome.result == "0"
    assert outcome.output == "{ x: 1 } { g: [Getter] }\n"


def test_console_survives_hostile_overrides(engine: Engine) -> None:
    code = """
    Array.prototype.push = () => { throw new Error('push'); };
    Object.keys = () => { throw new Error('keys'); };
    JSON.stringify = () => { throw new Error('json'); };
    String.prototype.slice = () => 'hijacked';
    Object.defineProperty(Object.prototype, 'value', {get() { throw new Error('proto'); }});
    console.log({a: [1, 2]}, 'text', new Map([[1, 2]]));
    """
    assert logged(engine, code) == "{ a: [ 1, 2 ] } text Map(1) { 1 => 2 }\n"


def test_user_may_replace_console(engine: Engine) -> None:
    outcome = engine.execute(
        "const seen = []; console = {log: (x) => seen.push(x)}; console.log('hidden'); seen"
    )
    assert outcome.result == '["hidden"]'
    assert outcome.output == ""
