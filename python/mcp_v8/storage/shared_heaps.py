"""Heap snapshots shared by several nodes: a remote blob store, cached on each node.

Workers read and write snapshots in a node-local :class:`~.heaps.FileHeapStore` and only keys
pass through the server, as on one machine. With a remote store (PostgreSQL ``bytea`` or S3),
that local store becomes a cache of it: a heap is fetched before the execution that resumes it
is accepted (so the worker finds it, and an unknown key is refused at submit), and a heap a
worker produced is published before its execution is recorded as completed (so any node can
resume it once a client can see it). Blobs are content-addressed and immutable: a fetched blob
is checked against its key, and a second publish of a key is a no-op.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta, timezone

from .blobs import BlobStore, matches_key
from .heaps import FileHeapStore, HeapNotFound, validate_heap_key

__all__ = ["HeapStoreUnavailable", "SharedHeaps"]


class HeapStoreUnavailable(RuntimeError):
    """The remote heap store cannot be reached or answered with an error."""


class SharedHeaps:
    """The heap snapshots of a node over a remote ``BlobStore``; ``local`` is what the workers use."""

    def __init__(self, local: FileHeapStore, remote: BlobStore) -> None:
        self.local = local
        self.remote = remote

    def exists(self, key: str) -> bool:
        if self.local.exists(key):
            return True
        try:
            return self.remote.exists(key)
        except HeapNotFound:
            return False
        except Exception as e:
            raise HeapStoreUnavailable(f"the heap store did not answer: {e}") from e

    def fetch(self, key: str) -> None:
        """Makes ``key`` present locally; raises :class:`HeapNotFound` when the remote store does
        not have it (never stored, or deleted through any node: a copy cached here goes too),
        :class:`HeapStoreUnavailable` when the remote store fails. One remote round trip when
        cached (an existence check), a download otherwise."""
        validate_heap_key(key)
        try:
            if self.local.exists(key):
                if self.remote.exists(key):
                    return
                self.local.delete(key)
                raise HeapNotFound(key)
            data = self.remote.get(key)
        except HeapNotFound:
            raise
        except Exception as e:
            raise HeapStoreUnavailable(f"the heap store did not answer: {e}") from e
        if not matches_key(key, data):  # content addressing: the key is the check
            raise HeapStoreUnavailable(f"the heap store returned bytes that are not heap {key}")
        self.local.put(key, data, session=None, tags=None)

    def publish(self, key: str) -> None:
        """Copies the locally stored ``key`` to the remote store (a no-op when it has it)."""
        data = self.local.get(key)
        try:
            self.remote.put(key, data)
        except Exception as e:
            raise HeapStoreUnavailable(f"the heap store did not answer: {e}") from e

    def prune(self, max_age_seconds: float, *, keep: Collection[str]) -> int:
        """Removes from the shared store the heaps stored more than ``max_age_seconds`` ago, but
        those in ``keep``; returns how many went."""
        cutoff = datetime.now(timezone.utc) - timedelta(seconds=max_age_seconds)
        try:
            doomed = [k for k in self.remote.created_before(cutoff) if k not in keep]
        except Exception as e:
            raise HeapStoreUnavailable(f"the heap store did not answer: {e}") from e
        return sum(1 for key in doomed if self.delete(key))

    def delete(self, key: str) -> bool:
        """Removes ``key`` from the remote store and this node's cache; whether it was anywhere."""
        try:
            remote = self.remote.delete(key)
        except Exception as e:
            raise HeapStoreUnavailable(f"the heap store did not answer: {e}") from e
        return self.local.delete(key) or remote
