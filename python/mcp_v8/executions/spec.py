"""One execution as the service runs it: :class:`ExecutionSpec`, built once from the request and
the server's settings (:func:`spec_from_request`), then carried unchanged: to the execution
record, through the queue (the local one holds the object; the shared PostgreSQL queue holds
:func:`spec_to_wire`'s form, read back by :func:`spec_from_wire`), to a worker over its channel
(the same form inside a ``run`` message, :mod:`.protocol`), and in the worker to the engine.

A request sets the code, the heap to resume, whether to snapshot, the heap cap and timeout, the
session and the tags; the server fills in the rest from its settings: the defaults of what the
request left out, the result and output caps, and the fetch policy, which no request can set.
``language`` and ``filename`` are the engine's (``auto``, none); no request field sets them yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

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
SPEC_VERSION = 1
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


@dataclass(frozen=True)
class Limits:
    """The execution's caps: V8 heap (MB), run time (seconds), the JSON result (bytes: a larger
    one fails the execution) and the console output a worker ships (bytes: the server's output
    log stores its truncation marker past it)."""

    heap_limit_mb: int
    timeout_secs: float
    max_result_bytes: int
    max_output_bytes: int


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

    @property
    def code_bytes(self) -> int:
        return len(self.code.encode("utf-8", "surrogatepass"))

    @property
    def mode(self) -> str:
        """Its ``mode`` in the metrics (:data:`mcp_v8.metrics.MODES`)."""
        return "snapshot" if self.snapshot else "no_snapshot"


def spec_from_request(body: Mapping[str, Any], settings: Settings) -> ExecutionSpec:
    """The spec of an ExecRequest (``body``, validated against the contract by the door), with
    what the server decides filled in from ``settings``."""
    snapshot = body.get("snapshot")
    # 0 ("no cap") and anything above the channel's limit are the channel's limit: the engine
    # then refuses a larger result itself, with its own error, instead of the worker.
    max_result = settings.max_result_bytes
    return ExecutionSpec(
        code=body["code"],
        heap=body.get("heap"),
        snapshot=settings.snapshot_default if snapshot is None else snapshot,
        limits=Limits(
            heap_limit_mb=body.get("heap_memory_max_mb") or settings.default_heap_mb,
            timeout_secs=float(body.get("execution_timeout_secs") or settings.default_timeout_secs),
            max_result_bytes=max_result if 0 < max_result <= RESULT_LIMIT else RESULT_LIMIT,
            max_output_bytes=settings.max_output_bytes,
        ),
        session=body.get("session"),
        tags=dict(body.get("tags") or {}),
        fetch=FetchPolicy(
            origins=tuple(settings.allow_fetch),
            max_bytes=min(settings.max_fetch_bytes, FETCH_BODY_LIMIT),
            max_requests=settings.max_fetch_requests,
        ),
    )


_NAME = Text(1024)  # a session, a tag's key or value: 256 characters of up to 4 UTF-8 bytes
SPEC_SCHEMA = Record(
    {
        "version": Integer(SPEC_VERSION, SPEC_VERSION),
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
)
"""The spec's wire form, version 1 (what :func:`spec_to_wire` makes). A change is a new version,
and :func:`spec_from_wire` goes on reading the versions a running release may meet."""


def spec_to_wire(spec: ExecutionSpec, *, check: bool = True) -> dict[str, Any]:
    """The spec as a map of plain values, with its version: the one serialisation of a spec, for
    the shared queue (as JSON) and the worker channel (as msgpack). Raises :class:`SchemaError`
    when a field is out of its bounds (code above ``CODE_LIMIT``, too many tags...), unless
    ``check`` is false (the caller checks the map itself)."""
    limits, fetch = spec.limits, spec.fetch
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
        },
        "session": spec.session,
        "tags": dict(spec.tags),
        "fetch": {
            "origins": list(fetch.origins),
            "max_bytes": fetch.max_bytes,
            "max_requests": fetch.max_requests,
        },
    }
    if check:
        SPEC_SCHEMA.check(wire, "spec")
    return wire


def check_spec_wire(wire: Any) -> None:
    """Raises :class:`SchemaError` unless ``wire`` is a spec's wire form of a version this release
    reads (an unknown or missing field, a wrong type or size are refused)."""
    if type(wire) is dict and wire.get("version") != SPEC_VERSION:
        raise SchemaError(f"spec.version {str(wire.get('version'))[:20]} is not one this release reads")
    SPEC_SCHEMA.check(wire, "spec")


def spec_from_wire(wire: Any, *, checked: bool = False) -> ExecutionSpec:
    """The spec :func:`spec_to_wire` made (``checked``: :func:`check_spec_wire` passed already).
    Raises :class:`SchemaError` for anything else."""
    if not checked:
        check_spec_wire(wire)
    limits, fetch = wire["limits"], wire["fetch"]
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
        ),
        session=wire["session"],
        tags=dict(wire["tags"]),
        fetch=FetchPolicy(
            origins=tuple(fetch["origins"]),
            max_bytes=fetch["max_bytes"],
            max_requests=fetch["max_requests"],
        ),
    )
