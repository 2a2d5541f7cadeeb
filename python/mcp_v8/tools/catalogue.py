"""The tools rendered for a model and for TypeScript: the ambient declarations of the
``tools`` object scripts call (generated from each tool's JSON Schemas, input and output),
and the two ways to learn a large catalogue a piece at a time: :func:`search_tools` (ranked
one-line signatures within a character budget) and :func:`describe_tools` (the full
declarations of the tools named). Pure functions of a catalogue (``ToolCaller.catalogue()``)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .caller import ServerInfo, ToolInfo

_IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_MAX_DEPTH = 8  # nesting (and $ref resolution) beyond this is `unknown`
# Words TypeScript refuses as a bare property name in no position we use; quoting them is
# still valid, so only identifiers are left bare.


def _key(name: str) -> str:
    return name if _IDENTIFIER.fullmatch(name) else json.dumps(name)


_SIMPLE = re.compile(r'[A-Za-z_$][\w$]*(<[\w$, ]+>)?(\[\])*|"(?:[^"\\]|\\.)*"|-?[\d.eE+-]+')


def _grouped(text: str) -> str:
    """``text`` in parentheses unless it is one name (maybe generic, maybe an array) or a literal."""
    return text if _SIMPLE.fullmatch(text) else f"({text})"


def _comment(text: str, indent: str) -> list[str]:
    text = text.strip().replace("*/", "*\\/")
    if not text:
        return []
    lines = text.splitlines()
    if len(lines) == 1:
        return [f"{indent}/** {lines[0]} */"]
    return [f"{indent}/**"] + [f"{indent} * {line}".rstrip() for line in lines] + [f"{indent} */"]


class _Types:
    """JSON Schema to a TypeScript type, multi-line (``pretty``) or on one line."""

    def __init__(self, root: dict[str, Any], pretty: bool) -> None:
        self.root = root
        self.pretty = pretty

    def _ref(self, ref: str) -> dict[str, Any] | None:
        if not ref.startswith("#/"):
            return None
        node: Any = self.root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node if isinstance(node, dict) else None

    def of(self, schema: Any, indent: str = "", depth: int = 0) -> str:
        if schema is True or schema == {}:
            return "unknown"
        if not isinstance(schema, dict) or depth > _MAX_DEPTH:
            return "unknown" if schema is not False else "never"
        if "$ref" in schema:
            target = self._ref(str(schema["$ref"]))
            return "unknown" if target is None else self.of(target, indent, depth + 1)
        if "const" in schema:
            return json.dumps(schema["const"])
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return " | ".join(json.dumps(v) for v in schema["enum"])
        for union in ("anyOf", "oneOf"):
            if isinstance(schema.get(union), list) and schema[union]:
                return self._join([self.of(s, indent, depth + 1) for s in schema[union]], " | ")
        if isinstance(schema.get("allOf"), list) and schema["allOf"]:
            return self._join([self.of(s, indent, depth + 1) for s in schema["allOf"]], " & ")
        kind = schema.get("type")
        if isinstance(kind, list):
            return self._join([self.of({**schema, "type": k}, indent, depth) for k in kind], " | ")
        if kind in ("number", "integer"):
            return "number"
        if kind in ("string", "boolean", "null"):
            return str(kind)
        if kind == "array" or "items" in schema:
            items = schema.get("items")
            if isinstance(items, list):  # a tuple (draft 4 to 2019-09)
                return "[" + ", ".join(self.of(s, indent, depth + 1) for s in items) + "]"
            inner = self.of(items if items is not None else True, indent, depth + 1)
            return f"{_grouped(inner)}[]"
        if kind == "object" or "properties" in schema:
            return self._object(schema, indent, depth)
        return "unknown"

    @staticmethod
    def _join(parts: list[str], sep: str) -> str:
        unique = list(dict.fromkeys(parts))
        if len(unique) == 1:
            return unique[0]
        # `|` binds loosest: a union of anything needs no parentheses; an intersection does
        return sep.join(unique) if sep == " | " else sep.join(_grouped(p) for p in unique)

    def _object(self, schema: dict[str, Any], indent: str, depth: int) -> str:
        raw = schema.get("properties")
        properties: dict[str, Any] = raw if isinstance(raw, dict) else {}
        required = set(schema.get("required") or ())
        extra = schema.get("additionalProperties")
        inner = indent + "  "
        members: list[tuple[list[str], str]] = []
        for name, sub in properties.items():
            optional = "" if name in required else "?"
            doc = sub.get("description", "") if isinstance(sub, dict) else ""
            members.append(
                (
                    _comment(doc, inner) if self.pretty else [],
                    f"{_key(name)}{optional}: {self.of(sub, inner, depth + 1)}",
                )
            )
        if extra not in (None, False) and not (extra is True and properties):
            members.append(([], f"[key: string]: {self.of(extra, inner, depth + 1)}"))
        if not members:
            return "Record<string, unknown>" if extra is not False else "{}"
        if not self.pretty:
            return "{ " + "; ".join(m for _, m in members) + " }"
        lines = ["{"]
        for docs, member in members:
            lines += docs + [f"{inner}{member};"]
        return "\n".join(lines + [indent + "}"])


def _signature(server: str, tool: ToolInfo, indent: str, pretty: bool) -> str:
    args = _Types(tool.input_schema, pretty).of(tool.input_schema, indent)
    result = (
        _Types(tool.output_schema, pretty).of(tool.output_schema, indent)
        if tool.output_schema is not None
        else "unknown"
    )
    required = bool(tool.input_schema.get("required"))
    return f"{_key(tool.name)}(args{'' if required else '?'}: {args}): Promise<{result}>"


def _docs(tool: ToolInfo, indent: str) -> list[str]:
    text = tool.description
    if tool.gated:
        text += (
            "\n\n" if text else ""
        ) + "Needs approval: the execution waits (status `waiting`) until it is given."
    return _comment(text, indent)


# The rest of the surface scripts see (rust/engine/cpp/js/web.js), the same for every catalogue.
_SURFACE = """\
/** A content block of a tool's result (MCP): text, image, audio, resource, resource_link. */
type ToolContent = { type: string; [key: string]: unknown };

