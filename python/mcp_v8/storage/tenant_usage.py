"""What a tenant uses of the quotas a new execution's record must pass (:mod:`mcp_v8.quotas`),
counted from the rows themselves, and the check that runs in the transaction inserting the record.

The rule that keeps the quotas exact across processes and nodes: every insert of a tenant's
execution takes the tenant's lock first, then counts, then inserts, in one transaction. SQLite's
``BEGIN IMMEDIATE`` is that lock (the database's one writer); on PostgreSQL it is the row
``tenant:<name>`` of ``usage_counters`` (:mod:`.postgres.usage`), locked by the transaction's first
statement, so that the counts of its later statements (``READ COMMITTED``) see every insert
committed before, and the next inserter waits for this one's commit. The rows moved out of what
is counted (an execution that ends, a job claimed) take no lock: one committed after the count is
counted still, which errs toward a refusal, never past a limit. Nothing is held by a node, so a
node that dies holds nothing of a quota.

Counted from the records rather than kept in a counter: the statements that end an execution
(finish, cancel, reap, expiry, a node's leaving) stay as they are, and a count can never drift.
The running count walks the partial index of running executions by tenant (one entry per
running execution: about 0.1 ms under SQLite's write lock with 100,000 retained executions of the
tenant, where walking its whole history took 50 ms), the per-minute count the tenant's entries of
``(tenant, started_at, id)`` since the minute began; the heap bytes sum the sizes of the heaps the
tenant owns (``heap_owners`` by tenant: a heap it deleted no longer counts, though another
tenant keeps its bytes). Only the quotas a tenant has are counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..quotas import CONCURRENCY_RETRY_SECS, HEAP_RETRY_SECS, QuotaReached, TenantQuotas, minute_start
from ..quotas import seconds_left_in_minute as _left
from .sql import Session

__all__ = ["TenantUsage", "admit", "lock", "read"]

RUNNING = "SELECT count(*) FROM executions WHERE tenant = :tenant AND status = 'running'"
STARTED_SINCE = "SELECT count(*) FROM executions WHERE tenant = :tenant AND started_at >= :since"
HEAP_BYTES = (
    "SELECT coalesce(sum(h.size), 0) FROM heap_owners AS o JOIN heaps AS h ON h.key = o.key"
    " WHERE o.tenant = :tenant"
)
# The tenant's jobs of the nodes' queue that no node claimed (PostgreSQL's queue).
QUEUED = (
    "SELECT count(*) FROM queue AS q JOIN executions AS e USING (execution_id)"
    " WHERE q.claimed_by IS NULL AND e.tenant = :tenant"
)
_LOCK = (
    "INSERT INTO usage_counters AS u (resource, used) VALUES (:resource, 0)"
    " ON CONFLICT (resource) DO UPDATE SET used = u.used"
)


@dataclass(frozen=True)
class TenantUsage:
    """What a tenant uses now of the quotas counted in the database; ``queued`` is None where the
    queue is not the database's (one machine)."""

    running: int
    started_this_minute: int
    heap_bytes: int
    queued: int | None = None


def lock(session: Session, dialect: str, tenant: str) -> None:
    """Takes ``tenant``'s lock for the rest of ``session``'s transaction (see the module)."""
    if dialect == "postgresql":
        session.run(_LOCK, {"resource": f"tenant:{tenant}"})
    # SQLite: the transaction's BEGIN IMMEDIATE holds the database already.


def _one(session: Session, sql: str, params: dict[str, object]) -> int:
    rows = session.run(sql, params)
    return 0 if not rows or rows[0][0] is None else int(rows[0][0])


def read(session: Session, tenant: str, now: datetime, *, queue: bool = False) -> TenantUsage:
    """What ``tenant`` uses as of ``now``; with ``queue``, its unclaimed jobs of the nodes' queue."""
    params: dict[str, object] = {"tenant": tenant}
    return TenantUsage(
        running=_one(session, RUNNING, params),
        started_this_minute=_one(session, STARTED_SINCE, {**params, "since": minute_start(now)}),
        heap_bytes=_one(session, HEAP_BYTES, params),
        queued=_one(session, QUEUED, params) if queue else None,
    )


def admit(
    session: Session, dialect: str, tenant: str, quotas: TenantQuotas, now: datetime, *, queue: bool = False
) -> None:
    """Takes ``tenant``'s lock and raises :class:`~mcp_v8.quotas.QuotaReached` when one more
    execution started at ``now`` would pass one of ``quotas`` (its queued executions too, with
    ``queue``: the nodes' queue is the database's); the caller inserts the record next, in the same
    transaction. Counts only what ``quotas`` limits."""
    lock(session, dialect, tenant)
    params: dict[str, object] = {"tenant": tenant}
    limit = quotas.concurrent_executions
    if limit is not None:
        used = _one(session, RUNNING, params)
        if used >= limit:
            raise QuotaReached(
                tenant, "concurrent_executions", limit, CONCURRENCY_RETRY_SECS, f"{used} executions running"
            )
    limit = quotas.queued_executions
    if queue and limit is not None:
        used = _one(session, QUEUED, params)
        if used >= limit:
            raise QuotaReached(
                tenant, "queued_executions", limit, CONCURRENCY_RETRY_SECS, f"{used} executions queued"
            )
    limit = quotas.executions_per_minute
    if limit is not None:
        used = _one(session, STARTED_SINCE, {**params, "since": minute_start(now)})
        if used >= limit:
            raise QuotaReached(
                tenant, "executions_per_minute", limit, _left(now), f"{used} executions started this minute"
            )
    limit = quotas.heap_bytes
    if limit is not None:
        used = _one(session, HEAP_BYTES, params)
        if used >= limit:
            raise QuotaReached(
                tenant,
                "heap_bytes",
                limit,
                HEAP_RETRY_SECS,
                f"{used} bytes of heaps stored; delete heaps (DELETE /api/heaps/{{key}}) to free some",
            )
