"""The service's SQLite database: one file, ``<data dir>/registry.sqlite3``, holding the tables of the
execution store (:mod:`.executions`: ``executions``) and of the output log (:mod:`.output`:
``output_logs``, ``output_chunks``), the tags of heap snapshots (:mod:`.heap_tags`: ``heap_tags``)
the index of stored heaps and their owners (:mod:`.heap_index`: ``heaps``, ``heap_owners``) and the records of the scripts' tool
calls (:mod:`.tool_call_log`: ``tool_calls``). Each store writes only its own
tables; they share the file and the :class:`~.sqlite.SQLiteDatabase` plumbing. Two reads cross
them, both for the heap catalogue: an execution resuming a heap is recorded only while
``heap_owners`` holds it as its tenant's, and a heap is in use while a running execution's ``heap_in`` names it.

The migrations below are the file's history and are never edited once released: a change of schema
is a new migration at the end (see :mod:`.sqlite` for how they are applied). Every released version
must open: ``tests/fixtures`` keeps a data directory of each one, read back by the tests.
"""

from __future__ import annotations

import json
import os
import sqlite3

from .heaps import FileHeapStore
from .sqlite import Migration, SQLiteDatabase, statements

__all__ = ["DB_FILENAME", "MIGRATIONS", "SCHEMA_VERSION", "database_path", "open_database", "opened"]

DB_FILENAME = "registry.sqlite3"

# The columns of ``executions`` from version 1 to 4 (version 1 had the output totals there too).
_EXECUTIONS_V1 = """
    id             INTEGER PRIMARY KEY,
    execution_id   TEXT NOT NULL UNIQUE,
    status         TEXT NOT NULL
                   CHECK (status IN ('running', 'completed', 'failed', 'cancelled', 'timed_out')),
    started_at     TEXT NOT NULL,
    completed_at   TEXT,
    result         TEXT,
    error          TEXT,
    heap_in        TEXT,
    heap_out       TEXT,
    session        TEXT,
    tags           TEXT,
    code_bytes     INTEGER NOT NULL DEFAULT 0,
    duration_ms    REAL"""

# Version 1: records and output totals in one table, output chunks in another.
_V1 = f"""
CREATE TABLE executions ({_EXECUTIONS_V1},
    total_bytes    INTEGER NOT NULL DEFAULT 0,
    total_lines    INTEGER NOT NULL DEFAULT 0,
    total_newlines INTEGER NOT NULL DEFAULT 0,
    truncated      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX executions_by_start ON executions (started_at);
CREATE INDEX executions_by_status ON executions (status, started_at);

CREATE TABLE output_chunks (
    execution_id TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    start_byte   INTEGER NOT NULL,
    start_line   INTEGER NOT NULL,
    n_lines      INTEGER NOT NULL,
    data         BLOB NOT NULL,
    UNIQUE (execution_id, seq)
);
CREATE INDEX output_chunks_by_byte ON output_chunks (execution_id, start_byte);
CREATE INDEX output_chunks_by_line ON output_chunks (execution_id, start_line, seq);
"""

# Version 2: the output totals move to the output log's own table, one row per execution's log;
# ``executions`` is rebuilt without them (keeping ``id``, which orders records started at the same
# millisecond).
_V2 = f"""
CREATE TABLE output_logs (
    execution_id   TEXT PRIMARY KEY,
    total_bytes    INTEGER NOT NULL DEFAULT 0,
    total_lines    INTEGER NOT NULL DEFAULT 0,
    total_newlines INTEGER NOT NULL DEFAULT 0,
    truncated      INTEGER NOT NULL DEFAULT 0
);
INSERT INTO output_logs (execution_id, total_bytes, total_lines, total_newlines, truncated)
    SELECT execution_id, total_bytes, total_lines, total_newlines, truncated FROM executions;

CREATE TABLE executions_v2 ({_EXECUTIONS_V1}
);
INSERT INTO executions_v2 (id, execution_id, status, started_at, completed_at, result, error, heap_in,
                           heap_out, session, tags, code_bytes, duration_ms)
    SELECT id, execution_id, status, started_at, completed_at, result, error, heap_in,
           heap_out, session, tags, code_bytes, duration_ms FROM executions;
DROP TABLE executions;
ALTER TABLE executions_v2 RENAME TO executions;
CREATE INDEX executions_by_start ON executions (started_at);
CREATE INDEX executions_by_status ON executions (status, started_at);
"""

