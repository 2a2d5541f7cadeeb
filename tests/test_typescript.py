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
    assert (outcome.error_line, outcome.error_column) == (6, 9)  # where the error was made
    assert outcome.error is not None
    assert "at f (<input>:6:9)" in outcome.error and "at <input>:8:1" in outcome.error


def test_typescript_syntax_error_position(engine: Engine) -> None:
    outcome = engine.execute("let a: number = 1;\nlet b: = 2;", language="typescript")
    assert outcome.failed and outcome.error_name == "SyntaxError"
    assert outcome.error_line == 2


def run(engine: Engine, code: str, language: str = "typescript") -> object:
    outcome = engine.execute(code, language=language)  # type: ignore[arg-type]
    assert outcome.completed, outcome.error
    return json.loads(outcome.result or "null")


@pytest.mark.parametrize("language", ["typescript", "auto"])
def test_enums_are_compiled(engine: Engine, language: str) -> None:
    code = """
enum Color {
  Red,
  Green,
  Blue = 10,
  Next,
  Name = 'n',
  Twice = Blue * 2,
}
const enum Flag { A = 1, B = A << 1 }
enum Color { Extra = 99 }
[Color.Red, Color.Green, Color.Next, Color.Name, Color.Twice, Color[Color.Blue], Flag.B, Color.Extra]
"""
    assert run(engine, code, language) == [0, 1, 11, "n", 20, "Blue", 2, 99]


def test_namespaces_are_compiled(engine: Engine) -> None:
    code = """
namespace Geometry.Shapes {
  export const unit = 1;
  export function square(side: number): number {
    return side * side * unit;
  }
}
function tag() { return 'fn'; }
namespace tag {
  export const extra = 'merged';
}
namespace Config {
  export interface Options { verbose: boolean }
  export const defaults: Options = { verbose: true };
}
[Geometry.Shapes.square(3), tag(), tag.extra, Config.defaults.verbose]
"""
    assert run(engine, code) == [9, "fn", "merged", True]


def test_parameter_properties_are_compiled(engine: Engine) -> None:
    code = """
class Animal {
  constructor(public readonly name: string, protected legs = 4) {}
}
class Bird extends Animal {
  constructor(name: string, private wings: number = 2, public override legs = 2) {
    super(name, legs);
  }
  describe() { return `${this.name}: ${this.legs} legs, ${this.wings} wings`; }
}
const b = new Bird('tweety');
[b.describe(), Object.keys(b)]
"""
    assert run(engine, code) == ["tweety: 2 legs, 2 wings", ["name", "legs", "wings"]]


@pytest.mark.parametrize(
    "construct",
    [
        "enum Level {\n  Low,\n  High,\n}",
        "namespace NS {\n  export const a = 1;\n  export function f() { return a; }\n}",
        "class Point {\n  constructor(\n    public x: number,\n    private y = 0,\n  ) {}\n}",
    ],
)
def test_errors_after_a_compiled_construct_keep_their_line(engine: Engine, construct: str) -> None:
    code = f"const before: number = 1;\n{construct}\nconst after = before;\n  throw new TypeError('here');"
    line = code.count("\n") + 1
    outcome = engine.execute(code, language="typescript")
    assert outcome.failed and outcome.error_name == "TypeError"
    # The position is where the error was made, as its stack's first frame says: `new`.
    assert (outcome.error_line, outcome.error_column) == (line, 9)
    assert f"<input>:{line}:9" in (outcome.error or "")


def test_errors_inside_compiled_constructs_keep_their_line(engine: Engine) -> None:
    inside_enum = "const n: any = null;\nenum E {\n  A = 1,\n  B = n.boom,\n}"
    assert engine.execute(inside_enum, language="typescript").error_line == 4
    inside_namespace = "namespace N {\n  export const a = 1;\n  export function f() {\n    throw new Error('in f');\n  }\n}\nN.f();"
    outcome = engine.execute(inside_namespace, language="typescript")
    assert (outcome.error_line, outcome.error_column) == (4, 11)  # at `new Error`
    assert "<input>:7:" in (outcome.error or "")  # the call's frame
    inside_constructor = "class P {\n  constructor(\n    private a: number,\n  ) {\n    if (a > 1) {\n      throw new RangeError('big');\n    }\n  }\n}\nnew P(2);"
    outcome = engine.execute(inside_constructor, language="typescript")
    assert (outcome.error_line, outcome.error_column) == (6, 13)  # at `new RangeError`


def test_top_level_await_after_a_compiled_construct(engine: Engine) -> None:
    code = "enum E { A = 20 }\nconst v: number = await Promise.resolve(E.A);\nv + 1"
    assert run(engine, code) == 21


@pytest.mark.parametrize(
    ("code", "language", "where", "decorated"),
    [
        ("@sealed\nclass C {}", "typescript", (1, 1), "a class"),
        ("class C {\n  @log greet(name: string) {}\n}", "typescript", (2, 3), "a method"),
        ("class C {\n  @log greet() {}\n}", "auto", (2, 3), "a method"),
        ("let x = 1;\n@sealed class C {}", "javascript", (2, 1), "a class"),
        ("class C {\n  m(@inject() x: number) {}\n}", "typescript", (2, 5), "a parameter"),
        ("enum E { A }\nclass C { @observable value = E.A }", "typescript", (2, 11), "a class field"),
    ],
)
def test_decorators_are_refused_clearly(
    engine: Engine, code: str, language: str, where: tuple[int, int], decorated: str
) -> None:
    outcome = engine.execute(code, language=language)  # type: ignore[arg-type]
    assert outcome.failed and outcome.syntax_error
    message = outcome.error_message or ""
    assert message.startswith("decorators are not supported: a decorator on "), message
    assert decorated in message
    assert (outcome.error_line, outcome.error_column) == where


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("import fs = require('fs');", "import x = require"),
        ("const x = 1;\nexport = x;", "export ="),
        ("enum E { A }\nexport const y = E.A;", "import/export"),
        ("function f() {\n  namespace N { export const a = 1; }\n}", "top level"),
        ("namespace N {\n  export let a = 1;\n}", "export const"),
    ],
)
def test_what_is_still_refused(engine: Engine, code: str, message: str) -> None:
    outcome = engine.execute(code, language="typescript")
    assert outcome.failed and outcome.syntax_error
    assert message in (outcome.error_message or ""), outcome.error_message


def test_plain_javascript_passes_through_unchanged(engine: Engine) -> None:
    # valid JavaScript that a TypeScript reading would change: a < b > (c) is a
    # generic call in TypeScript, two comparisons in JavaScript
    code = "const a = 1, b = 2, c = 3; const f = (x, y) => [x, y]; f(a < b, c > (0))"
    assert engine.execute(code).result == "[true,true]"
    assert engine.execute(code, language="javascript").result == "[true,true]"


def test_javascript_keeps_its_columns(engine: Engine) -> None:
    # run as written (no reprinting): the error column is the one in the text, odd spacing
    # and all, and an `enum` identifier is just an identifier
    code = "var  enumerate = 1;\nfunction   f( a ){ return    a.b.c }\n   f({})"
    outcome = engine.execute(code)
    assert (outcome.error_line, outcome.error_column) == (2, 34)  # at `c`


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
