"""The tool calls a worker asks the server to make for the execution it runs.

A worker holds no tool credentials and opens no session: each call of the script's
``tools.<server>.<tool>()`` / ``mcp.callTool()`` reaches the server as a ``tool_call`` message
(:mod:`.protocol`), and :class:`ToolCalls` answers it with a ``tool_reply``
(:mod:`mcp_v8.tool_answers` says what an answer holds). As a call arrives it is counted against
``max_calls`` (the next one is refused), its tool looked up in the caller's catalogue and its
arguments checked against the tool's ``inputSchema``: a refusal is answered at once and nothing
is sent to the tool server. An admitted call is made by the :class:`~.tool_caller.ToolCaller`
on a thread of its own, so the calls a script awaits together run in parallel; each has a
deadline (``call_timeout``, and never past the execution's wall limit), and a result larger than
``max_result_bytes`` fails the call. With a :class:`~.gate.Gate` (the server's bound on the tool
calls in flight), a call past it waits on its thread for a place, its deadline running: one
whose deadline passes there fails as any late call does, and reaches no tool server.

:meth:`ToolCalls.end` (the execution finished, was cancelled or passed its deadline) abandons
the calls in flight (their ``abandoned`` event is set: the caller tells the tool server) and
drops their answers; later calls are ignored. A reply the channel cannot carry
(:class:`~.protocol.Undeliverable`) fails that call, not the worker; one the worker stops taking
(``TimeoutError``: the frame is part sent) is reported through ``on_lost``. Every call that
came is reported once through ``on_record`` (a :class:`ToolCallRecord`: what the execution's
record keeps), when it is answered or abandoned; but of the calls past ``max_calls`` only the first
is, so an execution has at most ``max_calls + 1`` records.

A call of a gated tool (``needs_approval``), checked like any other, is answered
``{"held": true}`` when the execution snapshots (``hold``): it stays pending in the script's
heap, and :meth:`ToolCalls.held` names it, from the server's own record, for the execution to
wait for a person's decision (the worker's word for which calls were held is only checked
against it). Without a snapshot there is nothing to pause in: it is refused with
``ToolDenied``. A resumed execution's calls count on from ``made``, its calls so far.

State shared between the reader, the call threads, their timers and ``end`` is read and
written under one lock per execution; ``_handoff`` marks the points a test parks a thread at.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from ..storage import PendingToolCall
from ..tool_answers import error_answer, held_answer, result_answer
from ..tool_arguments import ArgumentsError, check_arguments
from .gate import Gate
from .protocol import ToolCall, ToolReply, Undeliverable
from .spec import (
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_MAX_TOOL_CALLS,
    DEFAULT_MAX_TOOL_RESULT_BYTES,
    ToolLimits,
)
from .tool_caller import ToolCaller, ToolTimeout, ToolUnavailable

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_CALL_TIMEOUT",
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_TOOL_RESULT_BYTES",
    "DEFAULT_MAX_TOOL_CALLS",
    "ToolCallRecord",
    "ToolCalls",
    "ToolLimits",
]

DEFAULT_LIMITS = ToolLimits()
NO_TOOLS = "tool call refused: no tool servers are configured"
_HOLD = held_answer()


@dataclass(frozen=True)
class ToolCallRecord:
    """One call as the execution's record keeps it: ``outcome`` is ``"ok"``, the name of the
    error the script got (``"TypeError"``: refused; ``"ToolError"``, ``"ToolDenied"``,
    ``"Error"``: failed), ``"held"`` (gated: it waits for a decision) or ``"abandoned"`` (the
    execution ended first); ``message`` that
    error's; the arguments by their size only."""

    call_id: int
    server: str
    tool: str
    arguments_bytes: int
    outcome: str
    message: str | None
    duration_ms: float
    started_at: str  # ISO-8601 UTC at milliseconds, with a Z


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _InFlight:
    abandoned: threading.Event
    call: ToolCall
    started: float
    started_at: str
    timer: threading.Timer | None = None
    recorded: bool = True  # False: a call past the budget after the first, answered unrecorded


