"""Waiters: who waits for which execution to end, and how they hear that it did.

An execution accepted (or adopted) by this process is *live* here from then until its finish.
A long-poll on it registers before it looks, and the finish hands every waiter the terminal
record it wrote, so neither misses the other and no waiter reads the record again. An execution
that is not live here runs in another process: the waiter reads its record once after
registering (a finish written before that read is seen by the read, one written after it wakes
the waiter), then waits for an event of a :class:`FinishEvents` source saying it ended, and
reads the record again when woken (an event only says "look": a record still running means
it was for an earlier attempt, or lost, and the wait goes on).

Sources of those events (:class:`FinishEvents`): PostgreSQL ``NOTIFY`` for nodes sharing a
database (:class:`QueueEvents`; the cluster's listener hears them and calls :meth:`Waiters.wake`),
and unix datagrams between the processes sharing one data directory
(:class:`~.siblings.SiblingEvents`). Where events may be lost (a datagram dropped by a full
queue, a sibling in another network namespace), ``recheck_secs`` bounds the delay: a waiter on
an execution that is not live here reads its record again at that interval.

Followers (MCP progress) hear an execution's console output as it is written, then its end;
they live here too, since "live" and "finished" decide when they are told.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional, Protocol

from ..storage import ExecutionRecord

__all__ = ["FinishEvents", "QueueEvents", "Waiters"]

log = logging.getLogger(__name__)

Listener = Callable[[Optional[str]], None]


class FinishEvents(Protocol):
    """Where this process says that an execution it finished ended, and hears the others."""

    def announce(self, execution_id: str) -> None:
        """Tells the other processes (or nodes) that ``execution_id`` is terminal: its record
        is written."""
        ...

    def start(self, wake: Callable[[str | None], None]) -> None:
        """Calls ``wake(execution_id)`` for each execution another process finished from now
        on, and ``wake(None)`` when events may have been lost."""
        ...

    def close(self) -> None: ...


class _Queue(Protocol):
    def finished(self, execution_id: str) -> None: ...


class QueueEvents:
    """Finishes announced through the shared queue (PostgreSQL ``NOTIFY``). The cluster's
    listener, which hears the queue's other events too, delivers them (:meth:`Waiters.wake`)."""

    def __init__(self, queue: _Queue) -> None:
        self._queue = queue

    def announce(self, execution_id: str) -> None:
        self._queue.finished(execution_id)

    def start(self, wake: Callable[[str | None], None]) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class _Waiter:
    """One long-poll: set when its execution's finish hands it the record (``record``), or when
    another process's event says to look (``record`` None)."""

    event: threading.Event = field(default_factory=threading.Event)
    record: ExecutionRecord | None = None


