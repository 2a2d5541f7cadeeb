"""Heap blobs as ``bytea`` rows in PostgreSQL: a sound default for a small cluster (one service to run).

Table ``heap_blobs (key text primary key, data bytea, size bigint, created_at timestamptz)``, one of
the registry's tables (:mod:`.postgres.schema`, version 5), in the same database or schema: the
store opens it through the same connector and migrations, on a pool of its own (large transfers
do not hold up the registry's connections).

``put`` is one ``INSERT ... ON CONFLICT (key) DO NOTHING RETURNING``: atomic and first-writer-wins
by construction (a racing insert of the same key waits for the first to commit, then does nothing).
Rows come back in binary: text mode hex-encodes ``bytea`` and is several times slower for 1 MB.
Measured on loopback (``benches/blob_stores.py``), p50 put / get: 0.4-0.6 / 0.1-0.2 ms at 50 KB,
3-5 / 1.7-2 ms at 1 MB (a text-mode get of 1 MB: 5-7 ms). For many large snapshots prefer S3
(:mod:`.blobs_s3`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .blobs import unavailable
from .errors import BlobStoreUnavailable, HeapNotFound
from .heaps import validate_heap_key
from .sql import Row

__all__ = ["PostgresBlobStore"]


class PostgresBlobStore:
    """A :class:`~.blobs.BlobStore` in the table ``heap_blobs`` of ``conninfo`` (a ``postgresql://``
    URL or a libpq string), in ``schema`` when given (it must exist), whose tables it brings up to
    date. Owns a pool of autocommit connections; safe to share between threads. A database that
    cannot be reached within ``timeout`` seconds, or any database error, raises
    :class:`~.errors.BlobStoreUnavailable`."""

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
        from .postgres import open_postgres

        try:
            self._db = open_postgres(
                conninfo,
                schema=schema,
                min_size=min_size,
                max_size=max_size,
                timeout=timeout,
                connect_timeout=connect_timeout,
                name="mcp-v8-heap-blobs",
            )
        except ValueError:
            raise
        except Exception as e:
            raise BlobStoreUnavailable(f"PostgreSQL: cannot open the heap blob table: {e}") from e

    def put(self, key: str, data: bytes) -> bool:
        rows = self._run(
            "put",
            key,
            "INSERT INTO heap_blobs (key, data, size) VALUES (:key, :data, :size)"
            " ON CONFLICT (key) DO NOTHING RETURNING 1",
            {"data": data, "size": len(data)},
        )
        return bool(rows)

    def get(self, key: str) -> bytes:
        rows = self._run("get", key, "SELECT data FROM heap_blobs WHERE key = :key")
        if not rows:
            raise HeapNotFound(key)
        return bytes(rows[0][0])

    def exists(self, key: str) -> bool:
        return bool(self._run("exists", key, "SELECT 1 FROM heap_blobs WHERE key = :key"))

    def delete(self, key: str) -> bool:
        return bool(self._run("delete", key, "DELETE FROM heap_blobs WHERE key = :key RETURNING 1"))

    def created_before(self, cutoff: datetime) -> list[str]:
        try:
            rows = self._db.run("SELECT key FROM heap_blobs WHERE created_at < :cutoff", {"cutoff": cutoff})
        except self._db.errors as e:
            raise BlobStoreUnavailable(f"listing the heap blobs failed: {e}") from e
        return [str(r[0]) for r in rows]

    def close(self) -> None:
        self._db.close()

    def _run(self, op: str, key: str, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        """One statement about the heap ``key`` (checked first); a failure of the database raises
        :class:`~.errors.BlobStoreUnavailable` saying which ``op`` failed."""
        validate_heap_key(key)
        try:
            return self._db.run(sql, {"key": key, **(params or {})})
        except self._db.errors as e:
            raise unavailable("PostgreSQL", op, key, e) from e
