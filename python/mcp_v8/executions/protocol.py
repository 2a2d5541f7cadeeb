"""The channel between the server and each of its worker processes: fixed-schema messages.

A worker runs untrusted code, so what it sends is data to check, never code to run: no pickle.
Each message is one frame, a 4-byte big-endian length then that many bytes of msgpack holding
``[kind, version, body]``; ``body`` is a map whose fields are exactly those of the kind's
schema (:mod:`.wire`: types, and sizes bounded in UTF-8 bytes or entries). The receiver checks,
in order, before it uses any field: the length against the largest frame any kind it accepts may
have (before reading the body), that the body arrives within ``FRAME_SECONDS`` of its first byte,
that it decodes (no extension types, nothing after the message), that the kind is one it accepts
from that side and the version one it reads, the frame against the kind's own limit, and the
body against the schema. Any failure is :class:`ProtocolError`: from a worker, the server kills
that worker and fails only its execution (:mod:`.pool`). A message the sender cannot encode within
its schema (:class:`Undeliverable`) is never sent: the server fails that call, the worker stays.

Kinds (limits are whole frames):

server -> worker
    ``run`` v2  {execution_id, spec}   run one execution; ``spec`` is :func:`.spec.spec_to_wire`'s
                                        form; carries the heap to restore as a descriptor exactly
                                        when ``spec.heap`` is set. Limit ``CODE_LIMIT`` + 1 MiB.
    ``cancel``  {execution_id}         terminate it (sent only after its ``run``). 1 KiB.
    ``stop``    {}                     exit after the current job. 1 KiB.
    ``fetch_reply`` {execution_id, call_id, ok, head, body}
                                        the answer to a ``fetch``: ``ok`` with ``head`` the
                                        response head as JSON (its body marker naming ``body``,
                                        at most ``FETCH_BODY_LIMIT`` bytes), or not ``ok`` with
                                        ``head`` {name, message} and ``body`` null. ``head`` at
                                        most ``FETCH_HEAD_LIMIT``. Sent only while the execution
                                        runs on the server's side; the worker drops one for an
                                        execution it is not running. ``FETCH_BODY_LIMIT`` +
                                        ``FETCH_HEAD_LIMIT`` + 1 KiB.
    ``tool_reply`` {execution_id, call_id, answer}
                                        the answer to a ``tool_call``: ``answer`` JSON text,
                                        ``{"value": ...}`` (the tool's result, mapped),
                                        ``{"error": {"name", "message", ...}}`` or
                                        ``{"held": true}`` (:mod:`mcp_v8.tool_answers`), at most
                                        ``TOOL_ANSWER_LIMIT``. Sent only while the execution runs
                                        on the server's side; the worker drops one for a call it
                                        is not waiting for. ``TOOL_ANSWER_LIMIT`` + 1 KiB.
worker -> server
    ``ready``   {sandbox}              once, after V8 is initialised;
                                        ``sandbox`` says which walls the worker raised
                                        (:class:`~.sandbox.Walls`: mode, namespaces, capabilities,
                                        no_new_privs, landlock_abi, landlock_full, rlimits,
                                        seccomp, syscalls_allowed, missing). Version 2 (version 1
                                        had no body). 4 KiB.
    ``output``  {execution_id, text}   console output, batched, rendered with level markers; text
                                        at most ``OUTPUT_CHUNK`` bytes (the worker splits larger
                                        batches). ``OUTPUT_CHUNK`` + 1 KiB.
    ``done`` v3 {execution_id, status, result, error, js_error, heap, heap_size, duration_ms,
                 pending_tool_calls}
                                        how the execution ended: ``status`` terminal, or
                                        ``waiting`` (the script waits only on tool calls the
                                        server answered ``{"held": true}``: ``heap`` is the
                                        heap it paused in, ``pending_tool_calls`` those calls,
                                        each {call_id, server, tool, arguments} as its
                                        ``tool_call`` said, at most ``HELD_CALLS`` of them and
                                        ``HELD_LIMIT`` bytes in all; the server believes only
                                        its own record of the calls it held), ``result``
                                        at most ``RESULT_LIMIT`` bytes, ``error`` at most
                                        ``ERROR_LIMIT``, ``js_error`` null or {name, message,
                                        stack, line, column} (:class:`~mcp_v8.js_error.JsError`),
                                        ``heap`` null or 64 hex digits (the key the worker claims;
                                        the server computes its own); carries the new heap as a
                                        descriptor exactly when ``heap`` is set.
                                        ``RESULT_LIMIT`` + ``HELD_LIMIT`` + 4 MiB.
    ``fetch``   {execution_id, call_id, args, body}
                                        a call of the script's ``fetch``, for the server to make
                                        (the worker makes no connection): ``args`` the request as
                                        web.js describes it (JSON text, at most
                                        ``FETCH_ARGS_LIMIT``), ``body`` null or at most
                                        ``FETCH_BODY_LIMIT`` bytes. Only for the execution the
                                        worker runs. The server applies the policy of the spec it
                                        sent, never one the worker names. ``FETCH_BODY_LIMIT`` +
                                        ``FETCH_ARGS_LIMIT`` + 1 KiB.
    ``tool_call`` {execution_id, call_id, server, tool, arguments}
                                        a call of the script's ``tools.<server>.<tool>()`` or
                                        ``mcp.callTool()``, for the server to make (tool
                                        credentials never enter the worker): ``call_id`` the
                                        script's own number for it (kept in its heap, so it names
                                        the call across a pause), ``server`` and ``tool`` names of
                                        at most ``TOOL_NAME_LIMIT`` bytes, ``arguments`` the JSON
                                        text of the script's object, at most ``TOOL_ARGS_LIMIT``.
                                        Only for the execution the worker runs.
                                        ``TOOL_ARGS_LIMIT`` + 2 KiB.
    ``spans``   {execution_id, spans}  the worker's spans of the execution it runs (sent only when
                                        the server started it with ``--trace``, once, before its
                                        ``done``): at most ``SPANS`` of {name, start_ns, end_ns,
                                        attributes, parent}, ``name`` lower-case words and dots of
                                        at most 64 bytes, times in nanoseconds since the epoch
                                        (``start_ns`` <= ``end_ns``), ``attributes`` a map of at
                                        most ``SPAN_ATTRIBUTES`` texts (names as span names,
                                        values of at most 256 bytes), ``parent`` null (a child of
                                        the worker's run) or the index of an earlier span of the
                                        list. The server believes none of it but the shape: it
                                        clamps the times into the worker's run as it saw it, a
                                        child's into its parent's, and hangs a span whose parent
                                        is not an earlier one under the run
                                        (:mod:`mcp_v8.tracing`). 256 KiB.

**Heaps as file descriptors.** Heap bytes never travel as frames, and the worker opens no store:
a descriptor rides with ``SCM_RIGHTS`` on the first byte of its frame (:mod:`.heap_fds`). The
receiver reads every frame with ``recvmsg`` and room for one descriptor, and attributes what
arrives to the frame being read: a descriptor on a kind that carries none (or on one whose body
says it has no heap), a heap kind without its descriptor, more than one, or a truncated control
message is a ProtocolError, and every descriptor received is closed on every path but the one
that hands it to the caller (the message's ``heap_fd``, which the caller then owns).

**Live sessions** (a context kept in the worker between executions, :class:`.worker_live.LiveSessions`). The server sends one command at a time and waits for its answer, with no job
running (a step is a job: cancel, output, fetch and tool calls as for ``run``):

server -> worker
    ``open``    {session, heap, heap_limit_mb}
                                        make the session's live context, from the heap whose key
                                        ``heap`` names (carried as a descriptor exactly when it is
                                        set) or from the base context. Answered by ``opened``. 1 KiB.
    ``step``    {execution_id, session, spec}
                                        run one execution in the session's context (``spec`` as in
                                        ``run``; its ``heap`` is not restored: the context is the
                                        state). Answered as a ``run`` is, by ``done``, which carries
                                        the context's snapshot when ``spec.snapshot``; the context
                                        goes on from it. Limit ``CODE_LIMIT`` + 1 MiB.
    ``snapshot`` {session}             snapshot the context (it goes on from the snapshot).
                                        Answered by ``session_heap``. 1 KiB.
    ``close``   {session, snapshot}    end the context, snapshotting it first when ``snapshot``.
                                        Answered by ``closed``. 1 KiB.
worker -> server
    ``opened``  {session, error}       the context is made (``error`` null) or why it is not.
                                        ``ERROR_LIMIT`` + 1 KiB.
    ``session_heap`` {session, heap, heap_size, error}
                                        the snapshot (``heap`` its key, carried as a descriptor
                                        exactly when it is set) or why there is none.
                                        ``ERROR_LIMIT`` + 1 KiB.
    ``closed``  {session, heap, heap_size, error}
                                        the context is gone; its last snapshot as ``session_heap``
                                        says it, when one was asked for. ``ERROR_LIMIT`` + 1 KiB.
    ``ended``   {session, reason}      sent before a step's ``done`` when the step ended the
                                        context (it went over its heap cap: V8 does not reuse an
                                        isolate after that). ``ERROR_LIMIT`` + 1 KiB.

A kind's body change is a new version of that kind; each side keeps reading the versions the
other side of a running deployment may send (server and workers come from one install, so today
each kind has the one version).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal, Union

import msgpack

from ..js_error import JsError
from ..storage import PendingToolCall, TerminalStatus
from .sandbox import MODES, Walls
from .spec import (
    CODE_LIMIT,
    FETCH_BODY_LIMIT,
    RESULT_LIMIT,
    TOOL_ANSWER_LIMIT,
    ExecutionSpec,
    check_spec_wire,
    spec_from_wire,
    spec_to_wire,
)
from .wire import (
    Bytes,
    Flag,
    Integer,
    Number,
    OneOf,
    Record,
    RecordList,
    SchemaError,
    Text,
    TextList,
    TextMap,
    Type,
)

__all__ = [
    "ERROR_LIMIT",
    "FRAME_HEADER",
    "FRAME_SECONDS",
    "KINDS",
    "OUTPUT_CHUNK",
    "Cancel",
    "Close",
    "Closed",
    "Done",
    "Ended",
    "FetchCall",
    "FetchReply",
    "Job",
    "JobResult",
    "JobStatus",
    "LiveCommand",
    "Message",
    "Open",
    "Opened",
    "Output",
    "ProtocolError",
    "Ready",
    "Spans",
    "SessionHeap",
    "Snapshot",
    "Step",
    "Stop",
    "ToolCall",
    "ToolReply",
    "Undeliverable",
    "WorkerSpan",
    "decode",
    "encode",
    "heap_fd",
]

OUTPUT_CHUNK = 1 << 20  # console text per output message
FETCH_ARGS_LIMIT = 1 << 20  # a fetch's request as JSON: URL, method, headers
FETCH_HEAD_LIMIT = 2 << 20  # a fetch's response head as JSON (or its error)
ERROR_LIMIT = 1 << 20  # an error text, a JS error's message or stack
TOOL_NAME_LIMIT = 256  # a tool server's or a tool's name
TOOL_ARGS_LIMIT = 4 << 20  # a tool call's arguments as JSON
HELD_CALLS = 4096  # the held calls a paused execution's ``done`` names
HELD_LIMIT = 16 << 20  # their frame's share
SPANS = 256  # the spans of one ``spans`` message
SPAN_ATTRIBUTES = 32  # the attributes of one span
SPANS_LIMIT = 256 * 1024  # a ``spans`` frame
FRAME_SECONDS = 10.0  # a frame's bytes must all arrive within this of its first
KiB = 1024
FRAME_HEADER = struct.Struct(">I")  # a frame's length, before its msgpack bytes


class ProtocolError(Exception):
    """A frame or message that breaks the protocol. The message completes "worker sent ..."
    and never repeats the payload."""


class Undeliverable(ValueError):
    """A message that cannot be encoded within its kind's schema: it was not sent."""


