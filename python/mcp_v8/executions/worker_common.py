"""What a worker's one-off jobs and its live steps share: console output shipped in batches
(:class:`ConsoleOutput`), the relays of a script's ``fetch`` and tool calls through the server
(:class:`Fetches`, :class:`Tools`), the script's own clock (:class:`ScriptClock`), the spans of a
traced job (:class:`Phases`), and how an engine outcome becomes the ``done`` the server reads
(:func:`outcome_result`, :func:`clock_verdict`, :func:`fit`, :func:`send_done`). The job loop is
:mod:`.worker`, the live sessions' contexts :mod:`.worker_live`."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from ..js_error import JsError
from ..storage import PendingToolCall
from ..tool_answers import error_answer, held_answer
from .channel import Channel
from .heap_fds import heap_memfd
from .protocol import (
    ERROR_LIMIT,
    OUTPUT_CHUNK,
    Done,
    FetchCall,
    FetchReply,
    JobResult,
    Output,
    Spans,
    ToolCall,
    ToolReply,
    Undeliverable,
    WorkerSpan,
    encode,
)
from .spec import RESULT_LIMIT, Limits

FLUSH_SECONDS = 0.02
FLUSH_BYTES = 64 * 1024


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


def cut(text: str | None, limit: int = ERROR_LIMIT) -> str | None:
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
            name=cut(js.name, 4096),
            message=cut(js.message) or "",
            stack=cut(js.stack) or "",
            line=js.line,
            column=js.column,
        )
    return dataclasses.replace(result, error=cut(result.error), js_error=js)


class ConsoleOutput:
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


class Phases:
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
def phase(phases: Phases | None, name: str) -> Iterator[dict[str, str]]:
    if phases is None:
        yield {}
    else:
        with phases.phase(name) as attributes:
            yield attributes


def engine_phases(phases: Phases | None, outcome: Any) -> None:
    """The engine's phases of ``outcome``, inside the phase being timed (when traced)."""
    if phases is not None:
        phases.engine(outcome.phases)


class Fetches:
    """The fetch relays of the jobs in this worker: a job's calls of ``fetch`` go to the server
    as ``fetch`` messages, and the server's ``fetch_reply`` answers them. A reply for a job that
    has ended (or never ran here) is dropped."""

    def __init__(self, send: Any) -> None:
        self._send = send
        self._lock = threading.Lock()
        self._relays: dict[str, Any] = {}

    def start(self, execution_id: str, make_relay: Any = None) -> Any:
        """The relay of ``execution_id``'s execution (for ``Engine.execute``). ``make_relay(on_call)``:
        the relay (an object with ``reply(call_id, ok, head, body)``), the engine's ``FetchRelay``
        unless given."""
        from .. import _engine

        def on_call(call_id: int, args: str, body: bytes | None) -> None:
            try:
                self._send(FetchCall(execution_id, call_id, args, body))
            except Undeliverable as e:  # nothing was sent: the call fails, the job goes on
                refusal = {"name": "TypeError", "message": f"fetch refused: {e}"}
                relay.reply(call_id, False, json.dumps(refusal))

        relay = (make_relay or _engine.FetchRelay)(on_call)
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


class ScriptClock:
    """The script's own running time in a job whose wall limit is above its timeout: the engine
    runs under the wall limit, and this clock cancels the run (``expired``) once the time it spent
    with no tool call outstanding reaches its timeout. ``calls(n)`` says how many are outstanding.
    The clocks of a process share one thread (:class:`ScriptClocks`): a job or a live step starts
    none of its own, which would cost it a thread's start and a wake-up of that thread."""

    def __init__(self, timeout: float, control: Any, clocks: ScriptClocks | None = None) -> None:
        self._timeout = timeout
        self._control = control
        self._outstanding = 0
        self._since: float | None = None  # when the current wait on tools began
        self._waited = 0.0
        self._started = time.monotonic()
        self.expired = False
        self._clocks = clocks or ScriptClocks.shared()
        self._clocks.add(self)

    def calls(self, delta: int) -> None:
        with self._clocks.cond:
            before = self._outstanding
            self._outstanding += delta
            now = time.monotonic()
            if before == 0 and self._outstanding > 0:
                self._since = now
            elif before > 0 and self._outstanding == 0 and self._since is not None:
                self._waited += now - self._since
                self._since = None
                self._clocks.due(self)  # its time runs again: it has a deadline anew

    def stop(self) -> None:
        self._clocks.remove(self)

    def deadline(self) -> float | None:
        """When it expires (``time.monotonic()``), None while a call is outstanding (under the
        clocks' condition)."""
        if self._outstanding > 0:
            return None
        return self._started + self._timeout + self._waited


