"""A bound on the calls in flight across the server: the fetches of every execution share one
(:mod:`.fetches`), the tool calls another (:mod:`.tool_calls`). A call past the bound waits for a
place on its own thread (never the slot's reader), until one is free or its call is stopped (its
execution ended, its deadline passed): the caller sets the event it gave, then wakes the gate."""

from __future__ import annotations

import threading

__all__ = ["Gate"]


class Gate:
    """At most ``capacity`` calls in flight."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a gate's capacity must be at least 1")
        self.capacity = capacity
        self._cond = threading.Condition()
        self._free = capacity
        self._waiting = 0

    def enter(self, stopped: threading.Event) -> bool:
        """Waits for a place; False (no place taken) once ``stopped`` is set."""
        with self._cond:
            self._waiting += 1
            try:
                while self._free == 0 and not stopped.is_set():
                    self._cond.wait()
            finally:
                self._waiting -= 1
            if stopped.is_set():
                if self._free > 0:
                    self._cond.notify()  # a leave's wake-up it took: pass it on
                return False
            self._free -= 1
            return True

    def leave(self) -> None:
        with self._cond:
            self._free += 1
            self._cond.notify()

    def wake(self) -> None:
        """Wakes the waiters, so that those whose call was stopped give up."""
        with self._cond:
            self._cond.notify_all()

    @property
    def in_flight(self) -> int:
        with self._cond:
            return self.capacity - self._free

    @property
    def waiting(self) -> int:
        """The calls waiting for a place."""
        with self._cond:
            return self._waiting
