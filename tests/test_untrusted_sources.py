"""No source text crashes the process that runs the engine.

Every source here runs in a child interpreter (``ChildEngine``): a crash of the engine is then
a failed assertion naming the source, not a dead test run. The child keeps one ``Engine`` for
all sources, so each case also shows that the same engine goes on to run the next script.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

MAX_NESTING = 2000  # rust/engine/src/nesting.rs
MAX_TREE_DEPTH = 100_000  # rust/engine/src/source.rs

CHILD = textwrap.dedent(
    """
    import json, struct, sys
    from mcp_v8 import Engine

    engine = Engine(timeout=5)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        header = stdin.read(4)
        if len(header) < 4:
            break
        request = json.loads(stdin.read(struct.unpack("<I", header)[0]), strict=False)
        outcome = engine.execute(request["code"], language=request["language"])
        after = engine.execute("6 * 7").result
        reply = json.dumps({
            "status": outcome.status,
            "error_name": outcome.error_name,
            "error_message": outcome.error_message,
            "after": after,
        }).encode()
        stdout.write(struct.pack("<I", len(reply)) + reply)
        stdout.flush()
    """
)


class ChildEngine:
    """An interpreter running one ``Engine``; sources go in, outcomes come back."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
        return self._proc

    def run(self, code: str, language: str) -> dict[str, Any]:
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        # surrogatepass: a lone surrogate travels to the child as the str it is.
        body = json.dumps({"code": code, "language": language}).encode()
        try:
            proc.stdin.write(struct.pack("<I", len(body)) + body)
            proc.stdin.flush()
            header = proc.stdout.read(4)
        except BrokenPipeError:
            header = b""
        if len(header) < 4:
            code_shown = code[:120] + (f"... ({len(code)} characters)" if len(code) > 120 else "")
            raise AssertionError(
                f"the engine's process died ({proc.wait()}) on {language} source {code_shown!r}"
            )
        reply: dict[str, Any] = json.loads(proc.stdout.read(struct.unpack("<I", header)[0]))
        return reply

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.stdin is not None:
                self._proc.stdin.close()
            self._proc.wait(timeout=30)


@pytest.fixture(scope="module")
def child() -> Iterator[ChildEngine]:
    engine = ChildEngine()
    yield engine
    engine.close()


LANGUAGES = ("javascript", "typescript", "auto")
STATUSES = {"completed", "failed", "timed_out"}


def assert_outcome(reply: dict[str, Any]) -> None:
    assert reply["status"] in STATUSES, reply
    assert reply["after"] == "42", reply


# Every construct that nests: (opening, core, closing); repeated n times around the core.
CONSTRUCTS: dict[str, tuple[str, str, str]] = {
    "parentheses": ("(", "1", ")"),
    "brackets": ("[", "1", "]"),
    "braces": ("{", "", "}"),
    "objects": ("({a:", "1", "})"),
    "arrow functions": ("x=>", "1", ""),
    "arrow bodies": ("()=>{", "", "}"),
    "unary not": ("!", "1", ""),
    "unary minus": ("- ", "1", ""),
    "typeof": ("typeof ", "1", ""),
    "void": ("void ", "1", ""),
    "new": ("new ", "X", ""),
    "await": ("await ", "1", ""),
    "binary chain": ("1+", "1", ""),
    "exponent chain": ("2**", "1", ""),
    "ternary chain": ("a?b:", "c", ""),
    "assignment chain": ("a=", "1", ""),
    "if chain": ("if(a)", "x", ""),
    "else if chain": ("if(a)x;else ", "x", ""),
    "labels": ("l:", "x", ""),
    "template literals": ("`${", "1", "}`"),
    "tagged templates": ("f`${", "1", "}`"),
    "functions": ("function f(){", "", "}"),
    "classes": ("class A{m(){", "", "}}"),
    "calls": ("f(", "", ")"),
    "member chain": ("a.", "b", ""),
    "generics": ("let x: A<", "B", ">"),
    "type assertions": ("<T>", "x", ""),
    "conditional types": ("type T = A extends B ? C : ", "D", ""),
    "keyof": ("type T = keyof ", "D", ""),
    "array types": ("let x: A", "", "[]"),
}