class Waiters:
    """The long-polls and followers of one process, and the executions live in it.

    ``read`` reads a record from the store; ``events``, when given, announces this process's
    finishes and delivers the others'; ``recheck_secs``, when given, is how often a waiter on an
    execution not live here reads its record again (events lost); ``ended_elsewhere``, when
    given, is told of an event about an execution live here (another process wrote its end: a
    cancel there), on the events' thread."""

    def __init__(
        self,
        read: Callable[[str], ExecutionRecord | None],
        *,
        events: FinishEvents | None = None,
        recheck_secs: float | None = None,
        ended_elsewhere: Callable[[str], None] | None = None,
    ) -> None:
        self._read = read
        self._events = events
        self._recheck = recheck_secs
        self._ended_elsewhere = ended_elsewhere
        # Under ``_lock``: executions accepted here and not yet terminal, the waiters of each
        # execution (live here or not), and the followers of live ones.
        self._lock = threading.Lock()
        self._live: dict[str, str | None] = {}  # each with its tenant (None: not known here)
        self._waiters: dict[str, list[_Waiter]] = {}
        self._followers: dict[str, list[Listener]] = {}

    def start(self) -> None:
        if self._events is not None:
            self._events.start(self.wake)

    def close(self) -> None:
        if self._events is not None:
            self._events.close()

    # -- executions live here ------------------------------------------------------------------

    def accept(self, execution_id: str, tenant: str | None = None) -> None:
        """``execution_id`` (of ``tenant``, when known) is accepted here (before its record
        exists: never running and unknown here)."""
        with self._lock:
            self._live[execution_id] = tenant

    def forget(self, execution_id: str) -> None:
        """A submit accepted here failed before its execution existed."""
        with self._lock:
            self._live.pop(execution_id, None)

    def is_live(self, execution_id: str) -> bool:
        with self._lock:
            return execution_id in self._live

    def finished(self, execution_id: str, record: ExecutionRecord | None) -> None:
        """The execution's terminal ``record`` (None: unknown) is written: hands it to its waiters,
        tells its followers it ended, and it is no longer live here."""
        with self._lock:
            self._live.pop(execution_id, None)
            for waiter in self._waiters.get(execution_id, ()):
                waiter.record = record
                waiter.event.set()
            listeners = self._followers.pop(execution_id, ())
        for listener in listeners:
            listener(None)

    def announce(self, execution_id: str) -> None:
        """This process wrote the execution's terminal record: tells the others."""
        if self._events is None:
            return
        try:
            self._events.announce(execution_id)
        except Exception:  # the record is written; their waiters re-read after reconnecting
            log.exception("could not announce the end of execution %s", execution_id)

    # -- long-polls ------------------------------------------------------------------------------

    def wait(self, execution_id: str, timeout: float, tenant: str | None = None) -> ExecutionRecord | None:
        """Blocks until the execution is terminal or ``timeout`` seconds passed. Returns its
        record when that needs no further read: the terminal record its finish handed over, or
        the one read because it is not live here (terminal, or None for an unknown id). Returns
        None when the caller must read it (the wait timed out). With ``tenant``, an execution of
        another tenant is never waited for: at once, its record (read) or None (read it)."""
        deadline = time.monotonic() + timeout
        waiter = _Waiter()
        with self._lock:
            live = execution_id in self._live
            of = self._live.get(execution_id)
            if tenant is not None and live and of is not None and of != tenant:
                return None
            self._waiters.setdefault(execution_id, []).append(waiter)
        try:
            if not live or (tenant is not None and of is None):
                record = self._read(execution_id)
                if record is None or record.stopped or (tenant is not None and record.tenant != tenant):
                    return record
            self._waiting(execution_id)
            return self._block(execution_id, waiter, deadline)
        finally:
            with self._lock:
                waiters = self._waiters[execution_id]
                waiters.remove(waiter)
                if not waiters:
                    del self._waiters[execution_id]

    def _block(self, execution_id: str, waiter: _Waiter, deadline: float) -> ExecutionRecord | None:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            live = self.is_live(execution_id)
            step = remaining if live or self._recheck is None else min(remaining, self._recheck)
            woken = waiter.event.wait(step)
            if waiter.record is not None:
                return waiter.record
            if not woken and step >= remaining:
                return None  # the caller reads it
            waiter.event.clear()  # before reading: an event from now on is not lost
            if waiter.record is not None:  # handed over between the two looks
                return waiter.record
            # Another process's event (or the re-read's time): even for an execution running
            # here, another process may have cancelled it, and this one's worker go on a while.
            record = self._read(execution_id)
            if record is None or record.stopped:
                return record

    def wake(self, execution_id: str | None = None) -> None:
        """Another process says ``execution_id`` ended (None: events may have been lost, so every
        waiter on an execution not live here): its waiters read its record again."""
        with self._lock:
            if execution_id is not None:
                waiters = list(self._waiters.get(execution_id, ()))
            else:
                waiters = [w for e, ws in self._waiters.items() if e not in self._live for w in ws]
            for waiter in waiters:
                if waiter.record is None:
                    waiter.event.set()
            live_here = execution_id is not None and execution_id in self._live
        if live_here and self._ended_elsewhere is not None:
            assert execution_id is not None
            self._ended_elsewhere(execution_id)

    def waiting(self) -> int:
        """How many long-polls wait now."""
        with self._lock:
            return sum(len(ws) for ws in self._waiters.values())

    def _waiting(self, execution_id: str) -> None:
        """Called by ``wait`` once its waiter is registered, before it blocks. Does nothing;
        a test overrides it to know a long-poll is in place."""

    # -- followers -------------------------------------------------------------------------------

    def follow(self, execution_id: str, listener: Listener) -> Callable[[], None]:
        """Calls ``listener(text)`` with each batch of console output the execution writes from
        now on (see :meth:`output`), then ``listener(None)`` once it is terminal: at once when it
        is not live here. Returns the function that stops following."""
        with self._lock:
            live = execution_id in self._live
            if live:
                self._followers.setdefault(execution_id, []).append(listener)
        if not live:
            listener(None)

        def stop() -> None:
            with self._lock:
                listeners = self._followers.get(execution_id)
                if listeners is not None and listener in listeners:
                    listeners.remove(listener)
                    if not listeners:
                        del self._followers[execution_id]

        return stop

    def output(self, execution_id: str, text: str) -> None:
        """The execution wrote ``text`` (the output log has it): tells its followers."""
        if not self._followers:  # read without the lock: a follower added now reads the log anyway
            return
        with self._lock:
            listeners = list(self._followers.get(execution_id, ()))
        for listener in listeners:
            listener(text)
