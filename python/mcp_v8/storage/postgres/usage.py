"""How much of each limited resource the nodes sharing one database use, so that a limit holds
across all of them: one row per resource in ``usage_counters`` (``resource``, ``used``), moved only
by the statements that also change what it counts (:func:`take`, :func:`give_back`), so both commit
together.

A check of a count followed by an insert lets two nodes both see room for one more; here the
check and the increment are one statement on one row (``INSERT ... ON CONFLICT DO UPDATE ... WHERE
used + n <= limit RETURNING``): concurrent takers queue on that row's lock, and each sees what the
previous one committed. O(1) whatever the usage, where a count under a lock would read every row
counted at every take, and the shape fits usage that is not a number of rows (bytes stored).

The rule that keeps a count exact: it moves only in the transaction that changes the rows it
counts. A place is taken in the statement that inserts the row holding it and given back in the
one that moves that row out of the counted state (claimed, deleted), so a place is held by a row,
never by a node: a node that dies inside such a transaction takes its change back with it, and
what it committed is moved on by whichever node next claims, finishes or reaps the row.
:func:`recount` re-derives a count from its rows, for what happened outside that rule (a node of an
earlier release that does not count, a row removed by hand).
"""

from __future__ import annotations

from ..sql import Session

__all__ = ["TABLE", "give_back", "recount", "take", "used"]

TABLE = "usage_counters"


def take(name: str, when: str = "true") -> str:
    """A ``WITH`` item, ``name``, that takes ``:amount`` of ``:resource`` when that keeps its usage
    within ``:limit`` and ``when`` holds, and then returns a row (its new usage)."""
    return (
        f"{name} AS (INSERT INTO {TABLE} AS u (resource, used) SELECT :resource, :amount"
        f" WHERE :amount <= :limit AND {when}"
        " ON CONFLICT (resource) DO UPDATE SET used = u.used + excluded.used"
        " WHERE u.used + excluded.used <= :limit RETURNING used)"
    )


def give_back(name: str, rows: str, counted: str) -> str:
    """A ``WITH`` item, ``name``, that gives back to ``:resource`` one for each row of the
    ``WITH`` item ``rows`` for which ``counted`` holds (nothing: no write, no lock), and then
    returns the usage left."""
    held = f"FROM {rows} WHERE {counted}"
    return (
        f"{name} AS (UPDATE {TABLE} SET used = used - (SELECT count(*) {held})"
        f" WHERE resource = :resource AND EXISTS (SELECT 1 {held}) RETURNING used)"
    )


def used(session: Session, resource: str) -> int:
    """The usage of ``resource`` as last committed."""
    rows = session.run(f"SELECT used FROM {TABLE} WHERE resource = :resource", {"resource": resource})
    return 0 if not rows else int(rows[0][0])


def recount(session: Session, resource: str, count_sql: str) -> int | None:
    """Sets the usage of ``resource`` to what ``count_sql`` (one row, one number) counts now, in the
    caller's transaction; returns the usage it replaced when it differed, else None. The counter's
    row is locked first and counted in a later statement: under READ COMMITTED that statement sees
    every take and give-back committed before the lock was had, and those after it wait for it."""
    params = {"resource": resource}
    rows = session.run(  # the row locked, made first if missing
        f"INSERT INTO {TABLE} AS u (resource, used) VALUES (:resource, 0)"
        " ON CONFLICT (resource) DO UPDATE SET used = u.used RETURNING used",
        params,
    )
    before = 0 if not rows else int(rows[0][0])
    counted = session.run(count_sql)
    now = 0 if not counted or counted[0][0] is None else int(counted[0][0])
    if now == before:
        return None
    session.run(f"UPDATE {TABLE} SET used = :used WHERE resource = :resource", {**params, "used": now})
    return before
