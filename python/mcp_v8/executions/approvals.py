"""A person's decisions on the tool calls a waiting execution holds, and its resume.

A script whose calls of gated tools were held (:mod:`.tool_calls`) and that waits on nothing
else is paused in its heap and recorded ``waiting`` with the calls (:mod:`.manager`). A decision
(:meth:`Approvals.decide`) names every pending call once, approved or denied: partial decisions
are refused, since the resume settles every call it holds and a call left pending would no longer
be one the server held for its run. The record is read, the decisions checked against the calls
the server recorded (never against what a worker said), and the execution taken back to
``running`` by the store's conditional transition: of two deciders at once (two nodes), one wins,
the other is told the execution no longer waits. The approved calls are then made by the server
(off the request's thread) through a :class:`~.tool_calls.ToolCalls` of their own, so with the
checks, deadlines and result cap of any call (the catalogue is asked again: a tool gone since
fails its call); denied ones are answered ``ToolDenied`` with the reason. The resume is one
execution of the paused heap whose code calls the engine's resume function with the answers,
which go in as one JSON string literal parsed by the script (data, never code), under the spec the
execution ran with, and the rest of its budget of calls; the manager queues it, here or for any
node. Its script may pause again. While the approved calls are made the execution is live on
this process (:meth:`~.manager.ExecutionManager.deciding`): a cancel abandons them (their tool
servers are told) and nothing resumes.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from ..storage import ExecutionRecord, ExecutionStore, PendingToolCall
from ..tool_answers import error_answer
from .protocol import ToolCall, ToolReply
from .spec import ExecutionSpec, spec_from_wire
from .tool_caller import ToolCaller
from .tool_calls import DEFAULT_LIMITS, ToolCallRecord, ToolCalls, ToolLimits

if TYPE_CHECKING:
    from .manager import ExecutionManager

__all__ = ["Approvals", "BadDecisions", "Decision", "NotWaiting", "UnknownExecution", "resume_code"]

log = logging.getLogger(__name__)

RESUME = "await globalThis[Symbol.for('mcp-v8.resume')](JSON.parse({answers}))"
_MARGIN_SECS = 5.0  # past the calls' own deadlines, how long a decision waits for their answers


class UnknownExecution(LookupError):
    pass


class NotWaiting(Exception):
    """The execution is not waiting (any more): its status is in the message."""


class BadDecisions(ValueError):
    """Decisions that do not name each pending call exactly once."""


@dataclass(frozen=True)
class Decision:
    call_id: int
    approved: bool
    reason: str | None = None


def resume_code(answers: Sequence[tuple[int, object]]) -> str:
    """The code of a resume that settles each call id with its answer (``{"value"}`` or
    ``{"error"}``): the answers are one JSON text inside one ASCII JSON string literal, which is a
    JavaScript string literal too, parsed by the script."""
    text = json.dumps([[call_id, answer] for call_id, answer in answers], ensure_ascii=False)
    return RESUME.format(answers=json.dumps(text, ensure_ascii=True))


def check_decisions(pending: Sequence[PendingToolCall], decisions: Sequence[Decision]) -> None:
    """Raises :class:`BadDecisions` unless ``decisions`` name each call of ``pending`` once."""
    ids = {c.call_id for c in pending}
    seen: set[int] = set()
    for d in decisions:
        if d.call_id not in ids:
            raise BadDecisions(
                f"call {d.call_id} is not one this execution waits on (pending: {sorted(ids)})"
            )
        if d.call_id in seen:
            raise BadDecisions(f"call {d.call_id} is decided twice")
        seen.add(d.call_id)
    missing = sorted(ids - seen)
    if missing:
        raise BadDecisions(f"every pending call needs a decision; undecided: {missing}")


def denial(call: PendingToolCall, reason: str | None) -> str:
    """The answer of a denied call: ``ToolDenied`` with the approver's reason."""
    why = reason or "denied by the approver"
    return error_answer("ToolDenied", f"{call.server}.{call.tool} was denied: {why}", reason=why)


class _Room:
    """The approved calls of one decision, made through a :class:`~.tool_calls.ToolCalls` of
    their own; :meth:`abandon` (a cancel, any thread) ends them and the wait for them."""

    def __init__(
        self,
        execution_id: str,
        caller: ToolCaller | None,
        limits: ToolLimits,
        on_record: Callable[[ToolCallRecord], None] | None = None,
    ) -> None:
        self._execution_id = execution_id
        self._limits = limits
        self._done = threading.Condition()
        self._replies: dict[int, str] = {}  # under _done, with _abandoned
        self._abandoned = False
        self._calls = ToolCalls(execution_id, caller, self._send, limits=limits, on_record=on_record)

    def _send(self, reply: ToolReply) -> None:
        with self._done:
            self._replies[reply.call_id] = reply.answer
            self._done.notify_all()

    def abandon(self) -> None:
        with self._done:
            self._abandoned = True
            self._done.notify_all()
        self._calls.end()  # the calls in flight are abandoned: their servers are told

    def make(self, calls: Sequence[PendingToolCall]) -> dict[int, str] | None:
        """Makes ``calls`` (in parallel, each under its deadline); their answers by call id, or
        None when abandoned."""
        eid = self._execution_id
        try:
            for c in calls:
                self._calls.submit(ToolCall(eid, c.call_id, c.server, c.tool, c.arguments), approved=True)
            with self._done:
                self._done.wait_for(
                    lambda: self._abandoned or len(self._replies) == len(calls),
                    self._limits.call_timeout + _MARGIN_SECS,
                )
                if self._abandoned:
                    return None
        finally:
            self._calls.end()
        with self._done:
            return {
                c.call_id: self._replies.get(c.call_id)
                or error_answer(
                    "Error", f"tool call failed: {c.server}.{c.tool} did not answer within its time"
                )
                for c in calls
            }


