"""The queue that nodes sharing one database hand accepted executions over: the contract.

A submit on any node records the execution, its empty output log and its job in one step, when
the queue has a place for it (at most ``limit`` jobs unclaimed, whichever nodes submit at once);
a node with a free worker claims the oldest job and becomes the execution's owner; the end of an
execution removes its job and is heard by every node, as is a cancel; nodes hold leases, and any
node fails the running executions of a node whose lease expired. Its one implementation is
PostgreSQL's (:class:`~.postgres.queue.PostgresQueue`), where each of these is one statement.

:class:`WorkQueue` is what the execution manager uses; :class:`ClusterQueue` adds what the
cluster's threads use (:mod:`..executions.cluster`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, runtime_checkable

from ..principal import DEFAULT_TENANT
from ..quotas import TenantQuotas

__all__ = ["Claim", "ClusterQueue", "WorkQueue"]


class Claim(NamedTuple):
    """A job claimed for a node: its execution, the job as queued, and whether unclaimed jobs
    were left when it was claimed (claim again at once, rather than wait to hear of work)."""

    execution_id: str
    job: dict[str, Any]
    more: bool


@runtime_checkable
class WorkQueue(Protocol):
    """The queue as the execution manager uses it. Every method may be called from many threads
    (and nodes) at once; a database that cannot be reached raises
    :class:`~.errors.DatabaseUnavailable`."""

    def submit(
        self,
        execution_id: str,
        job: dict[str, Any],
        *,
        limit: int,
        session: str | None,
        tags: dict[str, str] | None,
        heap_in: str | None,
        code_bytes: int,
        trace_id: str | None = None,
        tenant: str = DEFAULT_TENANT,
        live_node: str | None = None,
        quotas: TenantQuotas | None = None,
    ) -> bool:
        """Records a new execution (``running``, owned by no node yet, as
        :meth:`~.executions.ExecutionStore.create` records one), its empty output log and its
        job, in one step that also takes a place of the queue; returns False, and records
        nothing, when no place is left. With ``heap_in``, only while the heap index holds it
        (else :class:`~.errors.HeapNotFound`, and nothing is recorded), serialised with its
        deletion as :meth:`~.executions.ExecutionStore.create` with ``require_heap`` is. With
        ``quotas``, only when the tenant's new record passes them, its queued jobs among them
        (else :class:`~mcp_v8.quotas.QuotaReached`, and nothing is recorded), as
        :meth:`~.executions.ExecutionStore.create` checks them. Every node hears of the job.
        ``live_node``: the job is a live step for the node holding its session, claimed only by
        :meth:`ClusterQueue.claim_live`."""
        ...

    def enqueue(self, execution_id: str, job: dict[str, Any], *, limit: int) -> bool:
        """Queues the job of an execution recorded already, when a place is left; whether it
        did. Every node hears of it."""
        ...

    def waiting(self) -> int:
        """How many places of the queue are taken: its jobs no node has claimed."""
        ...

    def waiting_of(self, tenant: str) -> int:
        """How many of the jobs no node has claimed are ``tenant``'s."""
        ...

    def finished(self, execution_id: str) -> None:
        """The execution is terminal (its record says so): its job goes, with its place if
        unclaimed, and every node hears that it ended."""
        ...

    def cancelled(self, execution_id: str) -> None:
        """The execution was cancelled (its terminal status written): the node running it hears
        it, and stops it."""
        ...


@runtime_checkable
class ClusterQueue(WorkQueue, Protocol):
    """What the cluster's threads need of the queue besides."""

    def claim(self, node: str) -> Claim | None:
        """The oldest unclaimed job of a running execution, claimed for ``node`` (which becomes
        its owner, and gives its place back); None when there is none. Never a live step."""
        ...

    def claim_live(self, node: str) -> Claim | None:
        """The oldest unclaimed live step queued for ``node``, or for a node that is gone,
        claimed as :meth:`claim` claims; None when there is none."""
        ...

    def heartbeat(self, node: str, lease_secs: float) -> None:
        """Renews the lease of ``node`` for ``lease_secs`` from now (the database's clock)."""
        ...

    def leave(self, node: str, reason: str) -> list[str]:
        """``node`` leaves: the executions it still owns running fail with ``reason``, in the
        step that forgets it. Returns them."""
        ...

    def reap(self, reason: str, *, by: str) -> list[str]:
        """Fails (with ``reason``) the running executions of the nodes other than ``by`` whose
        lease expired, and those accepted but never queued; removes the jobs of executions
        that ended; returns the executions failed."""
        ...

    def listen(self, on_event: Callable[[str], None], stop: threading.Event) -> None:
        """Calls ``on_event`` with each event (``work``, ``cancel:<id>``, ``done:<id>``, and
        ``connected`` after every connection, since events sent meanwhile are lost) until
        ``stop`` is set."""
        ...
