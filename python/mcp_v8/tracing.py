"""OpenTelemetry traces of executions, exported over OTLP/HTTP (``--otlp-endpoint`` or the
standard ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT`` variables), with
the official SDK and exporter (the ``mcp-v8[otel]`` extra).

Off by default, and then free: :data:`OFF` does nothing, and nothing of ``opentelemetry`` is
imported. On, each service has a :class:`Tracer` with a tracer provider of its own (never the
SDK's global one, so several services in one process trace apart) and a batch processor whose
thread exports in the background.

One trace per execution: its root span ``mcp_v8.execution`` (from its submit to its end) is a
child of the caller's span when the request carried a W3C ``traceparent`` (REST: the header; MCP:
``params._meta.traceparent`` of ``tools/call``), and the root of a new trace otherwise. Its
children: ``mcp_v8.submit`` (accepting it: the record written, queued), ``mcp_v8.queue`` (the wait
for a worker), ``mcp_v8.worker`` (the worker's run: its own spans, sent over its channel as a
``spans`` message, become its children ``mcp_v8.worker.<name>``, or children of an earlier one
the span names (the engine's phases under ``execute``), their names, counts and times bounded by
the channel's schema and their times clamped into their parent's), ``mcp_v8.store`` (the heap
it produced, published), ``mcp_v8.fetch`` and ``mcp_v8.tool_call`` (each call the server made for
the script) and ``mcp_v8.long_poll`` (each wait of a client for its end). On the nodes of a
database, the node that accepts an execution begins its root and ends it when it hears of its
end; the node that claims it joins the root's context, carried with the job, and its spans hang
under that root. Spans are recorded where
their phase is known, with explicit parents, never through the thread's current context: the
phases of one execution happen on several threads.
"""

from __future__ import annotations

import collections
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

__all__ = ["OFF", "TRACEPARENT", "Tracer", "Tracing", "endpoint_from", "parse_traceparent"]

TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
ENDED_KEPT = 4096  # ended executions whose root a later long-poll may still hang under
TRACES_PATH = "/v1/traces"
PREFIX = "mcp_v8."


def parse_traceparent(value: object) -> tuple[int, int, int] | None:
    """``(trace_id, span_id, flags)`` of a W3C ``traceparent`` value; None when it is not one (the
    specification's rule: an invalid header is ignored, never an error)."""
    if not isinstance(value, str) or len(value) > 512:
        return None
    match = TRACEPARENT.match(value.strip().lower())
    if match is None:
        return None
    version, trace_id, span_id, flags = match.groups()
    if version == "ff" or (version == "00" and len(value.strip()) != 55):
        return None
    if int(trace_id, 16) == 0 or int(span_id, 16) == 0:
        return None
    return int(trace_id, 16), int(span_id, 16), int(flags, 16)


