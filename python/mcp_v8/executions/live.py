"""Live sessions on the server: the steps of a session run in one live context kept in a live
worker (:class:`~.live_slot.LiveSlot`) between them, with no heap restored and no snapshot made
unless a step asks for one.

The live workers are a pool of their own beside the execution workers (``--live-workers``), each
holding up to ``--live-sessions-per-worker`` sessions. Everything a session does goes through its
own queue, in submission order: its steps, and the snapshots and closes asked for by a client or
by the housekeeping. One dispatcher thread per live worker takes, among the sessions it holds or
could hold, the oldest item at the head of a session's queue; a session not yet live is opened on
the first worker with room (or where the least recently used idle session is evicted for it:
snapshotted, then closed), from the step's ``heap``, else the session's latest heap (its log's),
else the base context.

**Never silently lost.** A session that changed is snapshotted every ``--live-snapshot-secs``,
and snapshotted and closed after ``--live-idle-secs`` idle, when its room is needed and at a
graceful shutdown. Each such heap is published as a step's would be and recorded in the
session's log as an execution of no code, tagged ``live_snapshot`` with the reason (``periodic``,
``idle``, ``room``, ``shutdown``, ``requested``, ``closed``), so it is the session's latest heap
and the next step resumes from it. A worker that dies takes the sessions it held with it: the
step running then fails saying so, and the next step of each other session fails naming the heap
the session will resume from (its last snapshot, or the base context), never a silent reset; the
step after it resumes from there. A step over its heap cap ends its session's context (V8 does
not reuse the isolate): its failure says where the next step resumes.

A step that calls a gated tool pauses as any execution does: the worker snapshots its context
into the heap it waits in and ends the context, and the execution goes ``waiting``; after the
decision it resumes from that heap as an execution (one that makes a heap). The session goes on
from the heap that execution ends with (the heap it paused in, when it ends without one); until
it has ended, a step of the session fails unrun, naming it.

A live session lives in one process, which holds it (:mod:`..storage.live_holds`) from its first
step until it is no longer live there. Another process on the same data directory refuses its
steps with a 409 naming the holder (a lock file a session, :mod:`.live_locks`, released when the
session stops being live there or its process dies). Among the nodes of a database, a step sent
to another node than the session's is queued for the session's node (``forward``), which runs it
in order with the others; when that node is lost, the next node to run a step of the session takes
it over, and that step fails saying what was lost and where the session resumes, as after a
worker's death.

State shared between threads (the sessions, their queues and where they live) is guarded by one
condition, ``_cond``; a step or command runs outside it, the session marked ``busy``.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

from ..logs import execution_context
from ..principal import DEFAULT_TENANT
from ..quotas import CONCURRENCY_RETRY_SECS, UNLIMITED, QuotaReached, QuotaSource, every_tenant
from ..storage import HeapNotFound, HeapNotSigned, HeapStoreUnavailable
from ..storage.live_holds import LiveHolds
from .errors import QueueFull, ShuttingDown
from .heap_fds import sealed_heap
from .live_slot import LiveSessionError, LiveSlot
from .protocol import Job, JobResult
from .spec import ExecutionSpec

if TYPE_CHECKING:
    from ..metrics import Metrics
    from ..storage import ExecutionStore, HeapCatalogue, OutputLog
    from .waiters import Waiters


class Host(Protocol):
    """What live sessions use of the execution manager: its stores and its way of recording an
    execution, its output and its end (one record of executions for both kinds of worker)."""

    _catalogue: HeapCatalogue
    _executions: ExecutionStore
    _output: OutputLog
    _owner: str | None
    waiters: Waiters
    metrics: Metrics

    def _record(self, execution_id: str, spec: ExecutionSpec, owner: str | None) -> None: ...
    def _finish(
        self,
        execution_id: str,
        result: JobResult,
        *,
        spec: ExecutionSpec | None = None,
        waiting: bool = False,
    ) -> bool: ...
    def _record_failure(self, execution_id: str, error: str) -> None: ...
    def _output_written(self, execution_id: str, text: str) -> None: ...
    def _publish(self, execution_id: str, result: JobResult, spec: ExecutionSpec) -> JobResult: ...


__all__ = ["LiveConflict", "LiveSessions", "LiveUnavailable", "NotLive"]

log = logging.getLogger(__name__)

COMMAND_WAIT_SECONDS = 120.0  # a client's snapshot or close waits this long for its turn and answer
LIVE_SNAPSHOT_TAG = "live_snapshot"


class LiveConflict(Exception):
    """A request that contradicts the session's state (a heap for a session already live)."""


