"""The work that nodes sharing one PostgreSQL database hand each other: the queue of accepted
executions, the nodes' leases, and the events that cross nodes.

- **Queue**: a submit on any node takes a place of the queue (:mod:`.usage`, resource ``queued``)
  and inserts the job in one transaction, which also notifies the work channel; no place left,
  nothing is inserted. A node with a free worker claims the oldest unclaimed job of a running
  execution with one ``UPDATE ... (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1)``, which also
  records the node as the execution's ``owner`` and gives the place back. A job deleted while
  unclaimed (its execution cancelled, failed, reaped) gives its place back in the statement that
  deletes it. So the places taken are always the unclaimed jobs, whichever node dies when.
  Nobody holds a transaction while a script runs.
- **Events**: ``cancel:<id>`` when an execution was cancelled (its node stops the worker),
  ``done:<id>`` when one became terminal (long-polls on every node wake), and the work channel's
  notifications. Sent on submit, cancel and terminal transitions only, never per output chunk.
  ``LISTEN``/``NOTIFY`` channels belong to the whole database, not to a schema: the channels'
  names are made from the schema the tables are in (:func:`channel`), so deployments in two
  schemas of one database never hear each other.
- **Leases**: each node renews ``nodes.lease_until`` (the database's clock) on a heartbeat; any
  node fails the running executions of a node whose lease expired, once, with a clear error.
  Nothing is retried: a script may have had effects.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from . import usage
from .database import PostgresDatabase

__all__ = ["QUEUED", "PostgresQueue", "channel"]

log = logging.getLogger("mcp_v8.cluster")

QUEUED = "queued"  # the usage resource of the queue's places: its unclaimed jobs
_UNCLAIMED = "SELECT count(*) FROM queue WHERE claimed_by IS NULL"
_IDENTIFIER_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1: longer channel names are refused
_NOW_MS = "date_trunc('milliseconds', now())"
NOT_QUEUED = "the execution could not be queued (the database was unavailable)"
UNQUEUED_GRACE_SECS = 60.0  # far longer than a submit takes from its record to its job


def channel(kind: str, schema: str) -> str:
    """The name of the channel ``kind`` (``work``, ``events``) of the deployment whose tables are
    in ``schema``: ``mcp_v8_<kind>:<schema>``, or, when that is longer than an identifier may be,
    ``mcp_v8_<kind>#`` and 40 hex digits of the schema's SHA-256 (the two forms differ in the
    character after the kind, so they never meet). Any schema name is safe: ``pg_notify`` takes
    the channel as a parameter and ``LISTEN`` as a quoted identifier."""
    name = f"mcp_v8_{kind}:{schema}"
    if len(name.encode("utf-8")) <= _IDENTIFIER_BYTES:
        return name
    return f"mcp_v8_{kind}#" + hashlib.sha256(schema.encode("utf-8")).hexdigest()[:40]


class PostgresQueue:
    """The queue, leases and events of the nodes sharing ``database``. Safe to share between threads."""

    def __init__(self, database: PostgresDatabase, conninfo: str) -> None:
        self._db = database
        self._conninfo = conninfo
        self.work_channel = channel("work", database.current_schema)
        self.event_channel = channel("events", database.current_schema)

    # -- the queue --------------------------------------------------------------------------

    def enqueue(self, execution_id: str, job: dict[str, Any], *, limit: int) -> bool:
        """Queues the job of an accepted execution when the queue has a place for it, taken in the
        same transaction (at most ``limit`` unclaimed jobs, whichever nodes submit at once);
        returns whether it did. Every node hears of it at commit."""
        data = json.dumps(job, ensure_ascii=False).encode("utf-8", "surrogatepass")
        with self._db.transaction() as conn:
            if not usage.take(conn, QUEUED, limit):
                return False
            conn.execute("INSERT INTO queue (execution_id, job) VALUES (%s, %s)", (execution_id, data))
            self._notify(conn, self.work_channel, "")
        return True

    def waiting(self) -> int:
        """How many places of the queue are taken: its jobs no node has claimed."""
        with self._db.connection() as conn:
            return usage.used(conn, QUEUED)

    def claim(self, node: str) -> tuple[str, dict[str, Any]] | None:
        """The oldest unclaimed job of a running execution, claimed for ``node`` (which becomes
        its owner); None when there is none. Its place in the queue is given back."""
        rows = self._db.run(
            "WITH claimed AS ("
            " UPDATE queue SET claimed_by = %s, claimed_at = now() WHERE id = ("
            "  SELECT q.id FROM queue AS q JOIN executions AS e USING (execution_id)"
            "  WHERE q.claimed_by IS NULL AND e.status = 'running'"
            "  ORDER BY q.id FOR UPDATE OF q SKIP LOCKED LIMIT 1)"
            " RETURNING execution_id, job),"
            " owned AS (UPDATE executions SET owner = %s FROM claimed"
            "  WHERE executions.execution_id = claimed.execution_id AND executions.status = 'running'),"
            f" placed AS (UPDATE {usage.TABLE} SET used = used - 1"
            "  WHERE resource = %s AND EXISTS (SELECT 1 FROM claimed))"
            " SELECT execution_id, job FROM claimed",
            (node, node, QUEUED),
        )  # one statement, one round trip: the claim, the owner and the place together
        if not rows:
            return None
        execution_id, job = rows[0]
        return str(execution_id), json.loads(bytes(job).decode("utf-8", "surrogatepass"))

    def finished(self, execution_id: str) -> None:
        """The execution is terminal: its job goes (and its place, when unclaimed) and every node
        hears of it."""
        with self._db.transaction() as conn:
            self._drop_jobs(conn, "execution_id = %s", (execution_id,))
            self._notify(conn, self.event_channel, "done:" + execution_id)

    def cancelled(self, execution_id: str) -> None:
        """The execution was cancelled (its terminal status written, :meth:`finished` said): the
        node running it stops it."""
        with self._db.connection() as conn:
            self._notify(conn, self.event_channel, "cancel:" + execution_id)

    @staticmethod
    def _drop_jobs(conn: psycopg.Connection[Any], where: str, params: tuple[Any, ...]) -> None:
        """Deletes the jobs ``where`` selects, giving back the places of those not claimed, in
        one statement: a job's place goes back exactly once, with whichever delete or claim
        moved it first."""
        conn.execute(
            f"WITH gone AS (DELETE FROM queue WHERE {where} RETURNING claimed_by)"
            f" UPDATE {usage.TABLE} SET used = used - (SELECT count(*) FROM gone WHERE claimed_by IS NULL)"
            " WHERE resource = %s AND EXISTS (SELECT 1 FROM gone WHERE claimed_by IS NULL)",
            (*params, QUEUED),
        )

    @staticmethod
    def _notify(conn: psycopg.Connection[Any], channel: str, payload: str) -> None:
        conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))

    # -- leases -----------------------------------------------------------------------------

    def heartbeat(self, node: str, lease_secs: float) -> None:
        self._db.run(
            "INSERT INTO nodes (id, lease_until) VALUES (%s, now() + make_interval(secs => %s))"
            " ON CONFLICT (id) DO UPDATE SET lease_until = excluded.lease_until",
            (node, lease_secs),
        )

    def leave(self, node: str, reason: str) -> list[str]:
        """``node`` leaves the cluster: the executions it still owns running (it could not record
        how they ended: the database was away) fail with ``reason``, in the transaction that
        forgets the node, so no execution outlives its node's row unreaped. Returns them."""
        with self._db.transaction() as conn:
            failed = [
                str(r[0])
                for r in conn.execute(
                    f"UPDATE executions SET status = 'failed', error = %s, completed_at = {_NOW_MS},"
                    " duration_ms = COALESCE(duration_ms, 1000 * extract(epoch FROM now() - started_at))"
                    " WHERE status = 'running' AND owner = %s RETURNING execution_id",
                    (reason, node),
                ).fetchall()
            ]
            self._drop_jobs(conn, "execution_id = ANY(%s)", (failed,))
            conn.execute("DELETE FROM nodes WHERE id = %s", (node,))
            for execution_id in failed:
                self._notify(conn, self.event_channel, "done:" + execution_id)
        if failed:
            log.warning("node %s left with %d executions it could not record; failed them", node, len(failed))
        return failed

    def reap(self, reason: str, *, by: str) -> list[str]:
        """Fails the running executions of nodes (other than ``by``, the caller) whose lease
        expired (their queued jobs go too) and forgets those nodes, and those accepted but never
        queued; returns the executions failed. Any node may call it. Then jobs left behind by
        executions that ended (a node that could not say so) go, with their places, and the count
        of places is checked against the queue."""
        failed = self._reap_lost(reason, by) + self._reap_unqueued()
        self._sweep()
        return failed

    def _reap_lost(self, reason: str, by: str) -> list[str]:
        with self._db.transaction() as conn:
            lost = [
                str(r[0])
                for r in conn.execute(
                    "SELECT id FROM nodes WHERE lease_until < now() AND id <> %s FOR UPDATE SKIP LOCKED",
                    (by,),
                ).fetchall()
            ]
            if not lost:
                return []
            failed = [
                str(r[0])
                for r in conn.execute(
                    f"UPDATE executions SET status = 'failed', error = %s, completed_at = {_NOW_MS},"
                    " duration_ms = COALESCE(duration_ms, 1000 * extract(epoch FROM now() - started_at))"
                    " WHERE status = 'running' AND owner = ANY(%s) RETURNING execution_id",
                    (reason, lost),
                ).fetchall()
            ]
            self._drop_jobs(conn, "execution_id = ANY(%s)", (failed,))
            conn.execute("DELETE FROM nodes WHERE id = ANY(%s)", (lost,))
            for execution_id in failed:
                self._notify(conn, self.event_channel, "done:" + execution_id)
        if failed:
            log.warning("failed %d executions of lost nodes %s", len(failed), ", ".join(lost))
        return failed

    def _reap_unqueued(self) -> list[str]:
        """Fails the running executions that no node owns and no job queues, recorded more than
        ``UNQUEUED_GRACE_SECS`` ago: a submit recorded them and then could not queue them nor
        record that (the database went away in between, or that node died): nothing would
        ever run or end them."""
        with self._db.transaction() as conn:
            failed = [
                str(r[0])
                for r in conn.execute(
                    f"UPDATE executions AS e SET status = 'failed', error = %s, completed_at = {_NOW_MS},"
                    " duration_ms = COALESCE(duration_ms, 1000 * extract(epoch FROM now() - started_at))"
                    " WHERE status = 'running' AND owner IS NULL"
                    " AND started_at < now() - make_interval(secs => %s)"
                    " AND NOT EXISTS (SELECT 1 FROM queue AS q WHERE q.execution_id = e.execution_id)"
                    " RETURNING execution_id",
                    (NOT_QUEUED, UNQUEUED_GRACE_SECS),
                ).fetchall()
            ]
            for execution_id in failed:
                self._notify(conn, self.event_channel, "done:" + execution_id)
        if failed:
            log.warning("failed %d executions that were accepted but never queued", len(failed))
        return failed

    def _sweep(self) -> None:
        """Deletes the jobs of executions that are no longer running (the node that ended one
        could not delete its job: the database went away in between), giving back their places;
        then sets the count of places to the unclaimed jobs, should anything have moved them
        outside :meth:`enqueue`, :meth:`claim` and the deletes (a node of an earlier release)."""
        with self._db.transaction() as conn:
            self._drop_jobs(
                conn,
                "NOT EXISTS (SELECT 1 FROM executions AS e"
                " WHERE e.execution_id = queue.execution_id AND e.status = 'running')",
                (),
            )
            before = usage.recount(conn, QUEUED, _UNCLAIMED)
        if before is not None:
            log.warning("the count of the queue's places was %d, not the queue's unclaimed jobs", before)

    # -- events -----------------------------------------------------------------------------

    def listen(self, on_event: Callable[[str], None], stop: threading.Event) -> None:
        """Calls ``on_event`` with each event (``work``, ``cancel:<id>``, ``done:<id>``) until
        ``stop`` is set, on a connection of its own. Notifications sent while it reconnects are
        lost: after every (re)connection it calls ``on_event("connected")`` so that the caller
        re-checks what it waits for."""
        backoff = 0.1
        while not stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5) as conn:
                    if self._db.schema is not None:
                        conn.execute(f"SET search_path TO {self._db.schema}")
                    for name in (self.work_channel, self.event_channel):
                        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(name)))
                    backoff = 0.1
                    on_event("connected")
                    while not stop.is_set():
                        for notify in conn.notifies(timeout=0.5):
                            if notify.channel == self.work_channel:
                                on_event("work")
                            elif notify.channel == self.event_channel:
                                on_event(notify.payload)
            except psycopg.Error as e:
                if stop.is_set():
                    return
                log.warning("lost the PostgreSQL event connection (%s); reconnecting", e)
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:  # a bug in a handler must not end the events of this node
                log.exception("PostgreSQL event handling failed")
                time.sleep(0.1)