class ToolCalls:
    """The tool calls of one execution. ``send`` carries a reply to the worker (the slot's
    channel); ``deadline``: the execution's (``time.monotonic()``), past which no call runs."""

    def __init__(
        self,
        execution_id: str,
        caller: ToolCaller | None,
        send: Callable[[ToolReply], None],
        *,
        limits: ToolLimits = DEFAULT_LIMITS,
        deadline: float | None = None,
        on_lost: Callable[[str], None] | None = None,
        on_record: Callable[[ToolCallRecord], None] | None = None,
        gate: Gate | None = None,
        hold: bool = False,
        made: int = 0,
    ) -> None:
        self.execution_id = execution_id
        self._gate = gate
        self._hold = hold
        self._on_record = on_record
        self._caller = caller
        self._send = send
        self._limits = limits
        self._deadline = deadline
        self._on_lost = on_lost
        # Under _lock: how many calls came, which are in flight (call id -> its state), the
        # call ids seen, whether the execution ended.
        self._lock = threading.Lock()
        self._count = made
        self._held: dict[int, ToolCall] = {}
        self._in_flight: dict[int, _InFlight] = {}
        # The time during which at least one call was in flight: the execution waited on tools.
        self._busy_since: float | None = None
        self._waited = 0.0
        self._seen: set[int] = set()
        self._ended = False
        self._lost: str | None = None

    def bound(self, deadline: float) -> None:
        """Sets the execution's deadline (``time.monotonic()``), past which no call runs."""
        with self._lock:
            self._deadline = deadline

    def _idle_locked(self) -> None:
        """No call is in flight any more (the lock held)."""
        if self._busy_since is not None:
            self._waited += time.monotonic() - self._busy_since
            self._busy_since = None

    @property
    def busy(self) -> bool:
        """Whether a call is in flight."""
        with self._lock:
            return bool(self._in_flight)

    def waited(self) -> float:
        """Seconds during which at least one call was in flight (so far): the time the execution
        spent waiting on tools, which its timeout does not count."""
        with self._lock:
            busy = 0.0 if self._busy_since is None else time.monotonic() - self._busy_since
            return self._waited + busy

    def _handoff(self, point: str) -> None:
        """Called at each hand-off point: ``"call:returned"`` (the caller returned, before the
        thread looks at the execution), ``"reply:checked"`` (a thread found the call still
        waited for, with the lock held, and is about to send its reply) and ``"timer:fired"``
        (a call's deadline passed, before the timer looks at it). Does nothing; a test
        overrides it to park a thread there."""

    @property
    def ended(self) -> bool:
        with self._lock:
            return self._ended

    @property
    def lost(self) -> str | None:
        """Why the channel was lost under a reply (part of its frame sent), if it was."""
        with self._lock:
            return self._lost

    @property
    def count(self) -> int:
        """The calls that came, refused ones included."""
        with self._lock:
            return self._count

    def held(self) -> tuple[PendingToolCall, ...]:
        """The calls answered ``{"held": true}``, by call id: this server's record of them."""
        with self._lock:
            calls = sorted(self._held.values(), key=lambda c: c.call_id)
        return tuple(PendingToolCall(c.call_id, c.server, c.tool, c.arguments) for c in calls)

    def submit(self, call: ToolCall, *, approved: bool = False) -> None:
        """Takes a call from the worker (the slot's reader): counted and checked at once (a
        refusal is answered then), then made on a thread of its own. Never waits for a call.
        ``approved``: a held call a person approved (:mod:`.approvals`), counted when it was
        held: checked again (the catalogue may have changed), but neither counted nor held."""
        name = f"{call.server}.{call.tool}"
        with self._lock:
            if self._ended or call.call_id in self._seen:
                return  # a call id that came already: the worker is out of step, the first stands
            self._seen.add(call.call_id)
            if not approved:
                self._count += 1
            refusal: str | None = None
            if not approved and self._count > self._limits.max_calls:
                refusal = error_answer(
                    "TypeError",
                    f"tool call refused: more than {self._limits.max_calls} tool calls in one "
                    "execution (max_tool_calls)",
                )
            # Reserved before the checks, so that a reply for it can only come from here. Of the
            # calls past the budget only the first is recorded: a script that goes on calling
            # in a loop adds no records.
            if not self._in_flight:
                self._busy_since = time.monotonic()
            self._in_flight[call.call_id] = _InFlight(
                threading.Event(),
                call,
                time.monotonic(),
                _now_iso(),
                recorded=self._count <= self._limits.max_calls + 1,
            )
        if refusal is None:
            refusal = self._check(call, name, approved)
        if refusal is _HOLD:
            self._finish(call.call_id, refusal, held=call)
            return
        if refusal is not None:
            self._finish(call.call_id, refusal)
            return
        now = time.monotonic()
        with self._lock:
            deadline = now + self._limits.call_timeout
            if self._deadline is not None:
                deadline = min(deadline, self._deadline)
            entry = self._in_flight.get(call.call_id)
            if entry is None:  # ended meanwhile
                return
            entry.timer = threading.Timer(max(0.0, deadline - now), self._expire, (call.call_id, name))
            entry.timer.daemon = True
            entry.timer.start()
        thread = threading.Thread(
            target=self._make, args=(call, name, deadline, entry.abandoned), daemon=True, name="mcp-v8-tool"
        )
        thread.start()

    def _check(self, call: ToolCall, name: str, approved: bool = False) -> str | None:
        """The refusal of ``call`` by the catalogue, or None."""
        if self._caller is None:
            return error_answer("TypeError", NO_TOOLS)
        try:
            catalogue = self._caller.tools()
        except Exception as e:  # the caller's own failure: this call fails, not the server
            log.exception("the tool catalogue failed")
            return error_answer(
                "Error", f"tool call failed: the catalogue is unavailable ({type(e).__name__})"
            )
        tools = catalogue.get(call.server)
        if tools is None:
            known = ", ".join(sorted(catalogue)[:20]) or "none"
            return error_answer(
                "TypeError", f"tool call refused: no tool server {call.server!r} (servers: {known})"
            )
        info = tools.get(call.tool)
        if info is None:
            return error_answer("TypeError", f"tool call refused: {call.server!r} has no tool {call.tool!r}")
        try:
            check_arguments(call.server, call.tool, call.arguments, info.input_schema)
        except ArgumentsError as e:
            return error_answer("TypeError", str(e))
        if info.needs_approval and not approved:
            if self._hold:
                return _HOLD
            return error_answer(
                "ToolDenied",
                f"{name} needs a person's approval, and an execution without a snapshot cannot "
                "pause to wait for it",
                reason="a gated call cannot pause without a snapshot",
            )
        return None

    def _make(self, call: ToolCall, name: str, deadline: float, abandoned: threading.Event) -> None:
        assert self._caller is not None
        if self._gate is not None and not self._gate.enter(abandoned):
            return  # abandoned while waiting for a place: answered (its deadline) or ended
        try:
            result = self._caller.call(call.server, call.tool, call.arguments, deadline, abandoned)
            answer = result_answer(call.server, call.tool, result)
        except ToolTimeout:
            answer = self._timeout(name)
        except ToolUnavailable as e:
            answer = error_answer("Error", f"tool call failed: {name}: {e}"[:4096])
        except Exception as e:  # the caller's own failure: this call fails, not the server
            log.exception("tool call %s of execution %s failed", name, self.execution_id)
            answer = error_answer("Error", f"tool call failed: {name}: {type(e).__name__}")
        finally:
            if self._gate is not None:
                self._gate.leave()
        size = len(answer.encode("utf-8", "surrogatepass"))
        if size > self._limits.max_result_bytes:
            answer = error_answer(
                "Error",
                f"tool call failed: {name} answered {size} bytes, more than {self._limits.max_result_bytes} "
                "(tool_result_max_bytes)",
            )
        self._handoff("call:returned")
        self._finish(call.call_id, answer)

    def _timeout(self, name: str) -> str:
        return error_answer("Error", f"tool call failed: {name} did not answer within its time")

    def _expire(self, call_id: int, name: str) -> None:
        self._handoff("timer:fired")
        with self._lock:
            entry = self._in_flight.get(call_id)
        if entry is None:
            return
        entry.abandoned.set()
        self._wake_gate()
        self._finish(call_id, self._timeout(name))

    def _wake_gate(self) -> None:
        """After setting calls' ``abandoned``: those waiting for a place give up."""
        if self._gate is not None:
            self._gate.wake()

    def end(self) -> None:
        """The execution ended: calls in flight are abandoned and answer nobody, later calls
        are ignored. Any thread; idempotent; never waits for a call (only for a reply being
        sent, which the worker's reader takes at once)."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
            entries = list(self._in_flight.values())
            self._in_flight.clear()
            self._idle_locked()
        for entry in entries:
            entry.abandoned.set()
            if entry.timer is not None:
                entry.timer.cancel()
        self._wake_gate()
        for entry in entries:
            self._record(entry, "abandoned", None)

    def _record(self, entry: _InFlight, outcome: str, message: str | None) -> None:
        if self._on_record is None or not entry.recorded:
            return
        call = entry.call
        record = ToolCallRecord(
            call.call_id,
            call.server,
            call.tool,
            len(call.arguments.encode("utf-8", "surrogatepass")),
            outcome,
            message,
            (time.monotonic() - entry.started) * 1000,
            entry.started_at,
        )
        try:
            self._on_record(record)
        except Exception:  # the record's own failure: the call goes on
            log.exception(
                "the record of tool call %s of execution %s failed", call.call_id, self.execution_id
            )

    def _finish(self, call_id: int, answer: str, held: ToolCall | None = None) -> None:
        """Sends the answer unless the call is answered already or the execution ended. The
        check and the send are one step under the lock, so no reply leaves once ``end`` has
        returned, and each call is answered once. Its record goes out after the lock. ``held``:
        the call, answered ``{"held": true}``, is kept as held once that answer is sent."""
        with self._lock:
            entry = self._in_flight.pop(call_id, None)
            if not self._in_flight:
                self._idle_locked()
            if entry is None or self._ended:
                return  # answered already (its deadline), or nobody waits for it any more
            if entry.timer is not None:
                entry.timer.cancel()
            self._handoff("reply:checked")
            lost = self._send_locked(call_id, answer)
            if held is not None and lost is None:
                self._held[call_id] = held
        if held is not None:
            self._record(entry, "held", None)
            if lost is not None and self._on_lost is not None:
                self._on_lost(lost)
            return
        error = json.loads(answer).get("error")
        if error is None:
            self._record(entry, "ok", None)
        else:
            self._record(entry, str(error.get("name")), str(error.get("message")))
        if lost is not None and self._on_lost is not None:
            self._on_lost(lost)

    def _send_locked(self, call_id: int, answer: str) -> str | None:
        """Sends one reply (the lock held); why the channel was lost under it, if it was."""
        try:
            try:
                self._send(ToolReply(self.execution_id, call_id, answer))
            except Undeliverable as e:  # nothing was sent: this call fails, not the worker
                message = f"tool call failed: the result could not be sent to the worker: {e}"
                self._send(ToolReply(self.execution_id, call_id, error_answer("Error", message[:4096])))
        except TimeoutError as e:  # part of a frame is out: the stream is lost
            self._lost = f"the worker took no tool reply: {e}"
            return self._lost
        except OSError:
            pass  # the worker is gone: the slot's reader sees it
        return None
