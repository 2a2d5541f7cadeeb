"""Results as JSON, classic-script semantics, errors with positions, console
capture (ordered, levelled, live), concurrency and resource hygiene."""

from __future__ import annotations

import json
import os
import threading

import pytest

from mcp_v8 import (
    Control,
    Engine,
    ExecutionCancelled,
    ExecutionTimeout,
    HeapLimitExceeded,
    JSError,
    JSSyntaxError,
    MCPV8Error,
)
from mcp_v8.engine import Language
from mcp_v8.errors import OUTCOME_ERRORS, error_for


def result(engine: Engine, code: str) -> object:
    outcome = engine.execute(code)
    assert outcome.completed, outcome.error
    assert outcome.result is not None
    return json.loads(outcome.result)


def test_readme_example(engine: Engine) -> None:
    assert engine.execute("[1,2].map(x => x*2)").result == "[2,4]"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("({a: 1, b: [true, null, 'x'], c: {d: 1.5}})", {"a": 1, "b": [True, None, "x"], "c": {"d": 1.5}}),
        ("'héllo \u2603 \\u{1F600}'", "héllo \u2603 \U0001f600"),
        ("42", 42),
        ("-0.25", -0.25),
        ("true", True),
        ("null", None),
        ("[]", []),
        ("new Date(0)", "1970-01-01T00:00:00.000Z"),
        ("({toJSON() { return 'custom'; }})", "custom"),
    ],
)
def test_json_values(engine: Engine, code: str, expected: object) -> None:
    assert result(engine, code) == expected


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("undefined", None),
        ("(function named() {})", None),
        ("Symbol('s')", None),
        ("({a: undefined, f() {}, s: Symbol(), keep: 1})", {"keep": 1}),
        ("[undefined, () => 1, Symbol()]", [None, None, None]),
        ("12345678901234567890123n", "12345678901234567890123"),
        ("({big: 1n, list: [2n]})", {"big": "1", "list": ["2"]}),
        ("[NaN, Infinity, -Infinity]", [None, None, None]),
        ("const o = {name: 'o'}; o.self = o; o", {"name": "o", "self": "[Circular]"}),
        ("const a = [1]; a.push(a); a", [1, "[Circular]"]),
        ("({toJSON() { throw new Error('boom'); }})", "[Thrown: Error: boom]"),
        (
            "({ok: 1, get bad() { throw new TypeError('getter'); }})",
            {"ok": 1, "bad": "[Thrown: TypeError: getter]"},
        ),
        ("({toJSON() { return undefined; }})", None),
    ],
)
def test_documented_fallbacks(engine: Engine, code: str, expected: object) -> None:
    assert result(engine, code) == expected


def test_shared_reference_is_not_a_cycle(engine: Engine) -> None:
    assert result(engine, "const s = {v: 1}; ({a: s, b: s, c: 1n})") == {
        "a": {"v": 1},
        "b": {"v": 1},
        "c": "1",
    }


def test_very_deep_value_is_cut_not_crashed(engine: Engine) -> None:
    value = result(engine, "let v = 1n; for (let i = 0; i < 5000; i++) v = [v]; v")
    depth = 0
    while isinstance(value, list):
        value = value[0]
        depth += 1
    assert value == "[Too deep]"
    assert depth > 100


def test_classic_script_declarations_become_globals(engine: Engine) -> None:
    code = """
    var v = 1; let l = 2; const c = 3; function f() { return 4; } class K {}
    [globalThis.v, typeof globalThis.f, typeof l, typeof c, typeof K, this === globalThis]
    """
    assert result(engine, code) == [1, "function", "number", "number", "function", True]


def test_executions_do_not_share_state(engine: Engine) -> None:
    assert result(engine, "var leaked = 1; leaked") == 1
    assert result(engine, "typeof leaked") == "undefined"


def test_exception_has_name_message_and_position(engine: Engine) -> None:
    outcome = engine.execute("let x = 1;\nfunction f() {\n  return null.prop;\n}\nf();")
    assert outcome.failed and not outcome.completed
    assert outcome.error_name == "TypeError"
    assert "null" in (outcome.error_message or "")
    assert (outcome.error_line, outcome.error_column) == (3, 15)
    assert outcome.error is not None
    assert outcome.error.startswith("TypeError: ")
    assert "at f (<input>:3:15)" in outcome.error
    assert "at <input>:5:1" in outcome.error


