"""Which stores a node uses, from its settings.

Embedded (the default): one SQLite file in the data directory holds executions, console output,
heap tags and the heap index, and heap snapshots are files there. With ``database_url``, those
four live in PostgreSQL, and heap snapshots default to ``bytea`` in the same database (several
nodes never default to node-local heaps); ``heap_store`` may name S3 instead. With a remote heap
store, the data directory's heap files are this node's cache of it (the server reads and writes
there; its workers receive and return heaps as descriptors). The heap catalogue is one :class:`~.storage.Catalogue` over the database's index and tags
and the heaps' bytes, whichever they are, and signs and verifies heaps with the deployment's keys
(:func:`heap_signer`).
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .config import Settings, parse_signing_keys
from .redaction import passwords, redact, redact_url
from .storage import (
    Catalogue,
    ExecutionStore,
    FileHeapStore,
    HeapBlobs,
    HeapCatalogue,
    HeapIndex,
    HeapSigner,
    HeapTags,
    LocalHeaps,
    OutputLog,
    SchemaVersionError,
    SharedHeaps,
    SQLiteExecutionStore,
    SQLiteHeapIndex,
    SQLiteHeapTags,
    SQLiteOutputLog,
    SQLiteToolCallLog,
    ToolCallLog,
    open_database,
)
from .storage.heap_signing import generated_key
from .storage.live_holds import LiveHolds
from .storage.work_queue import ClusterQueue


class BackendError(RuntimeError):
    """A store the settings name cannot be opened (unreachable, refused, newer schema)."""


@dataclass
class Stores:
    executions: ExecutionStore
    output: OutputLog
    heap_tags: HeapTags
    heap_index: HeapIndex
    tool_calls: ToolCallLog
    _closers: list[Callable[[], None]] = field(default_factory=list)
    # The queue other nodes share (PostgresQueue): set exactly when the registry may be shared.
    work: ClusterQueue | None = None
    # Where the nodes hold their live sessions (PostgresLiveHolds of a node's id): set with ``work``.
    live_holds: Callable[[str], LiveHolds] | None = None
    catalogue: HeapCatalogue = field(init=False)

    def close(self) -> None:
        for close in reversed(self._closers):
            with contextlib.suppress(Exception):
                close()


def open_stores(settings: Settings, heaps: FileHeapStore) -> Stores:
    """The stores of ``settings``; ``heaps`` is the data directory's heap store."""
    closers: list[Callable[[], None]] = []
    try:
        if settings.database_url is None:
            try:
                database = open_database(settings.data_dir)
            except (OSError, sqlite3.Error, SchemaVersionError) as e:
                raise BackendError(f"data directory {settings.data_dir} is not usable: {e}") from e
            closers.append(database.close)
            stores = Stores(
                SQLiteExecutionStore(database),
                SQLiteOutputLog(database, max_output_bytes=settings.max_output_bytes),
                SQLiteHeapTags(database),
                SQLiteHeapIndex(database),
                SQLiteToolCallLog(database),
                closers,
            )
        else:
            stores = _postgres(settings, closers)
        blobs: HeapBlobs = LocalHeaps(heaps)
        backend = settings.heap_backend
        if backend != "file":
            remote = _blob_store(settings, backend)
            closers.append(remote.close)
            blobs = SharedHeaps(heaps, remote)
        stores.catalogue = Catalogue(stores.heap_index, stores.heap_tags, blobs, heap_signer(settings))
        return stores
    except BaseException:
        for close in reversed(closers):
            with contextlib.suppress(Exception):
                close()
        raise


def heap_signer(settings: Settings) -> HeapSigner:
    """The signer of this deployment's heaps: the keys of ``heap_signing_key``, then those of
    ``heap_signing_key_file``; without either (a single node only: settings refuse a shared store
    without), the one generated in the data directory. A single node trusts the unsigned heaps of
    its own data directory; a shared store only with ``trust_unsigned_heaps``."""
    keys = [k.encode("utf-8") for k in settings.heap_signing_key]
    path = settings.heap_signing_key_file
    if path is not None:
        try:
            keys += parse_signing_keys(path.read_text("utf-8"), file=True)
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise BackendError(f"heap signing key file {path}: {e}") from None
        if not keys:
            raise BackendError(f"heap signing key file {path} holds no key")
    if not keys:
        try:
            keys = [generated_key(settings.data_dir)]
        except (OSError, ValueError) as e:
            raise BackendError(f"the heap signing key of {settings.data_dir} cannot be used: {e}") from None
    return HeapSigner(keys, trust_unsigned=not settings.shared_heaps or settings.trust_unsigned_heaps)


def _postgres(settings: Settings, closers: list[Callable[[], None]]) -> Stores:
    from .storage.postgres import (
        PostgresExecutionStore,
        PostgresHeapIndex,
        PostgresHeapTags,
        PostgresOutputLog,
        PostgresToolCallLog,
        open_postgres,
    )
    from .storage.postgres.live_holds import PostgresLiveHolds
    from .storage.postgres.queue import PostgresQueue

    assert settings.database_url is not None
    url = settings.database_url
    try:
        database = open_postgres(url)
    except SchemaVersionError as e:
        raise BackendError(f"database {redact_url(url)}: {e}") from e
    except Exception as e:  # psycopg's and the pool's: unreachable, refused, bad URL (which they may quote)
        hidden = passwords(url)
        raise BackendError(f"database {redact_url(url)} cannot be used: {redact(str(e), hidden)}") from e
    closers.append(database.close)
    return Stores(
        PostgresExecutionStore(database),
        PostgresOutputLog(database, max_output_bytes=settings.max_output_bytes),
        PostgresHeapTags(database),
        PostgresHeapIndex(database),
        PostgresToolCallLog(database),
        closers,
        work=PostgresQueue(database, settings.database_url),
        live_holds=functools.partial(PostgresLiveHolds, database),
    )


def _blob_store(settings: Settings, backend: str) -> Any:
    try:
        if backend == "postgresql":
            from .storage.blobs_postgres import PostgresBlobStore

            assert settings.database_url is not None
            return PostgresBlobStore(settings.database_url)
        from .storage.blobs_s3 import S3BlobStore

        return S3BlobStore(backend, endpoint_url=settings.s3_endpoint_url)
    except Exception as e:
        hidden = passwords(settings.database_url) if settings.database_url else []
        raise BackendError(f"heap store {backend} cannot be used: {redact(str(e), hidden)}") from e
