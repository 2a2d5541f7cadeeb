"""Forcing interleavings of threads on shared state, without V8: a lock that says when a thread
had to wait for it, named hand-off points where a test parks a thread (the classes under test
call ``self._handoff(point)`` there; :class:`Parking` overrides it), and a worker process played
by a thread (:class:`ThreadWorker`)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading

from mcp_v8.executions.channel import Channel

HANG = 30.0  # seconds; only ever reached when the code under test is broken


class ObservedLock:
    """A lock that sets ``waited`` when a thread has to wait for it (``waited`` given: an event
    the test also sets itself, e.g. when the thread it watches returns)."""

    def __init__(self, waited: threading.Event | None = None) -> None:
        self._lock = threading.Lock()
        self.waited = waited if waited is not None else threading.Event()

    def __enter__(self) -> None:
        if not self._lock.acquire(blocking=False):
            self.waited.set()
            self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


class Park:
    """A thread parked at a hand-off point: ``reached`` when it got there, it goes on at
    ``release``."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()


class Parking:
    """Mixed in before a class with ``_handoff(point)`` hooks: ``park(point)`` parks the next
    thread that reaches ``point``."""

    _parks: dict[str, Park]

    def park(self, point: str) -> Park:
        parks = self.__dict__.setdefault("_parks", {})
        park = parks[point] = Park()
        return park

    def release_all(self) -> None:
        for park in self.__dict__.get("_parks", {}).values():
            park.release.set()

    def _handoff(self, point: str) -> None:
        park = self.__dict__.get("_parks", {}).pop(point, None)
        if park is not None:
            park.reached.set()
            park.release.wait(HANG)


class ThreadWorker:
    """A worker process played by a thread (what a slot's ``spawn`` returns): the channel on a
    copy of the slot's socket (the slot closes its own), ``poll``/``kill``/``wait`` as a
    ``subprocess.Popen`` has them. Subclasses write ``_main``, started by ``_start`` once their
    own state is set, and may add to ``kill`` through ``_killed``."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = socket.socket(fileno=os.dup(sock.fileno()))
        self._conn = Channel(self._sock, peer="server")
        self.returncode: int | None = None

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._main, daemon=True, name="fake-worker")
        self._thread.start()

    def _main(self) -> None:
        raise NotImplementedError

    def _killed(self) -> None:
        """What else a kill does to this fake (before its socket is shut down)."""

    def poll(self) -> int | None:
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            self.returncode = -signal.SIGKILL
        self._killed()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def wait(self, timeout: float | None = None) -> int:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise subprocess.TimeoutExpired("fake worker", timeout or 0)
        assert self.returncode is not None
        return self.returncode
