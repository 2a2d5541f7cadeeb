"""TypeScript stripping with positions kept, and top-level await."""

from __future__ import annotations

import json

import pytest

from mcp_v8 import Engine

TS = """
interface Point { x: number; y?: number }
type Pair<T> = [T, T];
function first<T>(pair: Pair<T>): T { return pair[0]; }
class Box<T> implements Iterable<T> {
  private readonly items: T[] = [];
  public add(item: T): this { this.items.push(item); return this; }
  *[Symbol.iterator](): Iterator<T> { yield* this.items; }
}
const p = {x: 3} as Point;
const total = first<number>([p.x, 4]) + (p.y ?? 0)!;
const box = new Box<string>().add('a').add('b');
const cfg = {mode: 'fast'} satisfies Record<string, string>;
[total, [...box], cfg.mode, (<unknown>null) as string | null]
"""


@pytest.mark.parametrize("language", ["typescript", "auto"])
def test_interfaces_generics_and_casts(engine: Engine, language: str) -> None:
    outcome = engine.execute(TS, language=language)  # type: ignore[arg-type]
    assert outcome.completed, outcome.error
    assert json.loads(outcome.result or "") == [3, ["a", "b"], "fast", None]


def test_error_positions_match_the_typescript_source(engine: Engine) -> None:
    code = "const n: number = 1;\ninterface Big {\n  field: string;\n}\nfunction f(a: number): never {\n  throw new RangeError('here ' + a);\n}\nf(n as number);"
    outcome = engine.execute(code, language="typescript")
    assert outcome.failed
    assert outcome.error_name == "RangeError"
    assert (outcome.error_line, outcome.error_column) == (6, 3)  # the throw statement
    assert outcome.error is not None
    assert "at f (<input>:6:9)" in outcome.error and "at <input>:8:1" in outcome.error


def test_typescript_syntax_error_position(engine: Engine) -> None:
    outcome = engine.execute("let a: number = 1;\nlet b: = 2;", language="typescript")
    assert outcome.failed and outcome.error_name == "SyntaxError"
    assert outcome.error_line == 2


@pytest.mark.parametrize(
    ("code", "construct"),
    [
        ("enum Color { Red }", "enum"),
        ("namespace NS { export const a = 1; }", "namespace"),
        ("class A { constructor(private x: number) {} }", "parameter properties"),
    ],
)
def test_constructs_needing_code_generation_are_named(engine: Engine, code: str, construct: str) -> None:
    outcome = engine.execute(code, language="typescript")
    assert outcome.failed and outcome.error_name == "SyntaxError"
    assert construct in (outcome.error_message or ""), outcome.error_message
    assert outcome.error_line == 1


def test_plain_javascript_passes_through_unchanged(engine: Engine) -> None:
    # valid JavaScript that a TypeScript reading would change: a < b > (c) is a
    # generic call in TypeScript, two comparisons in JavaScript
    code = "const a = 1, b = 2, c = 3; const f = (x, y) => [x, y]; f(a < b, c > (0))"
    assert engine.execute(code).result == "[true,true]"
    assert engine.execute(code, language="javascript").result == "[true,true]"


def test_top_level_await_yields_the_awaited_completion_value(engine: Engine) -> None:
    outcome = engine.execute("const a = await Promise.resolve(2);\na * 21")
    assert outcome.result == "42"
    delayed = engine.execute("await new Promise(r => setTimeout(r, 10));\n'after'")
    assert delayed.result == '"after"'


def test_top_level_await_declarations_stay_global_in_snapshots(engine: Engine) -> None:
    first = engine.execute(
        "var v = await 1; let l = await 2; const c = 3; class K {} function f() { return 4; }\nawait null;",
        snapshot=True,
    )
    assert first.completed, first.error
    assert engine.execute("[v, l, c, typeof K, f()]", heap=first.snapshot).result == '[1,2,3,"function",4]'


def test_top_level_await_keeps_line_numbers(engine: Engine) -> None:
    outcome = engine.execute("await null;\n\nnull.boom;")
    assert outcome.failed and outcome.error_line == 3


def test_top_level_await_rejection_is_an_error(engine: Engine) -> None:
    outcome = engine.execute("await Promise.reject(new TypeError('awaited'))")
    assert outcome.failed and outcome.error_name == "TypeError"


def test_top_level_await_in_typescript(engine: Engine) -> None:
    code = "const xs: number[] = await Promise.all([1, 2].map(async (n: number) => n * 2));\nxs"
    assert engine.execute(code).result == "[2,4]"


def test_import_statements_are_refused_clearly(engine: Engine) -> None:
    outcome = engine.execute("import fs from 'fs';")
    assert outcome.failed
    assert "import/export" in (outcome.error or "")
