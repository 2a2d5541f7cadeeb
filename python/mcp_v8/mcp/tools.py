"""The MCP tools: names and arguments as the upstream mcp-v8 server has them (so prompts written
for it keep working), schemas from the HTTP contract, each one a call of :class:`Operations`.

A tool's ``inputSchema`` is built from the contract's request schema or parameters, and the
arguments are validated against it; its ``outputSchema`` is the contract's response schema.
A refusal of the service (unknown execution, bad cursor, full queue) and a script that failed,
timed out or was cancelled are results with ``isError``; the JSON-RPC layer only sees unknown
tools.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..contract import InvalidRequest, SchemaValidator, parameters, schema
from ..operations import EXECUTION_ID, OperationError, Operations
from ..storage import DatabaseUnavailable
from ..tools.catalogue import describe_tools, search_tools
from .approval import ask_until_decided

RUN_JS_WAIT_MS = 30_000  # run_js waits this long by default: the contract's largest wait_ms
FIRST_OUTPUT_LINES = 100  # console lines a run_js or get_execution result carries
FIRST_OUTPUT_BYTES = 16_384
SEARCH_BUDGET = 4000  # characters of search_tools lines

_LIVE = """\
With a `session` name and no `heap`, a run is a step of that session's live context, which \
the server keeps between calls: globals are as the session's last step left them, and no \
snapshot is made (`heap` null) unless you pass `snapshot: true`; the result names the \
session, and the heap when one was made. Steps of one session run one at a time, in order. \
A live session is snapshotted while it changes, when idle and at shutdown, and resumes \
transparently from its latest heap; should its worker be lost, the next step says so and \
names the heap it resumes from. A live context has no `WebAssembly` and its `fetch` \
rejects.

"""

_STATE = """\
State carries over between calls through heap snapshots: every run that completes returns \
`heap`, the key of a snapshot of its whole global state; pass it back as `heap` to continue \
from there (or give a `session` name and read the session's latest heap with \
list_session_snapshots). A snapshot keeps globals: `var`, functions, and top-level \
`let`/`const`/`class` bindings, objects, closures. It does not keep pending timers, \
unresolved promises or open handles. A later run may declare a top-level `let`/`class` \
again (as `let` or `class`) and a `const` again (as `const`), so a script can run twice on \
one heap; changing a name's kind (`const` to `let`, `var` to `let`) is a SyntaxError. \
Top-level `await` works anywhere and the result is the script's completion value (the last \
statement's value, `if`/`try`/loops included)."""

_RUN_JS = """\
Run JavaScript or TypeScript (enums and namespaces too) in a fresh, isolated V8 sandbox and \
return the JSON of the script's completion value (the value of its last expression statement, \
awaited when it is a promise; top-level `await` works). There is no file system, `require` or \
`process`, and no network: `fetch` rejects unless the server allows origins (--allow-fetch); `console.log` output is captured and returned (the first \
{FIRST_OUTPUT_LINES} lines, then page with get_execution_output). Web globals are there: \
`URL`, `URLSearchParams`, `TextEncoder`/`TextDecoder`, `atob`/`btoa`, `structuredClone`, \
`crypto.randomUUID`/`getRandomValues`/`subtle.digest`, `performance.now`, `AbortController`, \
`EventTarget`, `Headers`/`Request`/`Response`/`Blob` (data only), and ES2023-2025 built-ins \
(`toSorted`, `Object.groupBy`, Set methods, iterator helpers, `Promise.withResolvers`).

{state}

