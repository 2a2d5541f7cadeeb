"""One execution as the service runs it: :class:`ExecutionSpec`, built once from the request and
the server's settings (:func:`spec_from_request`), then carried unchanged: to the execution
record, through the queue (the local one holds the object; the shared PostgreSQL queue holds
:func:`spec_to_wire`'s form, read back by :func:`spec_from_wire`), to a worker over its channel
(the same form inside a ``run`` message, :mod:`.protocol`), and in the worker to the engine.

A request sets the code, the heap to resume, whether to snapshot, the heap cap and timeout, the
tool calls the script may make, the session and the tags; the server fills in the rest from its
settings: the defaults of what the request left out, the result and output caps, the tool calls'
timeout and answer cap, and the fetch policy, which no request can set.
``language`` and ``filename`` are the engine's (``auto``, none); no request field sets them yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..principal import DEFAULT_TENANT, TENANT_PATTERN
from ..tool_answers import ANSWER_LIMIT
from .wire import Flag, Integer, Number, OneOf, Record, SchemaError, Text, TextList, TextMap

if TYPE_CHECKING:
    from ..config import Settings

__all__ = [
    "CODE_LIMIT",
    "FETCH_BODY_LIMIT",
    "RESULT_LIMIT",
    "SPEC_SCHEMA",
    "SPEC_VERSION",
    "ExecutionSpec",
    "FetchPolicy",
    "Limits",
    "ToolLimits",
    "SchemaError",
    "check_spec_wire",
    "spec_from_request",
    "spec_from_wire",
    "spec_to_wire",
]

Language = Literal["auto", "javascript", "typescript"]

CODE_LIMIT = (
    64 << 20
)  # the largest code a spec carries (UTF-8 bytes); --max-code-bytes above it fails each run
RESULT_LIMIT = 64 << 20  # the largest result a worker may send: the engine's cap never exceeds it
# The largest body a fetch sends or receives through a worker's channel: a larger
# --max-fetch-bytes is this limit in the spec.
FETCH_BODY_LIMIT = 64 << 20
SPEC_VERSION = (
    3  # 3: the tenant; 2: the tool calls' limits (``tools``) and the wall limit; 1 and 2 are read too
)
TOOL_ANSWER_LIMIT = ANSWER_LIMIT  # the largest tool answer a ``tool_reply`` carries (:mod:`.protocol`)
# The engine's defaults (rust/engine/src/fetch.rs), for a spec built without settings.
DEFAULT_FETCH_BYTES = 10 << 20
DEFAULT_FETCH_REQUESTS = 50


@dataclass(frozen=True)
class FetchPolicy:
    """What ``fetch`` may reach: ``origins`` (``scheme://host[:port]``; none: fetch is off), the
    largest response (or request) body of one fetch and the requests one execution may make."""

    origins: tuple[str, ...] = ()
    max_bytes: int = DEFAULT_FETCH_BYTES
    max_requests: int = DEFAULT_FETCH_REQUESTS


DEFAULT_MAX_TOOL_CALLS = 50  # per execution
DEFAULT_CALL_TIMEOUT = 60.0  # seconds, per call
DEFAULT_MAX_TOOL_RESULT_BYTES = 4 << 20  # a call's answer as JSON


@dataclass(frozen=True)
class ToolLimits:
    """What the script's tool calls may take: how many calls (refused ones included; the next one
    is refused), each call's time (seconds) and the largest answer of one (JSON bytes)."""

    max_calls: int = DEFAULT_MAX_TOOL_CALLS
    call_timeout: float = DEFAULT_CALL_TIMEOUT
    max_result_bytes: int = DEFAULT_MAX_TOOL_RESULT_BYTES

    def __post_init__(self) -> None:
        if self.max_calls < 0:
            raise ValueError("max_calls must be at least 0")
        if not self.call_timeout > 0:
            raise ValueError("call_timeout must be positive")
        if not 0 < self.max_result_bytes <= TOOL_ANSWER_LIMIT:
            raise ValueError(f"max_result_bytes must be within 1..{TOOL_ANSWER_LIMIT}")


@dataclass(frozen=True)
class Limits:
    """The execution's caps: V8 heap (MB), run time (seconds: the script's own, time spent waiting
    on tool calls excluded), the JSON result (bytes: a larger one fails the execution), the console
    output a worker ships (bytes: the server's output log stores its truncation marker past it) and
    the wall time (seconds, waiting on tool calls included; None: the run time, nothing more)."""

    heap_limit_mb: int
    timeout_secs: float
    max_result_bytes: int
    max_output_bytes: int
    wall_timeout_secs: float | None = None

    @property
    def wall_secs(self) -> float:
        """The execution's time, waiting on tool calls included (``wall_timeout_secs``; at least
        ``timeout_secs``, which bounds the script's own running time, waits on tools excluded)."""
        if self.wall_timeout_secs is None:
            return self.timeout_secs
        return max(self.wall_timeout_secs, self.timeout_secs)


