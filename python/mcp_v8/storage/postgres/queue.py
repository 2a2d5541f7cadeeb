"""The work that nodes sharing one PostgreSQL database hand each other: the queue of accepted
executions, the nodes' leases, and the events that cross nodes.

- **Queue** (:class:`~..work_queue.WorkQueue`): a submit on any node takes a place of the queue
  (:mod:`.usage`, resource ``queued``) and inserts the execution's record, its output log and its
  job in one statement, which also notifies the work channel; no place left (or its heap gone),
  nothing is inserted. A node with a free worker claims the oldest unclaimed job of a running
  execution with one ``UPDATE ... (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1)``, which also
  records the node as the execution's ``owner``, gives the place back and says whether jobs are
  left. A job deleted while unclaimed (its execution ended, reaped) gives its place back in the
  statement that deletes it, which also tells every node. So the places taken are always the
  unclaimed jobs, whichever node dies when. Every step is one statement (data-modifying
  ``WITH``): one round trip, and nobody holds a transaction while a script runs.
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

from ...principal import DEFAULT_TENANT
from ...quotas import TenantQuotas
from .. import tenant_usage
from ..errors import DuplicateExecution, DuplicateKey, HeapNotFound
from ..execution_store import NEW_RECORD, new_record_params
from ..work_queue import Claim
from . import usage
from .database import PostgresDatabase

__all__ = ["NOT_QUEUED", "QUEUED", "PostgresQueue", "channel"]

log = logging.getLogger("mcp_v8.cluster")

QUEUED = "queued"  # the usage resource of the queue's places: its unclaimed jobs
_UNCLAIMED = "SELECT count(*) FROM queue WHERE claimed_by IS NULL"
_IDENTIFIER_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1: longer channel names are refused
NOT_QUEUED = "the execution could not be queued (the database was unavailable)"
UNQUEUED_GRACE_SECS = 60.0  # far longer than a submit takes from its record to its job
# Fails the running executions ``{which}`` selects, as of the database's clock: with ``:reason``,
# or ``:not_queued`` for those no node owns (accepted, never queued); ``failed``.
_FAIL = (
    "failed AS (UPDATE executions AS e SET status = 'failed',"
    " error = CASE WHEN owner IS NULL THEN :not_queued ELSE :reason END,"
    " completed_at = date_trunc('milliseconds', now()),"
    " duration_ms = coalesce(duration_ms, 1000 * extract(epoch FROM now() - started_at))"
    " WHERE status = 'running' AND ({which}) RETURNING execution_id, owner)"
)
# The jobs of the executions in ``{ended}`` go, with the places of those unclaimed.
_DROP = "gone AS (DELETE FROM queue WHERE execution_id IN (SELECT execution_id FROM {ended}) RETURNING claimed_by)"
_PLACES_BACK = usage.give_back("placed", "gone", "claimed_by IS NULL")


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


def _job(job: dict[str, Any]) -> bytes:
    return json.dumps(job, ensure_ascii=False).encode("utf-8", "surrogatepass")


class PostgresQueue:
    """The queue, leases and events of the nodes sharing ``database``: a
    :class:`~..work_queue.ClusterQueue`. Safe to share between threads."""

    def __init__(self, database: PostgresDatabase, conninfo: str) -> None:
        self._db = database
        self._conninfo = conninfo
        self.work_channel = channel("work", database.current_schema)
        self.event_channel = channel("events", database.current_schema)

    # -- the queue --------------------------------------------------------------------------

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
        """Records the execution, its output log and its job, taking a place, in one statement
        (see :class:`~..work_queue.WorkQueue`); the heap, when resumed, is held as
        :meth:`~..execution_store.SQLExecutionStore.create` holds it. ``live_node``: a live step
        for the node holding its session (:meth:`claim_live`). With ``quotas`` that limit
        a new record, that statement follows the tenant's lock and counts in one transaction
        (:func:`..tenant_usage.admit`, the tenant's queued jobs among them)."""
        insert, values = NEW_RECORD
        held = "true"
        steps = []
        if heap_in is not None:
            steps.append(  # one of the tenant's heaps (see heap_index)
                "held AS (SELECT 1 FROM heap_owners WHERE key = :heap_in AND tenant = :tenant{for_key_share})"
            )
            held = "EXISTS (SELECT 1 FROM held)"
        steps += [
            usage.take("place", held),
            f"record AS ({insert} {values} FROM place RETURNING execution_id)",
            "log AS (INSERT INTO output_logs (execution_id) SELECT execution_id FROM record)",
            "job AS (INSERT INTO queue (execution_id, job, live_node) SELECT execution_id, :job, :live_node"
            " FROM record)",
        ]
        params = new_record_params(
            execution_id,
            session=session,
            tags=tags,
            heap_in=heap_in,
            code_bytes=code_bytes,
            owner=None,
            trace_id=trace_id,
            tenant=tenant,
        )
        statement = (
            f"WITH {', '.join(steps)} SELECT {held}, EXISTS (SELECT 1 FROM record),"
            " (SELECT pg_notify(:channel, '') FROM record)"
        )
        bound = {
            **params,
            **self._place(limit),
            "job": _job(job),
            "channel": self.work_channel,
            "live_node": live_node,
        }
        try:
            if quotas is not None and quotas.limits_admission:
                with self._db.transaction() as tx:
                    tenant_usage.admit(tx, self._db.dialect.name, tenant, quotas, params["now"], queue=True)
                    rows = tx.run(statement, bound)
            else:
                rows = self._db.run(statement, bound)
        except DuplicateKey:
            raise DuplicateExecution(execution_id) from None
        heap_found, queued = rows[0][:2]
        if not heap_found:
            raise HeapNotFound(heap_in)
        return bool(queued)

    def enqueue(self, execution_id: str, job: dict[str, Any], *, limit: int) -> bool:
        """Queues the job of an execution recorded already, taking a place, in one statement."""
        rows = self._db.run(
            f"WITH {usage.take('place')},"
            " job AS (INSERT INTO queue (execution_id, job) SELECT :execution_id, :job FROM place)"
            " SELECT EXISTS (SELECT 1 FROM place), (SELECT pg_notify(:channel, '') FROM place)",
            {
                **self._place(limit),
                "execution_id": execution_id,
                "job": _job(job),
                "channel": self.work_channel,
            },
        )
        return bool(rows[0][0])

    def waiting(self) -> int:
        """How many places of the queue are taken: its jobs no node has claimed."""
        return usage.used(self._db, QUEUED)

    def waiting_of(self, tenant: str) -> int:
        """How many of the queue's unclaimed jobs are ``tenant``'s executions."""
        rows = self._db.run(tenant_usage.QUEUED, {"tenant": tenant})
        return 0 if not rows else int(rows[0][0])

    def claim(self, node: str) -> Claim | None:
        """The oldest unclaimed job of a running execution, claimed for ``node`` (which becomes
        its owner), its place given back, in one statement; None when there is none."""
        return self._claim(node, "q.live_node IS NULL")

    def claim_live(self, node: str) -> Claim | None:
        """The oldest unclaimed live step queued for ``node`` (the node holding its session), or
        for a node that is gone (its lease expired: the session is taken over by whoever runs
        it), claimed as :meth:`claim` claims; None when there is none."""
        return self._claim(
            node,
            "q.live_node IS NOT NULL AND (q.live_node = :node OR NOT EXISTS"
            " (SELECT 1 FROM nodes AS n WHERE n.id = q.live_node AND n.lease_until > now()))",
        )

    def _claim(self, node: str, which: str) -> Claim | None:
        """Claims the oldest unclaimed job of a running execution that ``which`` (a condition on
        the queue's row ``q``) selects, for ``node``."""
        rows = self._db.run(
            "WITH claimed AS ("
            " UPDATE queue SET claimed_by = :node, claimed_at = now() WHERE id = ("
            "  SELECT q.id FROM queue AS q JOIN executions AS e USING (execution_id)"
            f"  WHERE q.claimed_by IS NULL AND e.status = 'running' AND {which}"
            "  ORDER BY q.id FOR UPDATE OF q SKIP LOCKED LIMIT 1)"
            " RETURNING execution_id, job, claimed_by),"
            " owned AS (UPDATE executions SET owner = :node FROM claimed"
            "  WHERE executions.execution_id = claimed.execution_id AND executions.status = 'running'),"
            f" {usage.give_back('placed', 'claimed', 'true')}"
            " SELECT execution_id, job, (SELECT used FROM placed) FROM claimed",
            {"node": node, "resource": QUEUED},
        )
        if not rows:
            return None
        execution_id, job, left = rows[0]
        return Claim(str(execution_id), json.loads(bytes(job).decode("utf-8", "surrogatepass")), bool(left))

    def finished(self, execution_id: str) -> None:
        """The execution is terminal: its job goes (and its place, when unclaimed) and every node
        hears of it, in one statement."""
        self._db.run(
            f"WITH ended AS (SELECT CAST(:execution_id AS text) AS execution_id),"
            f" {_DROP.format(ended='ended')}, {_PLACES_BACK}"
            " SELECT pg_notify(:channel, 'done:' || :execution_id)",
            {"execution_id": execution_id, "resource": QUEUED, "channel": self.event_channel},
        )

    def cancelled(self, execution_id: str) -> None:
        """The execution was cancelled (its terminal status written, :meth:`finished` said): the
        node running it stops it."""
        self._db.run(
            "SELECT pg_notify(:channel, :payload)",
            {"channel": self.event_channel, "payload": "cancel:" + execution_id},
        )

    def _fail(self, which: str, params: dict[str, Any], *more: str) -> list[tuple[str, str | None]]:
        """Fails the running executions ``which`` selects (see ``_FAIL``), drops their jobs and
        tells every node, with the ``WITH`` items ``more``, in one statement; returns them with
        their owners."""
        steps = [*more, _FAIL.format(which=which), _DROP.format(ended="failed"), _PLACES_BACK]
        rows = self._db.run(
            f"WITH {', '.join(steps)} SELECT execution_id, owner, pg_notify(:channel, 'done:' || execution_id)"
            " FROM failed",
            {**params, "not_queued": NOT_QUEUED, "resource": QUEUED, "channel": self.event_channel},
        )
        return [(str(r[0]), None if r[1] is None else str(r[1])) for r in rows]

    # -- leases -----------------------------------------------------------------------------

    def heartbeat(self, node: str, lease_secs: float) -> None:
        self._db.run(
            "INSERT INTO nodes (id, lease_until) VALUES (:node, now() + make_interval(secs => :secs))"
            " ON CONFLICT (id) DO UPDATE SET lease_until = excluded.lease_until",
            {"node": node, "secs": lease_secs},
        )

    def leave(self, node: str, reason: str) -> list[str]:
        """``node`` leaves the cluster: the executions it still owns running (it could not record
        how they ended: the database was away) fail with ``reason``, in the statement that
        forgets the node, so no execution outlives its node's row unreaped. Returns them."""
        failed = self._fail(
            "owner = :node",
            {"node": node, "reason": reason},
            "forgotten AS (DELETE FROM nodes WHERE id = :node)",
        )
        if failed:
            log.warning("node %s left with %d executions it could not record; failed them", node, len(failed))
        return [execution_id for execution_id, _ in failed]

    def reap(self, reason: str, *, by: str) -> list[str]:
        """Fails the running executions of nodes (other than ``by``, the caller) whose lease
        expired, forgetting those nodes, and those accepted but never queued (a submit recorded
        them and then could not queue them nor record that: nothing would ever run or end them),
        in one statement; returns the executions failed. Any node may call it. Then jobs left
        behind by executions that ended (a node that could not say so) go, with their places,
        and the count of places is checked against the queue."""
        failed = self._fail(
            "owner IN (SELECT id FROM lost) OR (owner IS NULL AND started_at < now() - make_interval(secs => :grace)"
            " AND NOT EXISTS (SELECT 1 FROM queue AS q WHERE q.execution_id = e.execution_id))",
            {"by": by, "reason": reason, "grace": UNQUEUED_GRACE_SECS},
            "lost AS (SELECT id FROM nodes WHERE lease_until < now() AND id <> :by FOR UPDATE SKIP LOCKED)",
            "forgotten AS (DELETE FROM nodes WHERE id IN (SELECT id FROM lost))",
        )
        owned = [owner for _, owner in failed if owner is not None]
        if owned:
            log.warning("failed %d executions of lost nodes %s", len(owned), ", ".join(sorted(set(owned))))
        if len(owned) < len(failed):
            log.warning("failed %d executions that were accepted but never queued", len(failed) - len(owned))
        self._sweep()
        return [execution_id for execution_id, _ in failed]

    def _sweep(self) -> None:
        """Deletes the jobs of executions that are no longer running (the node that ended one
        could not delete its job: the database went away in between), giving back their places;
        then sets the count of places to the unclaimed jobs, should anything have moved them
        outside the statements here (a node of an earlier release)."""
        with self._db.transaction() as session:
            session.run(
                "WITH ended AS (SELECT execution_id FROM queue AS q WHERE NOT EXISTS (SELECT 1 FROM executions AS e"
                f" WHERE e.execution_id = q.execution_id AND e.status = 'running')), {_DROP.format(ended='ended')},"
                f" {_PLACES_BACK} SELECT 1",
                {"resource": QUEUED},
            )
            before = usage.recount(session, QUEUED, _UNCLAIMED)
        if before is not None:
            log.warning("the count of the queue's places was %d, not the queue's unclaimed jobs", before)

    @staticmethod
    def _place(limit: int) -> dict[str, Any]:
        return {"resource": QUEUED, "amount": 1, "limit": limit}

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