Limits: `heap_memory_max_mb` caps the V8 heap and `execution_timeout_secs` the run time (the \
server's defaults apply when absent); a script over either ends with an error, as does one \
that throws (`isError`, with the error's name, message, stack and line). The call waits up \
to `wait_ms` (default {RUN_JS_WAIT_MS}) for the script to finish; when it is still running \
the result has `status: "running"`, and get_execution with `wait_ms` waits for the rest. \
Pass `snapshot: false` for throwaway runs that need no state afterwards: faster, no `heap` \
returned, and `WebAssembly`/`SharedArrayBuffer`/`Atomics` are available."""
_RUN_JS_VALUES = {"FIRST_OUTPUT_LINES": FIRST_OUTPUT_LINES, "RUN_JS_WAIT_MS": RUN_JS_WAIT_MS}
_STATE_BESIDE_LIVE = _STATE.replace(
    "State carries over between calls through heap snapshots: every run that completes",
    "Otherwise state carries over between calls through heap snapshots: every such run that completes",
)
RUN_JS = _RUN_JS.format(
    state=_LIVE + _STATE_BESIDE_LIVE, **_RUN_JS_VALUES
)  # --mcp-sessions live (the default)
RUN_JS_SNAPSHOTS = _RUN_JS.format(state=_STATE, **_RUN_JS_VALUES)  # --mcp-sessions snapshot


def _run_js_description(servers: list[str], live: bool = True) -> str:
    """run_js's description: :data:`RUN_JS` (:data:`RUN_JS_SNAPSHOTS` when sessions do not run
    live), and with --tools-config how scripts call the tool servers it names (``servers``; the
    names are the file's, known before any connects)."""
    base = RUN_JS if live else RUN_JS_SNAPSHOTS
    if not servers:
        return base
    named = ", ".join(f"`{name}`" for name in servers)
    return f"""{base}

Tool servers: scripts can call the tools of {named}. `await tools.<server>.<tool>(args)` \
(a name that is not an identifier: `tools.srv["odd-name"]`) or `await \
mcp.callTool(server, tool, args)`; this server makes the call, the script never sees its \
credentials. Arguments are checked against the tool's input schema first (a `TypeError` \
naming the field). The result is the tool's structured content when it has one, else its \
text (parsed as JSON when it is an object or array), images and resources as objects; an \
error result throws `ToolError` (`server`, `tool`, `content`). Calls awaited together \
(`Promise.all`) run in parallel. search_tools finds tools by words of a task and \
describe_tools gives their TypeScript declarations (a TypeScript script needs no import). \
A call to a tool that needs approval may return the run with status `waiting` and its \
`pending_tool_calls`: it goes on once an approver decides (get_execution follows it), and \
the call throws `ToolDenied` when denied, or at once with `snapshot: false`."""


@dataclass
class Call:
    """One tools/call in progress: where it reports console output as it arrives (``progress``,
    None when the client asked for no progress), and its cancellation by the client."""

    progress: Callable[[str], None] | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    # Asks the person behind the client (``elicitation/create``: params, timeout in seconds;
    # returns the client's result): set on stdio when the client declared the capability.
    elicit: Callable[[dict[str, Any], float], dict[str, Any]] | None = None
    # The execution the call waits for, so that cancelling the call cancels it.
    execution_id: str | None = None
    # The caller's W3C trace context (``params._meta.traceparent``), which run_js's trace joins.
    traceparent: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _wake: threading.Event | None = None

    def watch(self, execution_id: str, wake: threading.Event, *, owned: bool) -> bool:
        """Names the execution the call waits for and the event that wakes the wait; ``owned``:
        the call started it (run_js), so cancelling the call cancels it. Returns False when
        the call was cancelled already (the caller then stops, cancelling what it owns)."""
        with self._lock:
            self.execution_id = execution_id if owned else None
            self._wake = wake
            return not self.cancelled.is_set()

    def cancel(self) -> str | None:
        """Marks the call cancelled and wakes its wait; returns the execution to cancel (None
        when there is none, or the call was cancelled already)."""
        with self._lock:
            if self.cancelled.is_set():
                return None
            self.cancelled.set()
            if self._wake is not None:
                self._wake.set()
            return self.execution_id


@dataclass(frozen=True)
class ToolResult:
    structured: dict[str, Any]
    is_error: bool = False
    text: str | None = None  # the text content; the JSON of ``structured`` when None


@dataclass(frozen=True)
class Tool:
    name: str
    title: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    run: Callable[[Operations, dict[str, Any], Call], ToolResult]
    read_only: bool = True
    destructive: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "_validator", SchemaValidator(self.input_schema))

    def validate(self, arguments: Any) -> dict[str, Any]:
        validator: SchemaValidator = self._validator  # type: ignore[attr-defined]
        return validator.validate(arguments)

    def listing(self, structured: bool) -> dict[str, Any]:
        """The tool as tools/list shows it; ``structured``: the protocol version has
        output schemas (2025-06-18 and later)."""
        entry: dict[str, Any] = {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "inputSchema": self.input_schema,
            "annotations": {
                "title": self.title,
                "readOnlyHint": self.read_only,
                "destructiveHint": self.destructive,
                "idempotentHint": self.read_only,
                "openWorldHint": False,
            },
        }
        if structured:
            entry["outputSchema"] = self.output_schema
        return entry


# -- schemas ---------------------------------------------------------------------------


