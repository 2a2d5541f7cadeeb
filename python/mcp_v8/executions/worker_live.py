"""A worker's live sessions: one live context per session, kept between the steps the server
sends (the ``open``, ``step``, ``snapshot`` and ``close`` kinds of :mod:`.protocol`). A step runs
with what a one-off job uses (:mod:`.worker_common`); the job loop (:mod:`.worker`) hands it the
live commands in their order."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from ..local_tools import TOOL_CALL
from .channel import Channel
from .heap_fds import HeapFdError, heap_memfd, read_heap
from .protocol import (
    Close,
    Closed,
    Ended,
    JobResult,
    LiveCommand,
    Open,
    Opened,
    SessionHeap,
    Snapshot,
    Step,
)
from .worker_common import (
    HEAP_READ_LIMIT,
    ConsoleOutput,
    Fetches,
    ScriptClock,
    Tools,
    clock_verdict,
    cut,
    envelope_size,
    outcome_result,
    send_done,
)

# Why a context ends when its step pauses (the ``ended`` before the step's ``done``).
PAUSED = "the step waits for a decision on its tool calls: the session goes on from its resumed execution"
FETCH_CALL = "mcp-v8:fetch"  # the host call of web.js's fetch (rust/engine/src/fetch/mod.rs)


class _LiveFetchRelay:
    """A live context's fetch relay for :class:`.worker_common.Fetches`: the server's answer goes
    back as the value of the context's host call, as the engine's ``FetchRelay`` posts it (the
    response head as JSON and its body; or the error as JSON)."""

    def __init__(self, live: Any) -> None:
        self._live = live

    def reply(self, call_id: int, ok: bool, head: str, body: bytes | None = None) -> bool:
        self._live.reply(call_id, ok, head, [body or b""] if ok else [])
        return True


class _LiveToolRelay:
    """A live context's tool relay for :class:`Tools`: an answer goes back as the value of the
    context's host call (web.js reads the same answer as from the engine's ``ToolRelay``)."""

    def __init__(self, live: Any) -> None:
        self._live = live

    def reply(self, host_id: int, answer: str) -> bool:
        self._live.reply(host_id, True, answer, [])
        return True


class _LiveSession:
    """One session's live context, and where its tool calls and fetches go while a step runs."""

    def __init__(self, name: str, live: Any) -> None:
        self.name = name
        self.live = live
        self.on_tool_call: Any = None  # the running step's, else None
        self.on_fetch: Any = None  # the running step's, else None

    def dispatch(self, call_id: int, name: str, args_json: str, buffers: list[bytes]) -> None:
        if name == FETCH_CALL:
            self._fetch(call_id, args_json, buffers)
            return
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

    def _fetch(self, call_id: int, args_json: str, buffers: list[bytes]) -> None:
        """A call of ``fetch``: to the server, as a one-off execution's (its policy and caps)."""
        on_fetch = self.on_fetch
        if on_fetch is not None and len(buffers) <= 1:
            on_fetch(call_id, args_json, buffers[0] if buffers else None)
            return
        why = "fetch: more than one request body" if on_fetch is not None else "fetch: no step is running"
        self.live.reply(call_id, False, json.dumps({"name": "TypeError", "message": why}), [])


