"""Finish events between the server processes sharing one data directory (``mcp-v8 serve`` beside
the ``mcp-v8 mcp`` of each MCP client), which share a SQLite registry and nothing else.

Each process binds a unix datagram socket in the abstract namespace, named by its lease
(``\\0mcp-v8/<lease id>``: no file, no length limit from the data directory's path, gone with
the process). A process that writes an execution's terminal record sends the execution's id to
the socket of every other lease in ``leases/``; a listener thread in each process hands what it
receives to its :class:`~.waiters.Waiters`, whose waiters on that execution read its record
again. A datagram costs microseconds, so a long-poll in one process answers an execution
finished in another within about a millisecond of the record's commit on an idle machine.

Datagrams can be lost: a receiver's queue full (sends never block), a process in another
network namespace (a container sharing the volume), a platform without abstract sockets. The
waiters' periodic re-read (``RECHECK_SECS``) bounds the delay then. A datagram only says "look":
anything that reaches the socket (any local user can) makes a waiter read a record, nothing more.
"""

from __future__ import annotations

import contextlib
import logging
import re
import select
import socket
import threading
from collections.abc import Callable

from ..storage import Lease

__all__ = ["RECHECK_SECS", "SiblingEvents"]

log = logging.getLogger(__name__)

RECHECK_SECS = 1.0  # the worst-case delay when a datagram is lost
_ID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_STOP = b"stop"


def address(lease_id: str) -> bytes:
    return b"\0mcp-v8/" + lease_id.encode("ascii")


class SiblingEvents:
    """The :class:`~.waiters.FinishEvents` of the processes on the data directory of ``lease``."""

    def __init__(self, lease: Lease) -> None:
        self._lease = lease
        self._inbox: socket.socket | None = None
        self._outbox = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._outbox.setblocking(False)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        try:
            inbox = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            inbox.bind(address(lease.id))
            self._inbox = inbox
        except OSError as e:  # no abstract namespace here: waiters fall back on re-reading
            log.warning("no finish events between processes on this data directory: %s", e)

    def announce(self, execution_id: str) -> None:
        message = execution_id.encode("ascii")
        for other in self._lease.others():
            # Gone (ECONNREFUSED), or its queue is full: it re-reads in time.
            with contextlib.suppress(OSError):
                self._outbox.sendto(message, address(other))

    def start(self, wake: Callable[[str | None], None]) -> None:
        if self._inbox is None:
            return
        self._thread = threading.Thread(
            target=self._listen, args=(self._inbox, wake), daemon=True, name="mcp-v8-siblings"
        )
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            with contextlib.suppress(OSError):
                self._outbox.sendto(_STOP, address(self._lease.id))
            self._thread.join(5.0)
        if self._inbox is not None:
            self._inbox.close()
        self._outbox.close()

    def _listen(self, inbox: socket.socket, wake: Callable[[str | None], None]) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([inbox], [], [], 1.0)
                if not ready:
                    continue
                message = inbox.recv(64)
            except OSError:
                return
            if _ID.fullmatch(message):
                try:
                    wake(message.decode("ascii"))
                except Exception:  # never lose the listener to a waiter's error
                    log.exception("waking the waiters of %r failed", message)