JobStatus = Union[TerminalStatus, Literal["waiting"]]


@dataclass(frozen=True)
class WorkerSpan:
    """One phase of a job in the worker (``time.time_ns()`` times)."""

    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, str] = field(default_factory=dict)
    parent: int | None = None  # the index of its parent among the job's spans; None: the run


@dataclass(frozen=True)
class JobResult:
    """What became of a job. ``heap`` is the key of the snapshot the job produced (a completed
    job that asked for one, or a paused one) and ``heap_size`` its size in bytes; ``js_error``
    the script's structured error, None when the failure is not the script's. ``waiting``: the
    script paused on the held calls ``pending_tool_calls`` (each a call the server answered
    ``{"held": true}``, its arguments the JSON text the script sent)."""

    status: JobStatus
    result: str | None = None
    error: str | None = None
    heap: str | None = None
    heap_size: int | None = None
    duration_ms: float | None = None
    js_error: JsError | None = None
    pending_tool_calls: tuple[PendingToolCall, ...] = ()
    # The server's side only (never on the wire): the heap's envelope, read from its descriptor,
    # and the tool calls the execution made so far (its budget's use), when it paused.
    envelope: bytes | None = field(default=None, compare=False, repr=False)
    tool_calls_made: int | None = field(default=None, compare=False)
    spans: tuple[WorkerSpan, ...] = field(default=(), compare=False, repr=False)  # its ``spans``
    # A live step's: why its session's context ended under it (its worker said ``ended``).
    session_ended: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Job:
    """``run``: one execution. ``heap_fd``: the descriptor of the heap to restore (exactly when
    ``spec.heap`` is set), sent with the frame; the caller owns it. ``tool_calls_made``: the
    server's side only (never on the wire): the calls a resumed execution made before."""

    execution_id: str
    spec: ExecutionSpec
    heap_fd: int | None = field(default=None, compare=False)
    tool_calls_made: int = field(default=0, compare=False)
    KIND: ClassVar[str] = "run"


