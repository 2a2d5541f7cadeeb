"""How much of each limited resource the nodes sharing one database use, so that a limit holds
across all of them: one row per resource in ``usage_counters`` (``resource``, ``used``), moved only
with :func:`take` and :func:`give_back` inside the transaction of the caller.

A check of a count followed by an insert lets two nodes both see room for one more; here the
check and the increment are one statement on one row (``INSERT ... ON CONFLICT DO UPDATE ... WHERE
used + n <= limit RETURNING``): concurrent takers queue on that row's lock, and each sees what the
previous one committed. O(1) whatever the usage, where a count under a lock would read every row
counted at every take, and the shape fits usage that is not a number of rows (bytes stored).

The rule that keeps a count exact: it moves only in the transaction that changes the rows it
counts. A place is taken in the transaction that inserts the row holding it and given back in the
one that moves that row out of the counted state (claimed, deleted), so a place is held by a row,
never by a node: a node that dies inside such a transaction takes its change back with it, and
what it committed is moved on by whichever node next claims, finishes or reaps the row.
:func:`recount` re-derives a count from its rows, for what happened outside that rule (a node of an
earlier release that does not count, a row removed by hand).
"""

from __future__ import annotations

from typing import Any

import psycopg

__all__ = ["TABLE", "give_back", "recount", "take", "used"]

TABLE = "usage_counters"


def take(conn: psycopg.Connection[Any], resource: str, limit: int, amount: int = 1) -> bool:
    """Adds ``amount`` to the usage of ``resource`` when that keeps it within ``limit``; whether it
    did. Held once the caller's transaction commits; rolled back with it."""
    row = conn.execute(
        f"INSERT INTO {TABLE} AS u (resource, used) SELECT %(resource)s, %(amount)s"
        " WHERE %(amount)s <= %(limit)s"
        " ON CONFLICT (resource) DO UPDATE SET used = u.used + excluded.used"
        " WHERE u.used + excluded.used <= %(limit)s RETURNING used",
        {"resource": resource, "amount": amount, "limit": limit},
    ).fetchone()
    return row is not None


def give_back(conn: psycopg.Connection[Any], resource: str, amount: int) -> None:
    """Subtracts ``amount`` from the usage of ``resource``: call it in the transaction that
    removed what held it, with how much that was (nothing: no write, no lock)."""
    if amount:
        conn.execute(f"UPDATE {TABLE} SET used = used - %s WHERE resource = %s", (amount, resource))


def used(conn: psycopg.Connection[Any], resource: str) -> int:
    """The usage of ``resource`` as last committed."""
    row = conn.execute(f"SELECT used FROM {TABLE} WHERE resource = %s", (resource,)).fetchone()
    return 0 if row is None else int(row[0])


def recount(conn: psycopg.Connection[Any], resource: str, count_sql: str) -> int | None:
    """Sets the usage of ``resource`` to what ``count_sql`` (one row, one number) counts now, in the
    caller's transaction; returns the usage it replaced when it differed, else None. The counter's
    row is locked first and counted in a later statement: under READ COMMITTED that statement sees
    every take and give-back committed before the lock was had, and those after it wait for it."""
    row = conn.execute(  # the row locked, made first if missing
        f"INSERT INTO {TABLE} AS u (resource, used) VALUES (%s, 0)"
        " ON CONFLICT (resource) DO UPDATE SET used = u.used RETURNING used",
        (resource,),
    ).fetchone()
    before = 0 if row is None else int(row[0])
    counted = conn.execute(count_sql).fetchone()
    now = 0 if counted is None or counted[0] is None else int(counted[0])
    if now == before:
        return None
    conn.execute(f"UPDATE {TABLE} SET used = %s WHERE resource = %s", (now, resource))
    return before
