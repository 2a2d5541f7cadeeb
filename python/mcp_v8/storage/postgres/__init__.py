"""PostgreSQL for several nodes sharing one database: the connector (:mod:`.database`: a connection
pool, the SQL dialect, the schema's migrations, :mod:`.schema`), the stores over it
(:mod:`.stores`: :class:`PostgresExecutionStore`, :class:`PostgresOutputLog`,
:class:`PostgresHeapTags`, :class:`PostgresHeapIndex`, each the one class of its store, as SQLite
has it) and what only nodes share (:mod:`.queue`: the queue of accepted executions, the leases,
the events).

Needs ``psycopg`` 3 and ``psycopg-pool``, which the embedded (SQLite) service does not: import this
package only when a PostgreSQL database is configured.
"""

from __future__ import annotations

from .database import POSTGRES, PgMigration, PostgresDatabase
from .schema import MIGRATIONS, SCHEMA_VERSION, open_postgres
from .stores import (
    PostgresExecutionStore,
    PostgresHeapIndex,
    PostgresHeapTags,
    PostgresOutputLog,
    PostgresToolCallLog,
)

__all__ = [
    "MIGRATIONS",
    "POSTGRES",
    "SCHEMA_VERSION",
    "PgMigration",
    "PostgresDatabase",
    "PostgresExecutionStore",
    "PostgresHeapIndex",
    "PostgresHeapTags",
    "PostgresOutputLog",
    "PostgresToolCallLog",
    "open_postgres",
]