@dataclass(frozen=True)
class Cancel:
    execution_id: str
    KIND: ClassVar[str] = "cancel"


@dataclass(frozen=True)
class Stop:
    KIND: ClassVar[str] = "stop"


@dataclass(frozen=True)
class Ready:
    sandbox: Walls = Walls()
    KIND: ClassVar[str] = "ready"


@dataclass(frozen=True)
class Output:
    execution_id: str
    text: str
    KIND: ClassVar[str] = "output"


@dataclass(frozen=True)
class Done:
    """``heap_fd``: the descriptor of the new heap (exactly when ``result.heap`` is set)."""

    execution_id: str
    result: JobResult
    heap_fd: int | None = field(default=None, compare=False)
    KIND: ClassVar[str] = "done"


@dataclass(frozen=True)
class FetchCall:
    """``fetch``: a call of the script's fetch, for the server to make."""

    execution_id: str
    call_id: int
    args: str
    body: bytes | None
    KIND: ClassVar[str] = "fetch"


@dataclass(frozen=True)
class FetchReply:
    """``fetch_reply``: the answer to a :class:`FetchCall`."""

    execution_id: str
    call_id: int
    ok: bool
    head: str
    body: bytes | None
    KIND: ClassVar[str] = "fetch_reply"


@dataclass(frozen=True)
class ToolCall:
    """``tool_call``: a call of one of the script's tools, for the server to make."""

    execution_id: str
    call_id: int
    server: str
    tool: str
    arguments: str
    KIND: ClassVar[str] = "tool_call"


