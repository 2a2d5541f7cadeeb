"""Where heap snapshots' bytes are, as the heap catalogue (:mod:`.heap_catalogue`) uses them.

A node keeps snapshots in a local :class:`~.heaps.FileHeapStore`; its workers never open it (the
server hands each heap to a worker as a file descriptor and takes the new one back the same way). On one machine that store is all there is (:class:`LocalHeaps`). With a
remote store shared by several nodes (PostgreSQL ``bytea`` or S3: :class:`SharedHeaps`), the
local store is this node's cache of it: a heap is fetched before an execution resuming it runs
here, and a heap a worker produced is stored and published before the catalogue indexes it (so any node
can resume it once a client can see it). Blobs are content-addressed and immutable: a fetched
blob is checked against its key, and a second publish of a key is a no-op. Whether a heap
exists is the catalogue's index, not these: a cached copy of a deleted heap is never used.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta, timezone
from typing import Protocol, runtime_checkable

from .blobs import BlobStore, matches_key
from .errors import HeapStoreUnavailable
from .heaps import FileHeapStore, HeapNotFound, validate_heap_key

__all__ = ["HeapBlobs", "HeapStoreUnavailable", "LocalHeaps", "SharedHeaps"]


@runtime_checkable
class HeapBlobs(Protocol):
    """The bytes of heap snapshots for one node: ``local`` is where it reads them."""

    local: FileHeapStore

    def fetch(self, key: str) -> None:
        """Makes ``key`` present in ``local``; :class:`HeapNotFound` when it is nowhere,
        :class:`HeapStoreUnavailable` when a remote store fails."""
        ...

    def publish(self, key: str, data: bytes) -> int:
        """Stores ``data`` (what ``key`` names: the caller checked) in ``local`` and makes it
        readable by every node; returns its size."""
        ...

    def find(self, key: str) -> int | None:
        """The size of a blob stored where the index does not know it (a shared store written
        before the index existed), fetched into ``local``; None when there is none."""
        ...

    def remove(self, key: str) -> bool:
        """Removes the blob (and any cached copy); whether it was there."""
        ...

    def stale(self, max_age_seconds: float) -> list[str]:
        """The keys of blobs neither written nor restored for ``max_age_seconds`` (as far as
        the store can tell): what retention looks at."""
        ...

    def prune_cache(self, max_age_seconds: float, *, keep: Collection[str]) -> int:
        """Drops cached copies unused for ``max_age_seconds`` but those of ``keep``; 0 when
        ``local`` is no cache."""
        ...


class LocalHeaps:
    """The heaps of one machine: the data directory's files, shared by the server processes
    serving it."""

    def __init__(self, local: FileHeapStore) -> None:
        self.local = local

    def fetch(self, key: str) -> None:
        if not self.local.exists(key):
            raise HeapNotFound(key)

    def publish(self, key: str, data: bytes) -> int:
        self.local.put(key, data, session=None, tags=None)
        return len(data)

    def find(self, key: str) -> int | None:
        return None  # every file was indexed when the index was created; later ones as written

    def remove(self, key: str) -> bool:
        return self.local.delete(key)

    def stale(self, max_age_seconds: float) -> list[str]:
        return self.local.stale(max_age_seconds)

    def prune_cache(self, max_age_seconds: float, *, keep: Collection[str]) -> int:
        return 0


class SharedHeaps:
    """The heap snapshots of a node over a remote ``BlobStore``; ``local`` is its cache."""

    def __init__(self, local: FileHeapStore, remote: BlobStore) -> None:
        self.local = local
        self.remote = remote

    def fetch(self, key: str) -> None:
        """A download when not cached; nothing otherwise (the index says the heap exists)."""
        validate_heap_key(key)
        if self.local.exists(key):
            return
        try:
            data = self.remote.get(key)
        except HeapNotFound:
            raise
        except Exception as e:
            raise HeapStoreUnavailable(f"the heap store did not answer: {e}") from e
        if not matches_key(key, data):  # content addressing: the key is the check
            raise HeapStoreUnavailable(f"the heap store returned bytes that are not heap {key}")
        self.local.put(key, data, session=None, tags=None)

    def publish(self, key: str, data: bytes) -> int:
        self.local.put(key, data, session=None, tags=None)
        try:
            self.remote.put(key, data)
        except Exception as e:
            raise HeapStoreUnavailable(f"the heap store did not answer: {e}") from e
        return len(data)

    def find(self, key: str) -> int | None:
        try:
            if not self.remote.exists(key):
                return None
        except Exception as e:
            raise HeapStoreUnavailable(f"the heap store did not answer: {e}") from e
        try:
            self.fetch(key)
        except HeapNotFound:  # deleted meanwhile
            return None
        meta = self.local.meta(key)
        return None if meta is None else meta.size

    def remove(self, key: str) -> bool:
        try:
            remote = self.remote.delete(key)
        except Exception as e:
            raise HeapStoreUnavailable(f"the heap store did not answer: {e}") from e
        return self.local.delete(key) or remote

    def stale(self, max_age_seconds: float) -> list[str]:
        """The shared store keeps no last use: its blobs created more than the age ago (the
        catalogue keeps those its index saw used within it)."""
        cutoff = datetime.now(timezone.utc) - timedelta(seconds=max_age_seconds)
        try:
            return list(self.remote.created_before(cutoff))
        except Exception as e:
            raise HeapStoreUnavailable(f"the heap store did not answer: {e}") from e

    def prune_cache(self, max_age_seconds: float, *, keep: Collection[str]) -> int:
        return self.local.prune(max_age_seconds, keep=keep)