@dataclass(frozen=True)
class ExecutionSpec:
    """One execution. ``heap`` is the key of the snapshot to restore; ``snapshot`` says whether
    it produces a new one (false: a plain isolate, restored from ``heap`` when there is one, and
    no snapshot); ``session`` and ``tags`` are recorded with the execution and with the snapshot
    it produces. ``tags`` is never changed after construction."""

    code: str
    limits: Limits
    language: Language = "auto"
    filename: str | None = None
    heap: str | None = None
    snapshot: bool = True
    session: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    fetch: FetchPolicy = FetchPolicy()
    tools: ToolLimits = ToolLimits()
    tenant: str = DEFAULT_TENANT  # whose execution it is (mcp_v8.principal): its record's, its quotas'

    @property
    def code_bytes(self) -> int:
        return len(self.code.encode("utf-8", "surrogatepass"))

    @property
    def mode(self) -> str:
        """Its ``mode`` in the metrics (:data:`mcp_v8.metrics.MODES`)."""
        return "snapshot" if self.snapshot else "no_snapshot"


def spec_from_request(
    body: Mapping[str, Any], settings: Settings, tenant: str = DEFAULT_TENANT
) -> ExecutionSpec:
    """The spec of an ExecRequest (``body``, validated against the contract by the door), with
    what the server decides filled in from ``settings``, for ``tenant`` (the request's principal's)."""
    snapshot = body.get("snapshot")
    # 0 ("no cap") and anything above the channel's limit are the channel's limit: the engine
    # then refuses a larger result itself, with its own error, instead of the worker.
    max_result = settings.max_result_bytes
    max_tool_calls = body.get("max_tool_calls")
    timeout = float(body.get("execution_timeout_secs") or settings.default_timeout_secs)
    wall = float(body.get("wall_timeout_secs") or settings.default_wall_timeout_secs)
    return ExecutionSpec(
        code=body["code"],
        heap=body.get("heap"),
        snapshot=settings.snapshot_default if snapshot is None else snapshot,
        limits=Limits(
            heap_limit_mb=body.get("heap_memory_max_mb") or settings.default_heap_mb,
            timeout_secs=timeout,
            max_result_bytes=max_result if 0 < max_result <= RESULT_LIMIT else RESULT_LIMIT,
            max_output_bytes=settings.max_output_bytes,
            # A request's timeout above the default wall raises the wall with it (the request
            # checked that its own wall is not below its timeout).
            wall_timeout_secs=max(wall, timeout),
        ),
        session=body.get("session"),
        tags=dict(body.get("tags") or {}),
        fetch=FetchPolicy(
            origins=tuple(settings.allow_fetch),
            max_bytes=min(settings.max_fetch_bytes, FETCH_BODY_LIMIT),
            max_requests=settings.max_fetch_requests,
        ),
        tools=ToolLimits(
            max_calls=settings.max_tool_calls if max_tool_calls is None else max_tool_calls,
            call_timeout=float(settings.tool_call_timeout_secs),
            max_result_bytes=settings.tool_result_max_bytes,
        ),
        tenant=tenant,
    )


_NAME = Text(1024)  # a session, a tag's key or value: 256 characters of up to 4 UTF-8 bytes
_SPEC_V1_FIELDS = {
    "version": Integer(1, 1),
    "code": Text(CODE_LIMIT),
    "language": OneOf(frozenset({"auto", "javascript", "typescript"})),
    "filename": Text(4096, nullable=True),
    "heap": Text(64, pattern="[0-9a-f]{64}", nullable=True),
    "snapshot": Flag(),
    "limits": Record(
        {
            "heap_limit_mb": Integer(1, 1 << 20),
            "timeout_secs": Number(0, 86400 * 366),
            "max_result_bytes": Integer(1, RESULT_LIMIT),
            "max_output_bytes": Integer(0, 1 << 50),
        }
    ),
    "session": Text(1024, nullable=True),
    "tags": TextMap(64, _NAME, _NAME),
    "fetch": Record(
        {
            "origins": TextList(256, Text(2048)),
            "max_bytes": Integer(1, 1 << 50),
            "max_requests": Integer(1, 1 << 31),
        }
    ),
}
SPEC_V1_SCHEMA = Record(_SPEC_V1_FIELDS)
_LIMITS_V1 = _SPEC_V1_FIELDS["limits"]
assert isinstance(_LIMITS_V1, Record)
SPEC_V2_SCHEMA = Record(
    {
        **_SPEC_V1_FIELDS,
        "version": Integer(2, 2),
        "limits": Record({**_LIMITS_V1.fields, "wall_timeout_secs": Number(0, 86400 * 366, nullable=True)}),
        "tools": Record(
            {
                "max_calls": Integer(0, 1 << 31),
                "call_timeout_secs": Number(0.001, 86400 * 366),
                "max_result_bytes": Integer(1, TOOL_ANSWER_LIMIT),
            }
        ),
    }
)
SPEC_SCHEMA = Record(
    {
        **SPEC_V2_SCHEMA.fields,
        "version": Integer(SPEC_VERSION, SPEC_VERSION),
        "tenant": Text(64, pattern=TENANT_PATTERN.pattern),
    }
)
"""The spec's wire form, version 3 (what :func:`spec_to_wire` makes). A change is a new version,
and :func:`spec_from_wire` goes on reading the versions a running release may meet: version 2
(:data:`SPEC_V2_SCHEMA`, without ``tenant``: the default tenant's) and version 1
(:data:`SPEC_V1_SCHEMA`, without ``tools`` either, whose limits are then the defaults, nor
``limits.wall_timeout_secs``: its run time is then its whole time, as that version meant)."""
_SCHEMAS = {1: SPEC_V1_SCHEMA, 2: SPEC_V2_SCHEMA, SPEC_VERSION: SPEC_SCHEMA}


