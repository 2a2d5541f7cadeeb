"""The execution store: one record per execution and its state machine.

An execution is ``running`` from the moment it is recorded until its first terminal transition
(``completed``, ``failed``, ``cancelled``, ``timed_out``); the store makes that transition atomic, so
whoever reports second (a worker after a cancel, a cancel after a crash) changes nothing. A running
execution whose script waits only on tool calls held for a person's decision is ``waiting`` (not
terminal, run by nobody: its heap, its pending calls and what its resume needs are in its record)
until a decision takes it back to ``running`` (:meth:`ExecutionStore.resume`), a cancel ends it,
or its approval deadline passes (:meth:`ExecutionStore.expire_waiting`); each of these is one
conditional transition, so of two nodes deciding at once one wins. Console
output is not here: it is the output log's (:mod:`.output`), keyed by the same execution id.

Sessions are not stored apart: a session is the ``session`` field of its executions, and what the
store says about one (:meth:`ExecutionStore.sessions`, :meth:`ExecutionStore.session_log`) is read
from the retained executions by query, so recording an execution costs no extra statement (only an
index entry, when it has a session) and a pruned one leaves no trace. The listings page by keyset
(:mod:`.paging`): an opaque cursor, never an offset.

:class:`ExecutionStore` is the contract; :class:`~.execution_store.SQLExecutionStore` keeps it in
the ``executions`` table of the registry database, SQLite or PostgreSQL, and touches no other
table.
"""

from __future__ import annotations

import builtins
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args, runtime_checkable

from ..js_error import JsError
from ..principal import DEFAULT_TENANT
from ..quotas import TenantQuotas
from .errors import DuplicateExecution, ExecutionNotFound
from .paging import Page
from .tenant_usage import TenantUsage

__all__ = [
    "TERMINAL_STATUSES",
    "DuplicateExecution",
    "ExecutionNotFound",
    "ExecutionRecord",
    "ExecutionStatus",
    "ExecutionStore",
    "PendingToolCall",
    "SessionSummary",
    "TerminalStatus",
]

ExecutionStatus = Literal["running", "waiting", "completed", "failed", "cancelled", "timed_out"]
TerminalStatus = Literal["completed", "failed", "cancelled", "timed_out"]
TERMINAL_STATUSES: frozenset[str] = frozenset(get_args(TerminalStatus))


@dataclass(frozen=True)
class PendingToolCall:
    """A tool call a waiting execution's script holds: ``arguments`` is the JSON text it sent."""

    call_id: int
    server: str
    tool: str
    arguments: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "server": self.server,
            "tool": self.tool,
            "arguments": self.arguments,
        }


@dataclass(frozen=True)
class ExecutionRecord:
    """One execution as recorded. ``heap`` is the snapshot key it produced; ``heap_in`` the one it
    restored; ``js_error`` the script's structured error, when it ended on one (``error`` is then
    its stack). Timestamps are ISO-8601 UTC with millisecond precision and a ``Z``.

    What a wait for a decision keeps (set by :meth:`ExecutionStore.pause`, kept after it for the
    record): the calls it waits on, the heap it paused in, the tool calls made so far, the spec
    its resume runs under (wire form, without the code), when the wait started and when it fails
    undecided."""

    execution_id: str
    status: ExecutionStatus
    started_at: str
    completed_at: str | None
    result: str | None
    error: str | None
    heap: str | None
    session: str | None
    tags: dict[str, str] | None
    duration_ms: float | None
    heap_in: str | None = None
    code_bytes: int = 0
    js_error: JsError | None = None
    pending_tool_calls: tuple[PendingToolCall, ...] | None = None
    waiting_heap: str | None = None
    tool_calls_made: int | None = None
    resume_spec: dict[str, Any] | None = None
    waiting_since: str | None = None
    approval_deadline: str | None = None
    trace_id: str | None = None  # its trace's id, when it was traced (mcp_v8.tracing)
    tenant: str = DEFAULT_TENANT  # whose it is (mcp_v8.principal)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def stopped(self) -> bool:
        """Terminal, or waiting: nothing runs it, and a long-poll returns it."""
        return self.status != "running"


