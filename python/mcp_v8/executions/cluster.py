"""A node among several sharing one PostgreSQL database: the threads that connect its execution
manager to the shared queue, to the other nodes' events, and to the leases.

- the **feeder** claims a queued job whenever a worker here is free (woken by the queue's
  notifications, with a slow re-check in case one was lost) and hands it to the manager, which
  queues it here or, when it cannot, fails it (never leaving a claimed execution running);
- the **live feeder** (on a node with live workers) claims the live steps other nodes queued for
  this one, which holds their sessions, or for a node that is gone, and hands them to the live
  sessions, which queue each in its session's order (:mod:`.live`);
- the **listener** turns events into calls: ``cancel:<id>`` stops it here, ``done:<id>`` wakes
  the long-polls waiting here, ``work`` wakes the feeder; after a reconnection everything is
  re-checked, since notifications sent meanwhile are lost;
- the **heartbeat** renews this node's lease and fails the executions of nodes whose lease
  expired (any node may; each such execution fails once).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from ..storage.work_queue import Claim, ClusterQueue, WorkQueue

if TYPE_CHECKING:
    from .manager import ExecutionManager

__all__ = ["LEFT_NODE", "LOST_NODE", "Cluster", "ClusterQueue", "WorkQueue"]

log = logging.getLogger("mcp_v8.cluster")

LOST_NODE = "the node running this execution was lost (its lease expired)"
LEFT_NODE = "the node running this execution stopped before it could record how it ended"
RECHECK_SECONDS = 5.0  # how long the feeder trusts notifications before looking anyway


class Cluster:
    """This node's part in the cluster: ``node`` is its id (the owner its executions record)."""

    def __init__(
        self, queue: ClusterQueue, manager: ExecutionManager, node: str, *, lease_secs: float = 10.0
    ) -> None:
        self._queue = queue
        self._manager = manager
        self.node = node
        self._lease = lease_secs
        self._stop = threading.Event()
        self._work = threading.Event()
        self._live_work = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> Cluster:
        self._queue.heartbeat(self.node, self._lease)  # a lease before the first claim
        threads = [("listener", self._listen), ("feeder", self._feed), ("heartbeat", self._beat)]
        if self._manager.live.slots:
            threads.append(("live-feeder", self._feed_live))
        for name, target in threads:
            thread = threading.Thread(target=target, daemon=True, name=f"mcp-v8-{name}")
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stops claiming, listening and renewing the lease; the node stays a member (its
        executions keep their owner) until :meth:`leave`."""
        self._stop.set()
        self._work.set()
        self._live_work.set()
        for thread in self._threads:
            thread.join(10.0)

    def leave(self) -> None:
        """Leaves the cluster, once the manager recorded what it could: what this node still
        owns running fails then (else the lease runs out and another node fails it)."""
        try:
            self._queue.leave(self.node, LEFT_NODE)
        except Exception:
            log.exception("could not leave the cluster")

    def close(self) -> None:
        self.stop()
        self.leave()

    def _on_event(self, event: str) -> None:
        kind, _, execution_id = event.partition(":")
        if kind == "work":
            self._work.set()
            self._live_work.set()
        elif kind == "cancel":
            self._manager.stop_here(execution_id)
        elif kind == "done":
            self._manager.wake(execution_id)
        elif kind == "connected":  # events may have been lost while disconnected
            self._work.set()
            self._live_work.set()
            self._manager.wake(None)

    def _listen(self) -> None:
        self._queue.listen(self._on_event, self._stop)

    def _feed(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            if not self._manager.wait_for_capacity(1.0):
                continue
            self._work.clear()
            try:
                claimed = self._take_one()
                backoff = 0.1
            except Exception as e:  # the database is away: claim again once it is back
                log.warning("could not claim work: %s", e)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if claimed is None or not claimed.more:  # the queue was empty: wait to hear of work
                self._work.wait(RECHECK_SECONDS)

    def _feed_live(self) -> None:
        """Claims the live steps queued for this node, one after the other, as long as there
        are some; they queue in their sessions here (whose limits refuse what is too much)."""
        backoff = 0.1
        while not self._stop.is_set():
            self._live_work.clear()
            try:
                claimed = self._queue.claim_live(self.node)
                backoff = 0.1
            except Exception as e:
                log.warning("could not claim live steps: %s", e)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if claimed is None:
                self._live_work.wait(RECHECK_SECONDS)
                continue
            try:
                self._manager.adopt_live(claimed.execution_id, claimed.job)
            except Exception:  # only a bug gets here: keep feeding
                log.exception("could not start claimed live step %s", claimed.execution_id)

    def _take_one(self) -> Claim | None:
        """Claims one queued job for this node and hands it to the manager; None when none was
        waiting. Raises only when the claim failed, so that nothing was claimed."""
        claimed = self._queue.claim(self.node)
        if claimed is None:
            return None
        try:
            self._manager.adopt(claimed.execution_id, claimed.job)  # queues it here, or fails it
        except Exception:  # only a bug gets here: keep feeding
            log.exception("could not start claimed execution %s", claimed.execution_id)
        return claimed

    def _beat(self) -> None:
        interval = max(0.2, self._lease / 5)
        # This node judges others only after renewing its own lease for a whole lease period
        # without a failure: after an outage of the database (or of this node), the others
        # get as long to renew theirs before anyone is declared lost.
        judging_from = time.monotonic() + self._lease
        while not self._stop.wait(interval):
            try:
                self._queue.heartbeat(self.node, self._lease)
            except Exception as e:
                log.warning("heartbeat failed: %s", e)
                judging_from = time.monotonic() + self._lease + interval
                continue
            if time.monotonic() < judging_from:
                continue
            try:
                self._queue.reap(LOST_NODE, by=self.node)
            except Exception as e:
                log.warning("could not fail the executions of lost nodes: %s", e)
