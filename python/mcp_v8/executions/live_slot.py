"""A worker slot that holds live sessions: :class:`LiveSlot`, a :class:`~.pool.WorkerSlot` whose
worker keeps one live context per session between the session's steps (the channel's ``open``,
``step``, ``snapshot`` and ``close``, :mod:`.protocol`).

The slot knows which sessions its current worker process holds. A process that dies (a crash, a
sandbox kill, the backstop after a step that would not stop) takes every session it held with
it: they leave the slot's set at once, and the caller learns which from :meth:`LiveSlot.lost`,
so that the next step of such a session fails saying so instead of starting afresh. A step that
goes over its heap cap ends only its own session's context (the worker says ``ended``).

One command at a time: a step and the commands around it are serialised by the slot's own
lock (a cancel comes from any thread, as for any job).
"""

from __future__ import annotations

import os
import threading
from typing import Callable, TypeVar

from .. import _engine
from .heap_fds import HeapFdError, heap_size_cap, read_heap
from .pool import WorkerSlot
from .protocol import Close, Closed, Job, JobResult, Open, Opened, ProtocolError, SessionHeap, Snapshot

__all__ = ["COMMAND_SECONDS", "LiveSessionError", "LiveSlot"]

COMMAND_SECONDS = 60.0  # an open (restoring a heap), a snapshot or a close, answered within this


class LiveSessionError(Exception):
    """A live-session command that failed; the message says why (never a payload)."""


_A = TypeVar("_A", Opened, SessionHeap, Closed)


class LiveSlot(WorkerSlot):
    def __init__(self, *args: object, command_seconds: float = COMMAND_SECONDS, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._command_seconds = command_seconds
        self._serial = threading.Lock()  # one step or command at a time
        # The sessions the current worker holds, each with its heap cap (MB); and those a dead
        # worker took with it, with why, until the caller takes them (lost()).
        self._held: dict[str, int] = {}
        self._lost: dict[str, str] = {}
        self._state = threading.Lock()  # guards _held and _lost (read by other threads)

    # -- what the slot holds -------------------------------------------------------
    def sessions(self) -> frozenset[str]:
        with self._state:
            return frozenset(self._held)

    def lost(self) -> dict[str, str]:
        """The sessions a dead worker took with it since the last call, each with why."""
        with self._state:
            lost, self._lost = self._lost, {}
        return lost

    def running(self) -> str | None:
        """The id of the step (or execution) the worker runs now, if any."""
        with self._lock:
            return None if self._running is None else self._running.execution_id

    def _drop_all(self, why: str) -> None:
        with self._state:
            for name in self._held:
                self._lost[name] = why
            self._held.clear()

    def _check_alive(self) -> None:
        if self._held and not self.alive():
            self.kill()
            self._drop_all("its worker process ended")

    def start(self) -> None:
        self._drop_all("its worker process was restarted")
        super().start()

    # -- commands ------------------------------------------------------------------
    def open(
        self, session: str, heap_limit_mb: int, heap: str | None = None, heap_fd: int | None = None
    ) -> None:
        """Makes ``session``'s live context in this slot's worker: from the heap ``heap`` names
        (its descriptor ``heap_fd`` stays the caller's) or from the base context."""
        with self._serial:
            self._check_alive()
            if not self.alive():
                self.start()
            answer, _ = self._exchange(
                Open(session, heap, heap_limit_mb, heap_fd=heap_fd), Opened, heap_limit_mb
            )
            if answer.error is not None:
                raise LiveSessionError(answer.error)
            with self._state:
                self._held[session] = heap_limit_mb

    def step(self, job: Job, session: str, on_output: Callable[[str], None]) -> JobResult:
        """Runs ``job`` in ``session``'s context; a failed result when the session is not live here."""
        with self._serial:
            self._check_alive()
            with self._state:
                held = session in self._held
            if not held:
                return JobResult(status="failed", error=f"the session {session!r} is not live in this worker")
            result = self.run(job, on_output, session=session)
            if not self.alive():  # the step ended its worker: every session it held is gone
                self._drop_all(f"its worker process ended under execution {job.execution_id}: {result.error}")
            elif result.session_ended is not None:
                with self._state:
                    self._held.pop(session, None)
            return result

    def snapshot(self, session: str) -> tuple[str, bytes]:
        """(key, envelope) of ``session``'s context now; the context goes on from it."""
        with self._serial:
            limit = self._limit_of(session)
            answer, envelope = self._exchange(Snapshot(session), SessionHeap, limit)
            if answer.error is not None or answer.heap is None or envelope is None:
                raise LiveSessionError(answer.error or "the worker sent no heap")
            return answer.heap, envelope

    def close(self, session: str, snapshot: bool = True) -> tuple[str, bytes] | None:
        """Ends ``session``'s context; its snapshot first (key, envelope) when ``snapshot``. The
        session leaves the slot even when the snapshot fails (then LiveSessionError says why)."""
        with self._serial:
            limit = self._limit_of(session)
            try:
                answer, envelope = self._exchange(Close(session, snapshot), Closed, limit)
            finally:
                with self._state:
                    self._held.pop(session, None)
            if answer.error is not None:
                raise LiveSessionError(answer.error)
            if answer.heap is None or envelope is None:
                return None
            return answer.heap, envelope

    def _limit_of(self, session: str) -> int:
        self._check_alive()
        with self._state:
            limit = self._held.get(session)
        if limit is None:
            raise LiveSessionError(f"the session {session!r} is not live in this worker")
        return limit

    def _exchange(
        self, message: Open | Snapshot | Close, answer_kind: type[_A], heap_limit_mb: int
    ) -> tuple[_A, bytes | None]:
        """Sends ``message`` and returns the worker's answer (its heap read and checked). A worker
        that does not answer in time, or answers out of turn, is killed with its sessions."""
        conn = self._conn
        try:
            if conn is None:
                raise OSError("worker not started")
            conn.send(message)
            if not conn.poll(self._command_seconds):
                raise LiveSessionError(
                    f"the worker did not answer {message.KIND!r} within {self._command_seconds:g} s"
                )
            answer = conn.recv()
        except (EOFError, OSError, ProtocolError, LiveSessionError) as e:
            self.kill()
            self._drop_all(f"its worker process was lost: {e}")
            raise LiveSessionError(f"the worker was lost: {e}") from None
        envelope = None
        fd = getattr(answer, "heap_fd", None)
        if fd is not None:
            try:
                envelope = read_heap(fd, heap_size_cap(heap_limit_mb))
            except HeapFdError as e:
                envelope = None
                error: str | None = f"worker sent {e}"
            else:
                error = None
            finally:
                os.close(fd)
            if error is None and envelope is not None:
                try:
                    key = _engine.snapshot_key(envelope)
                except Exception as e:  # the engine's SnapshotError
                    error = f"worker sent a heap that is not a valid snapshot: {e}"
                else:
                    if key != getattr(answer, "heap", None):
                        error = f"worker sent heap {key} as {getattr(answer, 'heap', None)}"
            if error is not None:
                self.kill()
                self._drop_all(f"its worker process was lost: {error}")
                raise LiveSessionError(error)
        if not isinstance(answer, answer_kind) or getattr(answer, "session", None) != message.session:
            self.kill()
            self._drop_all("its worker process answered out of turn")
            raise LiveSessionError(f"the worker answered {message.KIND!r} with a {answer.KIND!r} message")
        return answer, envelope