@dataclass(frozen=True)
class ToolReply:
    """``tool_reply``: the answer to a :class:`ToolCall` (JSON text, :mod:`.tool_calls`)."""

    execution_id: str
    call_id: int
    answer: str
    KIND: ClassVar[str] = "tool_reply"


@dataclass(frozen=True)
class Spans:
    """``spans``: the worker's spans of the job it runs, sent before its ``done``."""

    execution_id: str
    spans: tuple[WorkerSpan, ...]
    KIND: ClassVar[str] = "spans"


@dataclass(frozen=True)
class Open:
    """``open``: make ``session``'s live context, from the heap ``heap`` names (its descriptor
    ``heap_fd``, the caller's, exactly when ``heap`` is set) or from the base context."""

    session: str
    heap: str | None
    heap_limit_mb: int
    heap_fd: int | None = field(default=None, compare=False)
    KIND: ClassVar[str] = "open"


@dataclass(frozen=True)
class Step:
    """``step``: one execution in ``session``'s live context."""

    execution_id: str
    session: str
    spec: ExecutionSpec
    KIND: ClassVar[str] = "step"


@dataclass(frozen=True)
class Snapshot:
    session: str
    KIND: ClassVar[str] = "snapshot"


@dataclass(frozen=True)
class Close:
    session: str
    snapshot: bool
    KIND: ClassVar[str] = "close"


@dataclass(frozen=True)
class Opened:
    session: str
    error: str | None
    KIND: ClassVar[str] = "opened"