def _object(properties: Mapping[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": dict(properties),
        "required": list(required),
        "additionalProperties": False,
    }


def _described(node: dict[str, Any], description: str) -> dict[str, Any]:
    return {**node, "description": description}


_EXECUTION_ID = {
    "type": "string",
    "pattern": "^" + EXECUTION_ID.pattern + "$",
    "description": "The execution_id that run_js returned.",
}
_HEAP = _described(
    {k: v for k, v in schema("ExecRequest")["properties"]["heap"].items() if k != "description"}
    | {"type": "string"},
    "A heap snapshot key (64 lowercase hex characters), the `heap` of an earlier run.",
)


def _without_null(node: dict[str, Any]) -> dict[str, Any]:
    types = node.get("type")
    if isinstance(types, list) and "null" in types:
        kept = [t for t in types if t != "null"]
        return {**node, "type": kept[0] if len(kept) == 1 else kept}
    return node


def _params(path: str, method: str, *names: str) -> dict[str, Any]:
    found = parameters(path, method)
    return {name: found[name] for name in names}


def _output_schema(name: str, **extra: Any) -> dict[str, Any]:
    out = schema(name)
    out.setdefault("properties", {}).update(extra)
    return out


_OUTPUT_EXCERPT = {
    "type": "object",
    "description": "The first lines of the execution's console output; page on with "
    "get_execution_output from `next_line_offset` when `has_more`.",
    "required": ["data", "next_line_offset", "has_more", "total_lines"],
    "properties": {
        "data": {"type": "string"},
        "next_line_offset": {"type": "integer"},
        "has_more": {"type": "boolean"},
        "total_lines": {"type": "integer"},
    },
}


def _run_js_input(ops: Operations) -> dict[str, Any]:
    s = ops.settings
    body = schema("ExecRequest")
    body.pop("description", None)
    props = body["properties"]
    props["execution_timeout_secs"]["maximum"] = s.max_timeout_secs
    props["heap_memory_max_mb"]["maximum"] = s.max_heap_mb
    props["max_tool_calls"]["maximum"] = s.max_tool_calls_ceiling
    props["wall_timeout_secs"]["maximum"] = s.max_wall_timeout_secs
    props.pop("live", None)  # the server decides: a session without a heap runs live (--mcp-sessions)
    props["wait_ms"] = _described(
        props["wait_ms"],
        f"How long to wait for the run to finish, in milliseconds (default {RUN_JS_WAIT_MS}, "
        "at most 30000); 0 returns at once with status running. The run continues either way.",
    )
    props["code"] = _described(
        props["code"],
        "JavaScript or TypeScript source, run as a script; its last expression is the result. "
        f"At most {s.max_code_bytes} bytes.",
    )
    return body


# -- results -----------------------------------------------------------------------------


def _execution_result(ops: Operations, info: dict[str, Any]) -> ToolResult:
    page = ops.output(info["execution_id"], line_limit=FIRST_OUTPUT_LINES)
    data = page["data"]
    next_line = page["next_line_offset"]
    if len(data.encode("utf-8")) > FIRST_OUTPUT_BYTES:  # long lines: cut at a line end if any
        cut = data.encode("utf-8")[:FIRST_OUTPUT_BYTES].decode("utf-8", "ignore")
        kept = cut[: cut.rfind("\n") + 1] or cut
        next_line = page["start_line"] + kept.count("\n")
        data = kept
    structured = {
        **info,
        "output": {
            "data": data,
            "next_line_offset": next_line,
            "has_more": next_line < page["total_lines"] or page["status"] == "running",
            "total_lines": page["total_lines"],
        },
    }
    failed = info["status"] in ("failed", "timed_out", "cancelled")
    return ToolResult(structured, is_error=failed, text=_execution_text(structured) if failed else None)


def _execution_text(structured: dict[str, Any]) -> str:
    """A failed run's text content: the error first, where a model reads it, then the JSON."""
    head = f"execution {structured['execution_id']} {structured['status']}: {structured['error']}"
    return head + "\n\n" + json.dumps(structured, ensure_ascii=False)


def _wait(ops: Operations, execution_id: str, wait_ms: int, call: Call, *, owned: bool) -> dict[str, Any]:
    """The execution once terminal, ``wait_ms`` passed or the call was cancelled, sending its
    console output as progress while waiting when the call asked for progress. The wait is
    on the manager's events (completion, output written), never a poll."""
    wake = threading.Event()
    done = threading.Event()
    if not call.watch(execution_id, wake, owned=owned):
        if owned:
            ops.cancel(execution_id)  # the client cancelled the call before it got here
        return ops.get(execution_id)
    progress = call.progress
    if progress is None:
        if owned or not call.cancelled.is_set():
            return ops.get(execution_id, wait_ms)  # an owned one ends when the call is cancelled
        return ops.get(execution_id)

    def listener(text: str | None) -> None:  # on a dispatcher thread: only hand on
        if text is None:
            done.set()
        wake.set()

    stop = ops.follow(execution_id, listener)
    deadline = time.monotonic() + wait_ms / 1000
    offset = 0
    try:
        while True:
            page = ops.output(execution_id, byte_offset=offset, byte_limit=FIRST_OUTPUT_BYTES * 4)
            if page["data"]:
                progress(page["data"])
                offset = page["next_byte_offset"]
                if page["has_more"]:
                    continue
            left = deadline - time.monotonic()
            if done.is_set() or call.cancelled.is_set() or left <= 0:
                break
            wake.wait(left)
            wake.clear()
    finally:
        stop()
    return ops.get(execution_id)


def _tool_error(message: str) -> ToolResult:
    return ToolResult({"error": message}, is_error=True, text=message)


# -- the tools -----------------------------------------------------------------------------


def _runs_live(ops: Operations) -> bool:
    """Whether run_js runs a session's steps live: ``--mcp-sessions live`` and live workers."""
    return ops.settings.mcp_sessions == "live" and ops.settings.live_workers > 0


def _run_js(ops: Operations, args: dict[str, Any], call: Call) -> ToolResult:
    body = {k: v for k, v in args.items() if k != "wait_ms"}
    if body.get("session") is not None and body.get("heap") is None and _runs_live(ops):
        body["live"] = True  # the session's name alone keeps its state
    execution_id = ops.submit(body, call.traceparent)
    wait_ms = RUN_JS_WAIT_MS if args.get("wait_ms") is None else args["wait_ms"]
    info = _wait(ops, execution_id, wait_ms, call, owned=True)
    if call.elicit is not None and info["status"] == "waiting":  # the person behind the client decides
        info = ask_until_decided(
            ops, info, call.elicit, lambda eid: _wait(ops, eid, wait_ms, call, owned=True)
        )
    return _execution_result(ops, info)


def _get_execution(ops: Operations, args: dict[str, Any], call: Call) -> ToolResult:
    info = _wait(ops, args["execution_id"], args.get("wait_ms") or 0, call, owned=False)
    return _execution_result(ops, info)


def _get_output(ops: Operations, args: dict[str, Any], call: Call) -> ToolResult:
    paging = {k: v for k, v in args.items() if k != "execution_id"}
    return ToolResult(ops.output(args["execution_id"], **paging))


def _cancel(ops: Operations, args: dict[str, Any], call: Call) -> ToolResult:
    result = ops.cancel(args["execution_id"])
    return ToolResult(result, is_error=not result["ok"], text=None if result["ok"] else result["error"])


def _list_executions(ops: Operations, args: dict[str, Any], call: Call) -> ToolResult:
    return ToolResult(
        ops.list_executions(
            args.get("limit", 100),
            status=args.get("status"),
            session=args.get("session"),
            cursor=args.get("cursor"),
        )
    )


def _list_sessions(ops: Operations, args: dict[str, Any], call: Call) -> ToolResult:
    return ToolResult(ops.sessions(args.get("limit", 100), cursor=args.get("cursor")))


def _session_log(ops: Operations, args: dict[str, Any], call: Call) -> ToolResult:
    return ToolResult(ops.session_log(args["session"], args.get("limit", 100), cursor=args.get("cursor")))


def _get_tags(ops: Operations, args: dict[str, Any], call: Call) -> ToolResult:
    return ToolResult(ops.heap(args["heap"]))


def _set_tags(ops: Operations, args: dict[str, Any], call: Call) -> ToolResult:
    return ToolResult(ops.replace_heap_tags(args["heap"], args["tags"]))


def _delete_tags(ops: Operations, args: dict[str, Any], call: Call) -> ToolResult:
    return ToolResult(ops.remove_heap_tags(args["heap"], args.get("keys")))


def _query_heaps(ops: Operations, args: dict[str, Any], call: Call) -> ToolResult:
    return ToolResult(ops.query_heaps(args["tags"], args.get("limit", 100), cursor=args.get("cursor")))


def _search_tools(ops: Operations, args: dict[str, Any], call: Call) -> ToolResult:
    found = search_tools(ops.tool_servers(), args["query"], limit=args.get("limit", 10), budget=SEARCH_BUDGET)
    return ToolResult({"matches": list(found.lines), "matched": found.matched}, text=found.render())


def _describe_tools(ops: Operations, args: dict[str, Any], call: Call) -> ToolResult:
    text = describe_tools(ops.tool_servers(), args["names"])
    return ToolResult({"declarations": text}, text=text)


def _catalogue_tools() -> list[Tool]:
    """search_tools and describe_tools: a large catalogue of tool servers learnt a piece at a
    time (offered when --tools-config is set)."""
    return [
        Tool(
            "search_tools",
            "Search the tools scripts can call",
            "The tools of the configured tool servers best matching `query` (by name, then "
            "description), each as a one-line TypeScript signature of `tools.<server>.<tool>(args)`, "
            f"at most `limit` (default 10) and about {SEARCH_BUDGET} characters. A script calls them "
            "with `await`; describe_tools gives their full declarations.",
            _object(
                {
                    "query": {"type": "string", "maxLength": 500, "description": "Words of the task."},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 50},
                },
                ("query",),
            ),
            _object(
                {
                    "matches": {"type": "array", "items": {"type": "string"}},
                    "matched": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "How many tools match in all.",
                    },
                },
                ("matches", "matched"),
            ),
            _search_tools,
        ),
        Tool(
            "describe_tools",
            "Describe tools",
            "The full TypeScript declarations (argument and result types, documentation) of the "
            "tools named, each `server.tool` (or a tool's name alone when one server has it).",
            _object(
                {
                    "names": {
                        "type": "array",
                        "items": {"type": "string", "maxLength": 200},
                        "minItems": 1,
                        "maxItems": 50,
                    }
                },
                ("names",),
            ),
            _object({"declarations": {"type": "string"}}, ("declarations",)),
            _describe_tools,
        ),
    ]


