"""Round trips between the nodes and PostgreSQL, counted by a TCP proxy in a process of its own.

A round trip is what a client waits for: on one connection, every time the client sends after the
server spoke last (or sends first) it counts one. A statement sent alone is one; a transaction of
three statements sent one by one is five (``BEGIN``, the three, ``COMMIT``); statements pipelined
into one flight are one. Notifications a listening connection receives count nothing (the client
does not answer them).

The proxy runs in a child process (``fork``), so its CPU is nobody's in the bench's tables; the
counts are in shared memory. It adds a hop to every round trip: measure rates and CPU without it
and round trips through it, in a pass of their own.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import socket
import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["RoundTripProxy"]

_BUFFER = 1 << 16


class RoundTripProxy:
    """``with RoundTripProxy(url) as proxy:`` ``proxy.url`` reaches the server of ``url`` through
    the proxy; ``proxy.round_trips()`` is the count so far."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None, url
        self._upstream = (parts.hostname, parts.port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        port = self._listener.getsockname()[1]
        netloc = parts.netloc.rsplit(":", 1)[0] + f":{port}"
        self.url = urlunsplit(parts._replace(netloc=netloc))
        self._count: Any = multiprocessing.get_context("fork").Value("q", 0, lock=True)
        self._process: Any = None

    def with_database(self, url: str) -> str:
        """``url`` (same server, any database) through the proxy."""
        parts, mine = urlsplit(url), urlsplit(self.url)
        return urlunsplit(parts._replace(netloc=mine.netloc))

    def start(self) -> RoundTripProxy:
        ctx = multiprocessing.get_context("fork")
        self._process = ctx.Process(
            target=_serve, args=(self._listener, self._upstream, self._count), daemon=True
        )
        self._process.start()
        self._listener.close()  # the child holds it
        return self

    def round_trips(self) -> int:
        with self._count.get_lock():
            return int(self._count.value)

    def stop(self) -> None:
        if self._process is not None and self._process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._process.pid, signal.SIGKILL)
            self._process.join(10)
            self._process = None

    def __enter__(self) -> RoundTripProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _serve(listener: socket.socket, upstream: tuple[str, int], count: Any) -> None:
    while True:
        client, _ = listener.accept()
        try:
            server = socket.create_connection(upstream)
        except OSError:
            client.close()
            continue
        for s in (client, server):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _Connection(client, server, count).start()


class _Connection:
    """One client connection and its server connection: a thread per direction."""

    def __init__(self, client: socket.socket, server: socket.socket, count: Any) -> None:
        self._client, self._server, self._count = client, server, count
        self._lock = threading.Lock()
        self._client_spoke_last = False

    def start(self) -> None:
        for source, sink, from_client in (
            (self._client, self._server, True),
            (self._server, self._client, False),
        ):
            threading.Thread(target=self._pump, args=(source, sink, from_client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        try:
            while True:
                data = source.recv(_BUFFER)
                if not data:
                    break
                with self._lock:
                    if from_client and not self._client_spoke_last:
                        with self._count.get_lock():
                            self._count.value += 1
                    self._client_spoke_last = from_client
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (self._client, self._server):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