@dataclass(frozen=True)
class SessionHeap:
    """``session_heap``: the answer to a :class:`Snapshot`; ``heap_fd`` exactly when ``heap``."""

    session: str
    heap: str | None
    heap_size: int | None
    error: str | None
    heap_fd: int | None = field(default=None, compare=False)
    KIND: ClassVar[str] = "session_heap"


@dataclass(frozen=True)
class Closed:
    """``closed``: the answer to a :class:`Close`; ``heap_fd`` exactly when ``heap``."""

    session: str
    heap: str | None
    heap_size: int | None
    error: str | None
    heap_fd: int | None = field(default=None, compare=False)
    KIND: ClassVar[str] = "closed"


@dataclass(frozen=True)
class Ended:
    """``ended``: the step running in ``session`` ended its context (sent before its ``done``)."""

    session: str
    reason: str
    KIND: ClassVar[str] = "ended"


LiveCommand = Union[Open, Step, Snapshot, Close]
Message = Union[
    Job,
    Cancel,
    Stop,
    Ready,
    Output,
    Done,
    FetchCall,
    FetchReply,
    ToolCall,
    ToolReply,
    Open,
    Step,
    Snapshot,
    Close,
    Opened,
    SessionHeap,
    Closed,
    Ended,
    Spans,
]

_ID = Text(128, min_bytes=1)
# A session's key (live.live_key): a name of up to 256 characters of up to 4 UTF-8 bytes (or
# none), after its tenant's name (up to 64) between two NULs.
_SESSION = Text(1024 + 66)
_HEAP_KEY = Text(64, pattern="[0-9a-f]{64}", nullable=True)
_HEAP_SIZE = Integer(0, 1 << 50, nullable=True)
_CALL_ID = Integer(0, (1 << 64) - 1)
_JS_ERROR = Record(
    {
        "name": Text(4 * KiB, nullable=True),
        "message": Text(ERROR_LIMIT),
        "stack": Text(ERROR_LIMIT),
        "line": Integer(0, 1 << 32, nullable=True),
        "column": Integer(0, 1 << 32, nullable=True),
    },
    nullable=True,
)

_HELD_CALL = Record(
    {
        "call_id": _CALL_ID,
        "server": Text(TOOL_NAME_LIMIT, min_bytes=1),
        "tool": Text(TOOL_NAME_LIMIT, min_bytes=1),
        "arguments": Text(TOOL_ARGS_LIMIT, min_bytes=2),
    }
)

_WALLS = Record(
    {
        "mode": OneOf(frozenset(MODES)),
        "namespaces": OneOf(frozenset({"user+net", "net", ""})),
        "capabilities": Flag(),
        "no_new_privs": Flag(),
        "landlock_abi": Integer(0, 255),
        "landlock_full": Flag(),
        "rlimits": Flag(),
        "seccomp": Flag(),
        "syscalls_allowed": Integer(0, 4096),
        "missing": TextList(16, Text(512)),
    }
)


_SPAN_NAME = Text(64, min_bytes=1, pattern=r"[a-z][a-z0-9_.]*")
_NS = Integer(0, (1 << 63) - 1)


class _Span(Record):
    """A span: its fields, and an end no earlier than its start."""

    def _check(self, value: Any, path: str) -> None:
        super()._check(value, path)
        if value["end_ns"] < value["start_ns"]:
            raise SchemaError(f"{path}.end_ns is before its start_ns")


_SPAN = _Span(
    {
        "name": _SPAN_NAME,
        "start_ns": _NS,
        "end_ns": _NS,
        "attributes": TextMap(SPAN_ATTRIBUTES, _SPAN_NAME, Text(256)),
        "parent": Integer(0, SPANS - 1, nullable=True),
    }
)


def _spans_body(m: Spans) -> dict[str, Any]:
    return {
        "execution_id": m.execution_id,
        "spans": [
            {
                "name": s.name,
                "start_ns": s.start_ns,
                "end_ns": s.end_ns,
                "attributes": dict(s.attributes),
                "parent": s.parent,
            }
            for s in m.spans
        ],
    }


def _spans(b: dict[str, Any]) -> Spans:
    return Spans(
        b["execution_id"],
        tuple(
            WorkerSpan(s["name"], s["start_ns"], s["end_ns"], dict(s["attributes"]), s["parent"])
            for s in b["spans"]
        ),
    )