# Version 3: an index for sessions (the ``session`` field of executions; there is no table of
# them). It hands a session's executions over in the listings' order, ``(started_at, id)``, both
# ways: a session's log, ``session=`` filters, each session's latest heap. Partial: an execution
# without a session costs it nothing. It holds no column that finishing an execution changes, so
# the hot write at the end of every execution leaves it alone (a covering index with
# ``completed_at`` halves the sessions listing's time, at the cost of an index update per finish).
_V3 = """
CREATE INDEX executions_by_session ON executions (session, started_at, id)
    WHERE session IS NOT NULL;
"""

# Version 4: the tags of heap snapshots, owned by :mod:`.heap_tags` (one row per heap stored with
# tags or whose tags a client changed; ``tags`` is a JSON object). Ordered for the tag query,
# newest first.
_V4 = """
CREATE TABLE heap_tags (
    key        TEXT PRIMARY KEY,
    tags       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX heap_tags_by_creation ON heap_tags (created_at, key);
"""

# Version 5: which server process runs an execution (``owner``, the id of its lease in the data
# directory, see :mod:`.leases`), so a process starting on a directory another one serves fails
# only the running executions of processes that are gone. NULL for executions of earlier
# versions. The index holds only running executions: what a start looks for.
_V5 = """
ALTER TABLE executions ADD COLUMN owner TEXT;
CREATE INDEX executions_running_by_owner ON executions (owner) WHERE status = 'running';
"""

# Version 6: the index of stored heaps, owned by :mod:`.heap_index` (one row per heap: its size,
# the first meta, its last use), which the heap catalogue answers from and which serialises a
# heap's deletion with the submits that resume it; and the running executions by the heap they
# resume (what "in use" asks). The heap files already in the data directory are indexed.
_V6 = """
CREATE TABLE heaps (
    key          TEXT PRIMARY KEY,
    size         INTEGER NOT NULL,
    created_at   TEXT NOT NULL,
    last_used_at TEXT NOT NULL,
    session      TEXT,
    tags         TEXT
);
CREATE INDEX heaps_by_last_use ON heaps (last_used_at);
CREATE INDEX executions_running_by_heap ON executions (heap_in) WHERE status = 'running'
"""


# Version 7: the script's structured error of a finished execution (``js_error``, a JSON object of
# name, message, stack, line and column; see :mod:`mcp_v8.js_error`), beside ``error``, its text.
# NULL for executions of earlier versions and for failures that are not the script's.
_V7 = """
ALTER TABLE executions ADD COLUMN js_error TEXT;
"""

# Version 8: each heap's signature (:mod:`.heap_signing`): the HMAC the server computed under the
# deployment's key when it published the heap, checked before a worker receives it. NULL for heaps
# indexed before heaps were signed (a single node signs its own on their first use).
_V8 = """
ALTER TABLE heaps ADD COLUMN signature TEXT;
"""

# Version 9: the records of the tool calls of each execution's script, owned by
# :mod:`.tool_call_log` (one row per call, in call order by the script's call id; deleted with
# their execution by retention).
_V9 = """
CREATE TABLE tool_calls (
    execution_id    TEXT NOT NULL,
    call_id         INTEGER NOT NULL,
    server          TEXT NOT NULL,
    tool            TEXT NOT NULL,
    arguments_bytes INTEGER NOT NULL,
    outcome         TEXT NOT NULL,
    message         TEXT,
    started_at      TEXT NOT NULL,
    duration_ms     REAL NOT NULL,
    PRIMARY KEY (execution_id, call_id)
);
"""

