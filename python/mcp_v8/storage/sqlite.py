"""The SQLite connector: one database file, the stores' tables in it, shared by the stores of one
data directory (and by every process serving it).

:class:`SQLiteDatabase` opens the file in WAL mode with ``synchronous=NORMAL`` (a committed transaction
survives a kill of the process, an OS crash may lose the last few; readers never block the writer),
lends connections from a small pool (so concurrent readers do not wait for each other), wraps every
write of several statements in one short ``BEGIN IMMEDIATE`` transaction (a single statement is its
own transaction, and takes the write lock before it reads, just the same), and brings the schema up
to date at open. It runs the statements of :mod:`.sql` in SQLite's spelling (:data:`SQLITE`).

Schema versions: the database's ``PRAGMA user_version`` is the number of the last migration applied
(0 for a new file). At open, every :class:`Migration` numbered above it is applied in order, each in
its own transaction that also sets ``user_version``, so a crash leaves the file at one version or the
next, and opening twice (or from two processes at once) applies nothing twice. A file whose version
is above the last migration this code knows was written by a newer release: it is refused with
:class:`~.errors.SchemaVersionError` and left untouched.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .errors import DatabaseUnavailable, DuplicateKey, SchemaVersionError
from .sql import Closing, Dialect, Json, Params, Row, iso, render

__all__ = [
    "SQLITE",
    "Closing",
    "DatabaseUnavailable",
    "Migration",
    "SQLiteDatabase",
    "SchemaVersionError",
    "statements",
]

log = logging.getLogger(__name__)

_MAX_IDLE_CONNECTIONS = 8
_UNIQUE = {sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY}


def _adapt(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Json):
        return json.dumps(value.value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value), ensure_ascii=False)
    return value


SQLITE = Dialect(
    name="sqlite",
    paramstyle="named",
    fragments={
        "greatest": "max",  # of its arguments
        "for_update": "",  # BEGIN IMMEDIATE holds the database
        "for_key_share": "",
        "all": "-1",  # LIMIT {all} OFFSET n
        "json": ":$",
        "any": "IN (SELECT value FROM json_each(:$))",
        "ms_since": "round((julianday(:now) - julianday($)) * 86400000.0)",  # both at milliseconds
        "tags_hold": (
            "NOT EXISTS (SELECT 1 FROM json_each(:$) AS w WHERE NOT EXISTS"
            " (SELECT 1 FROM json_each(tags) AS t WHERE t.key = w.key AND t.value = w.value))"
        ),
    },
    adapt=_adapt,
    holds_nul=True,
)


class _Session:
    """Statements on one borrowed connection."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def run(self, sql: str, params: Params | Sequence[Any] = ()) -> list[Row]:
        try:
            return self._conn.execute(render(SQLITE, sql), SQLITE.params(params)).fetchall()
        except sqlite3.IntegrityError as e:
            raise _duplicate(e) from None

    def count(self, sql: str, params: Params | Sequence[Any] = ()) -> int:
        try:
            return self._conn.execute(render(SQLITE, sql), SQLITE.params(params)).rowcount
        except sqlite3.IntegrityError as e:
            raise _duplicate(e) from None

    def many(self, sql: str, rows: Sequence[Params]) -> None:
        try:
            self._conn.executemany(render(SQLITE, sql), [SQLITE.params(r) for r in rows])
        except sqlite3.IntegrityError as e:
            raise _duplicate(e) from None


def _duplicate(e: sqlite3.IntegrityError) -> BaseException:
    return DuplicateKey(str(e)) if getattr(e, "sqlite_errorcode", None) in _UNIQUE else e


@dataclass(frozen=True)
class Migration:
    """One step of a schema: ``apply`` runs inside the step's transaction and must not commit."""

    version: int
    description: str
    apply: Callable[[sqlite3.Connection], None]


def statements(sql: str) -> Callable[[sqlite3.Connection], None]:
    """A migration step running the ``;``-separated statements of ``sql`` one by one (no
    ``executescript``, which would commit the step's transaction). ``sql`` must hold no ``;``
    inside literals."""

    def apply(conn: sqlite3.Connection) -> None:
        for statement in sql.split(";"):
            if statement.strip():
                conn.execute(statement)

    return apply


