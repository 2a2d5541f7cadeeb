"""Messages between the server and its worker processes (sent over a ``Channel``).

server -> worker
    ``Job``                       run one execution
    ``("cancel", execution_id)``  terminate it (before or while it runs)
    ``("stop",)``                 exit after the current job
worker -> server
    ``("ready", pid)``                  once, after V8 is initialised
    ``("output", execution_id, text)``  console output, batched, rendered with level markers
    ``("done", execution_id, JobResult)``
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
    execution_id: str
    code: str
    heap: bytes | None
    heap_limit_mb: int
    timeout_secs: float
    snapshot: bool = True
    language: str = "auto"
    max_result_bytes: int = 0


@dataclass(frozen=True)
class JobResult:
    status: TerminalStatus
    result: str | None = None
    error: str | None = None
    snapshot: bytes | None = None
    heap_key: str | None = None
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