# Version 10: an execution may wait for a person's decision on the tool calls its script holds
# (status ``waiting``, not terminal: nothing runs it). The calls it waits on
# (``pending_tool_calls``, a JSON list of {call_id, server, tool, arguments}), the heap it paused
# in (``waiting_heap``), the tool calls it made so far (``tool_calls_made``), what its resume runs
# under (``resume_spec``: its spec's wire form without the code), when the wait started and when
# an undecided wait fails (``waiting_since``, ``approval_deadline``). SQLite checks ``status``
# with a CHECK of the table, so the table is rebuilt (keeping ``id``, which orders records).
_V10_EXECUTIONS = """
    id                 INTEGER PRIMARY KEY,
    execution_id       TEXT NOT NULL UNIQUE,
    status             TEXT NOT NULL
                       CHECK (status IN ('running', 'waiting', 'completed', 'failed', 'cancelled', 'timed_out')),
    started_at         TEXT NOT NULL,
    completed_at       TEXT,
    result             TEXT,
    error              TEXT,
    heap_in            TEXT,
    heap_out           TEXT,
    session            TEXT,
    tags               TEXT,
    code_bytes         INTEGER NOT NULL DEFAULT 0,
    duration_ms        REAL,
    owner              TEXT,
    js_error           TEXT,
    pending_tool_calls TEXT,
    waiting_heap       TEXT,
    tool_calls_made    INTEGER,
    resume_spec        TEXT,
    waiting_since      TEXT,
    approval_deadline  TEXT"""
_V10 = f"""
CREATE TABLE executions_v10 ({_V10_EXECUTIONS}
);
INSERT INTO executions_v10 (id, execution_id, status, started_at, completed_at, result, error, heap_in,
                           heap_out, session, tags, code_bytes, duration_ms, owner, js_error)
    SELECT id, execution_id, status, started_at, completed_at, result, error, heap_in,
           heap_out, session, tags, code_bytes, duration_ms, owner, js_error FROM executions;
DROP TABLE executions;
ALTER TABLE executions_v10 RENAME TO executions;
CREATE INDEX executions_by_start ON executions (started_at);
CREATE INDEX executions_by_status ON executions (status, started_at);
CREATE INDEX executions_by_session ON executions (session, started_at, id) WHERE session IS NOT NULL;
CREATE INDEX executions_running_by_owner ON executions (owner) WHERE status = 'running';
CREATE INDEX executions_running_by_heap ON executions (heap_in) WHERE status = 'running';
CREATE INDEX executions_waiting_by_deadline ON executions (approval_deadline) WHERE status = 'waiting';
CREATE INDEX executions_waiting_by_heap ON executions (waiting_heap) WHERE waiting_heap IS NOT NULL
"""

# Version 11: the id of each execution's trace (32 hex digits, ``--otlp-endpoint``: :mod:`mcp_v8.tracing`);
# NULL when it was not traced.
_V11 = """
ALTER TABLE executions ADD COLUMN trace_id TEXT;
"""

# Version 12: whose each execution is (``tenant``, :mod:`mcp_v8.principal`): existing executions
# are the default tenant's. Listings and sessions of one tenant walk their own index.
_V12 = """
ALTER TABLE executions ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
CREATE INDEX executions_by_tenant ON executions (tenant, started_at, id);
CREATE INDEX executions_by_tenant_session ON executions (tenant, session, started_at, id)
    WHERE session IS NOT NULL;
"""

# Version 13: a tenant's running executions, which a submit under a concurrency quota counts
# (:mod:`.tenant_usage`): an entry per running execution, whatever the tenant's history.
_V13 = """
CREATE INDEX executions_running_by_tenant ON executions (tenant) WHERE status = 'running';
"""