class NotLive(LookupError):
    """The session is not live in this process."""


class LiveUnavailable(Exception):
    """This server runs no live workers (``--live-workers 0``)."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _Item:
    """One thing a session's queue holds: a step (``execution_id``, ``spec``), a ``snapshot`` or a
    ``close`` (with ``snapshot`` and the ``reason`` its heap is recorded with). ``ready``: a
    step's record is written (until then the session's queue waits behind it). A command's
    answer is ``heap`` or ``error``, set before ``done``."""

    seq: int
    kind: str
    execution_id: str | None = None
    spec: ExecutionSpec | None = None
    snapshot: bool = True
    reason: str = "requested"
    ready: bool = True
    done: threading.Event = field(default_factory=threading.Event)
    heap: str | None = None
    error: str | None = None


def live_key(tenant: str, name: str) -> str:
    """What names the session ``name`` of ``tenant`` in this process, its live workers and its
    lock (:mod:`.live_locks`): the name for the default tenant; for another, a NUL, the tenant's
    name, a NUL, then the session's name (no session name holds a NUL: the contract refuses it).
    Two tenants' sessions of one name are two sessions."""
    return name if tenant == DEFAULT_TENANT else f"\x00{tenant}\x00{name}"


@dataclass
class _Session:
    name: str  # the client's name of it (its tenant's)
    tenant: str = DEFAULT_TENANT  # whose it is (its key, its heaps, its live_sessions quota)
    items: collections.deque[_Item] = field(default_factory=collections.deque)
    slot: int | None = None  # the live worker holding its context, None: not live
    since: str | None = None  # when it became live there
    busy: bool = False  # a step or command of it runs (outside the lock)
    last_used: float = field(default_factory=time.monotonic)
    last_snapshot: float = field(default_factory=time.monotonic)
    dirty: bool = False  # changed since its last snapshot
    heap: str | None = None  # its latest heap, as far as this process made or looked it up
    heap_known: bool = False
    paused: str | None = None  # with heap_known: an execution of it that paused and has not ended
    lost: str | None = None  # why its context was lost, until a step has said so

    @property
    def key(self) -> str:
        """Its key in this process and its live workers (:func:`live_key`)."""
        return live_key(self.tenant, self.name)


