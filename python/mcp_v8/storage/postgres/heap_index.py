"""The index of stored heaps in PostgreSQL: :class:`PostgresHeapIndex`, the ``heaps`` table of
:mod:`.schema`, with the contract of :class:`~..heap_index.HeapIndex` and the SQLite index's rules.

:meth:`~PostgresHeapIndex.remove` is one transaction: ``SELECT ... FOR UPDATE`` of the row, then
the "in use" check, then the ``DELETE``. An execution store's ``create(..., require_heap=True)``
takes the row's ``FOR KEY SHARE`` lock in its insert. The two locks conflict, so either the
insert commits first (the check, a new statement under READ COMMITTED, then sees its execution
running: 409), or the removal holds the row first (the insert waits, then finds the row gone).
The check must come after the lock: a ``DELETE ... WHERE NOT EXISTS (...)`` alone would judge
"in use" from a snapshot taken before it waited for a submit's lock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta, timezone
from typing import Any

from psycopg.types.json import Jsonb

from ..heap_index import SQLHeapIndex
from .database import PostgresDatabase

__all__ = ["PostgresHeapIndex"]


def _now() -> datetime:
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond - now.microsecond % 1000)


class PostgresHeapIndex(SQLHeapIndex):
    """A :class:`~..heap_index.HeapIndex` in the ``heaps`` table of a PostgreSQL database: the
    statements of :class:`~..heap_index.SQLHeapIndex` with ``%s`` marks, ``timestamptz`` and
    ``jsonb``, and remove's row lock."""

    GREATEST = "greatest"
    LOCK = " FOR UPDATE"

    def __init__(self, database: PostgresDatabase) -> None:
        super().__init__(database)

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s")

    def _transaction(self) -> AbstractContextManager[Any]:
        return self._db.transaction()  # type: ignore[no-any-return]

    def _now(self) -> Any:
        return _now()

    def _ago(self, seconds: float) -> Any:
        return _now() - timedelta(seconds=seconds)

    def _time(self, value: Any) -> str:
        return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")  # type: ignore[no-any-return]

    def _tags_param(self, tags: Mapping[str, str] | None) -> Any:
        return None if tags is None else Jsonb(dict(tags))

    def _among(self, column: str, batch: list[str]) -> tuple[str, Sequence[Any]]:
        return f"{column} = ANY(?)", (batch,)