def test_syntax_error_has_position(engine: Engine) -> None:
    outcome = engine.execute("const ok = 1;\nconst = 2;", filename="script.js")
    assert outcome.failed
    assert outcome.error_name == "SyntaxError"
    assert outcome.error_line == 2
    assert outcome.error_column == 7
    assert outcome.error is not None and "script.js:2:7" in outcome.error


def test_thrown_non_error_value(engine: Engine) -> None:
    outcome = engine.execute("throw {code: 7}")
    assert outcome.failed
    assert outcome.error_name is None
    assert outcome.error_message == "Uncaught #<Object>"


def test_exception_hierarchy(engine: Engine) -> None:
    with pytest.raises(JSError) as info:
        engine.evaluate("throw new RangeError('nope')")
    assert isinstance(info.value, MCPV8Error)
    assert info.value.name == "RangeError"
    assert info.value.outcome is not None and info.value.outcome.failed
    with pytest.raises(JSSyntaxError) as syntax:
        engine.evaluate("(")
    assert isinstance(syntax.value, SyntaxError)
    assert engine.evaluate("({a: [1, 2]})") == {"a": [1, 2]}
    assert engine.execute("1").raise_for_error() is None


@pytest.mark.parametrize(
    ("code", "language", "syntax_error"),
    [
        ("(", "javascript", True),
        ("let x: number = ;", "typescript", True),
        ("@dec class C {}", "auto", True),  # V8 10.2 has no decorators: refused before V8
        ("(" * 5000, "auto", True),  # nests too deeply
        ("JSON.parse('{')", "auto", False),
        ("eval('(')", "auto", False),
        ("throw new SyntaxError('made by the script')", "auto", False),
        ("class E extends Error { name = 'SyntaxError' }; throw new E('named')", "auto", False),
    ],
)
def test_only_source_that_does_not_compile_is_a_syntax_error(
    engine: Engine, code: str, language: Language, syntax_error: bool
) -> None:
    outcome = engine.execute(code, language=language)
    assert outcome.failed and outcome.syntax_error is syntax_error
    with pytest.raises(JSError) as info:
        outcome.raise_for_error()
    assert isinstance(info.value, JSSyntaxError) is syntax_error


def test_one_table_maps_outcomes_to_exceptions(engine: Engine) -> None:
    cases = [
        (engine.execute("while (true) {}", timeout=0.2), ExecutionTimeout),
        (engine.execute("const a = []; while (true) a.push({})", heap_limit_mb=16), HeapLimitExceeded),
        (engine.execute("null.x"), JSError),
    ]
    control = Control()
    control.cancel()
    cases.append((engine.execute("1", control=control), ExecutionCancelled))
    for outcome, cls in cases:
        error = error_for(outcome)
        assert type(error) is cls and error.outcome is outcome
    assert [cls for _, cls in OUTCOME_ERRORS][-1] is JSError


def test_a_string_result_over_the_cap_is_refused_from_its_length(engine: Engine) -> None:
    outcome = engine.execute("'x'.repeat(2 ** 27)", heap_limit_mb=512, max_result_bytes=1 << 20)
    assert outcome.failed and not outcome.syntax_error
    assert (outcome.error or "").startswith("RangeError: the result is a string of 134217728 characters")
    # At the cap exactly it is kept: the JSON has the two quotes more.
    fits = engine.execute("'y'.repeat(1000)", max_result_bytes=1002)
    assert fits.completed and fits.result == '"' + "y" * 1000 + '"'


def test_console_levels_order_and_markers(engine: Engine) -> None:
    outcome = engine.execute(
        "console.log('one'); console.info('two'); console.warn('three');"
        "console.error('four'); console.debug('five'); console.log('six', 7)"
    )
    assert outcome.console == [
        ("log", "one"),
        ("info", "two"),
        ("warn", "three"),
        ("error", "four"),
        ("debug", "five"),
        ("log", "six 7"),
    ]
    assert outcome.output == "one\n[info] two\n[warn] three\n[error] four\n[debug] five\nsix 7\n"


def test_console_output_of_failed_execution_is_kept(engine: Engine) -> None:
    outcome = engine.execute("console.log('before'); throw new Error('x')")
    assert outcome.failed
    assert outcome.console == [("log", "before")]


