"""The stores in a PostgreSQL database: each the one class of its store (:mod:`..execution_store`,
:mod:`..output_log`, :mod:`..heap_tags`, :mod:`..heap_index`) over :class:`~.database.PostgresDatabase`,
opened from a connection URL when given one (and then closed with the store)."""

from __future__ import annotations

from typing import Unpack

from ..execution_store import SQLExecutionStore
from ..heap_index import SQLHeapIndex
from ..heap_tags import SQLHeapTags
from ..output_log import OutputOptions, SQLOutputLog
from ..tool_call_log import SQLToolCallLog
from .database import PostgresDatabase
from .schema import open_postgres

__all__ = [
    "PostgresExecutionStore",
    "PostgresHeapIndex",
    "PostgresHeapTags",
    "PostgresOutputLog",
    "PostgresToolCallLog",
    "opened",
]


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
        self, database: PostgresDatabase | str, *, schema: str | None = None, **options: Unpack[OutputOptions]
    ) -> None:
        db, owned = opened(database, schema)
        super().__init__(db, owned=owned, **options)


class PostgresHeapTags(SQLHeapTags):
    """The heap tags in ``database``."""

    def __init__(self, database: PostgresDatabase) -> None:
        super().__init__(database)


class PostgresHeapIndex(SQLHeapIndex):
    """The heap index in ``database``."""

    def __init__(self, database: PostgresDatabase) -> None:
        super().__init__(database)


class PostgresToolCallLog(SQLToolCallLog):
    """The tool call records in ``database``, or in the database of a connection URL (then
    closed with the store)."""

    def __init__(self, database: PostgresDatabase | str, *, schema: str | None = None) -> None:
        db, owned = opened(database, schema)
        super().__init__(db, owned=owned)
