"""Remote stores of heap snapshot blobs: content-addressed, immutable, create-only.

A :class:`BlobStore` keeps only bytes under a heap key (the lowercase hex SHA-256 of those bytes).
Backends: :class:`~.blobs_postgres.PostgresBlobStore` (``bytea`` rows) and
:class:`~.blobs_s3.S3BlobStore` (objects written with ``If-None-Match: *``); :class:`CachedBlobStore`
puts a node-local directory in front of either, since a blob never changes once written.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from .heaps import validate_heap_key

__all__ = ["BlobStore", "BlobStoreUnavailable", "CachedBlobStore"]


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


class BlobStoreUnavailable(RuntimeError):
    """The remote blob store could not be reached, timed out, or answered with an error."""


@runtime_checkable
class BlobStore(Protocol):
    """Bytes under heap keys, shared by every node.

    * Keys are checked with :func:`~.heaps.validate_heap_key` before any I/O (``InvalidHeapKey``).
    * :meth:`put` is create-only and atomic: it returns ``True`` when it created the key, ``False``
      when the key already existed (the stored bytes are then left as they were). Of several racing
      puts of one key exactly one returns ``True``.
    * :meth:`get` raises :class:`~.heaps.HeapNotFound` for an absent key.
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


_TMP_PREFIX = ".tmp-"


class CachedBlobStore:
    """A :class:`BlobStore` in front of ``remote`` that keeps recently used blobs in ``cache_dir``.

    Blobs are immutable, so a cached copy never goes stale: reads try the directory first (a file
    named by its key, checked against its SHA-256 before use: a damaged file is dropped and fetched
    again), then the remote, and keep what they fetched. Writes go to the remote first, then the
    cache. Files are written to a temporary name and renamed, so a reader sees a whole file or none.
    When the cache holds more than ``max_bytes``, the least recently read files (by access time,
    which reads set explicitly) are removed. Several processes may share one directory.
    A blob deleted through another node may still be read from this node's cache until evicted;
    :meth:`exists` always asks the remote.
    """

    def __init__(self, remote: BlobStore, cache_dir: str | os.PathLike[str], max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.remote = remote
        self.cache_dir = Path(cache_dir)
        self.max_bytes = max_bytes
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._evict_lock = threading.Lock()
        # Leftovers of writers that died between write and rename.
        for p in self.cache_dir.glob(_TMP_PREFIX + "*"):
            with contextlib.suppress(OSError):
                p.unlink()

    # -- the cache directory -------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        return self.cache_dir / key

    def _read_cached(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if not matches_key(key, data):
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        with contextlib.suppress(OSError):  # mark it recently used, whatever the mount's atime policy
            st = path.stat()
            os.utime(path, ns=(max(st.st_atime_ns, time.time_ns()), st.st_mtime_ns))
        return data

    def _write_cached(self, key: str, data: bytes) -> None:
        if len(data) > self.max_bytes or not matches_key(key, data):
            return  # would be evicted at once, or is not this key's content: never cache it
        tmp = self.cache_dir / f"{_TMP_PREFIX}{key}-{secrets.token_hex(6)}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, self._path(key))
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            return  # the cache is an optimisation: a full disk must not fail the read
        self._evict()

    def _evict(self) -> None:
        with self._evict_lock:
            entries: list[tuple[int, int, Path]] = []
            total = 0
            with os.scandir(self.cache_dir) as it:
                for entry in it:
                    if entry.name.startswith(_TMP_PREFIX):
                        continue
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    total += st.st_size
                    entries.append((st.st_atime_ns, st.st_size, Path(entry.path)))
            if total <= self.max_bytes:
                return
            entries.sort()
            for _, size, path in entries:
                if total <= self.max_bytes:
                    break
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                total -= size

    def evict_local(self, key: str) -> bool:
        """Drops this node's cached copy of ``key``; whether there was one."""
        validate_heap_key(key)
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            return False
        return True

    # -- BlobStore -----------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> bool:
        validate_heap_key(key)
        created = self.remote.put(key, data)
        if created:  # when it existed, the remote's bytes are the blob (and equal, if the key is honest)
            self._write_cached(key, bytes(data))
        return created

    def get(self, key: str) -> bytes:
        validate_heap_key(key)
        data = self._read_cached(key)
        if data is not None:
            return data
        data = self.remote.get(key)
        self._write_cached(key, data)
        return data

    def exists(self, key: str) -> bool:
        validate_heap_key(key)
        # A cached file is only a hint (a blob deleted by another node may linger here): ask the remote.
        return self.remote.exists(key)

    def delete(self, key: str) -> bool:
        validate_heap_key(key)
        removed = self.remote.delete(key)
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()
        return removed

    def created_before(self, cutoff: datetime) -> list[str]:
        return self.remote.created_before(cutoff)

    def close(self) -> None:
        self.remote.close()
