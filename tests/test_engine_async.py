"""Promises, timers, microtasks and rejections."""

from __future__ import annotations

import json

from mcp_v8 import Engine


def test_promise_result_is_awaited(engine: Engine) -> None:
    assert engine.execute("Promise.resolve({a: 1})").result == '{"a":1}'
    assert engine.execute("new Promise(r => setTimeout(() => r('late'), 20))").result == '"late"'
    assert engine.execute("(async () => { await null; return 7; })()").result == "7"


def test_timer_order_and_arguments(engine: Engine) -> None:
    code = """
    const seen = [];
    setTimeout(() => seen.push('t30'), 30);
    setTimeout((a, b) => seen.push('t10:' + a + b), 10, 'x', 'y');
    setTimeout(() => seen.push('t0'));
    queueMicrotask(() => seen.push('micro'));
    Promise.resolve().then(() => seen.push('then'));
    seen.push('sync');
    new Promise(r => setTimeout(() => r(seen), 50))
    """
    assert json.loads(engine.execute(code).result or "") == ["sync", "micro", "then", "t0", "t10:xy", "t30"]


def test_clear_timeout_and_interval(engine: Engine) -> None:
    code = """
    let ticks = 0, fired = false;
    const t = setTimeout(() => { fired = true; }, 5);
    clearTimeout(t);
    const i = setInterval(() => { if (++ticks === 3) clearInterval(i); }, 1);
    new Promise(r => setTimeout(() => r([ticks, fired]), 60))
    """
    assert engine.execute(code).result == "[3,false]"


def test_execution_ends_when_no_work_is_left(engine: Engine) -> None:
    outcome = engine.execute(
        "globalThis.done = false; setTimeout(() => { console.log('timer'); }, 10); 'sync'"
    )
    assert outcome.completed
    assert outcome.result == '"sync"'
    assert outcome.console == [("log", "timer")]


def test_rejected_result_promise_is_an_error_with_stack(engine: Engine) -> None:
    outcome = engine.execute("async function f() {\n  throw new TypeError('async boom');\n}\nf()")
    assert outcome.failed
    assert outcome.error_name == "TypeError"
    assert outcome.error is not None and "at f (<input>:2:9)" in outcome.error
    assert outcome.error_line == 2


def test_unhandled_rejection_fails_the_execution(engine: Engine) -> None:
    outcome = engine.execute("Promise.reject(new RangeError('nobody listens'));\n'value'")
    assert outcome.failed
    assert outcome.error_name == "RangeError"
    assert outcome.error is not None and outcome.error.startswith("Unhandled promise rejection: RangeError")


def test_handled_rejection_is_fine(engine: Engine) -> None:
    outcome = engine.execute("const p = Promise.reject(new Error('x')); p.catch(() => {}); 'ok'")
    assert outcome.result == '"ok"'


def test_exception_in_timer_or_microtask_fails(engine: Engine) -> None:
    timer = engine.execute("setTimeout(() => { throw new Error('in timer'); }, 1); 1")
    assert timer.failed and timer.error_message == "in timer"
    micro = engine.execute("queueMicrotask(() => { throw new Error('in microtask'); }); 1")
    assert micro.failed and micro.error_message == "in microtask"


def test_timer_argument_validation(engine: Engine) -> None:
    outcome = engine.execute("setTimeout('code string', 1)")
    assert outcome.failed and outcome.error_name == "TypeError"
