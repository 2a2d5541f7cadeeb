"""The index of stored heaps in the registry database (table ``heaps``, SQLite schema version 6,
PostgreSQL version 3): which heaps exist for the whole deployment, each with its size, the first
meta (session, tags) and its last use.

A heap's bytes live elsewhere (the data directory's files, or a shared blob store: see
:mod:`.heap_catalogue`); its row is what says it exists. The row is written once its bytes are
where every node can read them, and removed before they go, so a row always names a readable
heap. The row is also the lock that makes a deletion and the submits resuming the heap
exclusive: :meth:`HeapIndex.remove` checks "in use" (a ``running`` execution whose ``heap_in``
names the heap, on any node or process sharing the database) and removes the row in one
transaction that holds the row, and an execution store's ``create(..., require_heap=True)``
records an execution only while the row exists, in one statement that waits for that
transaction. So a submit is either refused because the heap is gone, or recorded before the
deletion looks, which then finds it in use (HTTP 409).

:class:`HeapIndex` is the contract; :class:`SQLiteHeapIndex` keeps the rows in the service's
SQLite database, :class:`~.postgres.heap_index.PostgresHeapIndex` in PostgreSQL. Tags as clients
change them are the ``heap_tags`` table's (:mod:`.heap_tags`); the index reads them to answer a
heap's tags (the patched ones when there is a row there, else the first meta's).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol, runtime_checkable

from .heaps import HeapMeta, validate_heap_key
from .sqlite import SQLiteDatabase

__all__ = ["BATCH", "HeapInUse", "HeapIndex", "SQLHeapIndex", "SQLiteHeapIndex"]

BATCH = 500  # keys per statement when a batch is looked up


class HeapInUse(Exception):
    """A queued or running execution (of any node or process) resumes the heap: it cannot go now."""


@runtime_checkable
class HeapIndex(Protocol):
    """The ``heaps`` rows of one registry database. Every method may be called from many threads
    (and processes, or nodes, sharing the database) at once."""

    def entry(self, key: str) -> HeapMeta | None:
        """The heap's meta with its tags as they stand now, or None when it is not indexed."""
        ...

    def entries(self, keys: Sequence[str]) -> dict[str, HeapMeta]:
        """:meth:`entry` of each of ``keys`` that is indexed, in one statement per :data:`BATCH`."""
        ...

    def stored(self, keys: Iterable[str]) -> set[str]:
        """Those of ``keys`` that are indexed, in one statement per :data:`BATCH`."""
        ...

    def add(self, key: str, *, size: int, session: str | None, tags: Mapping[str, str] | None) -> HeapMeta:
        """Indexes a heap whose bytes are stored, used now; a key indexed already keeps its first
        meta and only counts as used now. Returns its row (``tags``: the first meta's)."""
        ...

    def use(self, key: str) -> bool:
        """Records a use of the heap now (an execution resumes it); False when it is not indexed."""
        ...

    def in_use(self, key: str) -> bool:
        """Whether a ``running`` (queued or executing) execution resumes the heap."""
        ...

    def in_use_all(self) -> set[str]:
        """The heaps that ``running`` executions resume."""
        ...

    def used_since(self, max_age_seconds: float) -> set[str]:
        """The indexed heaps stored or resumed within the last ``max_age_seconds``."""
        ...

    def remove(self, key: str, bytes_gone: Callable[[bool], object]) -> bool:
        """Removes the heap's row unless it is in use (then :class:`HeapInUse`, and nothing
        changes), in one transaction that holds the row; returns whether there was one.
        ``bytes_gone(found)``, called inside it once the heap is known not to be in use, removes
        its bytes: an error there rolls everything back. Holding the row meanwhile, no submit
        resumes the heap and nothing indexes its bytes again while they go."""
        ...


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def batches(keys: Iterable[str]) -> Iterable[list[str]]:
    """``keys`` (checked, without repeats) in lists of at most :data:`BATCH`."""
    unique = list(dict.fromkeys(validate_heap_key(k) for k in keys))
    for i in range(0, len(unique), BATCH):
        yield unique[i : i + BATCH]


# The heap's row and its tags: the patched ones (``heap_tags``) when it has a row there.
_ENTRY = (
    "SELECT h.key, h.size, h.created_at, h.last_used_at, h.session, coalesce(t.tags, h.tags)"
    " FROM heaps AS h LEFT JOIN heap_tags AS t ON t.key = h.key"
)
_COLUMNS = "key, size, created_at, last_used_at, session, tags"
_BUSY = "SELECT 1 FROM executions WHERE heap_in = ? AND status = 'running' LIMIT 1"