@pytest.mark.parametrize("name", sorted(CONSTRUCTS))
def test_every_nesting_construct_ends_as_an_outcome(child: ChildEngine, name: str) -> None:
    opening, core, closing = CONSTRUCTS[name]
    for n in (MAX_NESTING - 1, 100_000):
        code = opening * n + core + closing * n
        for language in LANGUAGES:
            reply = child.run(code, language)
            assert_outcome(reply)
            if n == 100_000 and name not in ("binary chain", "member chain", "array types", "calls"):
                assert reply["status"] == "failed", (name, language, reply)


def test_the_reported_cases(child: ChildEngine) -> None:
    for language in LANGUAGES:
        reply = child.run("(" * 100_000, language)
        assert reply["status"] == "failed" and reply["error_name"] == "SyntaxError", reply
        assert f"the limit is {MAX_NESTING}" in reply["error_message"], reply
        assert reply["after"] == "42"
    # 5,000 parentheses: refused by the same bound (V8 itself gives up near 2,000).
    reply = child.run("(" * 5000 + "1" + ")" * 5000, "javascript")
    assert reply["error_name"] == "SyntaxError" and "too deeply" in reply["error_message"], reply


def test_long_sources_up_to_several_mib(child: ChildEngine) -> None:
    for code in (
        "(" * (4 << 20),
        "a" + "+a" * (2 << 20),
        "a" + ".a" * (2 << 20),
        "x = 1;\n" * (600_000),
        "/*" + "(" * (4 << 20) + "*/ 1",
        "'" + "(" * (4 << 20) + "'",
        "`" + "${" * (1 << 20),
    ):
        for language in LANGUAGES:
            assert_outcome(child.run(code, language))


def test_depth_the_bound_allows_still_runs(child: ChildEngine) -> None:
    # Well inside the bounds: V8 runs it.
    reply = child.run("(" * 500 + "40 + 2" + ")" * 500, "auto")
    assert reply["status"] == "completed", reply
    reply = child.run("1" + "+1" * 50_000, "typescript")
    assert reply["status"] == "completed", reply


def test_lone_surrogates_in_source(child: ChildEngine) -> None:
    reply = child.run('"\ud800".charCodeAt(0)', "javascript")
    assert reply["status"] == "completed", reply
    reply = child.run("x\udc00", "auto")
    assert reply["status"] == "failed" and reply["error_name"] == "SyntaxError", reply


# --- property-based: generated nested and malformed sources ---------------------------------

PIECES = [
    "(", ")", "[", "]", "{", "}", "`", "${", "'", '"', "/", "/*", "*/", "//", "\n", "\u2028",
    "!", "~", "-", "+", "++", "--", "=", "=>", "?", ":", "**", "<", ">", ",", ";", ".", "?.",
    "...", "#", "@", "\\", "a", "1", " ", "\u00a0", "\ufeff", "\ud800", "typeof ", "void ",
    "new ", "await ", "yield ", "if(a)", "else ", "while(a)", "for(;;)", "do ", "function f(",
    "class A{", "x=>", "async ", "let x: ", "A<", "as T", "keyof ", "extends ", "/re/g",
]  # fmt: skip


@st.composite
def nested_sources(draw: st.DrawFn) -> str:
    """Nested constructs, mixed, some unbalanced, some very deep."""
    layers = draw(
        st.lists(
            st.tuples(
                st.sampled_from(sorted(CONSTRUCTS)),
                st.one_of(st.integers(1, 50), st.integers(1_000, 3_000), st.integers(50_000, 300_000)),
                st.booleans(),  # closed
            ),
            min_size=1,
            max_size=4,
        )
    )
    code = draw(st.sampled_from(["1", "x", "", "a.b", "'s'"]))
    for name, n, closed in layers:
        opening, core, closing = CONSTRUCTS[name]
        code = opening * n + (code or core) + (closing * n if closed else "")
    return code


token_soup = st.lists(st.sampled_from(PIECES), max_size=400).map("".join)
repeated_soup = st.tuples(
    st.lists(st.sampled_from(PIECES), min_size=1, max_size=6), st.integers(1, 200_000)
).map(lambda t: "".join(t[0]) * t[1])


@settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(
    code=st.one_of(nested_sources(), token_soup, repeated_soup, st.text(max_size=200)),
    language=st.sampled_from(LANGUAGES),
)
def test_fuzzed_sources_never_crash_the_engine(child: ChildEngine, code: str, language: str) -> None:
    assert_outcome(child.run(code, language))
