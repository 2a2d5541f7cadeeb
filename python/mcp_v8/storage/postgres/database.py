"""The PostgreSQL connector: one database (or one schema of it) that the stores of several nodes share.

:class:`PostgresDatabase` holds a :class:`psycopg_pool.ConnectionPool` of autocommit connections:
a single statement is its own transaction (:meth:`PostgresDatabase.run`), and a write of several
statements is one short transaction (:meth:`PostgresDatabase.transaction`) that never spans a wait
for anything but the database. It runs the statements of :mod:`..sql` in psycopg's spelling
(:data:`POSTGRES`), with results in binary (``bytea`` is not hex-encoded on the way), and loads
``timestamptz`` as the ISO strings the stores hand out and ``jsonb`` as its text, so that rows
read as SQLite's do. ``schema`` (optional) puts every connection's ``search_path`` on one
schema, so several stores (or tests) can share a database without seeing each other's tables; a
``search_path`` in the connection string's ``options`` does the same. Whichever chose it,
:attr:`PostgresDatabase.current_schema` is the schema the tables are in, which is what names this
deployment's locks and notification channels.

Schema versions: the table ``schema_version`` holds one row, the number of the last migration
applied (no table: 0). At open, every :class:`PgMigration` numbered above it is applied in order,
each in its own transaction that also writes the new number, under a session-level advisory lock
of the schema, so two nodes opening at once apply nothing twice. A version above the last
migration this code knows was written by a newer release: it is refused with
:class:`~..errors.SchemaVersionError` before anything is written.
"""

from __future__ import annotations

import contextlib
import logging
import re
import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
from psycopg.adapt import Buffer, Loader
from psycopg.pq import Format
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from ..errors import DatabaseUnavailable, DuplicateKey, SchemaVersionError
from ..sql import Closing, Dialect, Json, Params, Row, iso, render

__all__ = ["POSTGRES", "PgMigration", "PostgresDatabase", "Row"]

log = logging.getLogger(__name__)

_SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_LOCK_KEY = "hashtext('mcp_v8 schema ' || current_schema())"
_LOCK_SQL = f"SELECT pg_advisory_lock({_LOCK_KEY})"
_UNLOCK_SQL = f"SELECT pg_advisory_unlock({_LOCK_KEY})"


def _adapt(value: Any) -> Any:
    if isinstance(value, Json):
        return Jsonb(value.value)
    if isinstance(value, tuple):
        return list(value)
    return value


POSTGRES = Dialect(
    name="postgresql",
    paramstyle="pyformat",
    fragments={
        "greatest": "greatest",
        "for_update": " FOR UPDATE",
        "for_key_share": " FOR KEY SHARE",
        "all": "ALL",
        "json": ":$::jsonb",
        "any": "= ANY(:$)",
        "ms_since": "extract(epoch FROM (:now - $)) * 1000.0",
        "tags_hold": "tags @> :$",
    },
    adapt=_adapt,
    holds_nul=False,
)

# -- rows as SQLite gives them ----------------------------------------------------------------------

_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
_MICROSECONDS = struct.Struct("!q")


class _TimestampBinary(Loader):
    format = Format.BINARY

    def load(self, data: Buffer) -> str:
        return iso(_EPOCH + timedelta(microseconds=_MICROSECONDS.unpack(data)[0]))


class _TimestampText(Loader):
    def load(self, data: Buffer) -> str:
        return iso(datetime.fromisoformat(bytes(data).decode("ascii")))


class _JsonBinary(Loader):
    format = Format.BINARY

    def load(self, data: Buffer) -> str:
        return bytes(data[1:]).decode("utf-8")  # a version byte (1), then the text


class _JsonText(Loader):
    def load(self, data: Buffer) -> str:
        return bytes(data).decode("utf-8")


_LOADERS: tuple[tuple[str, type[Loader]], ...] = (
    ("timestamptz", _TimestampBinary),
    ("timestamptz", _TimestampText),
    ("jsonb", _JsonBinary),
    ("jsonb", _JsonText),
)


def _configure(conn: psycopg.Connection[Any]) -> None:
    for name, loader in _LOADERS:
        conn.adapters.register_loader(name, loader)


class _Session:
    """Statements on one borrowed connection."""

    __slots__ = ("_conn",)

    def __init__(self, conn: psycopg.Connection[Row]) -> None:
        self._conn = conn

    def run(self, sql: str, params: Params | Sequence[Any] = ()) -> list[Row]:
        cur = self._execute(sql, params)
        return cur.fetchall() if cur.description is not None else []

    def count(self, sql: str, params: Params | Sequence[Any] = ()) -> int:
        return self._execute(sql, params).rowcount

    def many(self, sql: str, rows: Sequence[Params]) -> None:
        try:
            with self._conn.cursor() as cur:
                cur.executemany(render(POSTGRES, sql), [POSTGRES.params(r) for r in rows])
        except psycopg.errors.UniqueViolation as e:
            raise DuplicateKey(str(e)) from None

    def _execute(self, sql: str, params: Params | Sequence[Any]) -> psycopg.Cursor[Row]:
        try:
            # Always with parameters (perhaps none): psycopg then reads "%%" as "%".
            return self._conn.execute(render(POSTGRES, sql), POSTGRES.params(params), binary=True)
        except psycopg.errors.UniqueViolation as e:
            raise DuplicateKey(str(e)) from None


