"""Forcing interleavings of threads on shared state, without V8: a lock that says when a thread
had to wait for it, and named hand-off points where a test parks a thread (the classes under test
call ``self._handoff(point)`` there; :class:`Parking` overrides it)."""

from __future__ import annotations

import threading

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