def build_tools(ops: Operations) -> dict[str, Tool]:
    """The tools of one server, by name, with this server's bounds in their schemas."""
    exec_query = _params("/api/executions/{id}", "get", "wait_ms")
    output_query = _params(
        "/api/executions/{id}/output", "get", "line_offset", "line_limit", "byte_offset", "byte_limit"
    )
    list_query = _params("/api/executions", "get", "limit", "status", "session", "cursor")
    sessions_query = _params("/api/sessions", "get", "limit", "cursor")
    log_query = _params("/api/sessions/log", "get", "session", "limit", "cursor")
    query_body = schema("HeapQuery")["properties"]
    tags = _without_null(schema("ExecRequest")["properties"]["tags"])
    execution_out = _output_schema("ExecutionInfo", output=_OUTPUT_EXCERPT)
    heap_out = _output_schema("HeapInfo")
    tools = [
        Tool(
            "run_js",
            "Run JavaScript",
            _run_js_description([server.name for server in ops.tool_servers()], _runs_live(ops)),
            _run_js_input(ops),
            execution_out,
            _run_js,
            read_only=False,
        ),
        Tool(
            "get_execution",
            "Get an execution",
            "The status, result, heap, error and first console lines of an execution started by "
            "run_js. With `wait_ms` (at most 30000) it waits for a running execution to finish.",
            _object({"execution_id": _EXECUTION_ID, **exec_query}, ("execution_id",)),
            execution_out,
            _get_execution,
        ),
        Tool(
            "get_execution_output",
            "Read console output",
            "A page of an execution's console output, by lines (`line_offset`, `line_limit`) or by "
            "bytes (`byte_offset`, `byte_limit`), never both. Works while it runs: continue from "
            "`next_line_offset` (or `next_byte_offset`) while `has_more` or status is running.",
            _object({"execution_id": _EXECUTION_ID, **output_query}, ("execution_id",)),
            schema("ExecutionOutput"),
            _get_output,
        ),
        Tool(
            "cancel_execution",
            "Cancel an execution",
            "Stops a queued or running execution; it ends with status cancelled. An error when it "
            "already finished or is unknown.",
            _object({"execution_id": _EXECUTION_ID}, ("execution_id",)),
            schema("CancelResult"),
            _cancel,
            read_only=False,
            destructive=True,
        ),
        Tool(
            "list_executions",
            "List executions",
            "Executions newest first, filtered by `status` and `session`; page with `cursor` "
            "(the previous page's `next_cursor`).",
            _object(list_query),
            schema("ExecutionList"),
            _list_executions,
        ),
        Tool(
            "list_sessions",
            "List sessions",
            "Sessions (the `session` names given to run_js), latest activity first, each with its "
            "number of executions and latest heap (`latest_heap_stored` false when that heap is "
            "gone). Page with `cursor`.",
            _object(sessions_query),
            schema("SessionList"),
            _list_sessions,
        ),
        Tool(
            "list_session_snapshots",
            "A session's history",
            "A session's executions oldest first: for each, the heap it started from (`heap_in`), "
            "the heap it produced (`heap`, with `heap_stored`), its status and tags. To continue a "
            "session, pass its latest stored heap to run_js. Page with `cursor`.",
            _object(log_query, ("session",)),
            schema("SessionLog"),
            _session_log,
        ),
        Tool(
            "get_heap_tags",
            "Get a heap's tags",
            "A heap snapshot's tags and metadata (size, creation and last use, session).",
            _object({"heap": _HEAP}, ("heap",)),
            heap_out,
            _get_tags,
        ),
        Tool(
            "set_heap_tags",
            "Set a heap's tags",
            "Replaces all of a heap snapshot's tags with `tags` (string values). A heap with tags "
            "is kept by retention until its tags are removed: tag what you want to keep.",
            _object({"heap": _HEAP, "tags": tags}, ("heap", "tags")),
            heap_out,
            _set_tags,
            read_only=False,
        ),
        Tool(
            "delete_heap_tags",
            "Delete a heap's tags",
            "Removes the tags named in `keys` from a heap snapshot, or all of its tags when `keys` "
            "is omitted.",
            _object(
                {
                    "heap": _HEAP,
                    "keys": {
                        "type": "array",
                        "items": {"type": "string", "maxLength": 256},
                        "maxItems": 1024,
                        "description": "The tag keys to remove; omitted: all.",
                    },
                },
                ("heap",),
            ),
            heap_out,
            _delete_tags,
            read_only=False,
            destructive=True,
        ),
        Tool(
            "query_heaps_by_tags",
            "Find heaps by tags",
            "Heap snapshots whose tags include every given key/value pair, newest first. Page with `cursor`.",
            _object(query_body, ("tags",)),
            schema("HeapList"),
            _query_heaps,
        ),
    ]
    if ops.tools is not None:
        tools += _catalogue_tools()
    return {t.name: t for t in tools}