@dataclass(frozen=True)
class PgMigration:
    """One step of a schema: ``sql`` runs inside the step's transaction (several statements
    separated by ``;`` are fine: psycopg sends them as one simple query when there are no
    parameters)."""

    version: int
    description: str
    sql: str


class PostgresDatabase(Closing):
    """A PostgreSQL database (or one schema of it), its connection pool and its schema version:
    a :class:`~..sql.Connector`. Safe to share between threads. Use as a context manager or call
    :meth:`close`."""

    def __init__(
        self,
        conninfo: str,
        migrations: Sequence[PgMigration],
        *,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 30.0,
        connect_timeout: int | None = None,
        name: str = "mcp-v8-postgres",
    ) -> None:
        numbers = [m.version for m in migrations]
        if numbers != list(range(1, len(numbers) + 1)):
            raise ValueError(f"migrations must be numbered 1, 2, 3... in order, not {numbers}")
        if schema is not None and _SCHEMA_RE.fullmatch(schema) is None:
            raise ValueError(f"not a plain schema name: {schema!r}")
        self.dialect = POSTGRES
        self.errors: tuple[type[BaseException], ...] = (psycopg.Error, DatabaseUnavailable)
        self.schema = schema
        self.latest_version = len(migrations)
        kwargs: dict[str, Any] = {"autocommit": True}
        if connect_timeout is not None:
            kwargs["connect_timeout"] = connect_timeout
        if schema is not None:
            kwargs["options"] = f"-c search_path={schema}"
        self._pool: ConnectionPool[psycopg.Connection[Row]] = ConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            kwargs=kwargs,
            configure=_configure,
            timeout=timeout,
            open=False,
            name=name,
        )
        self._closed = False
        try:
            self._pool.open(wait=True, timeout=timeout)
            self.current_schema = self._current_schema()
            self.schema_version = self._migrate(migrations)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Closes the pool (connections in use close when they come back). Idempotent."""
        if not self._closed:
            self._closed = True
            self._pool.close()

    # -- connections -----------------------------------------------------------------------------

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Row]]:
        """Borrows an autocommit connection for one operation. The server being away (no
        connection in time, a connection lost) raises :class:`DatabaseUnavailable`."""
        if self._closed:
            raise RuntimeError("the PostgreSQL database is closed")
        try:
            with self._pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as e:
            raise DatabaseUnavailable(f"the database is unavailable: {e}") from e

    @contextmanager
    def transaction(self) -> Iterator[_Session]:
        """One transaction, committed on success and rolled back on error. Keep it short: no
        waiting on anything but the database inside."""
        with self.connection() as conn, conn.transaction():
            yield _Session(conn)

    @contextmanager
    def session(self) -> Iterator[_Session]:
        """One connection for several statements, each its own transaction."""
        with self.connection() as conn:
            yield _Session(conn)

    def run(self, sql: str, params: Params | Sequence[Any] = ()) -> list[Row]:
        """Runs one statement as its own transaction and returns its rows (none for a statement
        that returns none)."""
        with self.connection() as conn:
            return _Session(conn).run(sql, params)

    def count(self, sql: str, params: Params | Sequence[Any] = ()) -> int:
        """Runs one statement as its own transaction and returns how many rows it changed."""
        with self.connection() as conn:
            return _Session(conn).count(sql, params)

    def many(self, sql: str, rows: Sequence[Params]) -> None:
        """Runs one statement for each of ``rows``, in one transaction and one round trip."""
        with self.transaction() as session:
            session.many(sql, rows)

    # -- schema ----------------------------------------------------------------------------------

    def _current_schema(self) -> str:
        """The schema the tables are created and found in (the first of the ``search_path`` that
        exists): ``schema``, one the connection string's options name, or the server's default."""
        with self.connection() as conn:
            row = conn.execute("SELECT current_schema()").fetchone()
        if row is None or row[0] is None:
            raise ValueError("no schema to use: the search_path names no schema that exists")
        return str(row[0])

    def _version(self, conn: psycopg.Connection[Row]) -> int:
        row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
        version = 0
        if row is not None and row[0]:
            found = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            version = int(found[0]) if found is not None and found[0] is not None else 0
        if version > self.latest_version:
            raise SchemaVersionError.newer(
                f"the PostgreSQL schema {self.schema or 'public'}",
                version,
                self.latest_version,
                "use that release or another database",
            )
        return version

    def _migrate(self, migrations: Sequence[PgMigration]) -> int:
        with self.connection() as conn:
            version = self._version(conn)  # a newer schema is refused before anything is written
            if version == self.latest_version:
                return version
            # A session-level lock, taken outside any transaction: each step's transaction starts
            # after it is held, so it sees the catalog as the previous holder committed it (a lock
            # taken inside a transaction would leave its catalog snapshot stale).
            conn.execute(_LOCK_SQL)
            try:
                for migration in migrations:
                    with conn.transaction():
                        version = self._version(conn)  # another node may have migrated meanwhile
                        if version >= migration.version:
                            continue
                        log.info(
                            "migrating PostgreSQL to schema version %d: %s",
                            migration.version,
                            migration.description,
                        )
                        if version == 0:
                            conn.execute("CREATE TABLE schema_version (version integer NOT NULL)")
                        conn.execute(migration.sql)
                        conn.execute("DELETE FROM schema_version")
                        conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (migration.version,))
                        version = migration.version
            finally:
                with contextlib.suppress(psycopg.Error):  # a broken connection released it already
                    conn.execute(_UNLOCK_SQL)
        return version
