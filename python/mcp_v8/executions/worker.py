"""Worker process main: hosts one V8 engine and runs one execution at a time.

A reader thread receives jobs and cancels, so a cancel reaches a job that is queued in
the worker or running; a flusher thread sends console output in batches (at most
``FLUSH_SECONDS`` after a line, or at ``FLUSH_BYTES``), so a console flood costs a few
messages, not one per line; it sleeps while there is no output. Whatever V8 does to this
process (a fatal out-of-memory abort, a signal), the server sees the pipe close and fails
only this worker's execution.

The worker opens no store: the heap a job restores comes with its ``run`` as a read-only
descriptor of bytes the server verified, and the heap it produces (none when the job asks for
no snapshot) goes back with its ``done`` as a ``memfd`` (:mod:`.heap_fds`), which the server
checks and publishes. Everything else about a job comes with its spec (limits);
the command line names only the channel, the sandbox's mode and its limits (never a secret),
and the environment is the server's short allow-list (:func:`.sandbox.worker_environment`).
The walls (:mod:`.sandbox`) go up first, before V8 or any thread starts; the ``ready`` message
says which hold. The worker makes no connection: the calls of a script's ``fetch`` go to the
server as ``fetch`` messages (:class:`_Fetches`), the server makes the requests under the fetch
policy of the spec it sent, and its ``fetch_reply`` answers them. The script's tool calls go
the same way (``tool_call``, :class:`_Tools`): the server makes them, the worker holds no tool
credentials. What it sends fits the
channel's schema
(:mod:`.protocol`): output in chunks, error texts cut to their limit, and an outcome that
still cannot be sent is replaced by a failure that says why.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from ..engine import Engine, set_jitless
from ..errors import EngineError, SnapshotError
from ..js_error import JsError
from ..local_tools import TOOL_CALL
from ..storage import PendingToolCall
from ..tool_answers import error_answer, held_answer
from . import sandbox
from .channel import Channel
from .heap_fds import HeapFdError, heap_memfd, read_heap
from .protocol import (
    ERROR_LIMIT,
    OUTPUT_CHUNK,
    Cancel,
    Close,
    Closed,
    Done,
    Ended,
    FetchCall,
    FetchReply,
    Job,
    JobResult,
    LiveCommand,
    Open,
    Opened,
    Output,
    ProtocolError,
    Ready,
    SessionHeap,
    Snapshot,
    Spans,
    Step,
    Stop,
    ToolCall,
    ToolReply,
    Undeliverable,
    WorkerSpan,
    encode,
)
from .spec import RESULT_LIMIT, Limits

FLUSH_SECONDS = 0.02
FLUSH_BYTES = 64 * 1024

# glibc's mallopt parameters, and what the worker sets them to (see _keep_freed_memory).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 8 << 20
TRIM_THRESHOLD_BYTES = 16 << 20


def _keep_freed_memory() -> bool:
    """Lets glibc keep memory freed by one execution for the next; returns whether it did.

    Every execution allocates and frees the same blob-sized buffers (V8's serializer and
    the snapshot it writes, the restored heap). With glibc's defaults those are mmap'd or
    given back to the kernel when freed, and fault back in, zeroed, on the next execution:
    about 500 page faults, a tenth of the CPU of a snapshot execution. Fixed thresholds
    keep them on the heap: blocks under ``MMAP_THRESHOLD_BYTES`` come from the heap, and up
    to ``TRIM_THRESHOLD_BYTES`` of free memory at its top stays mapped. Process-wide, so it
    is done here, in the worker's own process, and never by the engine library."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )


