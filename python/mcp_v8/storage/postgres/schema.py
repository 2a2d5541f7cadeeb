"""The service's PostgreSQL tables: those of the execution store (``executions``), of the output log
(``output_logs``, ``output_chunks``), of the heap tags (``heap_tags``) and of the heap index
(``heaps``), as the SQLite database holds them (:mod:`..schema`), with PostgreSQL's types:
``timestamptz`` timestamps (stored at millisecond precision, so they compare as the ISO strings
the stores hand out), ``jsonb`` tags, an identity column for the order of insertion, ``bytea``
output, and ``COLLATE "C"`` (code point order, as SQLite compares) on every name the listings
sort or page by; and what only nodes share: the queue and the nodes (``queue``, ``nodes``,
``usage_counters``) and, when heaps are stored here, their bytes (``heap_blobs``).

The migrations below are the schema's history and are never edited once released: a change is a
new migration at the end (see :mod:`.database` for how they are applied).
"""

from __future__ import annotations

from typing import Any

from .database import PgMigration, PostgresDatabase

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "open_postgres"]

# Version 1: everything the SQLite schema holds at its version 5, and what nodes share only here:
# the queue of accepted executions no node has claimed yet (``queue``, the job as JSON bytes) and
# the nodes with their leases (``nodes``, see :mod:`.queue`).
_V1 = """
CREATE TABLE executions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    execution_id text COLLATE "C" NOT NULL UNIQUE,
    status       text NOT NULL
                 CHECK (status IN ('running', 'completed', 'failed', 'cancelled', 'timed_out')),
    started_at   timestamptz NOT NULL,
    completed_at timestamptz,
    result       text,
    error        text,
    heap_in      text,
    heap_out     text,
    session      text COLLATE "C",
    tags         jsonb,
    code_bytes   bigint NOT NULL DEFAULT 0,
    duration_ms  double precision,
    owner        text
);
CREATE INDEX executions_by_start ON executions (started_at, id);
CREATE INDEX executions_by_status ON executions (status, started_at, id);
CREATE INDEX executions_by_session ON executions (session, started_at, id) WHERE session IS NOT NULL;
CREATE INDEX executions_running_by_owner ON executions (owner) WHERE status = 'running';

CREATE TABLE output_logs (
    execution_id     text COLLATE "C" PRIMARY KEY,
    total_bytes      bigint NOT NULL DEFAULT 0,
    total_lines      bigint NOT NULL DEFAULT 0,
    total_newlines   bigint NOT NULL DEFAULT 0,
    truncated        boolean NOT NULL DEFAULT false,
    chunks           integer NOT NULL DEFAULT 0,
    last_chunk_bytes integer NOT NULL DEFAULT 0
);
CREATE TABLE output_chunks (
    execution_id text COLLATE "C" NOT NULL,
    seq          integer NOT NULL,
    start_byte   bigint NOT NULL,
    start_line   bigint NOT NULL,
    n_lines      bigint NOT NULL,
    data         bytea NOT NULL,
    PRIMARY KEY (execution_id, seq)
);
CREATE INDEX output_chunks_by_byte ON output_chunks (execution_id, start_byte);
CREATE INDEX output_chunks_by_line ON output_chunks (execution_id, start_line, seq);

CREATE TABLE heap_tags (
    key        text COLLATE "C" PRIMARY KEY,
    tags       jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX heap_tags_by_creation ON heap_tags (created_at, key);
CREATE INDEX heap_tags_by_tags ON heap_tags USING gin (tags jsonb_path_ops);

CREATE TABLE queue (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    execution_id text COLLATE "C" NOT NULL UNIQUE,
    job          bytea NOT NULL,
    enqueued_at  timestamptz NOT NULL DEFAULT now(),
    claimed_by   text,
    claimed_at   timestamptz
);
CREATE INDEX queue_unclaimed ON queue (id) WHERE claimed_by IS NULL;

CREATE TABLE nodes (
    id          text COLLATE "C" PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now(),
    lease_until timestamptz NOT NULL
);
"""

# Version 2: the usage of limited resources the nodes share (see :mod:`.usage`), starting with the
# places of the queue ("queued": its unclaimed jobs), counted from the queue as it stands.
_V2 = """
CREATE TABLE usage_counters (
    resource text COLLATE "C" PRIMARY KEY,
    used     bigint NOT NULL
);
INSERT INTO usage_counters (resource, used) SELECT 'queued', count(*) FROM queue WHERE claimed_by IS NULL;
"""