def _approve(ops: Operations, args: dict[str, Any], call: Call) -> ToolResult:
    info = ops.approve(args["execution_id"], {"decisions": args["decisions"]})
    return _execution_result(ops, info)


def build_approver_tools(ops: Operations) -> dict[str, Tool]:
    """The tools of the approver's credential (``--approver-token`` on /mcp), and only them:
    find the executions waiting for a decision, read one, decide its held tool calls."""
    tools = build_tools(ops)
    decisions = schema("ApprovalRequest")["properties"]["decisions"]
    approve = Tool(
        "approve_tool_calls",
        "Approve or deny held tool calls",
        "Decides every tool call a waiting execution holds (its `pending_tool_calls`), each once: "
        "approved calls are made by the server and their results handed to the script, denied ones "
        "reject in the script with ToolDenied and the `reason`. The execution then runs on from "
        "where it paused (status running); follow it with get_execution. Find waiting executions "
        "with list_executions and status waiting.",
        _object({"execution_id": _EXECUTION_ID, "decisions": decisions}, ("execution_id", "decisions")),
        _output_schema("ExecutionInfo", output=_OUTPUT_EXCERPT),
        _approve,
        read_only=False,
    )
    return {
        "list_executions": tools["list_executions"],
        "get_execution": tools["get_execution"],
        approve.name: approve,
    }


def call_tool(ops: Operations, tool: Tool, arguments: Any, call: Call) -> ToolResult:
    """Runs ``tool``: bad arguments and the service's refusals are error results naming why."""
    try:
        args = tool.validate({} if arguments is None else arguments)
    except InvalidRequest as e:
        return _tool_error(
            f"invalid arguments for {tool.name}: {str(e).replace('the request body', 'arguments')}"
        )
    try:
        return tool.run(ops, copy.deepcopy(args), call)
    except (OperationError, DatabaseUnavailable) as e:
        return _tool_error(str(e))
