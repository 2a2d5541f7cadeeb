"""Which process on a data directory holds a live session: one lock file a session.

Processes on one data directory (``--processes``, ``serve`` beside ``mcp``) each run their own
live workers; a session live in one of them must not become live in another too (two contexts of
one session would go their own ways). A process holds a session from its first step until the
session is no longer live there, as an exclusive ``flock`` on ``<dir>/<sha256 of its name>``,
whose content names the holder (process id, lease, since when). ``flock`` is the kernel's: a
process that dies releases its locks, so a crash leaves no stale holder. The files stay (an
unlinked file a process still locks would let another lock a new one under the same name).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["SessionLocks"]


class SessionLocks:
    def __init__(self, directory: Path, holder: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._dir = directory
        self._holder = holder
        self._lock = threading.Lock()
        self._fds: dict[str, int] = {}

    def _path(self, session: str) -> Path:
        return self._dir / hashlib.sha256(session.encode("utf-8", "surrogatepass")).hexdigest()

    def acquire(self, session: str) -> str | None:
        """Takes ``session`` for this process: None, or who holds it (another process)."""
        with self._lock:
            if session in self._fds:
                return None
            fd = os.open(self._path(session), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    said = os.pread(fd, 1024, 0).decode("utf-8", "replace").strip()
                finally:
                    os.close(fd)
                return said or "another process on this data directory"
            except BaseException:
                os.close(fd)
                raise
            at = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"process {os.getpid()} ({self._holder}) since {at}".encode(), 0)
            self._fds[session] = fd
            return None

    def release(self, session: str) -> None:
        with self._lock:
            fd = self._fds.pop(session, None)
            if fd is not None:
                os.ftruncate(fd, 0)
                os.close(fd)  # the lock goes with its last descriptor

    def release_all(self) -> None:
        with self._lock:
            names = list(self._fds)
        for name in names:
            self.release(name)