# Version 3: the index of stored heaps (:mod:`.heap_index`), as SQLite's version 6: what the heap
# catalogue answers from for every node, and the row a heap's deletion locks against the submits
# that resume it; the running executions by the heap they resume. Heaps already in ``heap_blobs``
# (the default shared store, in this database) are indexed, last used when the registry's records
# last started from or produced them; those of an S3 store are indexed when first named (see
# :mod:`..heap_catalogue`).
_V3 = """
CREATE TABLE heaps (
    key          text COLLATE "C" PRIMARY KEY,
    size         bigint NOT NULL,
    created_at   timestamptz NOT NULL,
    last_used_at timestamptz NOT NULL,
    session      text COLLATE "C",
    tags         jsonb
);
CREATE INDEX heaps_by_last_use ON heaps (last_used_at);
CREATE INDEX executions_running_by_heap ON executions (heap_in) WHERE status = 'running';
DO $$
BEGIN
    IF to_regclass('heap_blobs') IS NOT NULL THEN
        INSERT INTO heaps (key, size, created_at, last_used_at)
            SELECT key, size, created_at, created_at FROM heap_blobs ON CONFLICT (key) DO NOTHING;
    END IF;
END
$$;
UPDATE heaps AS h SET last_used_at = u.at FROM (
    SELECT heap, max(at) AS at FROM (
        SELECT heap_in AS heap, started_at AS at FROM executions WHERE heap_in IS NOT NULL
        UNION ALL
        SELECT heap_out, completed_at FROM executions WHERE heap_out IS NOT NULL AND completed_at IS NOT NULL
    ) AS uses GROUP BY heap
) AS u WHERE u.heap = h.key AND u.at > h.last_used_at;
"""

# Version 4: the script's structured error of a finished execution, as SQLite's version 7
# (``js_error``, a JSON object of name, message, stack, line and column).
_V4 = """
ALTER TABLE executions ADD COLUMN js_error jsonb;
"""

# Version 5: the bytes of heap snapshots when the shared heap store is this database
# (:mod:`...blobs_postgres`), which releases before it created apart from these migrations, when
# missing: a table that exists already is left as it is. The bytes are already compressed
# snapshots at best, incompressible at worst: TOAST's pglz is skipped.
_V5 = """
CREATE TABLE IF NOT EXISTS heap_blobs (
    key        text COLLATE "C" PRIMARY KEY CHECK (key ~ '^[0-9a-f]{64}$'),
    data       bytea NOT NULL,
    size       bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE heap_blobs ALTER COLUMN data SET STORAGE EXTERNAL;
"""

# Version 6: the output log buffers and writes whole chunks, as SQLite's does (one store for
# both): it no longer tops up the last chunk, so it no longer keeps how many there are and how
# long the last one is. (Chunks written the earlier way read as any others.)
_V6 = """
ALTER TABLE output_logs DROP COLUMN chunks, DROP COLUMN last_chunk_bytes;
"""

# Version 7: each heap's signature, as SQLite's version 8 (:mod:`...heap_signing`); NULL for heaps
# indexed before heaps were signed, which a shared store refuses until they are re-admitted.
_V7 = """
ALTER TABLE heaps ADD COLUMN signature text COLLATE "C";
"""

# Version 8: the records of the tool calls of each execution's script, as SQLite's version 9
# (:mod:`...tool_call_log`).
_V8 = """
CREATE TABLE tool_calls (
    execution_id    text COLLATE "C" NOT NULL,
    call_id         bigint NOT NULL,
    server          text NOT NULL,
    tool            text NOT NULL,
    arguments_bytes bigint NOT NULL,
    outcome         text NOT NULL,
    message         text,
    started_at      timestamptz NOT NULL,
    duration_ms     double precision NOT NULL,
    PRIMARY KEY (execution_id, call_id)
);
"""