/** Thrown when a tool answers with an error result (`isError`). */
declare class ToolError extends Error {
  constructor(message?: string, details?: { server?: string; tool?: string; content?: ToolContent[] });
  /** The tool server's name, as in `tools.<server>`. */
  server: string;
  tool: string;
  /** The error result's content blocks. */
  content: ToolContent[];
}

/** Thrown when a call that needs approval is denied, or cannot wait for approval. */
declare class ToolDenied extends Error {
  constructor(message?: string, details?: { server?: string; tool?: string; reason?: string });
  server: string;
  tool: string;
  /** Why, when the approver or the server said. */
  reason?: string;
}

/** The form of upstream mcp-v8: `mcp.callTool(server, tool, args)` is `tools[server][tool](args)`. */
declare const mcp: {
  callTool(server: string, tool: string, args?: Record<string, unknown>): Promise<unknown>;
};
"""


SERVICE_HEADER = "// The tool servers of this mcp-v8 server (GET /api/tools/declarations)."


def declarations(catalogue: list[ServerInfo], header: str = SERVICE_HEADER) -> str:
    """The TypeScript declarations of what scripts see: ``ToolError``, ``ToolDenied``,
    ``mcp.callTool`` and the ``tools`` object, with one member per server and one method per
    exposed tool (any name, quoted when it is not an identifier), its argument the tool's
    ``inputSchema`` and its result the ``outputSchema`` (``unknown`` without one)."""
    lines = [
        header,
        _SURFACE,
        "declare const tools: {",
    ]
    for server in catalogue:
        lines.append(f"  {_key(server.name)}: {{")
        for tool in server.tools:
            lines += _docs(tool, "    ")
            lines.append(f"    {_signature(server.name, tool, '    ', True)};")
        lines.append("  };")
    lines.append("};")
    return "\n".join(lines) + "\n"


def _path(server: str, tool: str) -> str:
    return "tools" + "".join(
        f".{p}" if _IDENTIFIER.fullmatch(p) else f"[{json.dumps(p)}]" for p in (server, tool)
    )


def _words(text: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", text)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def _score(words: list[str], query: str, server: str, tool: ToolInfo) -> int:
    name_words = set(_words(tool.name))
    description = set(_words(tool.description))
    score = 0
    if query and query.lower() in (tool.name.lower(), f"{server}.{tool.name}".lower()):
        score += 100
    for word in words:
        if word in name_words:
            score += 10
        elif any(w.startswith(word) for w in name_words):
            score += 6
        if word in description:
            score += 3
        elif any(w.startswith(word) for w in description):
            score += 1
        if word == server.lower():
            score += 2
    return score


@dataclass(frozen=True)
class SearchResult:
    """The lines shown (one signature each, best first) and how many tools matched in all."""

    lines: tuple[str, ...]
    matched: int

    def render(self) -> str:
        if not self.lines:
            return "No tool matches; try other words."
        more = self.matched - len(self.lines)
        tail = [f"({more} more match; narrow the query or raise the limit)"] if more > 0 else []
        return "\n".join(list(self.lines) + tail + ["describe_tools gives the full declarations."])


MAX_LINE = 240


def one_line(server: str, tool: ToolInfo) -> str:
    """``tools.srv.name(args: {...}): Promise<...> — description``, within :data:`MAX_LINE`
    characters (long types are cut to their property names, long descriptions to a word)."""
    signature = _signature(server, tool, "", False)
    head = _path(server, tool.name) + signature[len(_key(tool.name)) :]
    if len(head) > MAX_LINE // 2:
        props = tool.input_schema.get("properties") or {}
        required = set(tool.input_schema.get("required") or ())
        names = ", ".join(f"{_key(n)}{'' if n in required else '?'}" for n in props)
        head = f"{_path(server, tool.name)}(args: {{ {names} }})"
    gate = " [needs approval]" if tool.gated else ""
    summary = tool.description.strip().splitlines()[0] if tool.description.strip() else ""
    line = f"{head}{gate}" + (f" — {summary}" if summary else "")
    if len(line) > MAX_LINE:
        line = line[: MAX_LINE - 1].rsplit(" ", 1)[0] + "…"
    return line


def search_tools(
    catalogue: list[ServerInfo], query: str, limit: int = 10, budget: int = 4000
) -> SearchResult:
    """The tools best matching ``query`` (words of their names weigh more than words of their
    descriptions; an exact name first), at most ``limit`` of them and within ``budget``
    characters, each as :func:`one_line`. An empty query lists the tools in order."""
    words = _words(query)
    ranked: list[tuple[int, str, str, ToolInfo]] = []
    for server in catalogue:
        for tool in server.tools:
            score = _score(words, query.strip(), server.name, tool) if words else 1
            if score > 0:
                ranked.append((score, server.name, tool.name, tool))
    ranked.sort(key=lambda r: (-r[0], r[1], r[2]))
    lines: list[str] = []
    used = 0
    for _, server_name, _, tool in ranked[: max(0, limit)]:
        line = one_line(server_name, tool)
        if used + len(line) + 1 > budget:
            break
        lines.append(line)
        used += len(line) + 1
    return SearchResult(tuple(lines), len(ranked))


def describe_tools(catalogue: list[ServerInfo], names: list[str]) -> str:
    """The full declarations of the tools named (``server.tool``, or a tool's name alone when
    one server has it), in the order asked; names that match nothing or several are said so."""
    by_path = {(s.name, t.name): t for s in catalogue for t in s.tools}
    out: list[str] = []
    for name in names:
        if (found := _find(by_path, name)) is None:
            owners = sorted(f"{s}.{t}" for s, t in by_path if t == name)
            why = f"several servers have it: {', '.join(owners)}" if owners else "no such tool"
            out.append(f"// {name}: {why}")
            continue
        server, tool = found
        out += _docs(tool, "")
        out.append(
            _path(server, tool.name) + _signature(server, tool, "", True)[len(_key(tool.name)) :] + ";"
        )
    return "\n".join(out) + "\n"


def _find(by_path: dict[tuple[str, str], ToolInfo], name: str) -> tuple[str, ToolInfo] | None:
    server, dot, tool = name.partition(".")
    if dot and (server, tool) in by_path:
        return server, by_path[(server, tool)]
    owners = [(s, t) for (s, n), t in by_path.items() if n == name]
    return owners[0] if len(owners) == 1 else None
