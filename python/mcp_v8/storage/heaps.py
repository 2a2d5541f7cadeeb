"""Heap snapshot storage: content-addressed blobs keyed by the lowercase hex SHA-256 of their bytes.

The store only keeps bytes. It never opens, parses or verifies a snapshot envelope: the engine does
that before V8 sees a blob. What the store guarantees is that a key names exactly one file inside its
root, that a blob appears whole or not at all, and that writing a key twice is harmless.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import stat
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

from .errors import HeapNotFound, InvalidHeapKey

__all__ = [
    "FileHeapStore",
    "HeapMeta",
    "HeapNotFound",
    "HeapStore",
    "InvalidHeapKey",
    "is_heap_key",
    "validate_heap_key",
]

# A heap key: the lowercase hex SHA-256 of a snapshot's payload (the contract's pattern).
HEAP_KEY_PATTERN = "[0-9a-f]{64}"
_KEY_RE = re.compile(HEAP_KEY_PATTERN)
_PREFIX_RE = re.compile(r"[0-9a-f]{2}")
_TMP_SUFFIX = ".tmp"
_META_SUFFIX = ".json"
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_TMPFILE = getattr(os, "O_TMPFILE", 0)  # Linux: an unnamed file, published by linking it
_PROC_SELF_FD = "/proc/self/fd"


def validate_heap_key(key: object) -> str:
    """Returns ``key`` when it is a well-formed heap key, else raises :class:`InvalidHeapKey`.

    A well-formed key is the lowercase hex SHA-256 of a snapshot: exactly 64 characters of
    ``[0-9a-f]``. This is the only thing that stands between a client-supplied ``heap`` value and a
    file name, so it rejects everything else: ``../``, absolute paths, NUL bytes, uppercase,
    whitespace, a trailing newline.
    """
    if not isinstance(key, str) or _KEY_RE.fullmatch(key) is None:
        shown = key[:80] if isinstance(key, str) else type(key).__name__
        raise InvalidHeapKey(f"invalid heap key {shown!r}: expected 64 lowercase hex characters")
    return key


def is_heap_key(value: object) -> bool:
    """Whether ``value`` is a well-formed heap key (see :func:`validate_heap_key`)."""
    return isinstance(value, str) and _KEY_RE.fullmatch(value) is not None


@dataclass(frozen=True)
class HeapMeta:
    """What the store knows about one blob besides its bytes.

    ``session`` and ``tags`` are those of the first request that produced the key (content
    addressing means later requests producing the same bytes share the blob and keep the first meta).
    ``created_at`` is ISO-8601 UTC with millisecond precision and a ``Z``.
    """

    key: str
    size: int
    created_at: str
    session: str | None
    tags: dict[str, str] | None
    # The last time it was written or restored (what retention goes by); None when unknown.
    last_used_at: str | None = None


@runtime_checkable
class HeapStore(Protocol):
    """Where heap snapshot envelopes live, keyed by the lowercase hex SHA-256 of their bytes.

    Contract every backend keeps:

    * Keys are validated with :func:`validate_heap_key` before any I/O; a malformed key raises
      :class:`InvalidHeapKey` (a ``ValueError``), an unknown one :class:`HeapNotFound` (a ``KeyError``)
      from :meth:`get`, ``False`` from :meth:`exists` and ``None`` from :meth:`meta`.
    * :meth:`put` is atomic (a reader sees the whole blob or nothing) and idempotent: the same key
      always names the same bytes, so a second ``put`` of an existing key writes nothing, keeps the
      first meta and does not fail, including when several puts of one key race.
    * The store does not verify what it stores; the engine checks the envelope on restore.
    * Every method may be called from many threads at once.

    Other backends behind the same interface:

    * **PostgreSQL**: a table ``heaps(key char(64) primary key, data bytea, size bigint,
      created_at timestamptz, session text, tags jsonb)``; ``put`` is one
      ``INSERT ... ON CONFLICT (key) DO NOTHING`` (atomic and first-writer-wins by construction),
      ``get`` a primary-key ``SELECT``, ``delete`` a ``DELETE``. Blobs of hundreds of KB are fine in
      ``bytea`` (TOAST compresses and moves them out of line); for multi-MB snapshots prefer
      ``lo_*`` large objects or keep only the meta row in PostgreSQL and the bytes in S3.
    * **S3** (or any object store): object ``<prefix>/heaps/ab/cdef...`` (same fan-out as the files),
      ``put`` with ``If-None-Match: *`` (conditional write: the first writer wins, a
      ``412 Precondition Failed`` means the key already exists and counts as success), ``session`` and
      ``tags`` as object metadata or a sidecar object written the same way; ``get`` is ``GetObject``
      (``NoSuchKey`` maps to :class:`HeapNotFound`), ``exists``/``meta`` a ``HeadObject``. S3 writes are
      atomic per object, so no temp-file dance is needed. Verify ``ContentLength`` on ``get`` and let
      the engine's envelope check catch anything else.
    """

    def put(
        self,
        key: str,
        envelope: bytes,
        *,
        session: str | None,
        tags: dict[str, str] | None,
    ) -> None:
        """Stores ``envelope`` under ``key`` unless the key is already stored."""
        ...

    def get(self, key: str) -> bytes:
        """The bytes stored under ``key``; raises :class:`HeapNotFound`."""
        ...

    def exists(self, key: str) -> bool:
        """Whether ``key`` is stored."""
        ...

    def meta(self, key: str) -> HeapMeta | None:
        """The meta of ``key``, or None when it is not stored."""
        ...

    def delete(self, key: str) -> bool:
        """Removes ``key`` and its meta; returns whether it was stored. Missing keys are not an error."""
        ...


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso_from_timestamp(ts: float) -> str:
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FileHeapStore:
    """A :class:`HeapStore` on the local filesystem.

    Layout: ``<root>/heaps/<key[:2]>/<key[2:]>`` holds the blob and, when its put recorded a session
    or tags, ``<key[2:]>.json`` beside it the meta (``{"created_at", "session", "tags"}``). The
    two-character fan-out keeps directories small (256 of them, each ~1/256 of the keys). A blob's
    modification time is its creation time (nothing rewrites it) and its access time its last use
    (``get`` sets it), so a put without session or tags writes one file, not two.

    Writes go to an unnamed file in the destination directory (``O_TMPFILE``; where the system or
    filesystem has none, a uniquely named temp file), are fsynced (when ``durable``), then published
    with a hard link (``link`` fails if the name exists, so the first writer wins and nothing is ever
    overwritten; falls back to ``os.replace`` on filesystems without hard links), and the directory is
    fsynced. An unnamed file costs no directory entry to create and remove, and a writer that dies
    leaves nothing behind. Every path below ``<root>/heaps`` is opened relative to a directory file
    descriptor with ``O_NOFOLLOW``: a symlink planted inside the store is never followed, so no key
    reaches a file outside the root.

    ``durable=False`` skips the fsyncs (about 3.6 ms per snapshot, a fifth of a service
    execution): writes stay atomic and survive a crash of any process, and a blob that a power
    loss leaves incomplete is caught by the envelope's checksum when it is used. That is the
    same promise as the executions database's SQLite ``synchronous=NORMAL``.
    """

    def __init__(self, root: str | os.PathLike[str], *, durable: bool = True) -> None:
        self.durable = durable
        self.root = os.path.realpath(os.fspath(root))
        self.heaps_dir = os.path.join(self.root, "heaps")
        os.makedirs(self.root, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(self.heaps_dir, 0o755)
        st = os.lstat(self.heaps_dir)
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(f"{self.heaps_dir} is not a directory (a symlink is refused)")

    # -- HeapStore -------------------------------------------------------------------------------

    def put(
        self,
        key: str,
        envelope: bytes,
        *,
        session: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        validate_heap_key(key)
        data = bytes(envelope)
        name = key[2:]
        with self._fanout(key, create=True) as dfd:
            # Blob first, meta second: a crash in between leaves a blob without meta (meta() then
            # reports session/tags as None), never meta without a blob. Without session and tags
            # the meta holds nothing the blob's own times do not (see the class).
            if not _is_regular(name, dfd):
                _publish(dfd, name, data, self.durable)
            if (session is not None or tags is not None) and not _is_regular(name + _META_SUFFIX, dfd):
                meta = json.dumps(
                    {"created_at": _now_iso(), "session": session, "tags": tags},
                    ensure_ascii=False,
                    sort_keys=True,
                ).encode("utf-8")
                _publish(dfd, name + _META_SUFFIX, meta, self.durable)

    def get(self, key: str) -> bytes:
        validate_heap_key(key)
        try:
            with self._fanout(key, create=False) as dfd:
                fd = os.open(key[2:], os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC, dir_fd=dfd)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                raise HeapNotFound(key) from None
            raise
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise HeapNotFound(key)
            data = f.read()
            # The access time records the last use, which prune() goes by; the modification time
            # stays the creation time.
            with contextlib.suppress(OSError):
                os.utime(f.fileno(), ns=(time.time_ns(), st.st_mtime_ns))
            return data

    def exists(self, key: str) -> bool:
        validate_heap_key(key)
        try:
            with self._fanout(key, create=False) as dfd:
                return _is_regular(key[2:], dfd)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                return False
            raise

    def meta(self, key: str) -> HeapMeta | None:
        validate_heap_key(key)
        name = key[2:]
        try:
            with self._fanout(key, create=False) as dfd:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode):
                    return None
                raw = _read_small(dfd, name + _META_SUFFIX)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                return None
            raise
        doc: dict[str, Any] = {}
        if raw is not None:
            with contextlib.suppress(ValueError):
                loaded = json.loads(raw.decode("utf-8"))
                if isinstance(loaded, dict):
                    doc = loaded
        session = doc.get("session")
        tags = doc.get("tags")
        created_at = doc.get("created_at")
        if not isinstance(created_at, str):
            created_at = _iso_from_timestamp(st.st_mtime)
        # The meta's created_at is taken just after the blob is written: never before it.
        last_used_at = max(_iso_from_timestamp(max(st.st_atime, st.st_mtime)), created_at)
        return HeapMeta(
            key=key,
            size=st.st_size,
            created_at=created_at,
            session=session if isinstance(session, str) else None,
            tags={str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else None,
            last_used_at=last_used_at,
        )

    def delete(self, key: str) -> bool:
        validate_heap_key(key)
        name = key[2:]
        try:
            with self._fanout(key, create=False) as dfd:
                # Meta first: a crash in between leaves a blob without meta, the same state as a
                # crash inside put(), so a later put() of the key records fresh meta.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name + _META_SUFFIX, dir_fd=dfd)
                try:
                    os.unlink(name, dir_fd=dfd)
                except FileNotFoundError:
                    return False
                _fsync_dir(dfd)
                return True
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                return False
            raise

    # -- maintenance ---------------------------------------------------------------------------

    def keys(self) -> Iterator[str]:
        """Every stored key, in no particular order (walks the fan-out directories)."""
        for prefix in sorted(os.listdir(self.heaps_dir)):
            if _PREFIX_RE.fullmatch(prefix) is None:
                continue
            path = os.path.join(self.heaps_dir, prefix)
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                continue
            for name in os.listdir(path):
                key = prefix + name
                if _KEY_RE.fullmatch(key) is not None:
                    yield key

    def stale(self, max_age_seconds: float) -> list[str]:
        """The keys of the snapshots neither written nor restored for ``max_age_seconds``: a
        snapshot in use is touched by ``get`` (its access time)."""
        cutoff = time.time() - max_age_seconds
        found = []
        for key in list(self.keys()):
            try:
                with self._fanout(key, create=False) as dfd:
                    st = os.stat(key[2:], dir_fd=dfd, follow_symlinks=False)
            except OSError:
                continue
            last_use = max(st.st_atime, st.st_mtime)  # stores written before: get() set the mtime
            if stat.S_ISREG(st.st_mode) and last_use < cutoff:
                found.append(key)
        return found

    def prune(self, max_age_seconds: float, *, keep: Collection[str] = ()) -> int:
        """Deletes the :meth:`stale` snapshots but those of ``keep``; returns how many. (A data
        directory's heaps are pruned through the heap catalogue, which keeps its index and its
        "in use" rule with them; this is for a cache of a shared store.)"""
        return sum(1 for key in self.stale(max_age_seconds) if key not in keep and self.delete(key))

    def remove_stale_temp_files(self, older_than_seconds: float = 3600.0) -> int:
        """Removes temp files left by writers that died mid-``put``; returns how many.

        Only files older than ``older_than_seconds`` go, so a ``put`` in flight in another process
        sharing the root is not disturbed. Call it at startup.
        """
        cutoff = time.time() - older_than_seconds
        removed = 0
        for prefix in os.listdir(self.heaps_dir):
            path = os.path.join(self.heaps_dir, prefix)
            if _PREFIX_RE.fullmatch(prefix) is None or not stat.S_ISDIR(os.lstat(path).st_mode):
                continue
            for name in os.listdir(path):
                if not (name.startswith(".") and name.endswith(_TMP_SUFFIX)):
                    continue
                full = os.path.join(path, name)
                with contextlib.suppress(FileNotFoundError):
                    if os.lstat(full).st_mtime < cutoff:
                        os.unlink(full)
                        removed += 1
        return removed

    # -- internals -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _fanout(self, key: str, *, create: bool) -> Iterator[int]:
        """A directory fd of ``heaps/<key[:2]>``, opened without following symlinks."""
        prefix = key[:2]
        flags = os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC
        heaps_fd = os.open(self.heaps_dir, flags)
        try:
            try:
                dfd = os.open(prefix, flags, dir_fd=heaps_fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(prefix, 0o755, dir_fd=heaps_fd)
                except FileExistsError:
                    pass
                else:
                    _fsync_dir(heaps_fd)
                dfd = os.open(prefix, flags, dir_fd=heaps_fd)
        finally:
            os.close(heaps_fd)
        try:
            yield dfd
        finally:
            os.close(dfd)


def _is_regular(name: str, dfd: int) -> bool:
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return stat.S_ISREG(st.st_mode)


def _read_small(dfd: int, name: str) -> bytes | None:
    try:
        fd = os.open(name, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC, dir_fd=dfd)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP):
            return None
        raise
    with os.fdopen(fd, "rb") as f:
        return f.read(1 << 20)


def _fsync_dir(dfd: int) -> None:
    # Some filesystems refuse fsync on a directory; durability there is best effort.
    with contextlib.suppress(OSError):
        os.fsync(dfd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


# Errors that say "no unnamed files here" (the kernel or filesystem lacks O_TMPFILE, or there is no
# /proc to link one through): publishing then goes through a named temp file.
_NO_TMPFILE = {errno.EOPNOTSUPP, errno.ENOTSUP, errno.EISDIR, errno.EINVAL, errno.ENOENT}
_NO_LINK = {errno.ENOENT, errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK}


def _publish_unnamed(dfd: int, name: str, data: bytes, durable: bool) -> bool:
    """Publishes ``data`` as ``name`` in ``dfd`` from an unnamed file; False when it could not here
    (nothing is left behind then, and ``name`` is unchanged)."""
    try:
        fd = os.open(".", os.O_WRONLY | _O_TMPFILE | _O_CLOEXEC, 0o644, dir_fd=dfd)
    except OSError as exc:
        if exc.errno in _NO_TMPFILE:
            return False
        raise
    try:
        _write_all(fd, data)
        if durable:
            os.fsync(fd)
        try:
            # /proc/self/fd/N names the unnamed file itself; link() follows it (AT_SYMLINK_FOLLOW).
            os.link(f"{_PROC_SELF_FD}/{fd}", name, dst_dir_fd=dfd)
        except FileExistsError:
            # Someone else published it first: kept. A symlink or other non-file squatting the name
            # is replaced by the named-file path below.
            return _is_regular(name, dfd)
        except OSError as exc:
            if exc.errno in _NO_LINK:
                return False
            raise
    finally:
        os.close(fd)
    if durable:
        _fsync_dir(dfd)
    return True


def _publish(dfd: int, name: str, data: bytes, durable: bool = True) -> None:
    """Writes ``data`` to ``name`` in ``dfd`` atomically; an existing ``name`` is kept (first wins)."""
    if _O_TMPFILE and _publish_unnamed(dfd, name, data, durable):
        return
    tmp = f".{name}.{secrets.token_hex(8)}{_TMP_SUFFIX}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC, 0o644, dir_fd=dfd)
    try:
        try:
            _write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except FileExistsError:
            # Someone else published it first. A symlink or other non-file squatting the name is
            # replaced (rename replaces the link itself, never its target); a regular file is kept.
            if not _is_regular(name, dfd):
                os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                raise
            # No hard links here: rename over. Same key = same bytes, so a lost race is harmless
            # for blobs; for meta the later writer may win, which only matters for concurrent puts.
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dfd)
    if durable:
        _fsync_dir(dfd)