class Approvals:
    """The decisions on this deployment's waiting executions, made on this process (``owner``,
    the owner its resumes are recorded with)."""

    def __init__(
        self,
        executions: ExecutionStore,
        manager: ExecutionManager,
        caller: ToolCaller | None,
        *,
        limits: ToolLimits = DEFAULT_LIMITS,
        owner: str | None = None,
    ) -> None:
        self._executions = executions
        self._manager = manager
        self._caller = caller
        self._limits = limits
        self._owner = owner

    def decide(self, execution_id: str, decisions: Sequence[Decision]) -> ExecutionRecord:
        """Takes the execution back to ``running`` and starts its approved calls and resume;
        returns its record. Raises :class:`UnknownExecution`, :class:`NotWaiting` and
        :class:`BadDecisions`, having changed nothing."""
        record = self._executions.get(execution_id)
        if record is None:
            raise UnknownExecution(execution_id)
        if record.status != "waiting":
            raise NotWaiting(f"execution is {record.status}, not waiting for a decision")
        check_decisions(record.pending_tool_calls or (), decisions)
        claimed = self._executions.resume(execution_id, owner=self._owner)
        if claimed is None:
            current = self._executions.get(execution_id)
            status = "gone" if current is None else current.status
            raise NotWaiting(f"execution is {status}: another decision, a cancel or its deadline came first")
        threading.Thread(
            target=self._carry_out, args=(claimed, decisions), daemon=True, name="mcp-v8-approval"
        ).start()
        return claimed

    def _carry_out(self, record: ExecutionRecord, decisions: Sequence[Decision]) -> None:
        """Makes the approved calls and queues the resume; a failure fails the execution. A
        cancel meanwhile (here or anywhere) abandons the calls: no resume then."""
        execution_id = record.execution_id
        room = self._room(record)
        if not self._manager.deciding(execution_id, room.abandon):
            return  # cancelled before a call was made
        try:
            answers = self.answers(record, decisions, room)
            if answers is None:
                self._manager.undecided(execution_id)
                return
            spec = self.resume_spec(record, answers)
            self._manager.resume(execution_id, spec, record.tool_calls_made or 0)
        except Exception as e:
            log.exception("could not resume execution %s", execution_id)
            self._manager.undecided(execution_id)
            self._manager.fail(execution_id, f"the execution could not be resumed: {type(e).__name__}: {e}")

    def answers(
        self, record: ExecutionRecord, decisions: Sequence[Decision], room: _Room | None = None
    ) -> list[tuple[int, object]] | None:
        """Each pending call's answer, as a JSON value: the approved ones made now (in ``room``).
        None when the calls were abandoned (the execution was cancelled)."""
        pending = {c.call_id: c for c in record.pending_tool_calls or ()}
        approved = [pending[d.call_id] for d in decisions if d.approved]
        room = room or self._room(record)
        made = room.make(approved) if approved else {}
        if made is None:
            return None
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for d in decisions:
            if not d.approved:  # recorded as the script will see it: its held record updated
                c = pending[d.call_id]
                self._manager.tool_call_recorded(
                    record.execution_id,
                    ToolCallRecord(
                        c.call_id,
                        c.server,
                        c.tool,
                        len(c.arguments.encode("utf-8", "surrogatepass")),
                        "ToolDenied",
                        d.reason or "denied by the approver",
                        0.0,
                        now,
                    ),
                )
        answers: list[tuple[int, object]] = []
        for d in sorted(decisions, key=lambda d: d.call_id):
            text = made[d.call_id] if d.approved else denial(pending[d.call_id], d.reason)
            answers.append((d.call_id, json.loads(text)))
        return answers

    def _room(self, record: ExecutionRecord) -> _Room:
        """Where a decision's approved calls are made: under the execution's own tool limits,
        each call recorded and counted as a job's are."""
        limits = self._limits
        if record.resume_spec is not None:
            limits = spec_from_wire({**record.resume_spec, "code": "0", "heap": None}).tools
        on_record = functools.partial(self._manager.tool_call_recorded, record.execution_id)
        return _Room(record.execution_id, self._caller, limits, on_record)

    @staticmethod
    def resume_spec(record: ExecutionRecord, answers: Sequence[tuple[int, object]]) -> ExecutionSpec:
        """The spec of the resume: the one the execution ran with, on the heap it paused in,
        running :func:`resume_code`."""
        if record.resume_spec is None or record.waiting_heap is None:
            raise ValueError("the record keeps no spec or heap to resume")
        return spec_from_wire(
            {**record.resume_spec, "code": resume_code(answers), "heap": record.waiting_heap}
        )