class SQLHeapIndex:
    """The :class:`HeapIndex` statements, written once in SQLite's spelling (``?`` marks); a
    driver's subclass says what differs: its marks, its functions, its types, its transaction."""

    GREATEST = "max"  # of two values
    LOCK = ""  # what makes remove's first read hold the row beyond the transaction's own lock

    def __init__(self, database: Any) -> None:
        self._db = database

    # -- what a driver spells otherwise --------------------------------------------------------

    def _sql(self, sql: str) -> str:
        return sql

    def _transaction(self) -> AbstractContextManager[Any]:
        return self._db.write()  # type: ignore[no-any-return]

    def _now(self) -> Any:
        return _iso(_now())

    def _ago(self, seconds: float) -> Any:
        return _iso(_now() - timedelta(seconds=seconds))

    def _time(self, value: Any) -> str:
        return str(value)

    def _tags_param(self, tags: Mapping[str, str] | None) -> Any:
        return None if tags is None else json.dumps(dict(tags), ensure_ascii=False, sort_keys=True)

    def _tags(self, value: Any) -> dict[str, str] | None:
        tags = json.loads(value) if isinstance(value, str) else value
        return {str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else None

    def _among(self, column: str, batch: list[str]) -> tuple[str, Sequence[Any]]:
        return f"{column} IN ({','.join('?' * len(batch))})", batch

    def _handoff(self, point: str) -> None:
        """Called inside :meth:`remove` at ``remove:locked`` (the row is held) and
        ``remove:checked`` (it is not in use, and not removed yet). Does nothing; tests park
        here to force an interleaving with a submit."""

    # -- the statements ------------------------------------------------------------------------

    def _run(self, sql: str, params: Sequence[Any]) -> list[Any]:
        return self._db.run(self._sql(sql), params)  # type: ignore[no-any-return]

    def _meta(self, row: Sequence[Any]) -> HeapMeta:
        return HeapMeta(
            key=str(row[0]),
            size=int(row[1]),
            created_at=self._time(row[2]),
            session=row[4],
            tags=self._tags(row[5]),
            last_used_at=self._time(row[3]),
        )

    def entry(self, key: str) -> HeapMeta | None:
        rows = self._run(f"{_ENTRY} WHERE h.key = ?", (validate_heap_key(key),))
        return self._meta(rows[0]) if rows else None

    def entries(self, keys: Sequence[str]) -> dict[str, HeapMeta]:
        found: dict[str, HeapMeta] = {}
        for batch in batches(keys):
            among, params = self._among("h.key", batch)
            found.update(
                (str(row[0]), self._meta(row)) for row in self._run(f"{_ENTRY} WHERE {among}", params)
            )
        return found

    def stored(self, keys: Iterable[str]) -> set[str]:
        found: set[str] = set()
        for batch in batches(keys):
            among, params = self._among("key", batch)
            found.update(str(r[0]) for r in self._run(f"SELECT key FROM heaps WHERE {among}", params))
        return found

    def add(self, key: str, *, size: int, session: str | None, tags: Mapping[str, str] | None) -> HeapMeta:
        now = self._now()
        rows = self._run(
            f"INSERT INTO heaps ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE"
            f" SET last_used_at = {self.GREATEST}(heaps.last_used_at, excluded.last_used_at)"
            f" RETURNING {_COLUMNS}",
            (validate_heap_key(key), size, now, now, session, self._tags_param(tags)),
        )
        return self._meta(rows[0])

    def use(self, key: str) -> bool:
        rows = self._run(
            f"UPDATE heaps SET last_used_at = {self.GREATEST}(last_used_at, ?) WHERE key = ? RETURNING key",
            (self._now(), validate_heap_key(key)),
        )
        return bool(rows)

    def in_use(self, key: str) -> bool:
        return bool(self._run(_BUSY, (validate_heap_key(key),)))

    def in_use_all(self) -> set[str]:
        rows = self._run(
            "SELECT DISTINCT heap_in FROM executions WHERE status = 'running' AND heap_in IS NOT NULL", ()
        )
        return {str(r[0]) for r in rows}

    def used_since(self, max_age_seconds: float) -> set[str]:
        rows = self._run("SELECT key FROM heaps WHERE last_used_at >= ?", (self._ago(max_age_seconds),))
        return {str(r[0]) for r in rows}

    def remove(self, key: str, bytes_gone: Callable[[bool], object]) -> bool:
        validate_heap_key(key)
        with self._transaction() as conn:
            found = conn.execute(
                self._sql(f"SELECT 1 FROM heaps WHERE key = ?{self.LOCK}"), (key,)
            ).fetchone()
            self._handoff("remove:locked")
            # After the row is held: a submit's record committed meanwhile is seen here.
            if conn.execute(self._sql(_BUSY), (key,)).fetchone() is not None:
                raise HeapInUse(f"heap {key} is resumed by a queued or running execution")
            self._handoff("remove:checked")
            bytes_gone(found is not None)
            if found is not None:
                conn.execute(self._sql("DELETE FROM heaps WHERE key = ?"), (key,))
        return found is not None


class SQLiteHeapIndex(SQLHeapIndex):
    """A :class:`HeapIndex` in the ``heaps`` table of the service's SQLite database. Its
    transaction is ``BEGIN IMMEDIATE``: the database's write lock, held from the first read, is
    what serialises a removal with every process's submits (and, as the heaps are files here,
    holds up the directory's other writes for the duration of an unlink)."""

    def __init__(self, database: SQLiteDatabase) -> None:
        super().__init__(database)