@dataclass(frozen=True)
class SessionSummary:
    """One session, as its retained executions tell it. ``last_activity_at`` is the latest
    ``started_at`` or ``completed_at`` among them; ``latest_heap`` the heap recorded by the last
    of them (in the session log's order) that produced one, or None. Like any execution's ``heap``,
    it is a key as recorded: the heap store prunes blobs by its own rule, so it may name one that
    is no longer stored."""

    session: str
    executions: int
    first_activity_at: str
    last_activity_at: str
    latest_heap: str | None
    tenant: str = DEFAULT_TENANT  # whose session it is: two tenants' sessions of one name are two


@runtime_checkable
class ExecutionStore(Protocol):
    """Execution records and their state machine (``running`` → one terminal status).

    Contract every backend keeps:

    * :meth:`create` records ``running`` with ``started_at`` = now; an id recorded already raises
      :class:`DuplicateExecution` and changes nothing.
    * :meth:`finish` is the only way out of ``running`` besides :meth:`fail_running_on_startup`, and
      the first terminal transition wins: among any number of concurrent calls for one id (threads or
      processes) exactly one returns True and its status, result, error, JS error, heap and duration
      are what every later read sees; the others, and calls for a terminal or unknown id, return False and
      change nothing.
    * :meth:`list` and :meth:`list_page` are newest first by ``started_at``, ties broken by the order
      of :meth:`create` (later first); :meth:`session_log` is the reverse, oldest first;
      :meth:`sessions` is by last activity, latest first, ties by session name (code point order).
    * Paged listings (:class:`~.paging.Page`) continue from an opaque cursor that a page of the same
      listing returned: following ``next_cursor`` until it is None yields every item present
      throughout exactly once, in order, however many share a timestamp. A cursor that no page of that
      listing could have returned raises :class:`~.errors.InvalidCursor`.
    * Sessions are derived from the retained executions (those with a ``session``), never stored
      apart: a pruned execution leaves no trace in them.
    * :meth:`prunable` and :meth:`delete` never touch a ``running`` or ``waiting`` execution.
    * ``running`` → ``waiting`` (:meth:`pause`), ``waiting`` → ``running`` (:meth:`resume`),
      ``waiting`` → ``cancelled`` (:meth:`finish` with ``waiting``) and ``waiting`` → ``failed``
      (:meth:`expire_waiting`) are each one conditional transition: of concurrent calls for one
      id, one wins and the others change nothing. Startup recovery and lost nodes
      (:meth:`fail_running_on_startup`, :meth:`fail_running_of`) leave waiting executions alone.
    * Every method may be called from many threads at once.

    Both backends keep the same table (in PostgreSQL: ``tags`` as ``jsonb``, timestamps as
    ``timestamptz``, an identity column for the insertion order, session names compared
    ``COLLATE "C"``, which is code point order as SQLite's); :meth:`finish` is one
    ``UPDATE ... WHERE execution_id = :id AND status = 'running'`` whose row count says who won,
    which holds under PostgreSQL's READ COMMITTED because the second updater re-checks the
    ``WHERE`` after the first commits (and under SQLite's single writer anyway).
    """

    def create(
        self,
        execution_id: str,
        *,
        session: str | None = None,
        tags: dict[str, str] | None = None,
        heap_in: str | None = None,
        code_bytes: int = 0,
        owner: str | None = None,
        require_heap: bool = False,
        trace_id: str | None = None,
        tenant: str = DEFAULT_TENANT,
        quotas: TenantQuotas | None = None,
    ) -> None:
        """Records a new execution of ``tenant`` as ``running``, started now, run by the process ``owner``,
        traced under ``trace_id`` (kept as it is). With ``require_heap``, only while the heap index of the same database (``heap_owners``, see
        :mod:`.heap_index`) holds ``heap_in`` as a heap of ``tenant``, in one step with that check: otherwise it raises
        :class:`~.errors.HeapNotFound` and records nothing. A heap's deletion
        (:meth:`~.heap_index.HeapIndex.remove`) serialises with it: the heap is gone before the
        record exists, or the record exists (and the heap is in use) before the deletion looks.
        With ``quotas``, only when the tenant's new record passes them
        (:func:`.tenant_usage.admit`), checked in one transaction with the insert under the
        tenant's lock, whichever processes and nodes insert at once: else
        :class:`~mcp_v8.quotas.QuotaReached`, and nothing is recorded."""
        ...

    def tenant_usage(self, tenant: str) -> TenantUsage:
        """What ``tenant``'s records use now of its quotas (:class:`.tenant_usage.TenantUsage`,
        without ``queued``)."""
        ...

    def finish(
        self,
        execution_id: str,
        status: TerminalStatus,
        *,
        result: str | None = None,
        error: str | None = None,
        heap_out: str | None = None,
        duration_ms: float | None = None,
        js_error: JsError | None = None,
        waiting: bool = False,
    ) -> ExecutionRecord | None:
        """Records the first terminal transition and returns the terminal record; None (and
        nothing changes) when already terminal or unknown. ``duration_ms`` defaults to the time
        since ``started_at``; ``js_error`` is kept as a JSON object and read back equal.
        ``waiting``: a waiting execution may end too (a cancel), not only a running one."""
        ...

    def pause(
        self,
        execution_id: str,
        *,
        pending: Iterable[PendingToolCall],
        heap: str,
        tool_calls_made: int,
        resume_spec: dict[str, Any],
        approval_timeout_secs: float,
        duration_ms: float | None = None,
    ) -> ExecutionRecord | None:
        """``running`` → ``waiting`` on the calls ``pending``, paused in ``heap``, its decision
        due within ``approval_timeout_secs``; returns the waiting record, or None (nothing
        changes) when it is not running."""
        ...

    def resume(self, execution_id: str, *, owner: str | None) -> ExecutionRecord | None:
        """``waiting`` → ``running``, run by ``owner`` from now: the record (with what the wait
        kept), or None (nothing changes) when it is not waiting (decided, cancelled, expired)."""
        ...

    def expire_waiting(self, reason: str) -> builtins.list[ExecutionRecord]:
        """Fails with ``reason`` the waiting executions whose approval deadline passed; returns
        their terminal records."""
        ...

    def get(self, execution_id: str) -> ExecutionRecord | None:
        """The record of ``execution_id``, or None."""
        ...

    def list(self, limit: int = 100, status: ExecutionStatus | None = None) -> builtins.list[ExecutionRecord]:
        """Up to ``limit`` records (of ``status`` when given), newest first."""
        ...

    def list_page(
        self,
        limit: int = 100,
        *,
        status: ExecutionStatus | None = None,
        session: str | None = None,
        cursor: str | None = None,
        tenant: str | None = None,
    ) -> Page[ExecutionRecord]:
        """A page of up to ``limit`` (>= 1) records, newest first, of ``status``, of ``session``
        and of ``tenant`` when given (None: every tenant's), after ``cursor`` when given."""
        ...

    def sessions(
        self, limit: int = 100, *, cursor: str | None = None, tenant: str | None = None
    ) -> Page[SessionSummary]:
        """A page of up to ``limit`` (>= 1) sessions, latest activity first, after ``cursor``; of
        ``tenant`` when given (None: every tenant's, each (tenant, session) one session, ties by
        name then tenant)."""
        ...

    def session_log(
        self, session: str, limit: int = 100, *, cursor: str | None = None, tenant: str | None = None
    ) -> Page[ExecutionRecord] | None:
        """A page of up to ``limit`` (>= 1) records of ``session`` (of ``tenant`` when given, None:
        of every tenant), oldest first, after ``cursor``; None when no retained execution belongs
        to it."""
        ...

    def fail_running_on_startup(self, reason: str) -> int:
        """Marks every ``running`` execution ``failed`` with ``reason``; returns how many."""
        ...

    def running_owners(self) -> set[str | None]:
        """The owners of ``running`` executions (None: executions recorded without one)."""
        ...

    def fail_running_of(self, owners: Collection[str | None], reason: str) -> int:
        """Marks the ``running`` executions of ``owners`` (None: those without an owner)
        ``failed`` with ``reason``; returns how many."""
        ...

    def heaps_used_since(self, max_age_seconds: float) -> set[str]:
        """The heaps that executions started (``heap_in``) or produced (``heap_out``) within the
        last ``max_age_seconds``, running ones included: in use by the registry's account."""
        ...

    def prunable(
        self, max_age_seconds: float | None = None, max_count: int | None = None
    ) -> builtins.list[str]:
        """Ids of terminal executions that completed more than ``max_age_seconds`` ago or that are
        not among the newest ``max_count`` terminal ones."""
        ...

    def delete(self, execution_ids: Iterable[str]) -> int:
        """Deletes the terminal executions among ``execution_ids``; returns how many."""
        ...

    def close(self) -> None:
        """Releases what the store holds. Idempotent."""
        ...
