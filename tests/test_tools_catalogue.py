"""The tools rendered for models and TypeScript (mcp_v8/tools/catalogue.py): declarations
generated from the JSON Schemas, search_tools ranked within a budget, describe_tools."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mcp_v8 import Engine
from mcp_v8.tools.caller import ServerInfo, ToolInfo
from mcp_v8.tools.catalogue import MAX_LINE, declarations, describe_tools, one_line, search_tools


def tool(
    name: str, description: str = "", input: Any = None, output: Any = None, gated: bool = False
) -> ToolInfo:
    return ToolInfo(name, description, input or {"type": "object"}, output, None, gated)


ADD = tool(
    "add",
    "Adds two integers.",
    {
        "type": "object",
        "properties": {"a": {"type": "integer", "description": "the first"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
    {"type": "object", "properties": {"result": {"type": "integer"}}, "required": ["result"]},
)
ODD = tool(
    "odd-name",
    "Several shapes.\nA second line.",
    {
        "type": "object",
        "$defs": {"P": {"type": "object", "properties": {"x": {"type": ["number", "null"]}}}},
        "properties": {
            "mode": {"enum": ["fast", "slow"]},
            "tags": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
            "point": {"$ref": "#/$defs/P"},
            "both": {
                "allOf": [{"type": "object", "properties": {"a": {"type": "string"}}}, {"$ref": "#/$defs/P"}]
            },
            "pair": {"type": "array", "items": [{"type": "string"}, {"type": "boolean"}]},
            "map": {"type": "object", "additionalProperties": {"type": "number"}},
            "kind": {"const": "x"},
            "any": {},
            "self": {"$ref": "#"},
            "*/ bad key": {"type": "string", "description": "closes */ a comment"},
        },
    },
    gated=True,
)
CATALOGUE = [
    ServerInfo("local", "stdio", "ready", None, (ADD, ODD)),
    ServerInfo("my-server", "http", "down", "refused", (tool("search_issues", "Finds issues by text."),)),
]


def test_declarations_follow_the_schemas() -> None:
    text = declarations(CATALOGUE)
    assert "declare const tools: {" in text
    assert "  local: {" in text and '  "my-server": {' in text
    assert (
        "    /** Adds two integers. */\n    add(args: {\n      /** the first */\n      a: number;\n      b: number;\n    }): Promise<{\n      result: number;\n    }>;"
        in text
    )
    assert '"odd-name"(args?: {' in text  # no required property: the argument may be left out
    for member in (
        'mode?: "fast" | "slow";',
        "tags?: (string | null)[];",
        "x?: number | null;",
        "pair?: [string, boolean];",
        "map?: {\n        [key: string]: number;\n      };",
        'kind?: "x";',
        "any?: unknown;",
        '"*/ bad key"?: string;',
    ):
        assert member in text, member
    assert "}) & ({" in text  # allOf: an intersection, grouped
    assert "Needs approval" in text  # the gated tool says so
    assert "closes *\\/ a comment" in text  # a description cannot end the comment
    assert "search_issues(args?: Record<string, unknown>): Promise<unknown>;" in text


def test_the_declarations_declare_the_whole_surface() -> None:
    """ToolError, ToolDenied and mcp.callTool are in the one file TS scripts are checked against,
    even with no tool server."""
    for text in (declarations(CATALOGUE), declarations([])):
        assert "declare class ToolError extends Error {" in text
        assert "  content: ToolContent[];" in text
        assert "declare class ToolDenied extends Error {" in text
        assert "  reason?: string;" in text
        assert (
            "  callTool(server: string, tool: string, args?: Record<string, unknown>): Promise<unknown>;"
            in text
        )
        assert "declare const tools: {" in text


def test_the_declarations_are_typescript(engine: Engine) -> None:
    """The engine strips types with a TypeScript parser: the declarations must parse."""
    outcome = engine.execute(declarations(CATALOGUE) + "\n42", language="typescript")
    assert outcome.completed, outcome.error
    assert json.loads(outcome.result or "") == 42
    # Declaring the classes strips to nothing: the script still sees the engine's own.
    outcome = engine.execute(
        declarations(CATALOGUE)
        + "\nconst e: ToolError = new ToolError('x', {server: 's'}); [e.name, e.server]",
        language="typescript",
    )
    assert outcome.completed, outcome.error
    assert json.loads(outcome.result or "") == ["ToolError", "s"]


def test_search_ranks_names_above_descriptions() -> None:
    catalogue = [
        ServerInfo(
            "s",
            "stdio",
            "ready",
            None,
            (
                tool("list_files", "Lists the files of a directory."),
                tool("read_file", "Reads one file."),
                tool("delete_repo", "Deletes a repository and its files."),
                tool("weather", "Today's weather."),
                tool("fileStats", "Sizes."),
            ),
        )
    ]
    found = search_tools(catalogue, "file", limit=10)
    names = [line.split("(")[0] for line in found.lines]
    # a whole word of the name (read_file, fileStats), then a prefix of one (list_files), then a
    # description only (delete_repo); a description word adds to a name match (read_file first)
    assert names == ["tools.s.read_file", "tools.s.fileStats", "tools.s.list_files", "tools.s.delete_repo"]
    assert found.matched == 4
    assert search_tools(catalogue, "read_file").lines[0].startswith("tools.s.read_file(")  # exact name first
    assert search_tools(catalogue, "zebra quantum").lines == ()
    assert "No tool matches" in search_tools(catalogue, "zzz").render()
    assert len(search_tools(catalogue, "", limit=100).lines) == 5  # an empty query lists them


def test_search_keeps_to_its_limit_and_budget() -> None:
    many = tuple(tool(f"tool_{i}", f"Does thing number {i}.") for i in range(50))
    catalogue = [ServerInfo("s", "stdio", "ready", None, many)]
    assert len(search_tools(catalogue, "thing", limit=7).lines) == 7
    found = search_tools(catalogue, "thing", limit=50, budget=500)
    assert 0 < len(found.lines) < 50
    assert sum(len(line) + 1 for line in found.lines) <= 500
    assert f"({50 - len(found.lines)} more match" in found.render()


def test_one_line_stays_within_its_width() -> None:
    wide = tool(
        "wide",
        "word " * 200,
        {
            "type": "object",
            "properties": {f"field_{i}": {"type": "string"} for i in range(40)},
            "required": ["field_0"],
        },
    )
    line = one_line("s", wide)
    assert len(line) <= MAX_LINE
    assert line.startswith("tools.s.wide(args: { field_0, field_1?, ")  # names only when too long
    assert "\n" not in one_line("local", ODD)
    assert "[needs approval]" in one_line("local", ODD)
    assert one_line("my-server", CATALOGUE[1].tools[0]).startswith('tools["my-server"].search_issues(')


def test_describe_gives_full_declarations_and_names_what_it_cannot() -> None:
    text = describe_tools(CATALOGUE, ["local.odd-name", "search_issues", "nope", "local.nope"])
    assert 'tools.local["odd-name"](args?: {' in text
    assert '\ntools["my-server"].search_issues(args?: Record<string, unknown>): Promise<unknown>;' in text
    assert "// nope: no such tool" in text and "// local.nope: no such tool" in text
    twice = [ServerInfo("a", "stdio", "ready", None, (ADD,)), ServerInfo("b", "stdio", "ready", None, (ADD,))]
    assert "// add: several servers have it: a.add, b.add" in describe_tools(twice, ["add"])
    assert describe_tools(twice, ["b.add"]).startswith("/** Adds two integers. */\ntools.b.add(args: {")


@pytest.mark.parametrize("depth", [20])
def test_deep_or_cyclic_schemas_end(depth: int) -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"n": schema}}
    text = declarations([ServerInfo("s", "stdio", "ready", None, (tool("deep", "", schema),))])
    assert "unknown" in text  # cut at the depth limit
    assert "self?: unknown" in declarations(CATALOGUE) or "self?: {" in declarations(CATALOGUE)
