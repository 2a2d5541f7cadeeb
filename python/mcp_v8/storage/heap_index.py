"""The index of stored heaps in the registry database (table ``heaps``, SQLite schema version 6,
PostgreSQL version 3): which heaps exist for the whole deployment, each with its size, the first
meta (session, tags) and its last use; and who owns each (table ``heap_owners``, SQLite version
14, PostgreSQL 14).

Heaps are content-addressed: two tenants (:mod:`mcp_v8.principal`) producing the same bytes share
one blob, and each has an ownership row with its own first session and tags, creation and last
use. Every question a client asks is answered from its tenant's row (a heap another tenant owns is
one it does not know); a removal removes the tenant's row, and the heap's row and bytes with the
last owner's.

A heap's bytes live elsewhere (the data directory's files, or a shared blob store: see
:mod:`.heap_catalogue`); its row is what says it exists. The row is written once its bytes are
where every node can read them, and removed before they go, so a row always names a readable
heap. The row is also the lock that makes a deletion and the submits resuming the heap
exclusive: :meth:`HeapIndex.remove` checks "in use" (a ``running`` execution whose ``heap_in``
names the heap, on any node or process sharing the database) and removes the rows in one
transaction that holds them, and an execution store's ``create(..., require_heap=True)``
records an execution only while the tenant's ownership row exists, in one statement that waits
for that transaction. So a submit is either refused because the heap is gone, or recorded before the
deletion looks, which then finds it in use (HTTP 409).

:class:`HeapIndex` is the contract; :class:`SQLHeapIndex` keeps the rows in the registry
database, SQLite or PostgreSQL. Tags as clients
change them are the ``heap_tags`` table's (:mod:`.heap_tags`); the index reads them to answer a
heap's tags (the patched ones when there is a row there, else the first meta's).
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol, runtime_checkable

from ..principal import DEFAULT_TENANT
from .errors import HeapInUse
from .heaps import HeapMeta, validate_heap_key
from .sql import Connector, Json
from .sqlite import SQLiteDatabase

__all__ = ["BATCH", "HeapInUse", "HeapIndex", "SQLHeapIndex", "SQLiteHeapIndex"]

BATCH = 500  # keys per statement when a batch is looked up


@runtime_checkable
class HeapIndex(Protocol):
    """The ``heaps`` rows of one registry database. Every method may be called from many threads
    (and processes, or nodes, sharing the database) at once."""

    def entry(self, key: str, *, tenant: str = DEFAULT_TENANT) -> HeapMeta | None:
        """The heap's meta for ``tenant`` (its ownership row's, with its tags as they stand now),
        or None when ``tenant`` does not own it."""
        ...

    def entries(self, keys: Sequence[str], *, tenant: str = DEFAULT_TENANT) -> dict[str, HeapMeta]:
        """:meth:`entry` of each of ``keys`` ``tenant`` owns, in one statement per :data:`BATCH`."""
        ...

    def stored(self, keys: Iterable[str], *, tenant: str | None = None) -> set[str]:
        """Those of ``keys`` that are indexed (owned by ``tenant``, when given), in one statement
        per :data:`BATCH`."""
        ...

    def owners(self, key: str) -> builtins.list[str]:
        """The tenants that own the heap, sorted."""
        ...

    def add(
        self,
        key: str,
        *,
        size: int,
        session: str | None,
        tags: Mapping[str, str] | None,
        signature: str | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> HeapMeta:
        """Indexes a heap whose bytes are stored, owned by ``tenant``, used now; a key indexed
        already keeps its first meta and only counts as used now, and so does ``tenant``'s
        ownership (with its own first meta). ``signature`` (:mod:`.heap_signing`), when given,
        replaces the row's: it is the signature of the bytes this node just published. Returns
        ``tenant``'s row (``tags``: its first meta's)."""
        ...

    def signature(self, key: str) -> tuple[bool, str | None]:
        """Whether the heap is indexed, and its signature (None: indexed before heaps were signed)."""
        ...

    def sign(self, key: str, signature: str, *, replacing: str | None = None) -> None:
        """Records ``signature`` for a heap whose signature is still ``replacing`` (None: a heap
        indexed without one); one another node signed since keeps its own."""
        ...

    def use(self, key: str, *, tenant: str = DEFAULT_TENANT) -> bool:
        """Records a use of the heap now (an execution of ``tenant`` resumes it); False when
        ``tenant`` does not own it."""
        ...

    def in_use(self, key: str) -> bool:
        """Whether a ``running`` (queued or executing) execution resumes the heap, or a waiting
        execution paused in it."""
        ...

    def in_use_all(self) -> set[str]:
        """The heaps that ``running`` executions resume, and those waiting ones paused in."""
        ...

    def used_since(self, max_age_seconds: float) -> set[str]:
        """The indexed heaps stored or resumed within the last ``max_age_seconds``."""
        ...

    def remove(
        self, key: str, bytes_gone: Callable[[bool], object], *, tenant: str | None = DEFAULT_TENANT
    ) -> bool:
        """Removes ``tenant``'s ownership of the heap, and the heap's row with the last owner's
        (``tenant`` None: every owner's), unless it is in use (then :class:`HeapInUse`, and nothing
        changes), in one transaction that holds the rows; returns whether there was one to remove
        (for ``tenant``: whether it owned the heap). In use: by an execution of ``tenant`` while
        others own it too, by any execution when the heap itself goes. ``bytes_gone(found)``,
        called inside it once the heap goes and is known not to be in use, removes its bytes: an
        error there rolls everything back. Holding the rows meanwhile, no submit resumes the heap
        and nothing indexes its bytes again while they go."""
        ...


def _now() -> datetime:
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond - now.microsecond % 1000)


def batches(keys: Iterable[str]) -> Iterable[list[str]]:
    """``keys`` (checked, without repeats) in lists of at most :data:`BATCH`."""
    unique = list(dict.fromkeys(validate_heap_key(k) for k in keys))
    for i in range(0, len(unique), BATCH):
        yield unique[i : i + BATCH]


# The heap as a tenant owns it: its size, the tenant's ownership row, and its tags (the tenant's
# patched ones, ``heap_tags``, when it has a row there, else its first meta's).
_ENTRY = (
    "SELECT h.key, h.size, o.created_at, o.last_used_at, o.session, coalesce(t.tags, o.tags)"
    " FROM heap_owners AS o JOIN heaps AS h ON h.key = o.key"
    " LEFT JOIN heap_tags AS t ON t.tenant = o.tenant AND t.key = o.key"
)
_COLUMNS = "key, size, created_at, last_used_at, session, tags"
_OWNER_COLUMNS = "key, tenant, created_at, last_used_at, session, tags"
# In use: resumed by a running execution, or the heap a waiting execution paused in (until its
# resume, running, is over).
_BUSY = (
    "SELECT 1 FROM executions WHERE (heap_in = :key AND status = 'running')"
    " OR (waiting_heap = :key AND status IN ('running', 'waiting')) LIMIT 1"
)
# In use by the tenant's executions: what keeps its ownership while others own the heap too.
_BUSY_OF = (
    "SELECT 1 FROM executions WHERE tenant = :tenant AND ((heap_in = :key AND status = 'running')"
    " OR (waiting_heap = :key AND status IN ('running', 'waiting'))) LIMIT 1"
)


def _meta(row: Sequence[Any]) -> HeapMeta:
    tags = json.loads(row[5]) if row[5] is not None else None
    return HeapMeta(
        key=str(row[0]),
        size=int(row[1]),
        created_at=row[2],
        session=row[4],
        tags={str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else None,
        last_used_at=row[3],
    )


class SQLHeapIndex:
    """The :class:`HeapIndex` of the registry database ``database``. Safe to share between
    threads. Its :meth:`remove` is one transaction: the row read with a lock (PostgreSQL's
    ``FOR UPDATE``; SQLite's ``BEGIN IMMEDIATE`` holds the database from its first statement),
    then the "in use" check, then the ``DELETE``. An execution store's
    ``create(..., require_heap=True)`` reads the row under a lock that conflicts (PostgreSQL's
    ``FOR KEY SHARE``, SQLite's write lock), so either the insert commits first (the check, a
    new statement under READ COMMITTED, then sees its execution running: 409), or the removal
    holds the row first (the insert waits, then finds the row gone). The check must come after
    the lock: a ``DELETE ... WHERE NOT EXISTS (...)`` alone would judge "in use" from a snapshot
    taken before it waited for a submit's lock."""

    def __init__(self, database: Connector) -> None:
        self._db = database

    def _handoff(self, point: str) -> None:
        """Called inside :meth:`remove` at ``remove:locked`` (the row is held) and
        ``remove:checked`` (it is not in use, and not removed yet). Does nothing; tests park
        here to force an interleaving with a submit."""

    def entry(self, key: str, *, tenant: str = DEFAULT_TENANT) -> HeapMeta | None:
        rows = self._db.run(
            f"{_ENTRY} WHERE o.key = :key AND o.tenant = :tenant",
            {"key": validate_heap_key(key), "tenant": tenant},
        )
        return _meta(rows[0]) if rows else None

    def entries(self, keys: Sequence[str], *, tenant: str = DEFAULT_TENANT) -> dict[str, HeapMeta]:
        found: dict[str, HeapMeta] = {}
        for batch in batches(keys):
            found.update(
                (str(row[0]), _meta(row))
                for row in self._db.run(
                    f"{_ENTRY} WHERE o.tenant = :tenant AND o.key {{any:keys}}",
                    {"keys": batch, "tenant": tenant},
                )
            )
        return found

    def stored(self, keys: Iterable[str], *, tenant: str | None = None) -> set[str]:
        sql = "SELECT key FROM heaps WHERE key {any:keys}"
        if tenant is not None:
            sql = "SELECT key FROM heap_owners WHERE tenant = :tenant AND key {any:keys}"
        found: set[str] = set()
        for batch in batches(keys):
            found.update(str(r[0]) for r in self._db.run(sql, {"keys": batch, "tenant": tenant}))
        return found

    def owners(self, key: str) -> builtins.list[str]:
        rows = self._db.run(
            "SELECT tenant FROM heap_owners WHERE key = :key ORDER BY tenant", {"key": validate_heap_key(key)}
        )
        return [str(r[0]) for r in rows]

    def add(
        self,
        key: str,
        *,
        size: int,
        session: str | None,
        tags: Mapping[str, str] | None,
        signature: str | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> HeapMeta:
        params = {
            "key": validate_heap_key(key),
            "size": size,
            "now": _now(),
            "session": session,
            "tags": None if tags is None else Json(dict(tags)),
            "signature": signature,
            "tenant": tenant,
        }
        with self._db.transaction() as db:  # the heap's row first: an owner row always has one
            rows = db.run(
                f"INSERT INTO heaps ({_COLUMNS}, signature)"
                " VALUES (:key, :size, :now, :now, :session, {json:tags}, :signature)"
                " ON CONFLICT (key) DO UPDATE"
                " SET last_used_at = {greatest}(heaps.last_used_at, excluded.last_used_at),"
                " signature = coalesce(excluded.signature, heaps.signature)"
                " RETURNING size",
                params,
            )
            owned = db.run(
                f"INSERT INTO heap_owners ({_OWNER_COLUMNS})"
                " VALUES (:key, :tenant, :now, :now, :session, {json:tags})"
                " ON CONFLICT (key, tenant) DO UPDATE"
                " SET last_used_at = {greatest}(heap_owners.last_used_at, excluded.last_used_at)"
                " RETURNING key, created_at, last_used_at, session, tags",
                params,
            )
        return _meta([owned[0][0], rows[0][0], *owned[0][1:]])

    def signature(self, key: str) -> tuple[bool, str | None]:
        rows = self._db.run("SELECT signature FROM heaps WHERE key = :key", {"key": validate_heap_key(key)})
        return (True, rows[0][0]) if rows else (False, None)

    def sign(self, key: str, signature: str, *, replacing: str | None = None) -> None:
        params = {"key": validate_heap_key(key), "signature": signature}
        still = "signature IS NULL"
        if replacing is not None:
            still, params["replacing"] = "signature = :replacing", replacing
        self._db.run(f"UPDATE heaps SET signature = :signature WHERE key = :key AND {still}", params)

    def use(self, key: str, *, tenant: str = DEFAULT_TENANT) -> bool:
        params = {"now": _now(), "key": validate_heap_key(key), "tenant": tenant}
        # Two statements, each its own transaction: never one row held while waiting for the other
        # (a removal holds the heap's row, then its owners').
        rows = self._db.run(
            "UPDATE heap_owners SET last_used_at = {greatest}(last_used_at, :now)"
            " WHERE key = :key AND tenant = :tenant RETURNING key",
            params,
        )
        if rows:
            self._db.run(
                "UPDATE heaps SET last_used_at = {greatest}(last_used_at, :now) WHERE key = :key", params
            )
        return bool(rows)

    def in_use(self, key: str) -> bool:
        return bool(self._db.run(_BUSY, {"key": validate_heap_key(key)}))

    def in_use_all(self) -> set[str]:
        rows = self._db.run(
            "SELECT heap_in FROM executions WHERE status = 'running' AND heap_in IS NOT NULL"
            " UNION SELECT waiting_heap FROM executions WHERE waiting_heap IS NOT NULL"
            " AND status IN ('running', 'waiting')"
        )
        return {str(r[0]) for r in rows}

    def used_since(self, max_age_seconds: float) -> set[str]:
        rows = self._db.run(
            "SELECT key FROM heaps WHERE last_used_at >= :cutoff",
            {"cutoff": _now() - timedelta(seconds=max_age_seconds)},
        )
        return {str(r[0]) for r in rows}

    def remove(
        self, key: str, bytes_gone: Callable[[bool], object], *, tenant: str | None = DEFAULT_TENANT
    ) -> bool:
        params = {"key": validate_heap_key(key), "tenant": tenant}
        with self._db.transaction() as session:
            found = bool(session.run("SELECT 1 FROM heaps WHERE key = :key{for_update}", params))
            # The ownership rows too: a submit resuming the heap holds its tenant's (FOR KEY SHARE).
            owners = {
                str(r[0])
                for r in session.run("SELECT tenant FROM heap_owners WHERE key = :key{for_update}", params)
            }
            self._handoff("remove:locked")
            if tenant is not None and tenant not in owners:
                return False  # not its heap: nothing changes
            last = tenant is None or owners == {tenant}
            # After the rows are held: a submit's record committed meanwhile is seen here.
            if session.run(_BUSY if last else _BUSY_OF, params):
                raise HeapInUse(f"heap {key} is resumed by a queued or running execution")
            self._handoff("remove:checked")
            if not last:
                session.run("DELETE FROM heap_owners WHERE key = :key AND tenant = :tenant", params)
                return True
            bytes_gone(found)
            session.run("DELETE FROM heap_owners WHERE key = :key", params)
            if found:
                session.run("DELETE FROM heaps WHERE key = :key", params)
        return found


class SQLiteHeapIndex(SQLHeapIndex):
    """The heap index in the service's SQLite database. Its removal's transaction, the
    database's write lock, holds up the directory's other writes for the duration of an unlink
    (the heaps are files here)."""

    def __init__(self, database: SQLiteDatabase) -> None:
        super().__init__(database)