def test_console_callback_is_live(engine: Engine) -> None:
    """Lines reach the callback while the script still runs: the script below only
    stops when cancelled, and it is cancelled from the callback's evidence."""
    started = threading.Event()
    seen: list[tuple[str, str]] = []

    def on_console(level: str, text: str) -> None:
        seen.append((level, text))
        started.set()

    control = Control()
    box: dict[str, object] = {}
    worker = threading.Thread(
        target=lambda: box.update(
            outcome=engine.execute(
                "console.warn('started'); while (true) {}", on_console=on_console, control=control
            )
        )
    )
    worker.start()
    try:
        assert started.wait(30), "no console line arrived while the script was running"
    finally:
        control.cancel()
        worker.join(30)
    outcome = box["outcome"]
    assert outcome.cancelled is True
    assert seen == [("warn", "started")]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_console_callback_exception_does_not_break_execution(engine: Engine) -> None:
    def bad(level: str, text: str) -> None:
        raise RuntimeError("callback failed")

    outcome = engine.execute("console.log('x'); 5", on_console=bad)
    assert outcome.result == "5"
    assert outcome.console == [("log", "x")]


def test_console_limit_keeps_the_first_bytes(engine: Engine) -> None:
    small = Engine(console_limit_bytes=100)
    outcome = small.execute("for (let i = 0; i < 100; i++) console.log('line ' + i); 1")
    assert outcome.completed
    assert outcome.console[0] == ("log", "line 0")
    assert sum(len(text) for _, text in outcome.console) <= 100
    assert outcome.console_dropped == 100 - len(outcome.console)


def test_console_limit_zero_means_no_limit_and_keep_console_false_keeps_none() -> None:
    code = "for (let i = 0; i < 3000; i++) console.log('line ' + i); 1"
    unlimited = Engine(console_limit_bytes=0).execute(code)
    assert len(unlimited.console) == 3000 and unlimited.console_dropped == 0
    seen: list[str] = []
    streamed = Engine(keep_console=False).execute(code, on_console=lambda level, text: seen.append(text))
    assert streamed.console == [] and len(seen) == 3000


def test_filename_names_every_error(engine: Engine) -> None:
    for code, language in [("(", "javascript"), ("let x: number = ;", "typescript"), ("null.x", "auto")]:
        outcome = engine.execute(code, language=language, filename="job.ts")
        assert "at job.ts:1:" in (outcome.error or ""), outcome.error
        default = engine.execute(code, language=language)
        assert "<input>:1:" in (default.error or ""), default.error


def test_gil_released_while_javascript_runs(engine: Engine) -> None:
    """While one thread is stuck in JavaScript, other threads run Python and other
    executions to completion."""
    control = Control()
    started = threading.Event()
    box: dict[str, object] = {}

    def spin() -> None:
        box["outcome"] = engine.execute(
            "console.log('in'); while (true) {}", control=control, on_console=lambda *_: started.set()
        )

    worker = threading.Thread(target=spin)
    worker.start()
    try:
        assert started.wait(30)
        results = []
        others = [
            threading.Thread(target=lambda i=i: results.append(engine.execute(f"{i} * 2").result))
            for i in range(4)
        ]
        for t in others:
            t.start()
        for t in others:
            t.join(30)
        assert sorted(results, key=int) == ["0", "2", "4", "6"]
        assert worker.is_alive(), "the spinning execution should still be running"
    finally:
        control.cancel()
        worker.join(30)
    assert box["outcome"].cancelled is True


def test_concurrent_executions_from_threads(engine: Engine) -> None:
    out: dict[int, str | None] = {}

    def run(i: int) -> None:
        o = engine.execute(f"var x = {i}; let s = 0; for (let k = 0; k < 1e5; k++) s += k; [x, s]")
        out[i] = o.result

    threads = [threading.Thread(target=run, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert out == {i: f"[{i},4999950000]" for i in range(16)}


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_many_executions_do_not_leak_handles_or_threads(engine: Engine) -> None:
    for _ in range(20):  # warm-up: V8's platform threads, watchdog thread
        engine.execute("1", timeout=5)
    fds, threads = _open_fds(), threading.active_count()
    native_threads = len(os.listdir("/proc/self/task"))
    for i in range(300):
        outcome = engine.execute(f"console.log({i}); ({{i: {i}}})", timeout=5)
        assert outcome.result == f'{{"i":{i}}}'
    assert _open_fds() == fds
    assert threading.active_count() == threads
    assert len(os.listdir("/proc/self/task")) == native_threads


def test_lone_surrogates_in_code_and_filename_are_carried(engine: Engine) -> None:
    outcome = engine.execute('"\ud800".charCodeAt(0)', filename="job\udc00.js")
    assert outcome.result == "55296"
    failed = engine.execute("null.x", filename="job\udc00.js")
    assert "job\ufffd.js:1:" in (failed.error or ""), failed.error
