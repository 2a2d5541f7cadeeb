"""Server processes sharing one data directory.

Several processes may serve the same data directory: ``mcp-v8 serve`` beside the ``mcp-v8 mcp``
each MCP client starts. Each one holds a lease while it lives: ``leases/<id>.lock``, locked
with ``flock``, which the kernel releases when the process ends however it ends. Every
execution records the lease of the process running it (``owner``), so a process starting on
the directory fails only the running executions of processes that are gone: their lock can be
taken, or their file is missing. A lease also names the process's own directory for worker
logs, which a gone process's successor removes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import time
import uuid
from collections.abc import Collection
from pathlib import Path

__all__ = ["Lease"]

_LEASES = "leases"
_WORKERS = "workers"
# A directory unchanged for this long has a modification time that any later change moves on
# (timestamps are coarser than the clock: a change within the same tick keeps the time).
_SETTLED_NS = 1_000_000_000


class Lease:
    """This process's lease on the data directory ``root``; :meth:`close` gives it up."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.id = uuid.uuid4().hex
        self._dir = root / _LEASES
        self._dir.mkdir(parents=True, exist_ok=True)
        self._fd = _locked(self._path(self.id), create=True)
        assert self._fd is not None, "a new lease file is never locked by another process"
        self._others: tuple[int, list[str]] | None = None  # the directory's mtime, the others then

    @property
    def worker_log_dir(self) -> Path:
        """Where this process's workers write their stderr."""
        path = self.root / _WORKERS / self.id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def gone(self, owners: Collection[str | None], *, unknown_is_gone: bool = True) -> set[str | None]:
        """Those of ``owners`` whose process no longer runs: a lease file whose lock can be
        taken, and, with ``unknown_is_gone``, no lease file at all (its process removed it at
        exit) and None (executions recorded before owners existed). Without it, an owner with
        no lease here may be a node on another machine sharing the registry: not gone."""
        dead: set[str | None] = set()
        for owner in owners:
            if owner == self.id:
                continue
            if owner is None or not _valid(owner):
                if unknown_is_gone:
                    dead.add(owner)
                continue
            fd = _locked(self._path(owner), create=False)
            if fd == -1:
                if unknown_is_gone:
                    dead.add(owner)
            elif fd is not None:
                os.close(fd)
                dead.add(owner)
        return dead

    def others(self) -> list[str]:
        """The ids of the other leases on the directory (their processes may be gone). Read again
        only when the directory changed (a stat, where a listing costs a finish about a tenth of
        a millisecond: each finish announces itself to the others)."""
        try:
            mtime = os.stat(self._dir).st_mtime_ns
        except FileNotFoundError:
            return []
        cached = self._others
        if cached is not None and cached[0] == mtime and time.time_ns() - mtime > _SETTLED_NS:
            return list(cached[1])
        try:
            names = os.listdir(self._dir)
        except FileNotFoundError:
            return []
        others = [
            o
            for o in (n.removesuffix(".lock") for n in names if n.endswith(".lock"))
            if o != self.id and _valid(o)
        ]
        self._others = (mtime, others)
        return list(others)

    def remove_stale(self) -> int:
        """Removes the lease files and worker log directories of gone processes; returns how
        many leases went."""
        removed = 0
        for name in os.listdir(self._dir):
            owner = name.removesuffix(".lock")
            if owner == self.id or not name.endswith(".lock") or not _valid(owner):
                continue
            fd = _locked(self._path(owner), create=False)
            if fd is None or fd == -1:
                continue  # alive, or removed meanwhile
            try:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._path(owner))
                shutil.rmtree(self.root / _WORKERS / owner, ignore_errors=True)
                removed += 1
            finally:
                os.close(fd)
        return removed

    def close(self) -> None:
        """Gives the lease up (its file goes; the lock goes with the process anyway)."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(self.id))
        shutil.rmtree(self.root / _WORKERS / self.id, ignore_errors=True)
        os.close(self._fd)
        self._fd = None

    def _path(self, owner: str) -> Path:
        return self._dir / f"{owner}.lock"


def _valid(owner: str) -> bool:
    return len(owner) == 32 and all(c in "0123456789abcdef" for c in owner)


def _locked(path: Path, *, create: bool) -> int | None:
    """An fd of ``path`` holding its exclusive lock; None when another process holds it, -1
    when the file does not exist (and ``create`` is false)."""
    flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        return -1
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise
    return fd