class _Spec(Type):
    """A spec's wire form (:data:`.spec.SPEC_SCHEMA`, whose version it names)."""

    def _check(self, value: Any, path: str) -> None:
        check_spec_wire(value)


@dataclass(frozen=True)
class Kind:
    """One kind of message: its version, schema, limit (whole frame, bytes), who sends it, how
    its message is made into a body and back, and, for a kind that may carry a heap, whether a
    message of it does (then with exactly one descriptor; None: never any)."""

    name: str
    version: int
    sender: str  # "server" or "worker"
    limit: int
    schema: Record
    to_body: Callable[[Any], dict[str, Any]]
    from_body: Callable[[dict[str, Any]], Message]
    heap: Callable[[Any], bool] | None = None


def _result_body(m: Done) -> dict[str, Any]:
    r = m.result
    return {
        "execution_id": m.execution_id,
        "status": r.status,
        "result": r.result,
        "error": r.error,
        "js_error": None if r.js_error is None else r.js_error.to_dict(),
        "heap": r.heap,
        "heap_size": r.heap_size,
        "duration_ms": r.duration_ms,
        "pending_tool_calls": [c.to_dict() for c in r.pending_tool_calls],
    }


def _done(b: dict[str, Any]) -> Done:
    js = b["js_error"]
    return Done(
        b["execution_id"],
        JobResult(
            status=b["status"],
            result=b["result"],
            error=b["error"],
            heap=b["heap"],
            heap_size=b["heap_size"],
            duration_ms=None if b["duration_ms"] is None else float(b["duration_ms"]),
            js_error=None if js is None else JsError(**js),
            pending_tool_calls=tuple(PendingToolCall(**c) for c in b["pending_tool_calls"]),
        ),
    )


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "run",
            2,
            "server",
            CODE_LIMIT + 1024 * KiB,
            Record({"execution_id": _ID, "spec": _Spec()}),
            lambda m: {"execution_id": m.execution_id, "spec": spec_to_wire(m.spec, check=False)},
            lambda b: Job(b["execution_id"], spec_from_wire(b["spec"], checked=True)),
            heap=lambda m: m.spec.heap is not None,
        ),
        Kind(
            "cancel",
            1,
            "server",
            KiB,
            Record({"execution_id": _ID}),
            lambda m: {"execution_id": m.execution_id},
            lambda b: Cancel(b["execution_id"]),
        ),
        Kind("stop", 1, "server", KiB, Record({}), lambda m: {}, lambda b: Stop()),
        Kind(
            "ready",
            2,
            "worker",
            4 * KiB,
            Record({"sandbox": _WALLS}),
            lambda m: {"sandbox": m.sandbox.to_dict()},
            lambda b: Ready(Walls.from_dict(b["sandbox"])),
        ),
        Kind(
            "output",
            1,
            "worker",
            OUTPUT_CHUNK + KiB,
            Record({"execution_id": _ID, "text": Text(OUTPUT_CHUNK)}),
            lambda m: {"execution_id": m.execution_id, "text": m.text},
            lambda b: Output(b["execution_id"], b["text"]),
        ),
        Kind(
            "done",
            3,
            "worker",
            RESULT_LIMIT + HELD_LIMIT + 4096 * KiB,
            Record(
                {
                    "execution_id": _ID,
                    "status": OneOf(frozenset({"completed", "failed", "cancelled", "timed_out", "waiting"})),
                    "result": Text(RESULT_LIMIT, nullable=True),
                    "error": Text(ERROR_LIMIT, nullable=True),
                    "js_error": _JS_ERROR,
                    "heap": Text(64, pattern="[0-9a-f]{64}", nullable=True),
                    "heap_size": Integer(0, 1 << 50, nullable=True),
                    "duration_ms": Number(0, 1e12, nullable=True),
                    "pending_tool_calls": RecordList(HELD_CALLS, _HELD_CALL),
                }
            ),
            _result_body,
            _done,
            heap=lambda m: m.result.heap is not None,
        ),
        Kind(
            "fetch",
            1,
            "worker",
            FETCH_BODY_LIMIT + FETCH_ARGS_LIMIT + KiB,
            Record(
                {
                    "execution_id": _ID,
                    "call_id": _CALL_ID,
                    "args": Text(FETCH_ARGS_LIMIT),
                    "body": Bytes(FETCH_BODY_LIMIT, nullable=True),
                }
            ),
            lambda m: {"execution_id": m.execution_id, "call_id": m.call_id, "args": m.args, "body": m.body},
            lambda b: FetchCall(b["execution_id"], b["call_id"], b["args"], b["body"]),
        ),
        Kind(
            "fetch_reply",
            1,
            "server",
            FETCH_BODY_LIMIT + FETCH_HEAD_LIMIT + KiB,
            Record(
                {
                    "execution_id": _ID,
                    "call_id": _CALL_ID,
                    "ok": Flag(),
                    "head": Text(FETCH_HEAD_LIMIT),
                    "body": Bytes(FETCH_BODY_LIMIT, nullable=True),
                }
            ),
            lambda m: {
                "execution_id": m.execution_id,
                "call_id": m.call_id,
                "ok": m.ok,
                "head": m.head,
                "body": m.body,
            },
            lambda b: FetchReply(b["execution_id"], b["call_id"], b["ok"], b["head"], b["body"]),
        ),
        Kind(
            "tool_call",
            1,
            "worker",
            TOOL_ARGS_LIMIT + 2 * KiB,
            Record(
                {
                    "execution_id": _ID,
                    "call_id": _CALL_ID,
                    "server": Text(TOOL_NAME_LIMIT, min_bytes=1),
                    "tool": Text(TOOL_NAME_LIMIT, min_bytes=1),
                    "arguments": Text(TOOL_ARGS_LIMIT, min_bytes=2),
                }
            ),
            lambda m: {
                "execution_id": m.execution_id,
                "call_id": m.call_id,
                "server": m.server,
                "tool": m.tool,
                "arguments": m.arguments,
            },
            lambda b: ToolCall(b["execution_id"], b["call_id"], b["server"], b["tool"], b["arguments"]),
        ),
        Kind(
            "tool_reply",
            1,
            "server",
            TOOL_ANSWER_LIMIT + KiB,
            Record(
                {"execution_id": _ID, "call_id": _CALL_ID, "answer": Text(TOOL_ANSWER_LIMIT, min_bytes=2)}
            ),
            lambda m: {"execution_id": m.execution_id, "call_id": m.call_id, "answer": m.answer},
            lambda b: ToolReply(b["execution_id"], b["call_id"], b["answer"]),
        ),
        Kind(
            "spans",
            1,
            "worker",
            SPANS_LIMIT,
            Record({"execution_id": _ID, "spans": RecordList(SPANS, _SPAN)}),
            _spans_body,
            _spans,
        ),
        Kind(
            "open",
            1,
            "server",
            KiB,
            Record({"session": _SESSION, "heap": _HEAP_KEY, "heap_limit_mb": Integer(1, 1 << 20)}),
            lambda m: {"session": m.session, "heap": m.heap, "heap_limit_mb": m.heap_limit_mb},
            lambda b: Open(b["session"], b["heap"], b["heap_limit_mb"]),
            heap=lambda m: m.heap is not None,
        ),
        Kind(
            "step",
            1,
            "server",
            CODE_LIMIT + 1024 * KiB,
            Record({"execution_id": _ID, "session": _SESSION, "spec": _Spec()}),
            lambda m: {
                "execution_id": m.execution_id,
                "session": m.session,
                "spec": spec_to_wire(m.spec, check=False),
            },
            lambda b: Step(b["execution_id"], b["session"], spec_from_wire(b["spec"], checked=True)),
        ),
        Kind(
            "snapshot",
            1,
            "server",
            KiB,
            Record({"session": _SESSION}),
            lambda m: {"session": m.session},
            lambda b: Snapshot(b["session"]),
        ),
        Kind(
            "close",
            1,
            "server",
            KiB,
            Record({"session": _SESSION, "snapshot": Flag()}),
            lambda m: {"session": m.session, "snapshot": m.snapshot},
            lambda b: Close(b["session"], b["snapshot"]),
        ),
        Kind(
            "opened",
            1,
            "worker",
            ERROR_LIMIT + KiB,
            Record({"session": _SESSION, "error": Text(ERROR_LIMIT, nullable=True)}),
            lambda m: {"session": m.session, "error": m.error},
            lambda b: Opened(b["session"], b["error"]),
        ),
        Kind(
            "session_heap",
            1,
            "worker",
            ERROR_LIMIT + KiB,
            Record(
                {
                    "session": _SESSION,
                    "heap": _HEAP_KEY,
                    "heap_size": _HEAP_SIZE,
                    "error": Text(ERROR_LIMIT, nullable=True),
                }
            ),
            lambda m: {"session": m.session, "heap": m.heap, "heap_size": m.heap_size, "error": m.error},
            lambda b: SessionHeap(b["session"], b["heap"], b["heap_size"], b["error"]),
            heap=lambda m: m.heap is not None,
        ),
        Kind(
            "closed",
            1,
            "worker",
            ERROR_LIMIT + KiB,
            Record(
                {
                    "session": _SESSION,
                    "heap": _HEAP_KEY,
                    "heap_size": _HEAP_SIZE,
                    "error": Text(ERROR_LIMIT, nullable=True),
                }
            ),
            lambda m: {"session": m.session, "heap": m.heap, "heap_size": m.heap_size, "error": m.error},
            lambda b: Closed(b["session"], b["heap"], b["heap_size"], b["error"]),
            heap=lambda m: m.heap is not None,
        ),
        Kind(
            "ended",
            1,
            "worker",
            ERROR_LIMIT + KiB,
            Record({"session": _SESSION, "reason": Text(ERROR_LIMIT)}),
            lambda m: {"session": m.session, "reason": m.reason},
            lambda b: Ended(b["session"], b["reason"]),
        ),
    )
}
MAX_FRAME = {side: max(k.limit for k in KINDS.values() if k.sender == side) for side in ("server", "worker")}


