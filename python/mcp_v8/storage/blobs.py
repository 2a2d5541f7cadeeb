"""Remote stores of heap snapshot blobs: content-addressed, immutable, create-only.

A :class:`BlobStore` keeps only bytes under a heap key (see :func:`matches_key`). Backends:
:class:`~.blobs_postgres.PostgresBlobStore` (``bytea`` rows) and :class:`~.blobs_s3.S3BlobStore`
(objects written with ``If-None-Match: *``). A node's cache of them is its data directory's heap
store (:mod:`.shared_heaps`), from which the server hands its workers the heaps they restore.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Protocol, runtime_checkable

from .errors import BlobStoreUnavailable

__all__ = ["BlobStore", "BlobStoreUnavailable", "matches_key", "unavailable"]


def matches_key(key: str, blob: bytes) -> bool:
    """Whether ``blob`` is what ``key`` names. A heap snapshot's key is the SHA-256 of its
    envelope's compressed payload, which the envelope's header carries just before it (the
    engine checks the rest of the envelope before V8 sees a byte); any other blob is keyed by
    the SHA-256 of all its bytes."""
    digest = bytes.fromhex(key)
    at = blob.find(digest)
    while at != -1:
        if hashlib.sha256(memoryview(blob)[at + 32 :]).digest() == digest:
            return True
        at = blob.find(digest, at + 1)
    return hashlib.sha256(blob).digest() == digest


def unavailable(backend: str, op: str, key: str, e: BaseException) -> BlobStoreUnavailable:
    """The error of a blob store whose ``op`` on the heap ``key`` failed with ``e``: its first
    line, not a stack of the client library's."""
    text = str(e).strip()
    first = text.splitlines()[0][:300] if text else type(e).__name__
    return BlobStoreUnavailable(f"{backend} {op} of heap {key[:12]}… failed ({type(e).__name__}): {first}")


@runtime_checkable
class BlobStore(Protocol):
    """Bytes under heap keys, shared by every node.

    * Keys are checked with :func:`~.heaps.validate_heap_key` before any I/O (``InvalidHeapKey``).
    * :meth:`put` is create-only and atomic: it returns ``True`` when it created the key, ``False``
      when the key already existed (the stored bytes are then left as they were). Of several racing
      puts of one key exactly one returns ``True``.
    * :meth:`get` raises :class:`~.errors.HeapNotFound` for an absent key.
    * A failure of the backend itself raises :class:`BlobStoreUnavailable`.
    * Every method may be called from many threads at once.
    """

    def put(self, key: str, data: bytes) -> bool: ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> bool: ...

    def created_before(self, cutoff: datetime) -> list[str]:
        """The keys of the blobs stored before ``cutoff`` (timezone-aware): what retention looks at."""
        ...

    def close(self) -> None: ...
