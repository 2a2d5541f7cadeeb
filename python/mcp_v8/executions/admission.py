"""Where a submit puts the execution it accepts, and who must hear of a cancel: the one thing
the execution manager does differently on one machine and on the nodes of a database.

- On one machine (one process, or the processes sharing a data directory), the manager
  records an execution and queues it in its own bounded queue, for its own workers: there is
  nothing to choose, and that path is the manager's (:meth:`~.manager.ExecutionManager.submit`
  with no admission).
- On the nodes of a database, :class:`SharedQueue` records the execution and queues its job in
  the queue the nodes share, in one statement that also takes its place (the queue limit holds
  for all nodes at once); whichever node has a free worker claims it (:mod:`.cluster`) and runs
  it in its own queue (:meth:`~.manager.ExecutionManager.adopt`). A cancel is sent to the nodes,
  since another one may run it. A traced execution's job carries its trace context (the root
  span's, as a W3C ``traceparent``) beside its spec: the node that claims it joins that trace.

The composition root (``app.Service``) chooses, once.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from ..quotas import UNLIMITED, QuotaSource, every_tenant
from ..storage import HeapCatalogue
from ..storage.work_queue import WorkQueue
from .errors import QueueFull
from .spec import ExecutionSpec, spec_to_wire

__all__ = ["TRACEPARENT_KEY", "Admission", "SharedQueue", "queued_job", "unqueued_job"]

log = logging.getLogger(__name__)

_NO_LIMIT = 1 << 62  # a resume takes a place of the queue beyond its limit
TRACEPARENT_KEY = "traceparent"  # beside the spec's fields in a queued job, when it is traced


def queued_job(spec: ExecutionSpec, traceparent: str | None = None) -> dict[str, Any]:
    """The job the nodes' queue holds: the spec's wire form (checked), and the trace context the
    claiming node's spans join, if any."""
    job = spec_to_wire(spec)
    if traceparent is not None:
        job[TRACEPARENT_KEY] = traceparent
    return job


def unqueued_job(job: dict[str, Any]) -> tuple[Any, str | None]:
    """A queued job's spec (wire form, for :func:`~.spec.spec_from_wire`) and its trace context
    (a text, or None; the tracer ignores one that is not a ``traceparent``)."""
    if type(job) is not dict or TRACEPARENT_KEY not in job:
        return job, None
    wire = dict(job)
    traceparent = wire.pop(TRACEPARENT_KEY)
    return wire, traceparent if isinstance(traceparent, str) else None


class Admission(Protocol):
    def admit(
        self,
        execution_id: str,
        spec: ExecutionSpec,
        traceparent: str | None = None,
        trace_id: str | None = None,
    ) -> None:
        """Records the execution ``execution_id`` of ``spec`` and queues it, traced under
        ``traceparent`` (its root span's context) in the trace ``trace_id`` when it is traced.
        Raises :class:`QueueFull` or :class:`~mcp_v8.quotas.QuotaReached` (the tenant's quotas,
        checked in the step that records it) having recorded nothing, and
        :class:`~..storage.HeapNotFound` for a heap the catalogue does not have."""
        ...

    def cancelled(self, execution_id: str) -> None:
        """``execution_id``, cancelled (its terminal status written), may be queued or running
        where this process cannot stop it: whoever can hears it."""
        ...

    def forward_live(self, execution_id: str, spec: ExecutionSpec, node: str) -> None:
        """Records the live step ``execution_id`` of ``spec`` and queues it for ``node``, which
        holds its session (:mod:`.live`). Raises :class:`QueueFull` or
        :class:`~mcp_v8.quotas.QuotaReached` having recorded nothing."""
        ...

    def queued_of(self, tenant: str) -> int:
        """How many executions of ``tenant`` wait in the queue for a worker."""
        ...

    def resume(self, execution_id: str, spec: ExecutionSpec, traceparent: str | None = None) -> None:
        """Queues the resume of ``execution_id`` (recorded, running again after a wait for a
        decision), whatever the queue's limit: it was admitted before. ``traceparent``: its
        trace's root, when it is traced."""
        ...


class SharedQueue:
    """The :class:`Admission` of the nodes sharing ``work``'s database."""

    def __init__(
        self, work: WorkQueue, catalogue: HeapCatalogue, queue_limit: int, quotas: QuotaSource | None = None
    ) -> None:
        """``quotas``: each tenant's (None: unlimited), checked as its execution is recorded."""
        self._work = work
        self._catalogue = catalogue
        self._limit = queue_limit
        self._quotas: QuotaSource = quotas or every_tenant(UNLIMITED)

    def queued_of(self, tenant: str) -> int:
        return self._work.waiting_of(tenant)

    def admit(
        self,
        execution_id: str,
        spec: ExecutionSpec,
        traceparent: str | None = None,
        trace_id: str | None = None,
    ) -> None:
        job = queued_job(spec, traceparent)  # before anything is recorded: a spec out of bounds is refused
        if spec.heap is not None:
            self._catalogue.use(spec.heap, tenant=spec.tenant)  # the node that claims it fetches it
        queued = self._work.submit(
            execution_id,
            job,
            limit=self._limit,
            session=spec.session,
            tags=dict(spec.tags) or None,
            heap_in=spec.heap,
            code_bytes=spec.code_bytes,
            trace_id=trace_id,
            tenant=spec.tenant,
            quotas=self._quotas(spec.tenant),
        )  # its owner: the node that claims it
        if not queued:
            raise QueueFull(f"the queue is full ({self._limit} executions waiting); retry later")

    def forward_live(self, execution_id: str, spec: ExecutionSpec, node: str) -> None:
        queued = self._work.submit(
            execution_id,
            queued_job(spec),
            limit=self._limit,
            session=spec.session,
            tags=dict(spec.tags) or None,
            heap_in=spec.heap,
            code_bytes=spec.code_bytes,
            tenant=spec.tenant,
            live_node=node,
            quotas=self._quotas(spec.tenant),
        )
        if not queued:
            raise QueueFull(f"the queue is full ({self._limit} executions waiting); retry later")

    def resume(self, execution_id: str, spec: ExecutionSpec, traceparent: str | None = None) -> None:
        if not self._work.enqueue(execution_id, queued_job(spec, traceparent), limit=_NO_LIMIT):
            raise RuntimeError("the resume could not be queued")

    def cancelled(self, execution_id: str) -> None:
        try:
            self._work.cancelled(execution_id)
        except Exception:  # the record is written; the node running it finds it cancelled
            log.exception("could not announce the cancel of execution %s", execution_id)