def _utf8_size(text: str) -> int:
    """The size of ``text`` as the server's output log stores it: UTF-8 bytes, a lone
    surrogate as one ``?`` (``str.isascii`` is O(1), so ASCII costs no encoding)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "replace"))


def _chunks(text: str, limit: int = OUTPUT_CHUNK) -> list[str]:
    """``text`` as the server's output log stores it (a lone surrogate as ``?``), in pieces of
    at most ``limit`` UTF-8 bytes that never split a character."""
    if text.isascii():
        return [text[i : i + limit] for i in range(0, len(text), limit)]
    data = text.encode("utf-8", "replace")
    pieces, start = [], 0
    while start < len(data):
        end = min(start + limit, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:  # not inside a character
            end -= 1
        pieces.append(data[start:end].decode("utf-8"))
        start = end
    return pieces


def _cut(text: str | None, limit: int = ERROR_LIMIT) -> str | None:
    """``text`` within ``limit`` UTF-8 bytes: cut at a character, with a note of what went."""
    if text is None or len(text) * 4 <= limit:
        return text
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    note = f"... ({len(data)} bytes, cut to {limit})"
    return data[: limit - len(note)].decode("utf-8", "ignore") + note


def fit(result: JobResult) -> JobResult:
    """``result`` as the channel can carry it: error texts within ``ERROR_LIMIT``, a result
    within ``RESULT_LIMIT`` (the engine's cap keeps it so; a larger one fails the job)."""
    if result.result is not None and len(result.result) * 4 > RESULT_LIMIT:
        size = len(result.result.encode("utf-8", "replace"))
        if size > RESULT_LIMIT:
            return JobResult(
                status="failed",
                error=f"the result is {size} bytes, more than the {RESULT_LIMIT} a worker may send",
                duration_ms=result.duration_ms,
            )
    js = result.js_error
    if js is not None:
        js = JsError(
            name=_cut(js.name, 4096),
            message=_cut(js.message) or "",
            stack=_cut(js.stack) or "",
            line=js.line,
            column=js.column,
        )
    return dataclasses.replace(result, error=_cut(result.error), js_error=js)


class _Output:
    """Console output of the current job, flushed to the server in batches. Sizes are
    UTF-8 bytes, the unit of the server's cap: once more than ``max_bytes`` are sent, the
    server has stored its truncation marker and the rest is dropped here."""

    def __init__(self, send: Any, max_bytes: int) -> None:
        self._send = send
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._parts: list[str] = []
        self._size = 0
        self._sent_total = 0
        self._id: str | None = None
        self._pending = threading.Event()  # output is waiting: the flusher's batch starts
        self._wake = threading.Event()  # FLUSH_BYTES are waiting: the batch ends now

    def start(self, execution_id: str, max_bytes: int | None = None) -> None:
        """Starts the output of ``execution_id``, shipped up to ``max_bytes`` (the spec's
        ``max_output_bytes``; None: as before)."""
        with self._lock:
            self._id, self._parts, self._size, self._sent_total = execution_id, [], 0, 0
            if max_bytes is not None:
                self._max_bytes = max_bytes

    def write(self, level: str, text: str) -> None:
        line = (text if level == "log" else f"[{level}] {text}") + "\n"
        with self._lock:
            if self._sent_total + self._size > self._max_bytes:
                return  # the server stores a truncation marker; no need to ship more
            if not self._parts:
                self._pending.set()
            self._parts.append(line)
            self._size += _utf8_size(line)
            if self._size >= FLUSH_BYTES:
                self._wake.set()

    def flush(self) -> None:
        # Sent under the lock: a batch taken by the flusher thread is on the pipe before
        # a later flush returns, so output always precedes the job's "done".
        with self._lock:
            if not self._parts or self._id is None:
                return
            text, self._parts = "".join(self._parts), []
            self._sent_total += self._size
            self._size = 0
            for piece in _chunks(text):
                self._send(Output(self._id, piece))

    def run_flusher(self) -> None:
        while True:
            self._pending.wait()  # no output, no wake-ups: an idle worker sleeps
            self._wake.wait(FLUSH_SECONDS)
            self._wake.clear()
            # Cleared before the flush: a line written after it sets it again, one written
            # before goes out with this batch.
            self._pending.clear()
            self.flush()


class _Phases:
    """The spans of one job's phases in this worker (``--trace``), sent to the server before its
    ``done``: ``heap_read`` (the heap to restore, read from its descriptor), ``execute`` (the
    engine) with the engine's own phases as its children (``transpile``, ``restore``,
    ``evaluate``, ``run``, ``snapshot``: ``Outcome.phases``), and ``heap_write`` (the snapshot
    copied into the descriptor that goes back)."""

    def __init__(self) -> None:
        self.spans: list[WorkerSpan] = []
        self._inner: list[list[WorkerSpan]] = []  # the children of each phase being timed

    @contextlib.contextmanager
    def phase(self, name: str, **attributes: str) -> Iterator[dict[str, str]]:
        """Times the block; the block may add attributes to the map it gets."""
        start = time.time_ns()
        inner: list[WorkerSpan] = []
        self._inner.append(inner)
        try:
            yield attributes
        finally:
            self._inner.pop()
            parent = len(self.spans)
            self.spans.append(WorkerSpan(name, start, time.time_ns(), attributes))
            self.spans.extend(dataclasses.replace(s, parent=parent) for s in inner)

    def engine(self, phases: Sequence[tuple[str, int, int]]) -> None:
        """The engine's phases of a run (``Outcome.phases``: ``time.monotonic_ns()`` readings)
        as children of the phase being timed, on the clock of spans."""
        if not self._inner:
            return
        offset = time.time_ns() - time.monotonic_ns()
        self._inner[-1].extend(WorkerSpan(name, start + offset, end + offset) for name, start, end in phases)

    def send(self, conn: Channel, execution_id: str) -> None:
        with contextlib.suppress(Undeliverable):  # never, at these sizes: the job's outcome matters more
            conn.send(Spans(execution_id, tuple(self.spans)))


@contextlib.contextmanager
def _phase(phases: _Phases | None, name: str) -> Iterator[dict[str, str]]:
    if phases is None:
        yield {}
    else:
        with phases.phase(name) as attributes:
            yield attributes


def _engine_phases(phases: _Phases | None, outcome: Any) -> None:
    """The engine's phases of ``outcome``, inside the phase being timed (when traced)."""
    if phases is not None:
        phases.engine(outcome.phases)


class _Fetches:
    """The fetch relays of the jobs in this worker: a job's calls of ``fetch`` go to the server
    as ``fetch`` messages, and the server's ``fetch_reply`` answers them. A reply for a job that
    has ended (or never ran here) is dropped."""

    def __init__(self, send: Any) -> None:
        self._send = send
        self._lock = threading.Lock()
        self._relays: dict[str, Any] = {}

    def start(self, execution_id: str) -> Any:
        """The relay of ``execution_id``'s execution (for ``Engine.execute``)."""
        from .. import _engine

        def on_call(call_id: int, args: str, body: bytes | None) -> None:
            try:
                self._send(FetchCall(execution_id, call_id, args, body))
            except Undeliverable as e:  # nothing was sent: the call fails, the job goes on
                refusal = {"name": "TypeError", "message": f"fetch refused: {e}"}
                relay.reply(call_id, False, json.dumps(refusal))

        relay = _engine.FetchRelay(on_call)
        with self._lock:
            self._relays[execution_id] = relay
        return relay

    def finish(self, execution_id: str) -> None:
        with self._lock:
            self._relays.pop(execution_id, None)

    def deliver(self, reply: FetchReply) -> bool:
        """Hands ``reply`` to its job's run; False when it was dropped (no such job running)."""
        with self._lock:
            relay = self._relays.get(reply.execution_id)
        if relay is None:  # its job is over, or was never here
            return False
        return bool(relay.reply(reply.call_id, reply.ok, reply.head, reply.body))


class _ScriptClock:
    """The script's own running time in a job whose wall limit is above its timeout: the engine
    runs under the wall limit, and this clock cancels the run (``expired``) once the time it spent
    with no tool call outstanding reaches its timeout. ``calls(n)`` says how many are outstanding.
    Its thread waits while a call is outstanding and wakes on each change."""

    def __init__(self, timeout: float, control: Any) -> None:
        self._timeout = timeout
        self._control = control
        self._cond = threading.Condition()
        self._outstanding = 0
        self._since: float | None = None  # when the current wait on tools began
        self._waited = 0.0
        self._started = time.monotonic()
        self._stopped = False
        self.expired = False
        threading.Thread(target=self._run, daemon=True, name="mcp-v8-script-clock").start()

    def calls(self, delta: int) -> None:
        with self._cond:
            before = self._outstanding
            self._outstanding += delta
            now = time.monotonic()
            if before == 0 and self._outstanding > 0:
                self._since = now
            elif before > 0 and self._outstanding == 0 and self._since is not None:
                self._waited += now - self._since
                self._since = None
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def _run(self) -> None:
        with self._cond:
            while not self._stopped:
                if self._outstanding > 0:
                    self._cond.wait()
                    continue
                left = self._started + self._timeout + self._waited - time.monotonic()
                if left <= 0:
                    self.expired = True
                    break
                self._cond.wait(left)
            else:
                return
        self._control.cancel()


class _Tools:
    """The tool relays of the jobs in this worker: a job's tool calls go to the server as
    ``tool_call`` messages, named by the script's own call id, and the server's ``tool_reply``
    answers them. A reply for a call that is not waited for (its job has ended or never ran
    here, or it was answered) is dropped. A call answered ``{"held": true}`` stays pending in
    the script: it is kept, as its ``tool_call`` said, for the job's ``done`` to name when the
    script pauses on it."""

    def __init__(self, send: Any) -> None:
        self._send = send
        self._lock = threading.Lock()
        # execution id -> (its relay, the calls waited for: script's call id -> host call id,
        # the calls held: script's call id -> the call)
        self._jobs: dict[str, tuple[Any, dict[int, int], dict[int, ToolCall]]] = {}
        self._calls: dict[tuple[str, int], ToolCall] = {}  # the calls waited for, as sent
        self._clocks: dict[str, _ScriptClock] = {}

    def start(self, execution_id: str, clock: _ScriptClock | None = None, make_relay: Any = None) -> Any:
        """The relay of ``execution_id``'s execution (for ``Engine.execute``); ``clock`` hears
        how many of its calls are outstanding. ``make_relay(on_call)``: the relay (an object
        with ``reply(host_id, answer)``), the engine's ``ToolRelay`` unless given."""
        from .. import _engine

        waiting: dict[int, int] = {}
        if clock is not None:
            self._clocks[execution_id] = clock
        held: dict[int, ToolCall] = {}

        def on_call(host_id: int, request_json: str) -> None:
            try:
                request = json.loads(request_json)
                call = ToolCall(
                    execution_id, request["call_id"], request["server"], request["tool"], request["arguments"]
                )
            except (ValueError, KeyError, TypeError):  # web.js makes it: never, unless broken
                relay.reply(host_id, error_answer("TypeError", "tool call refused: a malformed call"))
                return
            with self._lock:
                if call.call_id in waiting:
                    duplicate = True
                else:
                    duplicate = False
                    waiting[call.call_id] = host_id
                    self._calls[execution_id, call.call_id] = call
            if duplicate:
                relay.reply(
                    host_id, error_answer("TypeError", f"tool call refused: call {call.call_id} came twice")
                )
                return
            if clock is not None:
                clock.calls(+1)  # before the call leaves: its reply cannot come first
            try:
                self._send(call)
            except Undeliverable as e:  # nothing was sent: the call fails, the job goes on
                with self._lock:
                    waiting.pop(call.call_id, None)
                    self._calls.pop((execution_id, call.call_id), None)
                if clock is not None:
                    clock.calls(-1)
                relay.reply(host_id, error_answer("TypeError", f"tool call refused: {e}"[:4096]))

        relay = (make_relay or _engine.ToolRelay)(on_call)
        with self._lock:
            self._jobs[execution_id] = (relay, waiting, held)
        return relay

    def finish(self, execution_id: str) -> tuple[PendingToolCall, ...]:
        """Ends the job's relay; returns the calls held in it, by call id."""
        with self._lock:
            job = self._jobs.pop(execution_id, None)
            self._clocks.pop(execution_id, None)
            for key in [k for k in self._calls if k[0] == execution_id]:
                del self._calls[key]
        if job is None:
            return ()
        return tuple(
            PendingToolCall(c.call_id, c.server, c.tool, c.arguments) for _, c in sorted(job[2].items())
        )

    def deliver(self, reply: ToolReply) -> bool:
        """Hands ``reply`` to its job's run; False when it was dropped."""
        with self._lock:
            job = self._jobs.get(reply.execution_id)
            host_id = None if job is None else job[1].pop(reply.call_id, None)
            clock = self._clocks.get(reply.execution_id) if host_id is not None else None
            call = self._calls.pop((reply.execution_id, reply.call_id), None)
            if job is not None and host_id is not None and call is not None and reply.answer == _HELD:
                job[2][reply.call_id] = call
        if job is None or host_id is None:
            return False
        delivered = bool(job[0].reply(host_id, reply.answer))
        if clock is not None:
            clock.calls(-1)  # after the reply is the script's: its time runs again
        return delivered


_HELD = held_answer()
# The server sends at most what it verified; this bounds a descriptor that is not what it says.
_HEAP_READ_LIMIT = 1 << 40


def _run(
    engine: Engine,
    job: Job,
    control: Any,
    output: _Output,
    relay: Any = None,
    tool_relay: Any = None,
    clock: _ScriptClock | None = None,
    phases: _Phases | None = None,
) -> tuple[JobResult, bytes | None]:
    """Runs ``job``: its result, and the envelope of the heap it produced (when ``result.heap``).
    With a ``clock`` (the job's wall limit is above its timeout) the engine runs under the wall
    limit and the clock enforces the timeout."""
    spec, limits = job.spec, job.spec.limits
    envelope = None
    if job.heap_fd is not None:
        try:
            with _phase(phases, "heap_read"):
                envelope = read_heap(job.heap_fd, _HEAP_READ_LIMIT)
        except HeapFdError as e:
            return JobResult(status="failed", error=f"cannot restore heap: the server sent {e}"), None
        finally:
            os.close(job.heap_fd)
    try:
        with _phase(phases, "execute"):
            outcome = engine.execute(
                spec.code,
                heap=envelope,
                snapshot=spec.snapshot,
                heap_limit_mb=limits.heap_limit_mb,
                timeout=limits.timeout_secs if clock is None else limits.wall_secs,
                language=spec.language,
                filename=spec.filename,
                on_console=output.write,
                control=control,
                max_result_bytes=limits.max_result_bytes,
                fetch_relay=relay,
                tool_relay=tool_relay,
            )
            _engine_phases(phases, outcome)
    except SnapshotError as e:
        return JobResult(status="failed", error=f"cannot restore heap: {e}"), None
    finally:
        if clock is not None:
            clock.stop()
    timed_out = _clock_verdict(outcome, limits, clock)
    if timed_out is not None:
        return timed_out, None
    heap, heap_size, heap_bytes = None, None, None
    if (
        spec.snapshot
        and outcome.status in ("completed", "suspended")
        and outcome.snapshot is not None
        and outcome.heap_key is not None
    ):
        heap_bytes = outcome.snapshot
        heap, heap_size = outcome.heap_key, len(heap_bytes)
    if outcome.status == "suspended":  # it waits only on held calls: paused in its heap
        if heap is None:  # the server holds no call of an execution without a snapshot
            error = "the script waits on tool calls held for approval, but it has no heap to pause in"
            return JobResult(status="failed", error=error, duration_ms=outcome.duration_ms), None
        paused = JobResult(status="waiting", heap=heap, heap_size=heap_size, duration_ms=outcome.duration_ms)
        return paused, heap_bytes
    return _result(outcome, heap, heap_size), heap_bytes


def _result(outcome: Any, heap: str | None, heap_size: int | None) -> JobResult:
    """A run's result from the engine's outcome (a job's or a live step's) and its heap."""
    return JobResult(
        status=outcome.status,
        result=outcome.result,
        error=outcome.error,
        heap=heap,
        heap_size=heap_size,
        duration_ms=outcome.duration_ms,
        js_error=JsError.from_outcome(outcome),
    )


def _clock_verdict(outcome: Any, limits: Limits, clock: _ScriptClock | None) -> JobResult | None:
    """With the script's clock in charge (the engine ran under the wall limit), the timeout that
    ended the run as the clock saw it; None when the outcome stands as it is."""
    if clock is None or outcome.status not in ("cancelled", "timed_out"):
        return None
    timed_out = _timed_out(limits, wall=outcome.status == "timed_out", expired=clock.expired)
    return None if timed_out is None else dataclasses.replace(timed_out, duration_ms=outcome.duration_ms)


def _timed_out(limits: Limits, *, wall: bool, expired: bool) -> JobResult | None:
    """The failure of a job the script clock or the wall limit stopped (None: a plain cancel).
    The timeout's words are the engine's own, as when it enforces it itself."""
    if wall:
        message = (
            f"execution timed out after {limits.wall_secs:g} s of wall time (wall_timeout_secs), "
            "waiting on tool calls included"
        )
    elif expired:
        message = f"execution timed out after {limits.timeout_secs:g} s"
    else:
        return None
    error = f"TimeoutError: {message}"
    js_error = JsError(name=None, message=message, stack=error, line=None, column=None)
    return JobResult(status="timed_out", error=error, js_error=js_error)


def _done(execution_id: str, result: JobResult) -> tuple[bytes, bool]:
    """The frame of the job's ``done`` and whether it carries its heap: its result made to fit,
    or a failure (without a heap) saying why it could not be sent."""
    try:
        fitted = fit(result)
        return encode(Done(execution_id, fitted)), fitted.heap is not None
    except Undeliverable as e:
        failed = JobResult(status="failed", error=f"the worker could not send the outcome: {e}")
        return encode(Done(execution_id, failed)), False


def _send_done(
    conn: Channel, execution_id: str, result: JobResult, envelope: bytes | None, phases: _Phases | None = None
) -> None:
    """Sends the job's ``done`` (with its heap's descriptor), after its spans when it is traced."""
    frame, carries_heap = _done(execution_id, result)
    if not carries_heap or envelope is None:
        if phases is not None:
            phases.send(conn, execution_id)
        conn.send_frame(frame)
        return
    with _phase(phases, "heap_write") as attributes:
        fd = heap_memfd(envelope)
        attributes["bytes"] = str(len(envelope))
    try:
        if phases is not None:
            phases.send(conn, execution_id)
        conn.send_frame(frame, fd)
    finally:
        os.close(fd)


def _prepare_next(engine: Engine, last: Job | None, heap_limit_mb: int, jobs: queue.SimpleQueue[Any]) -> None:
    """Makes the isolate of the next job while this worker is idle (a warm isolate), so that a
    job that restores no heap and makes no snapshot starts without creating one. Its heap cap is
    the last such job's (``last``), else ``heap_limit_mb`` (the server's default); one that is
    held already stays (a job of another kind left it). Done on this thread, the one that runs
    the jobs (V8 binds an isolate to the thread that makes it), and not while a job waits: that
    one runs now, in an isolate of its own."""
    stateless = last is not None and last.spec.heap is None and not last.spec.snapshot
    if last is not None and stateless:
        heap_limit_mb = last.spec.limits.heap_limit_mb
    held = engine.prepared()
    if held is not None and (not stateless or held["heap_limit_mb"] == heap_limit_mb):
        return
    if not jobs.empty():
        return
    try:
        engine.prepare(heap_limit_mb=heap_limit_mb)
    except EngineError as e:  # the next job makes its own
        print(f"mcp-v8 worker: could not prepare an isolate: {e}", file=sys.stderr, flush=True)


class _LiveToolRelay:
    """A live context's tool relay for :class:`_Tools`: an answer goes back as the value of the
    context's host call (web.js reads the same answer as from the engine's ``ToolRelay``)."""

    def __init__(self, live: Any) -> None:
        self._live = live

    def reply(self, host_id: int, answer: str) -> bool:
        self._live.reply(host_id, True, answer, [])
        return True


class _LiveSession:
    """One session's live context, and where its tool calls go while a step runs."""

    def __init__(self, name: str, live: Any) -> None:
        self.name = name
        self.live = live
        self.on_tool_call: Any = None  # the running step's, else None

    def dispatch(self, call_id: int, name: str, args_json: str, buffers: list[bytes]) -> None:
        on_call = self.on_tool_call
        if name == TOOL_CALL and on_call is not None:
            try:
                (request,) = json.loads(args_json)
                on_call(call_id, json.dumps(request))
                return
            except ValueError:
                pass
        refusal = {"name": "TypeError", "message": "no function answers this call"}
        self.live.reply(call_id, False, json.dumps(refusal), [])


class _LiveSessions:
    """The live sessions this worker holds: one live context each (the engine's
    ``LiveContext``, made able to snapshot, so it has no ``WebAssembly``), kept between the
    steps the server sends. A step runs as a job does (its limits, console output, cancel,
    timeout, tool calls through the server); a timeout or a cancel leaves the context usable,
    a step that goes over the heap cap ends it (``ended`` before its ``done``). A script's
    ``fetch`` is refused in a live step: the server's fetch relay serves one-off executions."""

    def __init__(self, conn: Channel, output: _Output, tools: _Tools) -> None:
        self._conn = conn
        self._output = output
        self._tools = tools
        self._sessions: dict[str, _LiveSession] = {}

    def command(self, message: LiveCommand) -> None:
        if isinstance(message, Open):
            self._conn.send(Opened(message.session, _cut(self._open(message))))
        elif isinstance(message, Snapshot):
            session = self._sessions.get(message.session)
            if session is None:
                self._conn.send(SessionHeap(message.session, None, None, "no such live session here"))
                return
            heap, envelope, error = self._snapshot(session)
            self._send_heap(SessionHeap(message.session, heap, _size(envelope), _cut(error)), envelope)
        elif isinstance(message, Close):
            session = self._sessions.pop(message.session, None)
            heap, envelope, error = None, None, None
            if session is None:
                error = "no such live session here"
            else:
                if message.snapshot:
                    heap, envelope, error = self._snapshot(session)
                session.live.close()
            self._send_heap(Closed(message.session, heap, _size(envelope), _cut(error)), envelope)

    def _open(self, message: Open) -> str | None:
        """Makes the session's context; None, or why it could not be made."""
        from .. import _engine

        envelope = None
        if message.heap_fd is not None:
            try:
                envelope = read_heap(message.heap_fd, _HEAP_READ_LIMIT)
            except HeapFdError as e:
                return f"cannot restore heap: the server sent {e}"
            finally:
                os.close(message.heap_fd)
        if message.session in self._sessions:
            return "the session is already live in this worker"
        holder: list[_LiveSession] = []
        try:
            live = _engine.LiveContext(
                heap=envelope,
                snapshots=True,
                heap_limit_mb=message.heap_limit_mb,
                dispatch=lambda *call: holder[0].dispatch(*call),
            )
        except Exception as e:  # the engine's SnapshotError or EngineError: the heap's fault
            return f"cannot restore heap: {e}" if envelope is not None else f"cannot make the context: {e}"
        session = _LiveSession(message.session, live)
        holder.append(session)
        self._sessions[message.session] = session
        return None

    @staticmethod
    def _snapshot(session: _LiveSession) -> tuple[str | None, bytes | None, str | None]:
        """(key, envelope, None) of the context's snapshot, or (None, None, why not)."""
        try:
            envelope, key, _raw, _used = session.live.snapshot()
        except Exception as e:  # the engine's: the context is closed, or V8 could not
            return None, None, f"cannot snapshot the session: {e}"
        return key, envelope, None

    def _send_heap(self, message: SessionHeap | Closed, envelope: bytes | None) -> None:
        if envelope is None:
            self._conn.send(message)
            return
        fd = heap_memfd(envelope)
        try:
            self._conn.send(dataclasses.replace(message, heap_fd=fd))
        finally:
            os.close(fd)

    def step(self, step: Step, control: Any) -> None:
        """Runs ``step`` in its session's context and sends its ``done``."""
        session = self._sessions.get(step.session)
        if session is None:
            failed = JobResult(status="failed", error=f"no live session {step.session!r} in this worker")
            _send_done(self._conn, step.execution_id, failed, None)
            return
        limits = step.spec.limits
        output = self._output
        output.start(step.execution_id, limits.max_output_bytes)
        clock = _ScriptClock(limits.timeout_secs, control) if limits.wall_secs > limits.timeout_secs else None

        def make_relay(on_call: Any) -> _LiveToolRelay:
            session.on_tool_call = on_call
            return _LiveToolRelay(session.live)

        self._tools.start(step.execution_id, clock, make_relay)
        try:
            result, envelope = self._run(session, step, control, clock)
        finally:
            session.on_tool_call = None
            self._tools.finish(step.execution_id)
        output.flush()
        if session.live.closed:
            del self._sessions[step.session]
            reason = result.error or "the context was closed"
            self._conn.send(Ended(step.session, _cut(reason) or ""))
        _send_done(self._conn, step.execution_id, result, envelope)

    def _run(
        self, session: _LiveSession, step: Step, control: Any, clock: _ScriptClock | None
    ) -> tuple[JobResult, bytes | None]:
        spec, limits = step.spec, step.spec.limits
        try:
            outcome = session.live.run(
                spec.code,
                timeout=limits.timeout_secs if clock is None else limits.wall_secs,
                language=spec.language,
                filename=spec.filename,
                max_result_bytes=limits.max_result_bytes,
                keep_console=False,
                on_console=self._output.write,
                control=control,
            )
        except Exception as e:  # the engine's: the context was closed under the step
            return JobResult(status="failed", error=f"the live session's context is gone: {e}"), None
        finally:
            if clock is not None:
                clock.stop()
        timed_out = _clock_verdict(outcome, limits, clock)
        if timed_out is not None:
            return timed_out, None
        heap, heap_size, envelope = None, None, None
        if spec.snapshot and outcome.status == "completed":
            heap, envelope, error = self._snapshot(session)
            if error is not None:
                return JobResult(status="failed", error=error, duration_ms=outcome.duration_ms), None
            heap_size = _size(envelope)
        return _result(outcome, heap, heap_size), envelope

    def close_all(self) -> None:
        for session in self._sessions.values():
            session.live.close()
        self._sessions.clear()


def _size(envelope: bytes | None) -> int | None:
    return None if envelope is None else len(envelope)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="mcp-v8 worker process (started by the server)")
    parser.add_argument("--fd", type=int, required=True, help="inherited socket to the server")
    parser.add_argument("--sandbox", choices=sandbox.MODES, default="off", help="the walls to raise first")
    parser.add_argument("--report-fd", type=int, default=-1, help="where a sandbox violation is reported")
    parser.add_argument("--max-data-mb", type=int, default=0, help="RLIMIT_DATA (0: unchanged)")
    parser.add_argument("--jitless", action="store_true", help="V8 without its JIT compilers")
    parser.add_argument("--probe", help="sandbox-check: try this forbidden thing instead of serving")
    parser.add_argument(
        "--warm-heap-mb", type=int, default=0, help="prepare each next isolate with this heap cap (0: none)"
    )
    parser.add_argument("--trace", action="store_true", help="send the spans of each job before its done")
    args = parser.parse_args(argv)
    try:  # first, before V8 or any thread starts
        walls = sandbox.enter(args.sandbox, [], args.report_fd, args.max_data_mb)
    except RuntimeError as e:
        print(f"mcp-v8 worker: {e}", file=sys.stderr, flush=True)
        sys.exit(3)
    if args.probe is not None:
        from .probes import run_probe

        run_probe(args.probe, args.fd)
        return
    _keep_freed_memory()
    set_jitless(args.jitless)  # before V8 starts: its flags are the process's
    serve(
        Channel.from_fd(args.fd, peer="server"), walls=walls, warm_heap_mb=args.warm_heap_mb, trace=args.trace
    )