# Version 9: executions waiting for a person's decision on their held tool calls, as SQLite's
# version 10: the status ``waiting`` and what the wait keeps.
_V9 = """
ALTER TABLE executions DROP CONSTRAINT executions_status_check;
ALTER TABLE executions ADD CONSTRAINT executions_status_check
    CHECK (status IN ('running', 'waiting', 'completed', 'failed', 'cancelled', 'timed_out'));
ALTER TABLE executions ADD COLUMN pending_tool_calls jsonb, ADD COLUMN waiting_heap text COLLATE "C",
    ADD COLUMN tool_calls_made integer, ADD COLUMN resume_spec jsonb, ADD COLUMN waiting_since timestamptz,
    ADD COLUMN approval_deadline timestamptz;
CREATE INDEX executions_waiting_by_deadline ON executions (approval_deadline) WHERE status = 'waiting';
CREATE INDEX executions_waiting_by_heap ON executions (waiting_heap) WHERE waiting_heap IS NOT NULL;
"""
# Version 10: the trace id of each execution, as SQLite's version 11.
_V10 = """
ALTER TABLE executions ADD COLUMN trace_id text;
"""
# Version 11: the tenant of each execution, as SQLite's version 12.
_V11 = """
ALTER TABLE executions ADD COLUMN tenant text COLLATE "C" NOT NULL DEFAULT 'default';
CREATE INDEX executions_by_tenant ON executions (tenant, started_at, id);
CREATE INDEX executions_by_tenant_session ON executions (tenant, session, started_at, id)
    WHERE session IS NOT NULL;
"""
# Version 12: which node each live session is live on (:mod:`.live_holds`), and the jobs queued
# for the node holding their live session (``queue.live_node``: a live step sent to another node
# than its session's; claimed only by that node, or by any node once it is lost).
_V12 = """
CREATE TABLE live_sessions (
    tenant  text COLLATE "C" NOT NULL,
    session text COLLATE "C" NOT NULL,
    node    text COLLATE "C" NOT NULL,
    since   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, session)
);
CREATE INDEX live_sessions_by_node ON live_sessions (node);
ALTER TABLE queue ADD COLUMN live_node text COLLATE "C";
CREATE INDEX queue_live_unclaimed ON queue (live_node, id) WHERE claimed_by IS NULL AND live_node IS NOT NULL;
"""
# Version 13: a tenant's running executions, as SQLite's version 13.
_V13 = """
CREATE INDEX executions_running_by_tenant ON executions (tenant) WHERE status = 'running';
"""
# Version 14: who owns each heap, and heap tags per tenant, as SQLite's version 14.
_V14 = """
CREATE TABLE heap_owners (
    key          text COLLATE "C" NOT NULL,
    tenant       text COLLATE "C" NOT NULL,
    created_at   timestamptz NOT NULL,
    last_used_at timestamptz NOT NULL,
    session      text COLLATE "C",
    tags         jsonb,
    PRIMARY KEY (key, tenant)
);
INSERT INTO heap_owners (key, tenant, created_at, last_used_at, session, tags)
    SELECT key, 'default', created_at, last_used_at, session, tags FROM heaps;
ALTER TABLE heap_tags ADD COLUMN tenant text COLLATE "C" NOT NULL DEFAULT 'default';
ALTER TABLE heap_tags ALTER COLUMN tenant DROP DEFAULT;
ALTER TABLE heap_tags DROP CONSTRAINT heap_tags_pkey;
ALTER TABLE heap_tags ADD PRIMARY KEY (tenant, key);
DROP INDEX heap_tags_by_creation;
CREATE INDEX heap_tags_by_creation ON heap_tags (tenant, created_at, key);
CREATE INDEX heap_owners_by_tenant ON heap_owners (tenant, key);
"""

MIGRATIONS: tuple[PgMigration, ...] = (
    PgMigration(1, "executions, output logs and chunks, heap tags", _V1),
    PgMigration(2, "usage counters of the limits nodes share", _V2),
    PgMigration(3, "the index of stored heaps", _V3),
    PgMigration(4, "the structured error of a script", _V4),
    PgMigration(5, "the bytes of heap snapshots", _V5),
    PgMigration(6, "output logs without the count of their chunks", _V6),
    PgMigration(7, "the signature of each heap", _V7),
    PgMigration(8, "the records of the scripts' tool calls", _V8),
    PgMigration(9, "executions waiting for a decision on their tool calls", _V9),
    PgMigration(10, "the trace id of each execution", _V10),
    PgMigration(11, "the tenant of each execution", _V11),
    PgMigration(12, "the node of each live session, and live steps queued for it", _V12),
    PgMigration(13, "an index of each tenant's running executions", _V13),
    PgMigration(14, "the owners of each heap, and heap tags per tenant", _V14),
)
SCHEMA_VERSION = len(MIGRATIONS)


def open_postgres(conninfo: str, *, schema: str | None = None, **pool: Any) -> PostgresDatabase:
    """Connects to ``conninfo`` (a ``postgresql://`` URL or a libpq connection string), on the
    schema ``schema`` when given (it must exist), and brings its tables to :data:`SCHEMA_VERSION`.
    ``pool``: the pool's settings (see :class:`~.database.PostgresDatabase`). Raises
    :class:`~..errors.SchemaVersionError` for a schema of a newer release."""
    return PostgresDatabase(conninfo, MIGRATIONS, schema=schema, **pool)