class ScriptClocks:
    """The thread that judges the :class:`ScriptClock` s of a process: it sleeps until the earliest
    deadline among them and cancels the run of each clock whose time is up. It is woken only when
    a deadline comes before the one it sleeps until (a clock added, or a clock whose tool calls
    are answered), never by a clock that stops; a wake-up that finds nothing due just sleeps again.
    State is guarded by ``cond``; a run is cancelled outside it."""

    _shared: ScriptClocks | None = None
    _shared_lock = threading.Lock()

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self._clocks: set[ScriptClock] = set()
        self._wake_at = float("inf")  # when the thread wakes next by itself
        threading.Thread(target=self._run, daemon=True, name="mcp-v8-script-clocks").start()

    @classmethod
    def shared(cls) -> ScriptClocks:
        """The process's clocks, started with the first clock."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def add(self, clock: ScriptClock) -> None:
        with self.cond:
            self._clocks.add(clock)
            self.due(clock)

    def remove(self, clock: ScriptClock) -> None:
        with self.cond:
            self._clocks.discard(clock)

    def due(self, clock: ScriptClock) -> None:
        """Wakes the thread when ``clock`` is due before it would wake (under ``cond``)."""
        deadline = clock.deadline()
        if deadline is not None and deadline < self._wake_at:
            self._wake_at = deadline
            self.cond.notify_all()

    def _run(self) -> None:
        while True:
            with self.cond:
                now = time.monotonic()
                expired = [c for c in self._clocks if (d := c.deadline()) is not None and d <= now]
                for clock in expired:
                    clock.expired = True
                    self._clocks.discard(clock)
                if not expired:
                    deadlines = [d for c in self._clocks if (d := c.deadline()) is not None]
                    self._wake_at = min(deadlines, default=float("inf"))
                    self.cond.wait(None if self._wake_at == float("inf") else self._wake_at - now)
            for clock in expired:
                clock._control.cancel()


class Tools:
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
        self._clocks: dict[str, ScriptClock] = {}

    def start(self, execution_id: str, clock: ScriptClock | None = None, make_relay: Any = None) -> Any:
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
HEAP_READ_LIMIT = 1 << 40


def outcome_result(outcome: Any, heap: str | None, heap_size: int | None) -> JobResult:
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


def clock_verdict(outcome: Any, limits: Limits, clock: ScriptClock | None) -> JobResult | None:
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


def done_frame(execution_id: str, result: JobResult) -> tuple[bytes, bool]:
    """The frame of the job's ``done`` and whether it carries its heap: its result made to fit,
    or a failure (without a heap) saying why it could not be sent."""
    try:
        fitted = fit(result)
        return encode(Done(execution_id, fitted)), fitted.heap is not None
    except Undeliverable as e:
        failed = JobResult(status="failed", error=f"the worker could not send the outcome: {e}")
        return encode(Done(execution_id, failed)), False


def send_done(
    conn: Channel, execution_id: str, result: JobResult, envelope: bytes | None, phases: Phases | None = None
) -> None:
    """Sends the job's ``done`` (with its heap's descriptor), after its spans when it is traced."""
    frame, carries_heap = done_frame(execution_id, result)
    if not carries_heap or envelope is None:
        if phases is not None:
            phases.send(conn, execution_id)
        conn.send_frame(frame)
        return
    with phase(phases, "heap_write") as attributes:
        fd = heap_memfd(envelope)
        attributes["bytes"] = str(len(envelope))
    try:
        if phases is not None:
            phases.send(conn, execution_id)
        conn.send_frame(frame, fd)
    finally:
        os.close(fd)


def envelope_size(envelope: bytes | None) -> int | None:
    return None if envelope is None else len(envelope)
