"""The execution manager: the state machine between the HTTP layer and the workers.

An execution is ``running`` from the moment it is accepted (queued or executing, as the
contract says) until its first terminal transition (``completed``, ``failed``,
``cancelled``, ``timed_out``), which the execution store makes atomic: later transitions are
ignored, so a cancelled execution is never overwritten by what its worker reports
afterwards. A run whose script waits only on tool calls held for a person's decision ends
``waiting`` instead (its worker free, its heap published, the calls the server held recorded);
a decision takes it back to ``running`` and :meth:`ExecutionManager.resume` queues the resume
of that heap as a job of the same execution, appending to the same output log; a cancel or
the approval deadline ends it while it waits (:meth:`ExecutionManager.expire_waiting`).
The queue is bounded; a full queue is refused (``QueueFull``), never grown.
Worker crashes and restarts are logged and counted in the service's :class:`~..metrics.Metrics`,
which ``stats()`` (``GET /api/stats``) and ``GET /metrics`` both read; so are the executions
started here and how they ended (a run that pauses ends ``waiting``; its resume starts again),
their queue wait and run time, the heaps they restore and save.
Heaps are the catalogue's (:mod:`..storage.heap_catalogue`): the manager asks it to count a use,
for the verified bytes of a heap an execution resumes (handed to the worker as a sealed,
read-only descriptor: :mod:`.heap_fds`) and to publish and sign the heaps workers produce (which
the slot read from their descriptors and checked: :mod:`.pool`); long-polls and
followers are the waiters' (:mod:`.waiters`).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..logs import execution_context
from ..quotas import CONCURRENCY_RETRY_SECS, UNLIMITED, QuotaReached, QuotaSource, every_tenant
from ..storage import (
    TERMINAL_STATUSES,
    ExecutionRecord,
    ExecutionStore,
    HeapCatalogue,
    HeapNotFound,
    HeapNotSigned,
    HeapStoreUnavailable,
    OutputLog,
    ToolCallLog,
)
from ..storage.live_holds import LiveHolds
from .admission import Admission, unqueued_job
from .errors import QueueFull, ShuttingDown
from .gate import Gate
from .heap_fds import sealed_heap
from .live import LiveSessions
from .live_locks import SessionLocks
from .live_slot import LiveSlot
from .pool import (
    SpawnWorker,
    WorkerOptions,
    WorkerSlot,
    WorkerStartError,
    spawn_worker_process,
    worker_log_dir,
)
from .protocol import Job, JobResult
from .sandbox import default_mode
from .spec import ExecutionSpec, spec_from_wire, spec_to_wire
from .tenant_tools import TenantTools
from .tool_caller import ToolCaller
from .tool_calls import ToolCallRecord
from .tool_records import ToolCallRecorder
from .waiters import FinishEvents, Waiters

if TYPE_CHECKING:  # imported when a manager is made: workers import this package, not the library
    from ..metrics import Metrics
    from ..tracing import Tracing

DEFAULT_TOOL_CALLS_IN_FLIGHT = 64  # tool calls in flight across a manager's workers

log = logging.getLogger(__name__)

DEFAULT_APPROVAL_TIMEOUT_SECS = 3600.0


class CancelOutcome(Enum):
    ACCEPTED = "accepted"
    ALREADY_FINISHED = "already_finished"
    UNKNOWN = "unknown"


@dataclass
class _Queued:
    execution_id: str
    spec: ExecutionSpec
    tool_calls_made: int = 0  # a resume's: the calls its execution made before it paused
    since: float = dataclasses.field(default_factory=time.monotonic)  # accepted into this queue

    @property
    def mode(self) -> str:
        return self.spec.mode


class ExecutionManager:
    def __init__(
        self,
        *,
        executions: ExecutionStore,
        output: OutputLog,
        catalogue: HeapCatalogue,
        data_dir: Path,
        workers: int,
        queue_limit: int,
        spawn_worker: SpawnWorker = spawn_worker_process,
        owner: str | None = None,
        log_dir: Path | None = None,
        admission: Admission | None = None,
        events: FinishEvents | None = None,
        recheck_secs: float | None = None,
        sandbox: str | None = None,
        max_data_mb: int = 0,
        jitless: bool = False,
        warm_heap_mb: int = 0,
        tool_caller: ToolCaller | None = None,
        metrics: Metrics | None = None,
        tool_calls_in_flight: int = DEFAULT_TOOL_CALLS_IN_FLIGHT,
        tool_records: ToolCallLog | None = None,
        approval_timeout_secs: float = DEFAULT_APPROVAL_TIMEOUT_SECS,
        tracing: Tracing | None = None,
        live_workers: int = 0,
        live_sessions_per_worker: int = 1,
        live_snapshot_secs: float = 60.0,
        live_idle_secs: float = 300.0,
        live_holds: LiveHolds | None = None,
        quotas: QuotaSource | None = None,
    ) -> None:
        """``catalogue`` answers for heaps: a heap is counted as used, fetched (when shared) and
        verified before an execution resuming it is accepted, verified again as its bytes are
        handed to the worker, and one a worker produced is published, signed and indexed before
        its execution is recorded.
        ``owner`` is recorded with each execution (the process's lease on a shared data
        directory); ``log_dir`` is where workers write their stderr (default: in ``data_dir``).
        ``admission`` is where submits go when executions are shared (:mod:`.admission`; None:
        this manager's own queue). ``events`` announce the ends of executions to other processes
        or nodes and deliver theirs; ``recheck_secs`` bounds the wait for one that was lost (see
        :class:`~.waiters.Waiters`). An end another process or node announces for an execution
        running here (a cancel written there) stops it here once its record says so. What an execution may do (limits, fetch) comes
        with its :class:`~.spec.ExecutionSpec`. ``sandbox`` is the workers' mode (:mod:`.sandbox`;
        default ``require`` on Linux) and ``max_data_mb`` their ``RLIMIT_DATA``; ``jitless`` runs their
        V8 without its JIT compilers; ``warm_heap_mb`` (0: off) has each worker prepare its next
        isolate while idle, first with that heap cap (:func:`.worker._prepare_next`). ``tool_caller`` makes the scripts' tool calls, under
        the limits of each one's spec (None: every call is refused), at most ``tool_calls_in_flight``
        at once across the manager's workers (a call past it waits for a place); each call's
        record is written to ``tool_records`` (buffered: :class:`~.tool_records.ToolCallRecorder`),
        an execution's before its terminal status. ``metrics``: where what happens
        here is counted (default: metrics of its own). An execution
        whose script waits only on tool calls held for a decision is recorded ``waiting`` (its
        worker is free at once) and fails undecided after ``approval_timeout_secs``
        (:meth:`expire_waiting`); :meth:`resume` runs it on, once decided (:mod:`.approvals`).
        ``tracing``: the traces of the executions submitted here (:mod:`mcp_v8.tracing`; None: off).
        ``live_workers`` run live sessions (:mod:`.live`), ``live_sessions_per_worker`` each,
        snapshotted every ``live_snapshot_secs`` while they change and closed after
        ``live_idle_secs`` idle, held under ``live_holds`` (default: lock files in ``data_dir``;
        the nodes of a database hold them in it, and a step for a session another node holds is
        queued for that node through ``admission``). ``quotas``: each tenant's
        (:mod:`mcp_v8.quotas`; None: unlimited), which a submit here passes (a refusal is
        :class:`~mcp_v8.quotas.QuotaReached`): its queued executions in this manager's queue, the
        rest in the transaction that records it; its scripts' tool calls go through
        :class:`~.tenant_tools.TenantTools`."""
        self.quotas: QuotaSource = quotas or every_tenant(UNLIMITED)
        self._owner = owner
        self._approval_timeout = approval_timeout_secs
        self._catalogue = catalogue
        self._admission = admission
        self._executions = executions
        self._output = output
        self._queue_limit = queue_limit
        self._lock = threading.Condition()
        self._queue: collections.deque[_Queued] = collections.deque()
        self._reserved = 0  # places taken by submits whose record is being written
        self._reserved_by: collections.Counter[str] = collections.Counter()  # of them, each tenant's
        self._executing: dict[str, WorkerSlot] = {}
        # Executions started here (taken into this queue) whose end is not counted yet: their mode.
        self._started: dict[str, str] = {}
        # Under _lock: the executions submitted here to the nodes' queue whose root span, begun
        # here, ends when this node hears of their end.
        self._traced_elsewhere: set[str] = set()
        # Decided executions whose approved calls are being made here, before their resume:
        # how to abandon those calls (a cancel here, or written by another process or node).
        self._deciding: dict[str, Callable[[], None]] = {}
        # Executions accepted here and not yet terminal, their long-polls and followers.
        self.waiters = Waiters(
            self._read, events=events, recheck_secs=recheck_secs, ended_elsewhere=self._ended_elsewhere
        )
        self._closed = False
        self._dispatchers: list[threading.Thread] = []
        # The counters are the metrics' (thread-safe); the latest crash and violation, which
        # dispatcher threads write and stats() reads, have a lock of their own.
        if metrics is None:
            from ..metrics import Metrics

            metrics = Metrics()
        self.metrics = metrics
        if tracing is None:
            from ..tracing import OFF

            tracing = OFF
        self.tracing: Tracing = tracing
        self._stats_lock = threading.Lock()
        self._created = time.monotonic()
        self._last_crash: dict[str, str] | None = None
        self._last_violation: dict[str, str] | None = None
        log_dir = log_dir or worker_log_dir(data_dir)
        self._sandbox = sandbox or default_mode()
        options = WorkerOptions(
            sandbox=self._sandbox,
            max_data_mb=max_data_mb,
            jitless=jitless,
            warm_heap_mb=warm_heap_mb,
            trace=tracing.enabled,
        )
        self.jitless = jitless
        tool_gate = Gate(tool_calls_in_flight)
        self.tenant_tools = TenantTools(self.quotas, on_refused=self._quota_refused)
        self.tool_records = None if tool_records is None else ToolCallRecorder(tool_records)
        self._slots = [
            WorkerSlot(
                i,
                log_dir,
                options,
                spawn=spawn_worker,
                on_crash=functools.partial(self._worker_crashed, i),
                on_restart=functools.partial(self._worker_restarted, i),
                on_violation=functools.partial(self._sandbox_violation, i),
                tool_caller=tool_caller,
                metrics=self.metrics,
                tool_gate=tool_gate,
                on_tool_record=None if self.tool_records is None else self.tool_records.record,
                tracing=tracing,
                tenant_tools=self.tenant_tools,
            )
            for i in range(workers)
        ]
        self.metrics.workers.set(workers)
        live_dir = log_dir / "live"
        live_dir.mkdir(parents=True, exist_ok=True)
        self.live = LiveSessions(
            self,
            [
                LiveSlot(
                    i,
                    live_dir,
                    options,
                    spawn=spawn_worker,
                    on_crash=functools.partial(self._worker_crashed, i),
                    on_violation=functools.partial(self._sandbox_violation, i),
                    tool_caller=tool_caller,
                    metrics=self.metrics,
                    tool_gate=tool_gate,
                    on_tool_record=None if self.tool_records is None else self.tool_records.record,
                    tenant_tools=self.tenant_tools,
                )
                for i in range(live_workers)
            ],
            sessions_per_worker=live_sessions_per_worker,
            snapshot_secs=live_snapshot_secs,
            idle_secs=live_idle_secs,
            queue_limit=queue_limit,
            locks=(live_holds or SessionLocks(data_dir / "live-sessions", f"lease {owner}"))
            if live_workers
            else None,
            forward=None if admission is None else admission.forward_live,
            quotas=self.quotas,
            on_refused=self._quota_refused,
        )

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        """Starts every worker (so a broken engine fails at start, not at the first
        request), then one dispatcher thread per worker."""
        for slot in self._slots:
            slot.start()
        walls = self._slots[0].walls if self._slots else None
        if walls is not None and walls.missing:
            log.warning("worker sandbox (%s): missing %s", walls.mode, "; ".join(walls.missing))
        self.live.start()
        self.waiters.start()
        for slot in self._slots:
            thread = threading.Thread(
                target=self._dispatch, args=(slot,), daemon=True, name=f"mcp-v8-dispatch-{slot.index}"
            )
            thread.start()
            self._dispatchers.append(thread)

    def close(self, join_timeout: float = 10.0) -> None:
        """Fails what is queued, stops the workers, and waits (up to ``join_timeout`` seconds)
        for the dispatchers to record how their executions ended: the stores they write to
        are closed after this returns."""
        self.live.close()  # its sessions' heaps recorded while the stores are open
        with self._lock:
            self._closed = True
            pending = list(self._queue)
            self._queue.clear()
            self._gauges()
            self._lock.notify_all()
        for item in pending:
            self._finish(
                item.execution_id, JobResult(status="failed", error="server shut down before it started")
            )
        for slot in self._slots:
            slot.stop()
        deadline = time.monotonic() + join_timeout
        for thread in self._dispatchers:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        self.waiters.close()
        if self.tool_records is not None:
            self.tool_records.close()

    # -- API -------------------------------------------------------------------------
    def submit(self, spec: ExecutionSpec, traceparent: str | None = None) -> str:
        """Accepts an execution of ``spec`` (see :class:`~.admission.Admission`); returns its id.
        ``traceparent``: the caller's W3C trace context, which its trace joins (traces on)."""
        begun = time.time_ns()
        if self._admission is not None:
            return self._admit(self._admission, spec, traceparent, begun)
        execution_id = str(uuid.uuid4())
        if spec.heap is not None:  # before the lock: an unknown heap is refused before a full queue
            self._catalogue.use(spec.heap, tenant=spec.tenant)  # one of its tenant's heaps
            self._catalogue.fetch(spec.heap)
        with self._lock:
            if self._closed:
                raise ShuttingDown("the server is shutting down")
            if len(self._queue) + self._reserved >= self._queue_limit:
                raise QueueFull(f"the queue is full ({self._queue_limit} executions waiting); retry later")
            self._check_queued(spec.tenant)
            self._reserved += 1
            self._reserved_by[spec.tenant] += 1
            self._started[execution_id] = spec.mode  # its end is counted from here on
        self.waiters.accept(
            execution_id, spec.tenant
        )  # live before its record exists: never running and unknown here
        trace_id = self._trace_begin(execution_id, spec, traceparent, begun)
        try:  # the writes happen outside the lock the dispatchers need
            self._record(execution_id, spec, self._owner, trace_id)
        except BaseException:
            with self._lock:
                self._reserved -= 1
                self._reserved_by[spec.tenant] -= 1
                self._started.pop(execution_id, None)
            self.waiters.forget(execution_id)
            self.tracing.end(execution_id, {"execution.status": "refused"})
            raise
        self.metrics.executions_started.labels(spec.mode).inc()
        with self._lock:
            self._reserved -= 1
            self._reserved_by[spec.tenant] -= 1
            accepted = not self._closed
            if accepted:
                self._enqueue(_Queued(execution_id, spec))
                self._lock.notify()
        self.tracing.record(execution_id, "submit", begun, time.time_ns())
        if not accepted:
            self._finish(execution_id, JobResult(status="failed", error="server shut down before it started"))
        return execution_id

    def _check_queued(self, tenant: str) -> None:
        """Refuses (under ``_lock``) a submit of ``tenant`` when its executions waiting in this
        queue (or being recorded for it) are at its ``queued_executions`` quota."""
        limit = self.quotas(tenant).queued_executions
        if limit is None:
            return
        waiting = self._reserved_by[tenant] + sum(1 for i in self._queue if i.spec.tenant == tenant)
        if waiting >= limit:
            e = QuotaReached(
                tenant, "queued_executions", limit, CONCURRENCY_RETRY_SECS, f"{waiting} executions queued"
            )
            self._quota_refused(e)
            raise e

    def queued_of(self, tenant: str) -> int:
        """How many executions of ``tenant`` wait in this process's queue (one machine) or in the
        nodes' queue (for every node)."""
        if self._admission is not None:
            return self._admission.queued_of(tenant)
        with self._lock:
            return self._reserved_by[tenant] + sum(1 for i in self._queue if i.spec.tenant == tenant)

    def _quota_refused(self, e: QuotaReached) -> None:
        self.metrics.quota_refused(e.tenant, e.quota)

    def _admit(self, admission: Admission, spec: ExecutionSpec, traceparent: str | None, begun: int) -> str:
        """:meth:`submit` to the nodes' queue. A traced execution's root begins here and its
        context goes with the job; it ends when this node hears of the end (:meth:`wake`)."""
        with self._lock:
            if self._closed:
                raise ShuttingDown("the server is shutting down")
        execution_id = str(uuid.uuid4())
        trace_id = self._trace_begin(execution_id, spec, traceparent, begun)
        if trace_id is not None:
            with self._lock:
                self._traced_elsewhere.add(execution_id)
        try:
            admission.admit(execution_id, spec, self.tracing.traceparent(execution_id), trace_id)
        except BaseException as e:
            if isinstance(e, QuotaReached):
                self._quota_refused(e)
            with self._lock:
                self._traced_elsewhere.discard(execution_id)
            self.tracing.end(execution_id, {"execution.status": "refused"})
            raise
        self.tracing.record(execution_id, "submit", begun, time.time_ns())
        return execution_id

    def _end_traces_elsewhere(self, execution_id: str | None) -> None:
        """Ends the roots begun here of executions submitted to the nodes' queue that ended
        (``execution_id``, or every one: events may have been lost), wherever they ran."""
        with self._lock:
            ids = list(self._traced_elsewhere) if execution_id is None else [execution_id]
            ids = [i for i in ids if i in self._traced_elsewhere]
        for eid in ids:
            if not self.tracing.live(eid):  # ended here (it ran here, or was refused)
                with self._lock:
                    self._traced_elsewhere.discard(eid)
                continue
            try:
                record = self._executions.get(eid)
            except Exception as e:  # the next event, or the next reconnection, looks again
                log.warning("could not read execution %s to end its trace: %s", eid, e)
                continue
            if record is None or record.status in TERMINAL_STATUSES or record.status == "waiting":
                with self._lock:
                    self._traced_elsewhere.discard(eid)
                self.tracing.end(eid, {"execution.status": None if record is None else record.status})

    def _trace_begin(
        self, execution_id: str, spec: ExecutionSpec, traceparent: str | None, begun: int
    ) -> str | None:
        """Starts the execution's trace (traces on), its root from ``begun``; its id."""
        if not self.tracing.enabled:
            return None
        attributes = {"execution.mode": spec.mode, "session": spec.session}
        return self.tracing.begin(execution_id, traceparent, attributes, begun)

    def _record(
        self, execution_id: str, spec: ExecutionSpec, owner: str | None, trace_id: str | None = None
    ) -> None:
        """Creates the execution's output log, then its record (running, started now): a record
        is never without its log, even after a crash in between. The record of an execution
        resuming a heap is created only while the catalogue's index holds the heap, in one step
        with that check, which a deletion of the heap serialises with (the heap is then in use
        until the execution is terminal, for every node)."""
        self._output.create(execution_id)
        try:
            self._executions.create(
                execution_id,
                session=spec.session,
                tags=dict(spec.tags) or None,
                heap_in=spec.heap,
                code_bytes=spec.code_bytes,
                owner=owner,
                require_heap=spec.heap is not None,
                trace_id=trace_id,
                tenant=spec.tenant,
                quotas=self.quotas(spec.tenant),
            )
        except BaseException as e:
            if isinstance(e, QuotaReached):
                self._quota_refused(e)
            self._output.delete([execution_id])
            raise

    def adopt(self, execution_id: str, job: dict[str, Any]) -> None:
        """Runs here an execution this node claimed from the shared queue (recorded by the node
        that accepted it; ``job`` is its spec as queued, :func:`~.spec.spec_to_wire`'s form, read
        back by :func:`~.spec.spec_from_wire`). Never raises: when
        it cannot be queued here (a job this release cannot read, a heap that cannot be cached
        here, a bug), the execution fails with the reason, announced to every node. It is not
        handed back to the queue: nothing of it ran, but what failed here (the job, this node's
        disk) would most likely fail again, on this node at once, and a job that bounced between
        nodes would never answer its client; a failure is an answer, and a submit again is one
        request away."""
        wire, traceparent = unqueued_job(job)
        self.tracing.join(execution_id, traceparent)  # its spans here join the trace of its submit
        with execution_context(execution_id, self.tracing.trace_id(execution_id)):
            try:
                self._adopt(execution_id, spec_from_wire(wire))
            except Exception as e:
                log.exception("could not start claimed execution %s", execution_id)
                self._record_failure(execution_id, f"the execution could not be started on its node: {e}")

    def adopt_live(self, execution_id: str, job: dict[str, Any]) -> None:
        """Runs here a live step another node queued for this one (it holds the step's session),
        as :meth:`adopt` runs a job. Never raises."""
        wire, traceparent = unqueued_job(job)
        self.tracing.join(execution_id, traceparent)
        with execution_context(execution_id, self.tracing.trace_id(execution_id)):
            try:
                spec = spec_from_wire(wire)
            except Exception as e:
                self._record_failure(execution_id, f"the live step could not be started on its node: {e}")
                return
            self.live.adopt(execution_id, spec)

    def _adopt(self, execution_id: str, spec: ExecutionSpec) -> None:
        made = None
        if spec.heap is not None:
            try:
                self._catalogue.fetch(spec.heap)
            except (HeapNotFound, HeapNotSigned, HeapStoreUnavailable) as e:
                self._finish_elsewhere(execution_id, f"its heap could not be read: {e}")
                return
            record = self._executions.get(execution_id)  # a resume runs on from the heap it paused in
            if record is not None and record.waiting_heap == spec.heap:
                made = record.tool_calls_made or 0
        with self._lock:
            self._started[execution_id] = spec.mode  # before a cancel can end it here
        self.metrics.executions_started.labels(spec.mode).inc()
        self.waiters.accept(execution_id, spec.tenant)
        if made is None:
            self._output.adopt(execution_id)  # its output is buffered here, as if submitted here
        with self._lock:
            if self._closed:
                accepted = False
            else:
                accepted = True
                self._enqueue(_Queued(execution_id, spec, tool_calls_made=made or 0))
                self._lock.notify_all()
        if not accepted:
            self._finish(execution_id, JobResult(status="failed", error="server shut down before it started"))

    def _finish_elsewhere(self, execution_id: str, error: str) -> None:
        record = self._executions.finish(execution_id, "failed", error=error)
        if record is not None:
            self.waiters.announce(execution_id)

    def deciding(self, execution_id: str, abandon: Callable[[], None]) -> bool:
        """The approved calls of ``execution_id``, taken back to ``running`` by a decision, are
        about to be made here (:mod:`.approvals`): it is live here until :meth:`resume`, and a
        cancel (here, or written by another process or node) calls ``abandon``. False when it
        is no longer running (a cancel came first): make nothing."""
        with self._lock:
            self._deciding[execution_id] = abandon
        self.waiters.accept(execution_id)
        record = self._executions.get(execution_id)  # a cancel before the line above found it nowhere
        if record is not None and record.status == "running":
            return True
        with self._lock:
            self._deciding.pop(execution_id, None)
        self.waiters.forget(execution_id)
        return False

    def undecided(self, execution_id: str) -> None:
        """The approved calls of ``execution_id`` were abandoned or failed: it is no longer live
        here (see :meth:`deciding`)."""
        with self._lock:
            self._deciding.pop(execution_id, None)
        self.waiters.forget(execution_id)

    def _abandon_decision(self, execution_id: str) -> None:
        with self._lock:
            abandon = self._deciding.pop(execution_id, None)
        if abandon is not None:
            abandon()

    def tool_call_recorded(self, execution_id: str, record: ToolCallRecord) -> None:
        """A tool call of ``execution_id`` made (or denied) outside a worker's job (the approved
        calls of a decision): counted and recorded as a job's are."""
        self.metrics.tool_call(record.outcome)
        if self.tool_records is not None:
            self.tool_records.record(execution_id, record)

    def resume(self, execution_id: str, spec: ExecutionSpec, tool_calls_made: int) -> None:
        """Runs on an execution taken back from ``waiting`` to ``running`` (its decision made:
        :mod:`.approvals`): ``spec`` resumes the heap it paused in and settles its calls, with the
        rest of its budget of calls. Queued here, or in the nodes' queue (any node with a free
        worker runs it), regardless of the queue's limit: it was admitted before. Its console
        output goes on in the same log."""
        with self._lock:
            self._deciding.pop(execution_id, None)
        if self._admission is not None:
            self.waiters.forget(execution_id)  # live where a node claims it (maybe this one)
            # A node claims only a running execution's job; it joins the trace of its submit.
            self._admission.resume(execution_id, spec, self.tracing.traceparent(execution_id))
            return
        self.waiters.accept(execution_id, spec.tenant)
        # A cancel that came before it was live here found nothing to stop: it must not run.
        # One that comes from now on finds it live (queued or executing), as any other.
        record = self._executions.get(execution_id)
        if record is None or record.status != "running":
            self.waiters.forget(execution_id)
            return
        with self._lock:
            accepted = not self._closed
            if accepted:
                self._started[execution_id] = spec.mode  # a run of its own, counted as any
                self._enqueue(_Queued(execution_id, spec, tool_calls_made))
                self._lock.notify()
        if accepted:
            self.metrics.executions_started.labels(spec.mode).inc()
        if not accepted:
            self._finish(execution_id, JobResult(status="failed", error="server shut down before it resumed"))

    def fail(self, execution_id: str, error: str) -> None:
        """Fails a running execution this process holds no job of (retrying while the stores
        fail, see :meth:`_record_failure`)."""
        self._record_failure(execution_id, error)

    def expire_waiting(self) -> list[str]:
        """Fails the waiting executions whose approval deadline passed (on several nodes, each
        once: the store's transition decides); returns them."""
        expired = self._executions.expire_waiting(
            f"no decision on its held tool calls within {self._approval_timeout:g} s (--approval-timeout-secs)"
        )
        for record in expired:
            self.waiters.announce(record.execution_id)
        return [r.execution_id for r in expired]

    def wait_for_capacity(self, timeout: float) -> bool:
        """Waits until a worker here is free and nothing waits in this node's queue; False when
        ``timeout`` passed first or the manager closed."""
        with self._lock:
            return (
                self._lock.wait_for(
                    lambda: self._closed or (not self._queue and len(self._executing) < len(self._slots)),
                    timeout,
                )
                and not self._closed
            )

    def _ended_elsewhere(self, execution_id: str) -> None:
        """Another process or node says the execution, live here, ended (it wrote a cancel). An
        event proves nothing (any local user can send a datagram): the record decides."""
        record = self._executions.get(execution_id)
        if record is not None and record.status in TERMINAL_STATUSES:
            self.stop_here(execution_id)

    def stop_here(self, execution_id: str) -> None:
        """Another node or process cancelled this execution (its terminal status is written):
        stops it here if it runs or waits here."""
        if not self.waiters.is_live(execution_id):
            return
        self._abandon_decision(execution_id)
        with self._lock:
            queued = self._unqueue(execution_id)
            slot = self._executing.get(execution_id)
        if slot is not None:
            slot.cancel(execution_id)  # the dispatcher then finds it terminal and only cleans up
            return
        if queued is None:  # a live step of a session held here, sent by another node
            live = self.live.take(execution_id)
            if live is not None:
                live.cancel(execution_id)
                return
        self._finish(execution_id, JobResult(status="cancelled", error="execution cancelled"))

    def wake(self, execution_id: str | None = None) -> None:
        """An execution became terminal on another node (None: events may have been lost): the
        long-polls waiting here for it (for any execution not running here) read it again, and
        the trace of one submitted here ends."""
        self.waiters.wake(execution_id)
        if self.tracing.enabled:
            self._end_traces_elsewhere(execution_id)

    def cancel(self, execution_id: str) -> CancelOutcome:
        if not self.waiters.is_live(execution_id):
            record = self._executions.get(execution_id)
            if record is None:
                return CancelOutcome.UNKNOWN
            if record.status in TERMINAL_STATUSES:
                return CancelOutcome.ALREADY_FINISHED
        with self._lock:
            self._unqueue(execution_id)
            slot: WorkerSlot | None = self._executing.get(execution_id)
        if slot is None:
            slot = self.live.take(execution_id)  # a live step: unqueued, or where it runs
        if slot is not None:  # their records are written with the cancel
            slot.end_tool_calls(execution_id)
        cancelled = JobResult(status="cancelled", error="execution cancelled")
        if not self._finish(execution_id, cancelled, waiting=True):  # a waiting one ends too
            return CancelOutcome.ALREADY_FINISHED
        self._abandon_decision(execution_id)  # its approved calls, if they are being made here
        if slot is not None:
            slot.cancel(execution_id)
        elif self._admission is not None:  # it may run on another node
            self._admission.cancelled(execution_id)
        return CancelOutcome.ACCEPTED

    def wait(self, execution_id: str, timeout: float, tenant: str | None = None) -> ExecutionRecord | None:
        """See :meth:`~.waiters.Waiters.wait`: the terminal record, or None when the caller must
        read it (the wait timed out); with ``tenant``, never a wait on another tenant's."""
        with self.tracing.span(execution_id, "long_poll", {"long_poll.timeout_ms": int(timeout * 1000)}):
            return self.waiters.wait(execution_id, timeout, tenant)

    def follow(self, execution_id: str, listener: Callable[[str | None], None]) -> Callable[[], None]:
        """Calls ``listener(text)`` with each batch of console output the execution writes from
        now on (after the output log has it), then ``listener(None)`` once it is terminal: at
        once when it is not running here. Returns the function that stops following. The
        listener runs on a dispatcher thread: it must only hand the text on, never block."""
        return self.waiters.follow(execution_id, listener)

    def _output_written(self, execution_id: str, text: str) -> None:
        self._output.append(execution_id, text)
        self.metrics.output_bytes.inc(len(text.encode("utf-8", "surrogatepass")))
        self.waiters.output(execution_id, text)

    def stats(self) -> dict[str, Any]:
        """Counters for operators (``GET /api/stats``)."""
        with self._lock:
            busy, queued = len(self._executing), len(self._queue)
        metrics = self.metrics
        with self._stats_lock:  # each last one after its count: a crash counted shows
            crashes, restarts = metrics.total(metrics.worker_crashes), metrics.total(metrics.worker_restarts)
            last = dict(self._last_crash) if self._last_crash is not None else None
            violations = metrics.total(metrics.sandbox_violations)
            last_violation = dict(self._last_violation) if self._last_violation is not None else None
        walls = next((slot.walls for slot in self._slots if slot.walls is not None), None)
        missing = sorted({m for slot in self._slots if slot.walls is not None for m in slot.walls.missing})
        return {
            "uptime_secs": round(time.monotonic() - self._created, 3),
            "workers": len(self._slots),
            "workers_busy": busy,
            "queued": queued,
            "worker_crashes": crashes,
            "worker_restarts": restarts,
            "last_worker_crash": last,
            "heaps_refused": self._catalogue.refusals(),
            "live": self.live.stats(),
            "sandbox": {
                "mode": self._sandbox,
                "walls": None if walls is None else {**walls.to_dict(), "missing": missing},
                "violations": violations,
                "last_violation": last_violation,
            },
        }

    # -- internals -------------------------------------------------------------------
    def _worker_crashed(self, index: int, execution_id: str, reason: str) -> None:
        log.warning("worker %d crashed while running execution %s: %s", index, execution_id, reason)
        at = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        with self._stats_lock:
            self.metrics.worker_crashes.inc()
            self._last_crash = {"execution_id": execution_id, "reason": reason, "at": at}

    def _sandbox_violation(self, index: int, execution_id: str, syscall: str) -> None:
        log.warning(
            "worker %d ended by the sandbox under execution %s: system call %s", index, execution_id, syscall
        )
        at = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        with self._stats_lock:
            self.metrics.sandbox_violations.inc()
            self._last_violation = {"execution_id": execution_id, "syscall": syscall, "at": at}

    def _worker_restarted(self, index: int) -> None:
        log.info("worker %d replaced by a new process", index)
        self.metrics.worker_restarts.inc()

    def _read(self, execution_id: str) -> ExecutionRecord | None:
        return self._executions.get(execution_id)

    def _finish(
        self,
        execution_id: str,
        result: JobResult,
        *,
        spec: ExecutionSpec | None = None,
        waiting: bool = False,
    ) -> bool:
        """Records how the execution ended, unless it is terminal already (another node or a
        cancel wrote it first: then this node's part of it ends all the same), or that it waits
        for a decision (``result`` ``waiting``; ``spec``: what it ran, which its resume runs
        under). ``waiting``: a waiting execution may end too (a cancel). Returns whether this
        call wrote it."""
        # Output first, so a client that sees the terminal status reads all of it; the tool
        # calls' records too.
        self._output.seal(execution_id)
        if self.tool_records is not None:
            self.tool_records.flush(execution_id)
        record: ExecutionRecord | None
        if result.status == "waiting":
            assert spec is not None and result.heap is not None
            record = self._executions.pause(
                execution_id,
                pending=result.pending_tool_calls,
                heap=result.heap,
                tool_calls_made=result.tool_calls_made or 0,
                resume_spec=spec_to_wire(dataclasses.replace(spec, code="", heap=None)),
                approval_timeout_secs=self._approval_timeout,
                duration_ms=result.duration_ms,
            )
        else:
            record = self._executions.finish(
                execution_id,
                result.status,
                result=result.result,
                error=result.error,
                heap_out=result.heap,
                duration_ms=result.duration_ms,
                js_error=result.js_error,
                waiting=waiting,
            )
        written = record is not None
        if not written:
            if not self.waiters.is_live(execution_id):
                return False
            record = self._executions.get(execution_id)  # cancelled by another process or node
        self._count_end(execution_id, record)
        if record is not None:
            self.tracing.end(execution_id, {"execution.status": record.status})
        # Handed over here before it is announced: this process's waiters never read it again.
        self.waiters.finished(execution_id, record)
        if written:
            self.waiters.announce(execution_id)
        return written

    def _count_end(self, execution_id: str, record: ExecutionRecord | None) -> None:
        """Counts the end of an execution started here, once: when this process writes it or
        reads it (another process or node wrote it first)."""
        with self._lock:
            mode = self._started.pop(execution_id, None)
        if mode is not None and record is not None:
            self.metrics.executions_ended.labels(record.status, mode).inc()

    def _record_failure(self, execution_id: str, error: str) -> None:
        """Records the execution as failed, retrying while the stores fail (a database away for
        longer than its pool waits): an exception here would end the dispatcher thread, losing
        its worker for good and leaving the execution running. Gives up only when closing."""
        delay = 0.5
        while True:
            try:
                self._finish(execution_id, JobResult(status="failed", error=error))
                return
            except Exception as e:
                with self._lock:
                    closed = self._closed
                if closed:
                    log.error("could not record the failure of execution %s: %s", execution_id, e)
                    return
                log.warning("could not record the failure of execution %s (%s); retrying", execution_id, e)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _next(self, slot: WorkerSlot) -> _Queued | None:
        """Takes the oldest queued execution and marks it executing on ``slot`` in one
        step, so a cancel always finds it in one place or the other."""
        with self._lock:
            while not self._queue and not self._closed:
                self._lock.wait()
            if self._closed:
                return None
            item = self._queue.popleft()
            self._executing[item.execution_id] = slot
            self._gauges()
        waited = time.monotonic() - item.since
        self.metrics.queue_wait.observe(waited)
        if self.tracing.enabled:
            now = time.time_ns()
            self.tracing.record(item.execution_id, "queue", now - int(waited * 1e9), now)
        return item

    def _dispatch(self, slot: WorkerSlot) -> None:
        while True:
            item = self._next(slot)
            if item is None:
                return
            with execution_context(item.execution_id, self.tracing.trace_id(item.execution_id)):
                try:
                    self._execute(slot, item)
                except Exception as e:  # never lose an execution to a bug in this thread
                    self._record_failure(item.execution_id, f"internal error: {e}")
                finally:
                    with self._lock:
                        self._executing.pop(item.execution_id, None)
                        self._gauges()
                        self._lock.notify_all()  # a free worker: the cluster's feeder may claim

    def _run(self, slot: WorkerSlot, item: _Queued) -> JobResult:
        """Runs ``item`` on ``slot``, handing the worker the verified bytes of the heap it resumes
        as a sealed, read-only descriptor (closed here once the worker is done with it)."""
        fd = None
        metrics = self.metrics
        if item.spec.heap is not None:
            try:
                started = time.monotonic()
                with self.tracing.span(item.execution_id, "heap_load"):
                    data = self._catalogue.open(item.spec.heap)
                    fd = sealed_heap(data)
                metrics.restore_time.observe(time.monotonic() - started)
                metrics.restore_size.observe(len(data))
                del data
            except HeapNotFound:
                return JobResult(status="failed", error=f"heap {item.spec.heap} not found")
            except (HeapNotSigned, HeapStoreUnavailable) as e:
                return JobResult(status="failed", error=str(e))
            except OSError as e:
                return JobResult(status="failed", error=f"cannot restore heap: {e.strerror or e}")
        started, begun = time.monotonic(), time.time_ns()
        try:
            result = slot.run(
                Job(item.execution_id, item.spec, heap_fd=fd, tool_calls_made=item.tool_calls_made),
                lambda text: self._output_written(item.execution_id, text),
            )
            self._trace_worker(slot, item, begun, result)
            return result
        except WorkerStartError as e:
            log.warning("worker %d could not start for execution %s: %s", slot.index, item.execution_id, e)
            return JobResult(status="failed", error=str(e))
        finally:
            metrics.run_time.labels(item.mode).observe(time.monotonic() - started)
            if fd is not None:
                os.close(fd)

    def _execute(self, slot: WorkerSlot, item: _Queued) -> None:
        if not self.waiters.is_live(item.execution_id):
            return  # cancelled while its submit was still being recorded
        spec = item.spec
        result = self._publish(item.execution_id, self._run(slot, item), spec)
        with self._lock:  # the worker is done: a node may claim its next job while this one is recorded
            self._executing.pop(item.execution_id, None)
            self._gauges()
            self._lock.notify_all()
        self._finish(item.execution_id, result, spec=spec)

    def _publish(self, execution_id: str, result: JobResult, spec: ExecutionSpec) -> JobResult:
        """``result`` with its heap published, signed and indexed (its envelope then dropped), or
        a failure saying why the heap could not be stored."""
        if result.envelope is not None and result.heap is not None:
            try:  # published, signed and indexed before a client can see the key: any node resumes it
                # A paused heap is the execution's own, not one a client finds by its tags.
                tags = None if result.status == "waiting" else dict(spec.tags) or None
                started = time.monotonic()
                with self.tracing.span(execution_id, "store", {"heap.bytes": len(result.envelope)}):
                    self._catalogue.add(
                        result.heap, result.envelope, session=spec.session, tags=tags, tenant=spec.tenant
                    )
                self.metrics.save_time.observe(time.monotonic() - started)
                self.metrics.save_size.observe(len(result.envelope))
            except (HeapStoreUnavailable, HeapNotFound, OSError) as e:
                result = JobResult(
                    status="failed",
                    error=f"the heap snapshot could not be stored: {e}",
                    duration_ms=result.duration_ms,
                )
            else:
                result = dataclasses.replace(result, envelope=None)
        return result

    def _trace_worker(self, slot: WorkerSlot, item: _Queued, begun: int, result: JobResult) -> None:
        """The worker's run of ``item`` (traces on), with the spans the worker sent."""
        if self.tracing.enabled:
            attributes = {"worker.index": slot.index, "worker.status": result.status}
            self.tracing.worker(item.execution_id, begun, time.time_ns(), result.spans, attributes)

    # -- the queue's state and what is counted of it -----------------------------------
    def _gauges(self) -> None:
        """Sets the gauges of the queue and the busy workers (under ``_lock``, after a change)."""
        self.metrics.queued.set(len(self._queue))
        self.metrics.workers_busy.set(len(self._executing))

    def _enqueue(self, item: _Queued) -> None:
        """Takes ``item`` into this process's queue (under ``_lock``)."""
        self._queue.append(item)
        self._gauges()

    def _unqueue(self, execution_id: str) -> _Queued | None:
        """Removes the execution from the queue (under ``_lock``); the item, None when not queued."""
        item = next((i for i in self._queue if i.execution_id == execution_id), None)
        if item is not None:
            self._queue.remove(item)
            self._gauges()
        return item
