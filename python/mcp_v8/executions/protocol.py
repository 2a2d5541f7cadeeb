"""Messages between the server and its worker processes (sent over a ``Channel``).

server -> worker
    ``Job``                       run one execution
    ``("cancel", execution_id)``  terminate it (sent only after its ``Job``)
    ``("stop",)``                 exit after the current job
worker -> server
    ``("ready",)``                      once, after V8 is initialised and the heap store opened
    ``("output", execution_id, text)``  console output, batched, rendered with level markers
    ``("done", execution_id, JobResult)``

Heap snapshots never cross the pipe: the worker opens the heap store itself, reads the
snapshot a ``Job`` names by key and writes the one it produces, and only keys travel.
"""

from __future__ import annotations

import pickle
import select
import socket
import struct
import threading
from dataclasses import dataclass
from typing import Any

from ..storage import TerminalStatus


@dataclass(frozen=True)
class Job:
    """One execution. ``heap`` is the key of the snapshot to restore; ``snapshot`` says
    whether the execution produces a new one (false: a plain isolate, restored from
    ``heap`` when there is one, and no snapshot); ``session`` and ``tags`` go with the
    snapshot it produces."""

    execution_id: str
    code: str
    heap: str | None
    heap_limit_mb: int
    timeout_secs: float
    max_result_bytes: int = 0
    session: str | None = None
    tags: dict[str, str] | None = None
    snapshot: bool = True


@dataclass(frozen=True)
class JobResult:
    """What became of a job. ``heap`` is the key of the snapshot the worker stored (a
    completed job that asked for one only) and ``heap_size`` its size in bytes."""

    status: TerminalStatus
    result: str | None = None
    error: str | None = None
    heap: str | None = None
    heap_size: int | None = None
    duration_ms: float | None = None


class Channel:
    """Length-prefixed pickled messages over a stream socket (a socketpair between the
    server and one of its workers, both trusted: pickles never come from clients)."""

    _HEADER = struct.Struct(">I")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._send_lock = threading.Lock()

    @classmethod
    def from_fd(cls, fd: int) -> Channel:
        return cls(socket.socket(fileno=fd))

    def fileno(self) -> int:
        return self._sock.fileno()

    def send(self, message: Any) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self._send_lock:
            self._sock.sendall(self._HEADER.pack(len(data)) + data)

    def _read(self, n: int) -> bytes:
        parts, left = [], n
        while left:
            chunk = self._sock.recv(min(left, 1 << 20))
            if not chunk:
                raise EOFError("channel closed")
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts)

    def recv(self) -> Any:
        (size,) = self._HEADER.unpack(self._read(self._HEADER.size))
        return pickle.loads(self._read(size))

    def poll(self, timeout: float) -> bool:
        readable, _, _ = select.select([self._sock], [], [], timeout)
        return bool(readable)

    def close(self) -> None:
        self._sock.close()