class LiveSessions:
    """The live sessions this worker holds: one live context each (the engine's
    ``LiveContext``, made able to snapshot, so it has no ``WebAssembly``), kept between the
    steps the server sends. A step runs as a job does (its limits, console output, cancel,
    timeout, tool calls and ``fetch`` through the server, under the policy of the step's spec);
    a timeout or a cancel leaves the context usable, a step that goes over the heap cap ends it
    (``ended`` before its ``done``)."""

    def __init__(self, conn: Channel, output: ConsoleOutput, tools: Tools, fetches: Fetches) -> None:
        self._conn = conn
        self._output = output
        self._tools = tools
        self._fetches = fetches
        self._sessions: dict[str, _LiveSession] = {}

    def command(self, message: LiveCommand) -> None:
        if isinstance(message, Open):
            self._conn.send(Opened(message.session, cut(self._open(message))))
        elif isinstance(message, Snapshot):
            session = self._sessions.get(message.session)
            if session is None:
                self._conn.send(SessionHeap(message.session, None, None, "no such live session here"))
                return
            heap, envelope, error = self._snapshot(session)
            self._send_heap(SessionHeap(message.session, heap, envelope_size(envelope), cut(error)), envelope)
        elif isinstance(message, Close):
            session = self._sessions.pop(message.session, None)
            heap, envelope, error = None, None, None
            if session is None:
                error = "no such live session here"
            else:
                if message.snapshot:
                    heap, envelope, error = self._snapshot(session)
                session.live.close()
            self._send_heap(Closed(message.session, heap, envelope_size(envelope), cut(error)), envelope)

    def _open(self, message: Open) -> str | None:
        """Makes the session's context; None, or why it could not be made."""
        from .. import _engine

        envelope = None
        if message.heap_fd is not None:
            try:
                envelope = read_heap(message.heap_fd, HEAP_READ_LIMIT)
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
                fetch_to_dispatch=True,  # the server makes the requests: this process makes none
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
            send_done(self._conn, step.execution_id, failed, None)
            return
        limits = step.spec.limits
        output = self._output
        output.start(step.execution_id, limits.max_output_bytes)
        clock = ScriptClock(limits.timeout_secs, control) if limits.wall_secs > limits.timeout_secs else None

        def make_relay(on_call: Any) -> _LiveToolRelay:
            session.on_tool_call = on_call
            return _LiveToolRelay(session.live)

        def make_fetch_relay(on_call: Any) -> _LiveFetchRelay:
            session.on_fetch = on_call
            return _LiveFetchRelay(session.live)

        self._tools.start(step.execution_id, clock, make_relay)
        self._fetches.start(step.execution_id, make_fetch_relay)
        try:
            result, envelope = self._run(session, step, control, clock)
        finally:
            session.on_tool_call = session.on_fetch = None
            self._fetches.finish(step.execution_id)
            held = self._tools.finish(step.execution_id)
        if result.status == "waiting":
            result = dataclasses.replace(result, pending_tool_calls=held)
        output.flush()
        if session.live.closed:
            del self._sessions[step.session]
            reason = PAUSED if result.status == "waiting" else result.error or "the context was closed"
            self._conn.send(Ended(step.session, cut(reason) or ""))
        send_done(self._conn, step.execution_id, result, envelope)

    def _run(
        self, session: _LiveSession, step: Step, control: Any, clock: ScriptClock | None
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
        timed_out = clock_verdict(outcome, limits, clock)
        if timed_out is not None:
            return timed_out, None
        if outcome.status == "suspended":  # it waits only on held calls: paused in its heap
            return self._pause(session, outcome)
        heap, heap_size, envelope = None, None, None
        if spec.snapshot and outcome.status == "completed":
            heap, envelope, error = self._snapshot(session)
            if error is not None:
                return JobResult(status="failed", error=error, duration_ms=outcome.duration_ms), None
            heap_size = envelope_size(envelope)
        return outcome_result(outcome, heap, heap_size), envelope

    def _pause(self, session: _LiveSession, outcome: Any) -> tuple[JobResult, bytes | None]:
        """The step waits on tool calls held for a decision: the context's heap (the script's
        pending result in it, as a job's that pauses) and the end of the context, so the worker
        is not held for a person's response time; the execution resumes from that heap."""
        heap, envelope, error = self._snapshot(session)
        session.live.close()
        if error is not None or heap is None:
            why = f"the script waits on tool calls held for approval, but {error or 'no heap was made'}"
            return JobResult(status="failed", error=why, duration_ms=outcome.duration_ms), None
        paused = JobResult(
            status="waiting", heap=heap, heap_size=envelope_size(envelope), duration_ms=outcome.duration_ms
        )
        return paused, envelope

    def close_all(self) -> None:
        for session in self._sessions.values():
            session.live.close()
        self._sessions.clear()
