"""The tools/call requests of one stdio session in flight, by request id.

At most ``slots`` calls run at once, each on a thread of its own (a run_js holds one while it
waits for its execution); the others wait, in the order they came, for a slot to free. Only
tool calls wait here: the reader answers ping, initialize, tools/list and notifications as it
reads them, so however many long calls are in flight, a ping or a cancel is never behind one.

A request id names one call until that call is answered: a second request under an id in
flight is refused (the caller answers it), and a cancel names the first. Cancelling a
waiting call drops it before it runs; cancelling a running one cancels its :class:`Call`
and the execution it started. A cancelled call is not answered.

One lock guards the table; ``_handoff`` marks the points where a test parks a thread to force
each interleaving of a cancel with a call being taken up.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .protocol import INTERNAL_ERROR, error_response
from .tools import Call

log = logging.getLogger("mcp_v8.mcp")

Response = dict[str, Any]
# Where a call's response goes: None when there is none to send (the call was cancelled).
Reply = Callable[[Response | None], None]


@dataclass(eq=False)
class _Entry:
    id: Any
    call: Call
    run: Callable[[], Response | None]
    reply: Reply
    running: bool = False


class InFlight:
    """The calls of one session: ``slots`` run at once, the others wait in order.
    ``cancel_execution`` cancels an execution a cancelled call started."""

    def __init__(self, slots: int, cancel_execution: Callable[[str], object]) -> None:
        if slots < 1:
            raise ValueError("a session runs at least one tool call at a time")
        self._slots = slots
        self._cancel_execution = cancel_execution
        self._lock = threading.Lock()
        self._entries: dict[Any, _Entry] = {}
        self._waiting: collections.deque[_Entry] = collections.deque()
        self._busy = 0  # slots taken: threads running a call or about to take the next
        self._threads: set[threading.Thread] = set()

    def _handoff(self, point: str) -> None:
        """Called with the lock held at each hand-off point: ``"cancel:found"`` (``cancel``
        has looked the id up and not yet acted) and ``"next:taken"`` (a thread that finished
        a call has taken the next waiting one and not yet run it). Does nothing; a test
        overrides it to park a thread there."""

    def holds(self, id: Any) -> bool:
        """Whether a call is in flight under ``id``."""
        with self._lock:
            return id in self._entries

    def add(self, id: Any, call: Call, run: Callable[[], Response | None], reply: Reply) -> bool:
        """Runs ``run`` for the request ``id`` when a slot is free, and hands its response to
        ``reply``. False, and nothing done, when a call is in flight under ``id`` already."""
        entry = _Entry(id, call, run, reply)
        with self._lock:
            if id in self._entries:
                return False
            self._entries[id] = entry
            if self._busy >= self._slots:
                self._waiting.append(entry)
                return True
            self._busy += 1
            entry.running = True
            thread = threading.Thread(target=self._work, args=(entry,), name="mcp-v8-call", daemon=True)
            self._threads.add(thread)
        thread.start()
        return True

    def cancel(self, id: Any) -> None:
        """Cancels the call in flight under ``id``, if any: a waiting one is dropped (it never
        runs, and is not answered), a running one's call and execution are cancelled."""
        with self._lock:
            entry = self._entries.get(id)
            self._handoff("cancel:found")
            if entry is None:
                return
            if entry.running:
                execution_id = entry.call.cancel()
            else:
                del self._entries[id]
                self._waiting.remove(entry)
                execution_id = entry.call.cancel()  # None: it never started one
        if not entry.running:
            self._reply(entry, None)
        if execution_id is not None:
            self._cancel(execution_id)

    def close(self) -> None:
        """The client is gone: drops the waiting calls, cancels the running ones (and their
        executions) and returns once their threads have ended. None of them is answered."""
        with self._lock:
            dropped = list(self._waiting)
            self._waiting.clear()
            for entry in dropped:
                del self._entries[entry.id]
            executions = [entry.call.cancel() for entry in self._entries.values()]
        for execution_id in executions:
            if execution_id is not None:
                self._cancel(execution_id)
        while True:
            with self._lock:
                threads = list(self._threads)
            if not threads:
                return
            for thread in threads:
                thread.join()

    def _work(self, entry: _Entry | None) -> None:
        """A slot's thread: runs its call, then each waiting one, until none waits."""
        try:
            while entry is not None:
                response = self._run(entry)
                with self._lock:
                    # Out of the table before the reply: the client may reuse the id once answered.
                    del self._entries[entry.id]
                    answered = None if entry.call.cancelled.is_set() else response
                    done, entry = entry, self._waiting.popleft() if self._waiting else None
                    if entry is not None:
                        entry.running = True
                        self._handoff("next:taken")
                    else:
                        self._busy -= 1
                self._reply(done, answered)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _run(self, entry: _Entry) -> Response | None:
        if entry.call.cancelled.is_set():  # cancelled while the thread took it up
            return None
        try:
            return entry.run()
        except Exception:  # a bug here must cost one call, never the session
            log.exception("MCP tool call %r failed", entry.id)
            return error_response(entry.id, INTERNAL_ERROR, "internal error")

    def _reply(self, entry: _Entry, response: Response | None) -> None:
        try:
            entry.reply(response)
        except Exception:
            log.exception("answering MCP request %r failed", entry.id)

    def _cancel(self, execution_id: str) -> None:
        try:
            self._cancel_execution(execution_id)
        except Exception:  # the database may be down: the execution then ends by its timeout
            log.exception("cancelling execution %s failed", execution_id)