def endpoint_from(setting: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """Where spans go: ``--otlp-endpoint`` (a collector's base URL, spans to its ``/v1/traces``),
    else ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (as it is), else ``OTEL_EXPORTER_OTLP_ENDPOINT``
    (a base URL); None: traces are off."""
    env = os.environ if environ is None else environ
    if setting:
        return _traces_url(setting)
    traces = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if traces:
        return traces
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return _traces_url(base) if base else None


def _traces_url(base: str) -> str:
    base = base.strip()
    return base if base.rstrip("/").endswith(TRACES_PATH) else base.rstrip("/") + TRACES_PATH


class Tracing:
    """Traces off (:data:`OFF`): every method does nothing."""

    enabled = False

    def begin(
        self,
        execution_id: str,
        traceparent: str | None,
        attributes: Mapping[str, Any],
        start_ns: int | None = None,
    ) -> str | None:
        """Starts the trace of ``execution_id`` (its root at ``start_ns``, default now); returns its
        trace id (32 hex digits) or None."""
        return None

    def trace_id(self, execution_id: str) -> str | None:
        return None

    def traceparent(self, execution_id: str) -> str | None:
        """The W3C ``traceparent`` of the execution's root span (for another node to join), or
        None."""
        return None

    def join(self, execution_id: str, traceparent: str | None) -> None:
        """The execution's spans here hang under ``traceparent`` (its root span, begun on the
        node that accepted it), unless its root is here already; an invalid one is ignored."""

    def live(self, execution_id: str) -> bool:
        """Whether the execution's root span is begun here and not ended."""
        return False

    @contextmanager
    def span(
        self, execution_id: str, name: str, attributes: Mapping[str, Any] | None = None
    ) -> Iterator[None]:
        yield

    def record(
        self,
        execution_id: str,
        name: str,
        start_ns: int,
        end_ns: int,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        """A span of ``execution_id``'s trace that happened between the two times (``time_ns``)."""

    def worker(
        self,
        execution_id: str,
        start_ns: int,
        end_ns: int,
        spans: Sequence[Any],
        attributes: Mapping[str, Any],
    ) -> None:
        """The worker's run, and the spans the worker sent (``.protocol.WorkerSpan``) as its children."""

    def end(self, execution_id: str, attributes: Mapping[str, Any]) -> None:
        """Ends the execution's root span."""

    def flush(self, timeout_secs: float = 30.0) -> bool:
        """Exports the spans ended so far; False when that did not finish within the timeout."""
        return True

    def close(self) -> None:
        """Exports what is left and stops the exporter's thread."""


OFF = Tracing()


class Tracer(Tracing):
    """Traces on: spans of each execution, exported to ``endpoint`` (OTLP/HTTP, protobuf).
    ``resource`` names this process (``service.name`` and the like)."""

    enabled = True

    def __init__(self, endpoint: str, resource: Mapping[str, str] | None = None) -> None:
        # Imported here: without --otlp-endpoint nothing of opentelemetry is loaded.
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self._trace = trace
        self.endpoint = endpoint
        self._provider = TracerProvider(
            resource=Resource.create({"service.name": "mcp-v8", **(resource or {})})
        )
        self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        self._tracer = self._provider.get_tracer("mcp_v8")
        # Under _lock: the root span of each execution being traced, and the contexts of those
        # that ended (the latest ENDED_KEPT), for the long-polls that come after the end.
        self._lock = threading.Lock()
        self._live: dict[str, Any] = {}
        self._ended: collections.OrderedDict[str, Any] = collections.OrderedDict()

    def _parent(self, execution_id: str) -> Any:
        """The context the execution's spans hang under (None: it is not traced here)."""
        with self._lock:
            root = self._live.get(execution_id)
            if root is not None:
                return self._trace.set_span_in_context(root)
            ended = self._ended.get(execution_id)
        return None if ended is None else self._trace.set_span_in_context(self._trace.NonRecordingSpan(ended))

    def begin(
        self,
        execution_id: str,
        traceparent: str | None,
        attributes: Mapping[str, Any],
        start_ns: int | None = None,
    ) -> str | None:
        trace = self._trace
        context = None
        caller = parse_traceparent(traceparent)
        if caller is not None:
            trace_id, span_id, flags = caller
            remote = trace.SpanContext(
                trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(flags & 1)
            )
            context = trace.set_span_in_context(trace.NonRecordingSpan(remote))
        attrs = {PREFIX + "execution.id": execution_id, **_attributes(attributes)}
        root = self._tracer.start_span(
            PREFIX + "execution", context=context, attributes=attrs, start_time=start_ns
        )
        with self._lock:
            self._live[execution_id] = root
        return format(root.get_span_context().trace_id, "032x")

    def trace_id(self, execution_id: str) -> str | None:
        context = self._parent(execution_id)
        if context is None:
            return None
        return format(self._trace.get_current_span(context).get_span_context().trace_id, "032x")

    def traceparent(self, execution_id: str) -> str | None:
        context = self._parent(execution_id)
        if context is None:
            return None
        span = self._trace.get_current_span(context).get_span_context()
        return f"00-{span.trace_id:032x}-{span.span_id:016x}-{int(span.trace_flags) & 1:02x}"

    def join(self, execution_id: str, traceparent: str | None) -> None:
        root = parse_traceparent(traceparent)
        if root is None:
            return
        trace = self._trace
        trace_id, span_id, flags = root
        remote = trace.SpanContext(trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(flags & 1))
        with self._lock:  # ending it here ends nothing: its node ends it
            self._live.setdefault(execution_id, trace.NonRecordingSpan(remote))

    def live(self, execution_id: str) -> bool:
        with self._lock:
            root = self._live.get(execution_id)
        return root is not None and root.is_recording()

    @contextmanager
    def span(
        self, execution_id: str, name: str, attributes: Mapping[str, Any] | None = None
    ) -> Iterator[None]:
        parent = self._parent(execution_id)
        if parent is None:
            yield
            return
        span = self._tracer.start_span(
            PREFIX + name, context=parent, attributes=_attributes(attributes or {})
        )
        try:
            yield
        finally:
            span.end()

    def record(
        self,
        execution_id: str,
        name: str,
        start_ns: int,
        end_ns: int,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        parent = self._parent(execution_id)
        if parent is None:
            return
        span = self._tracer.start_span(
            PREFIX + name, context=parent, attributes=_attributes(attributes or {}), start_time=start_ns
        )
        span.end(end_time=max(start_ns, end_ns))

    def worker(
        self,
        execution_id: str,
        start_ns: int,
        end_ns: int,
        spans: Sequence[Any],
        attributes: Mapping[str, Any],
    ) -> None:
        parent = self._parent(execution_id)
        if parent is None:
            return
        run = self._tracer.start_span(
            PREFIX + "worker", context=parent, attributes=_attributes(attributes), start_time=start_ns
        )
        end_ns = max(start_ns, end_ns)
        # The worker's word: each span hangs under an earlier one it names, else under the run,
        # and its times are kept within its parent's (the run's as the server saw it).
        made: list[tuple[Any, int, int]] = []
        for s in spans:
            parent, low, high = run, start_ns, end_ns
            if isinstance(s.parent, int) and 0 <= s.parent < len(made):
                parent, low, high = made[s.parent]
            begin = min(max(s.start_ns, low), high)
            finish = min(max(s.end_ns, begin), high)
            attrs = {PREFIX + "worker." + k: v for k, v in s.attributes.items()}
            child = self._tracer.start_span(
                PREFIX + "worker." + s.name,
                context=self._trace.set_span_in_context(parent),
                attributes=attrs,
                start_time=begin,
            )
            made.append((child, begin, finish))
        for child, _, finish in made:
            child.end(end_time=finish)
        run.end(end_time=end_ns)

    def end(self, execution_id: str, attributes: Mapping[str, Any]) -> None:
        with self._lock:
            root = self._live.pop(execution_id, None)
            if root is None:
                return
            self._ended[execution_id] = root.get_span_context()
            while len(self._ended) > ENDED_KEPT:
                self._ended.popitem(last=False)
        root.set_attributes(_attributes(attributes))
        root.end()

    def flush(self, timeout_secs: float = 30.0) -> bool:
        return bool(self._provider.force_flush(int(timeout_secs * 1000)))

    def close(self) -> None:
        with self._lock:
            live = list(self._live.values())
            self._live.clear()
        for root in live:  # the server stops under them: what they did so far is exported
            root.end()
        self._provider.shutdown()


def _attributes(values: Mapping[str, Any]) -> dict[str, Any]:
    """Span attributes under the project's prefix, without the unset ones."""
    return {(k if k.startswith(PREFIX) else PREFIX + k): v for k, v in values.items() if v is not None}


def now_ns() -> int:
    return time.time_ns()