class LiveSessions:
    def __init__(
        self,
        manager: Host,
        slots: list[LiveSlot],
        *,
        sessions_per_worker: int = 1,
        snapshot_secs: float = 60.0,
        idle_secs: float = 300.0,
        queue_limit: int = 1000,
        locks: LiveHolds | None = None,
        forward: Callable[[str, ExecutionSpec, str], None] | None = None,
        quotas: QuotaSource | None = None,
        on_refused: Callable[[QuotaReached], None] | None = None,
    ) -> None:
        """``locks``: where this process holds its sessions; ``forward(execution_id, spec,
        node)``: records a step and queues it for ``node``, which holds its session (nodes of a
        database; None: a session held elsewhere is refused). ``quotas``: each tenant's; a
        session beyond its ``live_sessions`` open here is refused
        (:class:`~mcp_v8.quotas.QuotaReached`, heard by ``on_refused``)."""
        self._m = manager
        self._quotas: QuotaSource = quotas or every_tenant(UNLIMITED)
        self._on_refused = on_refused
        self._locks = locks
        self._forward = forward
        self.slots = slots
        self._per_worker = sessions_per_worker
        self._snapshot_secs = snapshot_secs
        self._idle_secs = idle_secs
        self._queue_limit = queue_limit
        self._cond = threading.Condition()
        self._sessions: dict[str, _Session] = {}
        self._running: dict[str, int] = {}  # execution id of a running step -> its slot's index
        self._seq = itertools.count()
        self._closed = False
        self._threads: list[threading.Thread] = []

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        # A live worker's process starts with its first session (LiveSlot.open), so a server
        # whose clients never run live pays nothing for its live workers.
        for slot in self.slots:
            thread = threading.Thread(
                target=self._dispatch, args=(slot,), daemon=True, name=f"mcp-v8-live-{slot.index}"
            )
            thread.start()
            self._threads.append(thread)
        if self.slots:
            keeper = threading.Thread(target=self._keep, daemon=True, name="mcp-v8-live-keeper")
            keeper.start()
            self._threads.append(keeper)

    def close(self, join_timeout: float = 30.0) -> None:
        """Fails the steps not started, snapshots and closes every live session (its heap recorded
        as the session's latest), then stops the live workers."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            failed: list[_Item] = []
            for session in self._sessions.values():
                for item in list(session.items):
                    if item.kind == "step":
                        session.items.remove(item)
                        failed.append(item)
                if session.slot is not None:
                    session.items.append(_Item(next(self._seq), "close", reason="shutdown"))
            self._cond.notify_all()
        for item in failed:
            if item.ready and item.execution_id is not None:
                self._m._finish(
                    item.execution_id, JobResult(status="failed", error="server shut down before it started")
                )
        deadline = time.monotonic() + join_timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for slot in self.slots:
            slot.stop()
        if self._locks is not None:
            self._locks.release_all()

    # -- requests ----------------------------------------------------------------------
    def submit(self, spec: ExecutionSpec) -> str:
        """Accepts a step of ``spec.session`` (its ``heap``: where a session not yet live starts);
        returns its execution id. LiveConflict for a heap sent to a session already live."""
        if not self.slots:
            raise LiveUnavailable("this server runs no live workers (--live-workers 0)")
        if spec.heap is not None:  # before the lock: an unknown heap is refused first
            self._m._catalogue.use(spec.heap, tenant=spec.tenant)  # one of its tenant's heaps
            self._m._catalogue.fetch(spec.heap)
        execution_id = str(uuid.uuid4())
        node = self._accept(execution_id, spec, recorded=False)
        if node is not None:
            assert self._forward is not None
            self._forward(execution_id, spec, node)
        return execution_id

    def adopt(self, execution_id: str, spec: ExecutionSpec) -> None:
        """Runs here a step another node recorded and queued for this one, which holds (or held)
        its session. Never raises: a step that cannot run here fails saying why."""
        try:
            self._m._output.adopt(execution_id)  # its output is buffered here, as if submitted here
            self._accept(execution_id, spec, recorded=True)  # a session that moved on: LiveConflict
        except Exception as e:
            if not isinstance(e, (LiveConflict, ShuttingDown, QueueFull)):
                log.exception("could not run live step %s", execution_id)
            self._m._record_failure(execution_id, f"the live step could not run on its session's node: {e}")

    def _accept(self, execution_id: str, spec: ExecutionSpec, *, recorded: bool) -> str | None:
        """Queues the step in its session's order (recording it unless ``recorded``); or, when
        another node holds the session and steps can be sent there, returns that node (and
        queues nothing)."""
        name = spec.session
        assert name is not None
        key = live_key(spec.tenant, name)
        with self._cond:
            if self._closed:
                raise ShuttingDown("the server is shutting down")
            session = self._sessions.get(key)
            if spec.heap is not None and session is not None and (session.slot is not None or session.items):
                where = "queued to become live" if session.slot is None else f"live since {session.since}"
                raise LiveConflict(
                    f"session {name!r} is already {where}: a heap is for a session not live; end it first "
                    f"(DELETE /api/sessions/snapshot?session=...) or send the step without a heap"
                )
            if sum(len(s.items) for s in self._sessions.values()) >= self._queue_limit:
                raise QueueFull(f"the queue is full ({self._queue_limit} live steps waiting); retry later")
            if session is None or (session.slot is None and not session.items):  # to be opened
                self._check_quota(spec.tenant)
            if session is None:
                holder = None if self._locks is None else self._locks.acquire(name, spec.tenant)
                if holder is not None:
                    if holder.node is not None and self._forward is not None and not recorded:
                        return holder.node
                    raise LiveConflict(
                        f"session {name!r} is live elsewhere: {holder.said}; send its steps there, "
                        "or end it there first"
                    )
                session = self._sessions[key] = _Session(name, spec.tenant)
                lost = None if self._locks is None else self._locks.lost(name, spec.tenant)
                if lost is not None:
                    session.lost = lost
            if spec.heap is not None:  # the client says where the session resumes: nothing to report
                session.lost = None
            item = _Item(next(self._seq), "step", execution_id, spec, ready=recorded)
            session.items.append(item)  # its place in the session's order, taken now
            if recorded:
                self._cond.notify_all()
        self._m.waiters.accept(execution_id, spec.tenant)
        if recorded:
            return None
        try:
            self._m._record(execution_id, spec, self._m._owner)
        except BaseException:
            with self._cond:
                session.items.remove(item)
                self._forget_if_unused(session)
                self._cond.notify_all()
            self._m.waiters.forget(execution_id)
            raise
        with self._cond:
            item.ready = True
            self._cond.notify_all()
        return None

    def _check_quota(self, tenant: str) -> None:
        """Refuses (under ``_cond``) a new session of ``tenant`` at its ``live_sessions`` quota: its
        sessions here, live or queued to become live."""
        limit = self._quotas(tenant).live_sessions
        if limit is None:
            return
        used = self.open_of(tenant, locked=True)
        if used >= limit:
            e = QuotaReached(
                tenant, "live_sessions", limit, CONCURRENCY_RETRY_SECS, f"{used} live sessions open"
            )
            if self._on_refused is not None:
                self._on_refused(e)
            raise e

    def open_of(self, tenant: str, *, locked: bool = False) -> int:
        """How many sessions of ``tenant`` are live here or queued to become live."""
        if not locked:
            with self._cond:
                return self.open_of(tenant, locked=True)
        return sum(
            1 for s in self._sessions.values() if s.tenant == tenant and (s.slot is not None or s.items)
        )

    def snapshot(
        self, name: str, timeout: float = COMMAND_WAIT_SECONDS, *, tenant: str = DEFAULT_TENANT
    ) -> str:
        """Snapshots the live session ``name`` of ``tenant`` after the steps queued before; its heap's key."""
        item = self._command(live_key(tenant, name), name, "snapshot", snapshot=True)
        return self._answer(item, timeout, name) or ""

    def end(
        self,
        name: str,
        snapshot: bool = True,
        timeout: float = COMMAND_WAIT_SECONDS,
        *,
        tenant: str = DEFAULT_TENANT,
    ) -> str | None:
        """Ends the live session ``name`` of ``tenant`` after the steps queued before, snapshotting
        it first (unless ``snapshot`` is false or nothing changed since its last heap); that heap's key."""
        item = self._command(live_key(tenant, name), name, "close", snapshot=snapshot, reason="closed")
        return self._answer(item, timeout, name)

    def _command(self, key: str, name: str, kind: str, *, snapshot: bool, reason: str = "requested") -> _Item:
        with self._cond:
            if self._closed:
                raise ShuttingDown("the server is shutting down")
            session = self._sessions.get(key)
            if session is None or (session.slot is None and not session.items):
                raise NotLive(f"session {name!r} is not live here")
            item = _Item(next(self._seq), kind, snapshot=snapshot, reason=reason)
            session.items.append(item)
            self._cond.notify_all()
        return item

    @staticmethod
    def _answer(item: _Item, timeout: float, name: str) -> str | None:
        if not item.done.wait(timeout):
            raise LiveSessionError(f"session {name!r} did not answer within {timeout:g} s")
        if item.error is not None:
            raise LiveSessionError(item.error)
        return item.heap

    def take(self, execution_id: str) -> LiveSlot | None:
        """A cancel: removes the step from its session's queue when it waits there (None: the
        caller records it cancelled), or the slot it runs on (to cancel it there)."""
        with self._cond:
            index = self._running.get(execution_id)
            if index is not None:
                return self.slots[index]
            for session in self._sessions.values():
                for item in session.items:
                    if item.execution_id == execution_id:
                        session.items.remove(item)
                        self._forget_if_unused(session)
                        self._cond.notify_all()
                        return None
        return None

    def status(self, name: str, *, tenant: str = DEFAULT_TENANT) -> dict[str, Any] | None:
        """Where the session ``name`` of ``tenant`` is live ({"worker", "since"}), None when it is
        not live here."""
        with self._cond:
            session = self._sessions.get(live_key(tenant, name))
            if session is None or session.slot is None:
                return None
            return {"worker": session.slot, "since": session.since}

    def statuses(self, sessions: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """Of ``sessions`` ((tenant, name) pairs), those live here ({"worker", "since"}) or on
        another node ({"node", "since"})."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        others: dict[str, list[str]] = {}
        for tenant, name in sessions:
            status = self.status(name, tenant=tenant)
            if status is not None:
                found[(tenant, name)] = status
            else:
                others.setdefault(tenant, []).append(name)
        if self._locks is not None:
            for tenant, names in others.items():
                for name, (node, since) in self._locks.where(names, tenant).items():
                    found[(tenant, name)] = {"node": node, "since": since}
        return found

    def stats(self) -> dict[str, Any]:
        with self._cond:
            live = sum(1 for s in self._sessions.values() if s.slot is not None)
            queued = sum(len(s.items) for s in self._sessions.values())
        return {
            "workers": len(self.slots),
            "sessions_per_worker": self._per_worker,
            "sessions": live,
            "queued": queued,
        }

    # -- the dispatchers ------------------------------------------------------------------
    def _forget_if_unused(self, session: _Session) -> None:
        """Drops the session's entry when nothing of it is left here (under ``_cond``)."""
        unused = not session.items and not session.busy and session.slot is None and session.lost is None
        if unused and self._sessions.pop(session.key, None) is not None and self._locks is not None:
            self._locks.release(session.name, session.tenant)

    def _pick(self, index: int) -> tuple[_Session, _Item, list[_Session]] | None:
        """The next thing live worker ``index`` does (under ``_cond``): a session, the item at its
        head, and the idle sessions to evict first for its room. Sessions of different tenants
        never share a live worker (a V8 escape in one must not reach another tenant's context):
        a session goes where only its tenant's are, or takes a worker whose other tenant's
        sessions are all idle by evicting them. A worker with room is used before one evicts."""
        on_slot = [s for s in self._sessions.values() if s.slot == index]
        candidates = sorted(
            (
                s
                for s in self._sessions.values()
                if s.items and s.items[0].ready and not s.busy and (s.slot == index or s.slot is None)
            ),
            key=lambda s: s.items[0].seq,
        )
        for session in candidates:
            if session.slot == index or session.items[0].kind != "step":
                return session, session.items[0], []
            others = [s for s in on_slot if s.tenant != session.tenant]
            if not others and len(on_slot) < self._per_worker:
                return session, session.items[0], []
            if self._room_elsewhere(session, index):
                continue  # that worker's dispatcher takes it, evicting nothing
            if others:
                if all(not s.busy and not s.items for s in others):
                    return session, session.items[0], others
                continue
            idle = [s for s in on_slot if not s.busy and not s.items]
            if idle:
                return session, session.items[0], [min(idle, key=lambda s: s.last_used)]
        return None

    def _room_elsewhere(self, session: _Session, index: int) -> bool:
        """Whether another live worker than ``index``, free now, has room for ``session`` without
        evicting (under ``_cond``)."""
        for slot in self.slots:
            if slot.index == index:
                continue
            there = [s for s in self._sessions.values() if s.slot == slot.index]
            idle = not any(s.busy for s in there)  # its dispatcher is free to take it now
            if idle and len(there) < self._per_worker and all(s.tenant == session.tenant for s in there):
                return True
        return False

    def _dispatch(self, slot: LiveSlot) -> None:
        while True:
            with self._cond:
                while True:
                    picked = self._pick(slot.index)
                    if picked is not None:
                        break
                    if self._closed and not any(s.slot == slot.index for s in self._sessions.values()):
                        return
                    self._cond.wait()
                session, item, evicted = picked
                session.items.popleft()
                session.busy = True
                for evict in evicted:
                    evict.busy = True
                if session.slot is None and item.kind == "step":
                    session.slot = slot.index  # its room, taken now
                if item.kind == "step" and item.execution_id is not None:
                    self._running[item.execution_id] = slot.index
            try:
                for evict in evicted:
                    self._close(slot, evict, _Item(next(self._seq), "close", reason="room"))
                if item.kind == "step":
                    assert item.execution_id is not None
                    with execution_context(item.execution_id):
                        self._step(slot, session, item)
                elif item.kind == "snapshot":
                    self._snapshot(slot, session, item)
                else:
                    self._close(slot, session, item)
            except Exception as e:  # never lose a step to a bug in this thread
                log.exception("live worker %d failed under session %r", slot.index, session.name)
                if item.kind == "step" and item.execution_id is not None:
                    self._m._record_failure(item.execution_id, f"internal error: {e}")
                item.error = item.error or f"internal error: {e}"
            finally:
                with self._cond:
                    if item.execution_id is not None:
                        self._running.pop(item.execution_id, None)
                    for s in (session, *evicted):
                        s.busy = False
                    self._collect_lost(slot)
                    for s in (session, *evicted):
                        self._forget_if_unused(s)  # its lock released before its client hears
                    self._cond.notify_all()
                item.done.set()

    def _collect_lost(self, slot: LiveSlot) -> None:
        """Marks the sessions a dead worker took with it (under ``_cond``)."""
        for name, why in slot.lost().items():
            session = self._sessions.get(name)
            if session is not None and session.slot == slot.index:
                session.slot, session.since = None, None
                session.lost = why

    # -- one step ---------------------------------------------------------------------------
    def _resume_from(self, session: _Session) -> str | None:
        """The session's latest heap: the last this process made or read, else its log's (and
        ``session.paused`` with it)."""
        if not session.heap_known:
            session.heap, session.paused = self._latest_heap(session.name, session.tenant)
            session.heap_known = True
        return session.heap

    def _latest_heap(self, name: str, tenant: str) -> tuple[str | None, str | None]:
        """The latest heap of the session's log, and the last execution of it that paused for a
        decision on its tool calls and has not ended (waiting, or running again from its heap).
        A paused execution that ended without a heap (cancelled, expired, failed) leaves the heap
        it paused in: the session's state when it paused."""
        cursor, heap, paused = None, None, None
        while True:
            page = self._m._executions.session_log(name, 1000, cursor=cursor, tenant=tenant)
            if page is None:
                return None, None
            for record in page.items:
                if record.heap is not None:
                    heap = record.heap
                elif record.waiting_heap is not None and record.status not in ("waiting", "running"):
                    heap = record.waiting_heap
                if record.waiting_heap is not None and record.status in ("waiting", "running"):
                    paused = record.execution_id
            if page.next_cursor is None:
                return heap, paused
            cursor = page.next_cursor

    def _where_next(self, session: _Session) -> str:
        heap = self._resume_from(session)
        return "the base context" if heap is None else f"heap {heap} (its last snapshot)"

    def _step(self, slot: LiveSlot, session: _Session, item: _Item) -> None:
        execution_id, spec = item.execution_id, item.spec
        assert execution_id is not None and spec is not None
        if not self._m.waiters.is_live(execution_id):
            return  # cancelled while its submit was still being recorded
        if session.lost is not None:
            lost, session.lost = session.lost, None
            error = (
                f"live session {session.name!r} was lost ({lost}): what it did after its last snapshot is "
                f"gone; this step did not run, and the next one resumes from {self._where_next(session)}"
            )
            with self._cond:
                session.slot, session.since = None, None
            self._m._finish(execution_id, JobResult(status="failed", error=error), spec=spec)
            return
        if session.key not in slot.sessions():
            if spec.heap is None:
                self._resume_from(session)
                if session.paused is not None:
                    session.heap_known = False  # read again for the next step
                    error = (
                        f"live session {session.name!r} waits on execution {session.paused}: a step of it "
                        "paused for a decision on its tool calls, and the session goes on from the heap that "
                        "execution ends with; this step did not run: send it again once that one has ended"
                    )
                    self._m._finish(execution_id, JobResult(status="failed", error=error), spec=spec)
                    return
            opened = self._open(slot, session, spec)
            if opened is not None:
                with self._cond:
                    session.slot, session.since = None, None
                self._m._finish(execution_id, JobResult(status="failed", error=opened), spec=spec)
                return
        started = time.monotonic()
        result = slot.step(
            Job(execution_id, spec), session.key, functools.partial(self._m._output_written, execution_id)
        )
        self._m.metrics.run_time.labels("live").observe(time.monotonic() - started)
        session.last_used = time.monotonic()
        gone = slot.lost()
        if gone:
            with self._cond:
                for name, why in gone.items():
                    other = self._sessions.get(name)
                    if other is not None and other is not session and other.slot == slot.index:
                        other.slot, other.since, other.lost = None, None, why
                session.slot, session.since = None, None
            where = self._where_next(session)
            result = dataclasses.replace(
                result,
                error=f"{result.error}; the live session {session.name!r} was lost with its worker: the next "
                f"step resumes from {where}",
            )
        elif result.status == "waiting":  # its context ended: the session goes on from the resume
            with self._cond:
                session.slot, session.since = None, None
            session.heap_known, session.dirty = False, False
        elif result.session_ended is not None:
            with self._cond:
                session.slot, session.since = None, None
            result = dataclasses.replace(
                result,
                error=f"{result.error}; the live session {session.name!r} ended (V8 does not reuse a context "
                f"after that): the next step resumes from {self._where_next(session)}",
            )
        else:
            session.dirty = True
        result = self._m._publish(execution_id, result, spec)
        if result.status == "waiting":  # it resumes as an execution, with a heap to go on from
            self._m._finish(execution_id, result, spec=dataclasses.replace(spec, snapshot=True))
            return
        if result.heap is not None:
            session.heap, session.heap_known = result.heap, True
            session.dirty, session.last_snapshot = False, time.monotonic()
        self._m._finish(execution_id, result, spec=spec)

    def _open(self, slot: LiveSlot, session: _Session, spec: ExecutionSpec) -> str | None:
        """Makes the session live on ``slot``; None, or the step's error."""
        heap = spec.heap if spec.heap is not None else self._resume_from(session)
        fd = None
        try:
            if heap is not None:
                try:
                    if spec.heap is None:  # the session's latest: resumed while its tenant still owns it
                        self._m._catalogue.use(heap, tenant=session.tenant)
                    fd = sealed_heap(self._m._catalogue.open(heap))
                except HeapNotFound:
                    return f"heap {heap} not found: session {session.name!r} cannot resume from it"
                except (HeapNotSigned, HeapStoreUnavailable) as e:
                    return str(e)
                except OSError as e:
                    return f"cannot restore heap: {e.strerror or e}"
            slot.open(session.key, spec.limits.heap_limit_mb, heap, fd)
        except LiveSessionError as e:
            return f"live session {session.name!r} could not be opened: {e}"
        finally:
            if fd is not None:
                os.close(fd)
        with self._cond:
            session.since = _now()
        session.heap, session.heap_known = heap, True
        session.dirty, session.last_snapshot = False, time.monotonic()
        return None

    # -- snapshots and closes --------------------------------------------------------------
    def _record_heap(self, session: _Session, key: str, envelope: bytes, reason: str) -> None:
        """Publishes the heap and records it in the session's log (an execution of no code,
        tagged ``live_snapshot``), so it is the session's latest heap."""
        self._m._catalogue.add(key, envelope, session=session.name, tags=None, tenant=session.tenant)
        execution_id = str(uuid.uuid4())
        self._m._output.create(execution_id)
        self._m._executions.create(
            execution_id,
            session=session.name,
            tags={LIVE_SNAPSHOT_TAG: reason},
            heap_in=None,
            code_bytes=0,
            owner=self._m._owner,
            tenant=session.tenant,
        )
        self._m._output.seal(execution_id)
        self._m._executions.finish(execution_id, "completed", heap_out=key, duration_ms=0.0)
        session.heap, session.heap_known = key, True
        session.dirty, session.last_snapshot = False, time.monotonic()

    def _snapshot(self, slot: LiveSlot, session: _Session, item: _Item) -> None:
        if session.slot != slot.index:
            item.error = f"session {session.name!r} is not live here"
            return
        if not session.dirty and session.heap is not None:
            item.heap = session.heap  # nothing changed since that heap
            return
        try:
            key, envelope = slot.snapshot(session.key)
            self._record_heap(session, key, envelope, item.reason)
            item.heap = key
        except (LiveSessionError, HeapStoreUnavailable, HeapNotFound, OSError) as e:
            item.error = f"session {session.name!r} could not be snapshotted: {e}"

    def _close(self, slot: LiveSlot, session: _Session, item: _Item) -> None:
        if session.slot != slot.index:
            item.error = f"session {session.name!r} is not live here"
            return
        keep = item.snapshot and session.dirty
        try:
            made = slot.close(session.key, snapshot=keep)
            if made is not None:
                self._record_heap(session, made[0], made[1], item.reason)
            item.heap = session.heap if item.snapshot else None
        except (LiveSessionError, HeapStoreUnavailable, HeapNotFound, OSError) as e:
            item.error = f"session {session.name!r} could not be snapshotted before it closed: {e}"
            log.warning("%s", item.error)
        finally:
            with self._cond:
                session.slot, session.since = None, None

    # -- housekeeping ------------------------------------------------------------------------
    def _keep(self) -> None:
        """Queues the periodic snapshots of the sessions that changed and the closes of idle ones."""
        tick = max(0.05, min(1.0, self._snapshot_secs / 4, self._idle_secs / 4))
        with self._cond:
            while not self._closed:
                self._cond.wait(tick)
                now = time.monotonic()
                for session in self._sessions.values():
                    if session.slot is None or session.busy or session.items:
                        continue
                    if now - session.last_used >= self._idle_secs:
                        session.items.append(_Item(next(self._seq), "close", reason="idle"))
                    elif session.dirty and now - session.last_snapshot >= self._snapshot_secs:
                        session.items.append(_Item(next(self._seq), "snapshot", reason="periodic"))
                    else:
                        continue
                    self._cond.notify_all()