def spec_to_wire(spec: ExecutionSpec, *, check: bool = True) -> dict[str, Any]:
    """The spec as a map of plain values, with its version: the one serialisation of a spec, for
    the shared queue (as JSON) and the worker channel (as msgpack). Raises :class:`SchemaError`
    when a field is out of its bounds (code above ``CODE_LIMIT``, too many tags...), unless
    ``check`` is false (the caller checks the map itself)."""
    limits, fetch, tools = spec.limits, spec.fetch, spec.tools
    wire = {
        "version": SPEC_VERSION,
        "code": spec.code,
        "language": spec.language,
        "filename": spec.filename,
        "heap": spec.heap,
        "snapshot": spec.snapshot,
        "limits": {
            "heap_limit_mb": limits.heap_limit_mb,
            "timeout_secs": limits.timeout_secs,
            "max_result_bytes": limits.max_result_bytes,
            "max_output_bytes": limits.max_output_bytes,
            "wall_timeout_secs": limits.wall_timeout_secs,
        },
        "session": spec.session,
        "tags": dict(spec.tags),
        "fetch": {
            "origins": list(fetch.origins),
            "max_bytes": fetch.max_bytes,
            "max_requests": fetch.max_requests,
        },
        "tools": {
            "max_calls": tools.max_calls,
            "call_timeout_secs": tools.call_timeout,
            "max_result_bytes": tools.max_result_bytes,
        },
        "tenant": spec.tenant,
    }
    if check:
        SPEC_SCHEMA.check(wire, "spec")
    return wire


def check_spec_wire(wire: Any) -> None:
    """Raises :class:`SchemaError` unless ``wire`` is a spec's wire form of a version this release
    reads (an unknown or missing field, a wrong type or size are refused)."""
    version = wire.get("version") if type(wire) is dict else SPEC_VERSION
    schema = _SCHEMAS.get(version) if type(version) is int else None
    if schema is None:
        raise SchemaError(f"spec.version {str(version)[:20]} is not one this release reads")
    schema.check(wire, "spec")


def spec_from_wire(wire: Any, *, checked: bool = False) -> ExecutionSpec:
    """The spec :func:`spec_to_wire` made (``checked``: :func:`check_spec_wire` passed already).
    Raises :class:`SchemaError` for anything else."""
    if not checked:
        check_spec_wire(wire)
    limits, fetch, tools = wire["limits"], wire["fetch"], wire.get("tools")
    return ExecutionSpec(
        code=wire["code"],
        language=wire["language"],
        filename=wire["filename"],
        heap=wire["heap"],
        snapshot=wire["snapshot"],
        limits=Limits(
            heap_limit_mb=limits["heap_limit_mb"],
            timeout_secs=float(limits["timeout_secs"]),
            max_result_bytes=limits["max_result_bytes"],
            max_output_bytes=limits["max_output_bytes"],
            wall_timeout_secs=None
            if limits.get("wall_timeout_secs") is None
            else float(limits["wall_timeout_secs"]),
        ),
        session=wire["session"],
        tags=dict(wire["tags"]),
        fetch=FetchPolicy(
            origins=tuple(fetch["origins"]),
            max_bytes=fetch["max_bytes"],
            max_requests=fetch["max_requests"],
        ),
        tools=ToolLimits()
        if tools is None  # version 1
        else ToolLimits(
            max_calls=tools["max_calls"],
            call_timeout=float(tools["call_timeout_secs"]),
            max_result_bytes=tools["max_result_bytes"],
        ),
        tenant=wire.get("tenant", DEFAULT_TENANT),  # versions 1 and 2: the default tenant's
    )
