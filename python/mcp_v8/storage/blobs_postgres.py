"""Heap blobs as ``bytea`` rows in PostgreSQL: a sound default for a small cluster (one service to run).

Table ``heap_blobs (key text primary key, data bytea, size bigint, created_at timestamptz)``, created
when missing (under an advisory lock, so nodes opening at once create it once; it is independent of
the versioned schema of :mod:`.postgres` and may live in the same database or schema).

``put`` is one ``INSERT ... ON CONFLICT (key) DO NOTHING RETURNING``: atomic and first-writer-wins
by construction (a racing insert of the same key waits for the first to commit, then does nothing).
Reads use a binary cursor: text mode hex-encodes ``bytea`` and is several times slower for 1 MB.
Measured on loopback (``benches/blob_stores.py``), p50 put / get: 0.4-0.6 / 0.1-0.2 ms at 50 KB,
3-5 / 1.7-2 ms at 1 MB (a text-mode get of 1 MB: 5-7 ms). For many large snapshots prefer S3
(:mod:`.blobs_s3`).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from .blobs import BlobStoreUnavailable
from .heaps import HeapNotFound, validate_heap_key

__all__ = ["PostgresBlobStore"]

_SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")

_CREATE = """
CREATE TABLE heap_blobs (
    key        text COLLATE "C" PRIMARY KEY CHECK (key ~ '^[0-9a-f]{64}$'),
    data       bytea NOT NULL,
    size       bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""
# The bytes are already compressed snapshots at best, incompressible at worst: skip TOAST's pglz.
_STORAGE = "ALTER TABLE heap_blobs ALTER COLUMN data SET STORAGE EXTERNAL"


class PostgresBlobStore:
    """A :class:`~.blobs.BlobStore` in the table ``heap_blobs`` of ``conninfo`` (a ``postgresql://``
    URL or a libpq string), in ``schema`` when given (it must exist). Owns a pool of autocommit
    connections; safe to share between threads. A database that cannot be reached within
    ``timeout`` seconds, or any database error, raises :class:`~.blobs.BlobStoreUnavailable`."""

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 8,
        timeout: float = 10.0,
        connect_timeout: int = 5,
    ) -> None:
        if schema is not None and _SCHEMA_RE.fullmatch(schema) is None:
            raise ValueError(f"not a plain schema name: {schema!r}")
        kwargs: dict[str, Any] = {"autocommit": True, "connect_timeout": connect_timeout}
        if schema is not None:
            kwargs["options"] = f"-c search_path={schema}"
        self._pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]] = ConnectionPool(
            conninfo, min_size=min_size, max_size=max_size, kwargs=kwargs, timeout=timeout, open=False
        )
        try:
            self._pool.open(wait=True, timeout=timeout)
            # Two nodes creating the table at once may both find it missing: serialise them.
            with self._pool.connection() as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('mcp_v8 heap_blobs'))")
                row = conn.execute("SELECT to_regclass('heap_blobs')").fetchone()
                if row is None or row[0] is None:
                    conn.execute(_CREATE)
                    conn.execute(_STORAGE)
        except (psycopg.Error, PoolTimeout) as e:
            self._pool.close()
            raise BlobStoreUnavailable(f"PostgreSQL: cannot open the heap blob table: {e}") from e

    def put(self, key: str, data: bytes) -> bool:
        validate_heap_key(key)
        try:
            with self._pool.connection() as conn:
                row = conn.execute(
                    "INSERT INTO heap_blobs (key, data, size) VALUES (%s, %b, %s)"
                    " ON CONFLICT (key) DO NOTHING RETURNING 1",
                    (key, data, len(data)),
                ).fetchone()
        except (psycopg.Error, PoolTimeout) as e:
            raise _unavailable("put", key, e) from e
        return row is not None

    def get(self, key: str) -> bytes:
        validate_heap_key(key)
        try:
            with self._pool.connection() as conn:
                row = conn.execute(
                    "SELECT data FROM heap_blobs WHERE key = %s", (key,), binary=True
                ).fetchone()
        except (psycopg.Error, PoolTimeout) as e:
            raise _unavailable("get", key, e) from e
        if row is None:
            raise HeapNotFound(key)
        return bytes(row[0])

    def exists(self, key: str) -> bool:
        validate_heap_key(key)
        try:
            with self._pool.connection() as conn:
                row = conn.execute("SELECT 1 FROM heap_blobs WHERE key = %s", (key,)).fetchone()
        except (psycopg.Error, PoolTimeout) as e:
            raise _unavailable("exists", key, e) from e
        return row is not None

    def delete(self, key: str) -> bool:
        validate_heap_key(key)
        try:
            with self._pool.connection() as conn:
                row = conn.execute("DELETE FROM heap_blobs WHERE key = %s RETURNING 1", (key,)).fetchone()
        except (psycopg.Error, PoolTimeout) as e:
            raise _unavailable("delete", key, e) from e
        return row is not None

    def created_before(self, cutoff: datetime) -> list[str]:
        try:
            with self._pool.connection() as conn:
                rows = conn.execute("SELECT key FROM heap_blobs WHERE created_at < %s", (cutoff,)).fetchall()
        except (psycopg.Error, PoolTimeout) as e:
            raise BlobStoreUnavailable(f"listing the heap blobs failed: {e}") from e
        return [str(r[0]) for r in rows]

    def close(self) -> None:
        self._pool.close()


def _unavailable(op: str, key: str, e: BaseException) -> BlobStoreUnavailable:
    text = str(e).strip()
    first = text.splitlines()[0][:300] if text else type(e).__name__
    return BlobStoreUnavailable(f"PostgreSQL {op} of heap {key[:12]}… failed ({type(e).__name__}): {first}")
