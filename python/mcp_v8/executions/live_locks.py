"""Which process on a data directory holds a live session: one lock file a session (the
:class:`~..storage.live_holds.LiveHolds` of the processes on one data directory).

Processes on one data directory (``--processes``, ``serve`` beside ``mcp``) each run their own
live workers; a session live in one of them must not become live in another too (two contexts of
one session would go their own ways). A process holds a session from its first step until the
session is no longer live there, as an exclusive ``flock`` on ``<dir>/<sha256 of its name>``,
whose content names the holder (process id, lease, since when). ``flock`` is the kernel's: a
process that dies releases its locks, so a crash leaves no stale holder; but it leaves its name
in the file, which a holder that stops the session empties: the next process to take the session
knows what was lost (:meth:`SessionLocks.lost`), and its first step says so. The files stay (an
unlinked file a process still locks would let another lock a new one under the same name).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from collections.abc import Collection
from datetime import datetime, timezone
from pathlib import Path

from ..principal import DEFAULT_TENANT
from ..storage.live_holds import Holder

__all__ = ["SessionLocks"]


class SessionLocks:
    def __init__(self, directory: Path, holder: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._dir = directory
        self._holder = holder
        self._lock = threading.Lock()
        self._fds: dict[str, int] = {}
        self._lost: dict[str, str] = {}

    def _path(self, key: str) -> Path:
        return self._dir / hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()

    @staticmethod
    def _key(session: str, tenant: str) -> str:
        """The default tenant's sessions keep the names of the files before tenants."""
        return session if tenant == DEFAULT_TENANT else f"{tenant}\0{session}"

    def acquire(self, session: str, tenant: str = DEFAULT_TENANT) -> Holder | None:
        """Takes ``session`` for this process: None, or who holds it (another process, to which
        steps cannot be sent)."""
        session = self._key(session, tenant)
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
                return Holder(f"another process on this data directory: {said or 'unknown'}")
            except BaseException:
                os.close(fd)
                raise
            # A holder that stopped gracefully emptied the file; one that died left its name.
            before = os.pread(fd, 1024, 0).decode("utf-8", "replace").strip()
            if before:
                self._lost[session] = f"the process holding it stopped without ending it ({before})"
            at = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"process {os.getpid()} ({self._holder}) since {at}".encode(), 0)
            self._fds[session] = fd
            return None

    def lost(self, session: str, tenant: str = DEFAULT_TENANT) -> str | None:
        """When :meth:`acquire` just took the session from a process that died holding it (its
        name still in the file), that process; once."""
        with self._lock:
            return self._lost.pop(self._key(session, tenant), None)

    def where(self, sessions: Collection[str], tenant: str = DEFAULT_TENANT) -> dict[str, tuple[str, str]]:
        return {}  # holders here are processes, not nodes

    def release(self, session: str, tenant: str = DEFAULT_TENANT) -> None:
        session = self._key(session, tenant)
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
