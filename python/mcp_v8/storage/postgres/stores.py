"""The stores in a PostgreSQL database: each the one class of its store (:mod:`..execution_store`,
:mod:`..output_log`, :mod:`..heap_tags`, :mod:`..heap_index`) over :class:`~.database.PostgresDatabase`,
opened from a connection URL when given one (and then closed with the store)."""

from __future__ import annotations

from ..execution_store import SQLExecutionStore
from ..heap_index import SQLHeapIndex
from ..heap_tags import SQLHeapTags
from ..output import DEFAULT_MAX_OUTPUT_BYTES
from ..output_log import DEFAULT_CHUNK_BYTES, DEFAULT_FLUSH_INTERVAL, SQLOutputLog
from .database import PostgresDatabase
from .schema import open_postgres

__all__ = ["PostgresExecutionStore", "PostgresHeapIndex", "PostgresHeapTags", "PostgresOutputLog", "opened"]


def opened(database: PostgresDatabase | str, schema: str | None = None) -> tuple[PostgresDatabase, bool]:
    """``database`` and False, or, for a connection URL, its database (on ``schema``) opened and
    True (the caller closes what it opened)."""
    if isinstance(database, PostgresDatabase):
        return database, False
    return open_postgres(database, schema=schema), True


class PostgresExecutionStore(SQLExecutionStore):
    """The execution store in ``database``, or in the database of a connection URL."""

    def __init__(self, database: PostgresDatabase | str, *, schema: str | None = None) -> None:
        db, owned = opened(database, schema)
        super().__init__(db, owned=owned)


class PostgresOutputLog(SQLOutputLog):
    """The output log in ``database``, or in the database of a connection URL."""

    def __init__(
        self,
        database: PostgresDatabase | str,
        *,
        schema: str | None = None,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        flush_interval: float | None = DEFAULT_FLUSH_INTERVAL,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    ) -> None:
        db, owned = opened(database, schema)
        super().__init__(
            db,
            owned=owned,
            max_output_bytes=max_output_bytes,
            flush_interval=flush_interval,
            chunk_bytes=chunk_bytes,
        )


class PostgresHeapTags(SQLHeapTags):
    """The heap tags in ``database``."""

    def __init__(self, database: PostgresDatabase) -> None:
        super().__init__(database)


class PostgresHeapIndex(SQLHeapIndex):
    """The heap index in ``database``."""

    def __init__(self, database: PostgresDatabase) -> None:
        super().__init__(database)