def encode(message: Message) -> bytes:
    """The frame of ``message``; :class:`Undeliverable` when it breaks its kind's schema."""
    kind = KINDS[message.KIND]
    try:
        body = kind.to_body(message)
        kind.schema.check(body, kind.name)
        data: bytes = msgpack.packb([kind.name, kind.version, body], use_bin_type=True)
    except (SchemaError, UnicodeEncodeError, ValueError, TypeError, OverflowError) as e:
        raise Undeliverable(f"a {kind.name!r} message cannot be sent: {e}") from None
    if len(data) > kind.limit:
        raise Undeliverable(f"a {kind.name!r} message of {len(data)} bytes is over its limit of {kind.limit}")
    return FRAME_HEADER.pack(len(data)) + data


def heap_fd(message: Message) -> int | None:
    """The descriptor ``message`` carries; :class:`Undeliverable` when its kind needs one it lacks,
    or it has one its kind never carries."""
    fd = getattr(message, "heap_fd", None)
    kind = KINDS[message.KIND]
    wanted = kind.heap is not None and kind.heap(message)
    if wanted != (fd is not None):
        raise Undeliverable(
            f"a {kind.name!r} message {'needs a' if wanted else 'carries no'} heap descriptor"
        )
    return fd


def _no_extensions(code: int, data: bytes) -> Any:
    raise ValueError(f"extension type {code}")