# Version 14: who owns each heap (``heap_owners``, :mod:`.heap_index`): heaps are content-addressed,
# so two tenants producing the same bytes share one blob and each has its ownership row, with its
# own first session and tags, creation and last use. A heap's tags as clients change them are per
# tenant (``heap_tags`` keyed by tenant and key). Every heap and tags row already there is the default
# tenant's.
_V14 = """
CREATE TABLE heap_owners (
    key          TEXT NOT NULL,
    tenant       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    last_used_at TEXT NOT NULL,
    session      TEXT,
    tags         TEXT,
    PRIMARY KEY (key, tenant)
);
INSERT INTO heap_owners (key, tenant, created_at, last_used_at, session, tags)
    SELECT key, 'default', created_at, last_used_at, session, tags FROM heaps;
CREATE TABLE heap_tags_of_tenants (
    tenant     TEXT NOT NULL,
    key        TEXT NOT NULL,
    tags       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant, key)
);
INSERT INTO heap_tags_of_tenants (tenant, key, tags, created_at, updated_at)
    SELECT 'default', key, tags, created_at, updated_at FROM heap_tags;
DROP TABLE heap_tags;
ALTER TABLE heap_tags_of_tenants RENAME TO heap_tags;
CREATE INDEX heap_tags_by_creation ON heap_tags (tenant, created_at, key);
CREATE INDEX heap_owners_by_tenant ON heap_owners (tenant, key);
"""


def _index_heap_files(conn: sqlite3.Connection) -> None:
    """Version 6: the tables, then a row for each heap file of the data directory."""
    statements(_V6)(conn)
    path = next((str(row[2]) for row in conn.execute("PRAGMA database_list") if row[1] == "main"), "")
    root = os.path.dirname(path)
    if not path or not os.path.isdir(os.path.join(root, "heaps")):
        return
    files = FileHeapStore(root, durable=False)
    for key in list(files.keys()):
        meta = files.meta(key)
        if meta is None:
            continue
        tags = None if meta.tags is None else json.dumps(meta.tags, ensure_ascii=False, sort_keys=True)
        conn.execute(
            "INSERT INTO heaps (key, size, created_at, last_used_at, session, tags)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
            (key, meta.size, meta.created_at, meta.last_used_at or meta.created_at, meta.session, tags),
        )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "execution records with output totals, output chunks", statements(_V1)),
    Migration(2, "output totals in output_logs, owned by the output log", statements(_V2)),
    Migration(3, "an index of executions by session", statements(_V3)),
    Migration(4, "the tags of heap snapshots", statements(_V4)),
    Migration(5, "the server process running each execution", statements(_V5)),
    Migration(6, "the index of stored heaps", _index_heap_files),
    Migration(7, "the structured error of a script", statements(_V7)),
    Migration(8, "the signature of each heap", statements(_V8)),
    Migration(9, "the records of the scripts' tool calls", statements(_V9)),
    Migration(10, "executions waiting for a decision on their tool calls", statements(_V10)),
    Migration(11, "the trace id of each execution", statements(_V11)),
    Migration(12, "the tenant of each execution", statements(_V12)),
    Migration(13, "an index of each tenant's running executions", statements(_V13)),
    Migration(14, "the owners of each heap, and heap tags per tenant", statements(_V14)),
)
SCHEMA_VERSION = len(MIGRATIONS)


def database_path(root: str | os.PathLike[str]) -> str:
    """Where the database of the data directory ``root`` lives."""
    return os.path.join(os.fspath(root), DB_FILENAME)


def open_database(root: str | os.PathLike[str], *, busy_timeout_ms: int = 10_000) -> SQLiteDatabase:
    """Opens (creating ``root`` and the file if needed) and migrates the database of the data
    directory ``root``. Raises :class:`~.errors.SchemaVersionError` for a file of a newer release."""
    os.makedirs(os.fspath(root), exist_ok=True)
    return SQLiteDatabase(database_path(root), MIGRATIONS, busy_timeout_ms=busy_timeout_ms)


def opened(database: SQLiteDatabase | str | os.PathLike[str]) -> tuple[SQLiteDatabase, bool]:
    """``database`` and False, or, for a data directory, its database opened and True (the caller
    closes what it opened)."""
    if isinstance(database, SQLiteDatabase):
        return database, False
    return open_database(database), True
