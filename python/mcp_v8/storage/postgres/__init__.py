"""PostgreSQL implementations of the stores' Protocols, for several nodes sharing one database:
:class:`PostgresExecutionStore` (:class:`~..executions.ExecutionStore`), :class:`PostgresOutputLog`
(:class:`~..output.OutputLog`), :class:`PostgresHeapTags` (:class:`~..heap_tags.HeapTags`) and
:class:`PostgresHeapIndex` (:class:`~..heap_index.HeapIndex`), over one :class:`PostgresDatabase` (a connection pool and the
schema's migrations, :mod:`.schema`).

Needs ``psycopg`` 3 and ``psycopg-pool``, which the embedded (SQLite) service does not: import this
package only when a PostgreSQL database is configured.
"""

from __future__ import annotations

from .database import PgMigration, PostgresDatabase
from .executions import PostgresExecutionStore
from .heap_index import PostgresHeapIndex
from .heap_tags import PostgresHeapTags
from .output import PostgresOutputLog
from .schema import MIGRATIONS, SCHEMA_VERSION, open_postgres

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "PgMigration",
    "PostgresDatabase",
    "PostgresExecutionStore",
    "PostgresHeapIndex",
    "PostgresHeapTags",
    "PostgresOutputLog",
    "open_postgres",
]