class SQLiteDatabase(Closing):
    """One SQLite file, its connection pool and its schema version: a :class:`~.sql.Connector`.
    Safe to share between threads.

    ``migrations`` must be numbered 1, 2, 3... in order; the file is brought to the last one at open
    (see the module docstring). Use as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        migrations: Sequence[Migration],
        *,
        busy_timeout_ms: int = 10_000,
    ) -> None:
        numbers = [m.version for m in migrations]
        if numbers != list(range(1, len(numbers) + 1)):
            raise ValueError(f"migrations must be numbered 1, 2, 3... in order, not {numbers}")
        self.dialect = SQLITE
        self.errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
        self.path = os.fspath(path)
        self.busy_timeout_ms = busy_timeout_ms
        self.latest_version = len(migrations)
        self._closed = False
        self._idle: list[sqlite3.Connection] = []  # pooled connections not in use
        self._pool_lock = threading.Lock()
        try:
            self.schema_version = self._open(migrations)
        except BaseException:
            self.close()
            raise

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Closes every idle connection; connections in use close when they come back. Idempotent."""
        with self._pool_lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # -- connections ---------------------------------------------------------------------------

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """Borrows a connection (autocommit: each statement is its own transaction unless the caller
        begins one) for one operation. Raises ``RuntimeError`` once the database is closed."""
        conn = self._borrow()
        try:
            yield conn
        finally:
            self._give_back(conn)

    def run(self, sql: str, params: Params | Sequence[Any] = ()) -> list[Row]:
        """Runs one statement as its own transaction (a read, or a write that needs no other
        statement with it) and returns its rows: the hot paths' way, without a context manager
        or a ``BEGIN``/``COMMIT`` pair around it."""
        conn = self._borrow()
        try:
            return _Session(conn).run(sql, params)
        finally:
            self._give_back(conn)

    def count(self, sql: str, params: Params | Sequence[Any] = ()) -> int:
        """Runs one statement as its own transaction and returns how many rows it changed."""
        conn = self._borrow()
        try:
            return _Session(conn).count(sql, params)
        finally:
            self._give_back(conn)

    def many(self, sql: str, rows: Sequence[Params]) -> None:
        """Runs one statement for each of ``rows``, all in one transaction."""
        with self.transaction() as session:
            session.many(sql, rows)

    @contextmanager
    def session(self) -> Iterator[_Session]:
        """One connection for several statements (see :meth:`connection`)."""
        with self.connection() as conn:
            yield _Session(conn)

    @contextmanager
    def transaction(self) -> Iterator[_Session]:
        """One ``BEGIN IMMEDIATE`` transaction (see :meth:`write`)."""
        with self.write() as conn:
            yield _Session(conn)

    def _borrow(self) -> sqlite3.Connection:
        with self._pool_lock:
            if self._closed:
                raise RuntimeError(f"database {self.path} is closed")
            conn = self._idle.pop() if self._idle else None
        return conn if conn is not None else self._connect()

    def _give_back(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:  # only after an error inside write()'s own handling
            conn.execute("ROLLBACK")
        with self._pool_lock:
            keep = not self._closed and len(self._idle) < _MAX_IDLE_CONNECTIONS
            if keep:
                self._idle.append(conn)
        if not keep:
            conn.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction (it takes SQLite's write lock at once, so it never
        fails half-way for a lock), committed on success and rolled back on error."""
        with self.connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    # -- internals -----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout_ms / 1000.0,
            isolation_level=None,  # autocommit; transactions are explicit
            check_same_thread=False,  # pooled: used by one thread at a time, not always the same one
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def _version(self, conn: sqlite3.Connection) -> int:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > self.latest_version:
            raise SchemaVersionError.newer(
                self.path,
                version,
                self.latest_version,
                "open it with that release or use another data directory",
            )
        return version

    def _open(self, migrations: Sequence[Migration]) -> int:
        with self.connection() as conn:
            # A newer file is refused before anything writes to it (switching to WAL would).
            version = self._version(conn)
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning("SQLite refused WAL mode for %s (journal_mode=%s)", self.path, mode)
        for migration in migrations[version:]:
            with self.write() as conn:
                # Read again inside the transaction: another process may have migrated meanwhile.
                version = self._version(conn)
                if version >= migration.version:
                    continue
                log.info(
                    "migrating %s to schema version %d: %s",
                    self.path,
                    migration.version,
                    migration.description,
                )
                migration.apply(conn)
                conn.execute(f"PRAGMA user_version = {int(migration.version)}")
                version = migration.version
        return version