def serve(
    conn: Channel, walls: sandbox.Walls | None = None, warm_heap_mb: int = 0, trace: bool = False
) -> None:
    """Runs the jobs the server sends on ``conn``. ``warm_heap_mb`` (0: off): while idle, the
    worker prepares the isolate of its next job (:func:`_prepare_next`), first with this cap.
    ``trace``: each job's spans are sent before its ``done``."""
    from .. import _engine

    # Fetch is the server's: every job's calls go through its relay, whatever its policy.
    engine = Engine(keep_console=False)  # output streams to the server through on_console
    engine.execute("1")  # initialise V8 before saying ready
    fetches = _Fetches(conn.send)
    tools = _Tools(conn.send)
    jobs: queue.SimpleQueue[Job | LiveCommand | None] = queue.SimpleQueue()
    controls: dict[str, Any] = {}  # the server sends a cancel only after its job
    controls_lock = threading.Lock()

    def reader() -> None:
        try:
            while True:
                message = conn.recv()
                if isinstance(message, (Job, Step)):
                    with controls_lock:
                        controls[message.execution_id] = _engine.Control()
                    jobs.put(message)
                elif isinstance(message, (Open, Snapshot, Close)):
                    jobs.put(message)  # in order with the steps
                elif isinstance(message, Cancel):
                    with controls_lock:
                        known = controls.get(message.execution_id)
                    if known is not None:  # else its job is already done
                        known.cancel()
                elif isinstance(message, FetchReply):
                    fetches.deliver(message)
                elif isinstance(message, ToolReply):
                    tools.deliver(message)
                elif isinstance(message, Stop):
                    jobs.put(None)
                    return
        except (EOFError, OSError):
            os._exit(0)  # the server is gone: nothing to report to
        except ProtocolError as e:  # the server's stream is lost: it sees this worker end
            print(f"mcp-v8 worker: the server sent {e}", file=sys.stderr, flush=True)
            os._exit(2)

    output = _Output(conn.send, 0)
    threading.Thread(target=reader, daemon=True, name="mcp-v8-reader").start()
    threading.Thread(target=output.run_flusher, daemon=True, name="mcp-v8-flusher").start()
    if warm_heap_mb:
        _prepare_next(engine, None, warm_heap_mb, jobs)
    conn.send(Ready(walls or sandbox.Walls()))
    live = _LiveSessions(conn, output, tools)
    while True:
        job = jobs.get()
        if job is None:
            live.close_all()
            return
        if not isinstance(job, Job):
            if isinstance(job, Step):
                with controls_lock:
                    step_control = controls[job.execution_id]
                live.step(job, step_control)
                with controls_lock:
                    controls.pop(job.execution_id, None)
            else:
                live.command(job)
            continue
        with controls_lock:
            control = controls[job.execution_id]
        output.start(job.execution_id, job.spec.limits.max_output_bytes)
        relay = fetches.start(job.execution_id)
        limits = job.spec.limits
        clock = _ScriptClock(limits.timeout_secs, control) if limits.wall_secs > limits.timeout_secs else None
        tool_relay = tools.start(job.execution_id, clock)
        phases = _Phases() if trace else None
        try:
            result, envelope = _run(engine, job, control, output, relay, tool_relay, clock, phases)
        finally:
            fetches.finish(job.execution_id)
            held = tools.finish(job.execution_id)
        if result.status == "waiting":
            result = dataclasses.replace(result, pending_tool_calls=held)
        output.flush()
        with controls_lock:
            controls.pop(job.execution_id, None)
        _send_done(conn, job.execution_id, result, envelope, phases)
        if warm_heap_mb:
            _prepare_next(engine, job, warm_heap_mb, jobs)


if __name__ == "__main__":
    main()