def decode(data: bytes, sender: str) -> Message:
    """The message of a frame's body sent by ``sender``; :class:`ProtocolError` unless it is one
    of that side's kinds, in a version this side reads, within its limit and schema."""
    try:
        value = msgpack.unpackb(
            data, raw=False, use_list=True, strict_map_key=True, ext_hook=_no_extensions, timestamp=0
        )
    except Exception as e:  # what a decoder says of arbitrary bytes: its message names no payload
        raise ProtocolError(f"an unreadable message ({type(e).__name__})") from None
    if type(value) is not list or len(value) != 3 or type(value[0]) is not str:
        raise ProtocolError("a message that is not [kind, version, body]")
    name, version, body = value
    kind = KINDS.get(name)
    if kind is None or kind.sender != sender:
        raise ProtocolError(f"a message of unknown kind {name[:40]!r}")
    if type(version) is not int or version != kind.version:
        raise ProtocolError(f"a {name!r} message of version {str(version)[:20]}, which is not read here")
    if len(data) > kind.limit:
        raise ProtocolError(f"a {name!r} message of {len(data)} bytes, over its limit of {kind.limit}")
    try:
        kind.schema.check(body, name)
        return kind.from_body(body)
    except SchemaError as e:
        raise ProtocolError(f"a malformed {name!r} message: {e}") from None
