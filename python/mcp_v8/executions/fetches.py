"""The fetches a worker asks the server to make for the execution it runs.

A worker makes no connection: each call of the script's ``fetch`` reaches the server as a
``fetch`` message (:mod:`.protocol`), and :class:`Fetches` makes the request with the engine's
own fetch code (``_engine.FetchRun``: the policy's origins, address table, headers, redirects,
byte caps and timeouts, and ``max_requests`` counted here, per execution), under the policy of
the spec the server sent, never one the worker names. A call is counted and checked against the
policy as it arrives (no connection yet); the requests run off the slot's reader, on threads of
their own: at most ``PER_EXECUTION`` at once for one execution (the others wait in its queue: at
most ``max_requests`` of them, each body within ``max_bytes``), and at most ``IN_FLIGHT`` across
the server (:class:`FetchGate`).

:meth:`Fetches.end` (the execution finished, was cancelled or passed its deadline) shuts the
sockets of the requests in flight down, so they return at once, and drops their replies and the
calls still queued. A reply the channel cannot carry (:class:`~.protocol.Undeliverable`) fails
that call, not the worker; a reply the worker stops taking (``TimeoutError``: the frame is part
sent, the stream lost) is reported through ``on_lost`` so the slot kills the worker.

State shared between the reader, the request threads and ``end`` is read and written under
one lock per execution; ``_handoff`` marks the points a test parks a thread at.
"""

from __future__ import annotations

import collections
import contextvars
import json
import logging
import threading
import time
import urllib.parse
from typing import Any, Callable, Protocol

from .gate import Gate
from .protocol import FetchCall, FetchReply, Undeliverable
from .spec import FetchPolicy

log = logging.getLogger(__name__)

PER_EXECUTION = 8  # requests in flight for one execution
IN_FLIGHT = 64  # requests in flight across the server


class Run(Protocol):
    """What :class:`Fetches` needs of ``_engine.FetchRun``."""

    def admit(self) -> str | None: ...

    def check(self, args_json: str, body: bytes | None = None) -> Any: ...

    def send(self, request: Any) -> tuple[bool, str, bytes]: ...

    def end(self) -> None: ...


def _make_run(policy: FetchPolicy) -> Run:
    from .. import _engine

    return _engine.FetchRun(list(policy.origins), policy.max_bytes, policy.max_requests)


def refusal(message: str) -> str:
    """How a failed fetch rejects in the script: ``{"name": "TypeError", "message": ...}``."""
    return json.dumps({"name": "TypeError", "message": message})


class FetchGate(Gate):
    """The requests in flight across the server: at most ``capacity``."""

    def __init__(self, capacity: int = IN_FLIGHT) -> None:
        super().__init__(capacity)


SERVER_GATE = FetchGate()


class _Span:
    """When a traced call came, and what its span says of it: the method and the origin the script
    asked for (as it wrote them: the policy decides what is allowed)."""

    def __init__(self, args: str) -> None:
        self.start_ns = time.time_ns()
        try:
            request = json.loads(args)
            if isinstance(request, list):  # [the request, ...] as web.js sends it
                request = request[0]
            url = urllib.parse.urlsplit(str(request.get("url", "")))
            origin = f"{url.scheme}://{url.netloc.rpartition('@')[2]}" if url.scheme else ""
            method = str(request.get("method", ""))[:16]
        except (ValueError, AttributeError, IndexError):
            origin, method = "", ""
        self.attributes = {"fetch.method": method, "fetch.origin": origin[:256]}


class Fetches:
    """The fetches of one execution. ``send`` carries a reply to the worker (the slot's
    channel); ``on_lost(reason)`` says the channel lost a frame part sent."""

    def __init__(
        self,
        execution_id: str,
        policy: FetchPolicy,
        send: Callable[[FetchReply], None],
        *,
        gate: FetchGate = SERVER_GATE,
        per_execution: int = PER_EXECUTION,
        on_lost: Callable[[str], None] | None = None,
        make_run: Callable[[FetchPolicy], Run] = _make_run,
        on_outcome: Callable[[str], None] | None = None,
        on_span: Callable[[int, int, dict[str, Any]], None] | None = None,
    ) -> None:
        """``on_outcome(outcome)`` is told how each call the worker made ended, once: ``ok`` (a
        response), ``failed`` (the request failed), ``refused`` (by the policy, before any
        request) or ``abandoned`` (the execution ended first). ``on_span(start_ns, end_ns,
        attributes)`` (traces on) hears of each call answered or abandoned as it was answered:
        when it came and ended, its outcome, method and origin (never its path or query)."""
        self.execution_id = execution_id
        self._policy = policy
        self._send = send
        self._gate = gate
        self._per_execution = per_execution
        self._on_lost = on_lost
        self._make_run = make_run
        self._on_outcome = on_outcome
        self._on_span = on_span
        # Under _lock: the run (made at the first call), the calls admitted and waiting, the
        # request threads running, and whether the execution ended (also _ended, an Event for
        # the gate's waiters).
        self._lock = threading.Lock()
        self._run: Run | None = None
        # (call id, request, its span when traced)
        self._queue: collections.deque[tuple[int, Any, _Span | None]] = collections.deque()
        self._threads = 0
        self._ended = threading.Event()
        self._lost: str | None = None

    def _handoff(self, point: str) -> None:
        """Called at each hand-off point: ``"reply:checked"`` (a request thread found its
        execution still running, with the lock held, and is about to send its reply) and
        ``"perform:returned"`` (a request returned, before the thread looks at the
        execution). Does nothing; a test overrides it to park a thread there."""

    def submit(self, call: FetchCall) -> None:
        """Takes a call from the worker (the slot's reader): counted and checked against the
        policy at once (a refusal is answered then), then queued for a request thread with
        its body, which the policy bounds. Never waits for a request."""
        answer: str | None = None
        request: Any = None
        span = None if self._on_span is None else _Span(call.args)
        with self._lock:
            if self._ended.is_set():
                self._count("abandoned")
                return
            if self._run is None:
                try:
                    self._run = self._make_run(self._policy)
                except ValueError as e:  # an origin the engine refuses
                    answer = refusal(f"fetch refused: invalid fetch policy: {e}")
            run = self._run
            if run is not None:
                answer = run.admit()  # in the order the calls came
        if answer is None and run is not None:
            request = run.check(call.args, call.body)
            if isinstance(request, str):
                answer = request
        if answer is not None:
            self._reply(call.call_id, False, answer, None, "refused", span)
            return
        with self._lock:
            if self._ended.is_set():
                self._count("abandoned")
                return
            self._queue.append((call.call_id, request, span))
            start_thread = self._threads < self._per_execution
            if start_thread:
                self._threads += 1
        if start_thread:
            # In the relay's context: the lines it logs name the execution (``mcp_v8.logs``).
            work = contextvars.copy_context().run
            threading.Thread(target=work, args=(self._work,), daemon=True, name="mcp-v8-fetch").start()

    def end(self) -> None:
        """The execution ended: requests in flight return at once and answer nobody, queued
        calls are dropped, later calls ignored. Any thread; idempotent; never waits for a
        request (only for a reply being sent, which the worker's reader takes at once)."""
        with self._lock:
            if self._ended.is_set():
                return
            self._ended.set()
            dropped = len(self._queue)
            self._queue.clear()
            run = self._run
        for _ in range(dropped):
            self._count("abandoned")
        self._gate.wake()
        if run is not None:
            run.end()

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    @property
    def lost(self) -> str | None:
        """Why the channel was lost under a reply (part of its frame sent), if it was."""
        with self._lock:
            return self._lost

    def _work(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._ended.is_set() or not self._queue:
                        self._threads -= 1
                        return
                    (call_id, request, span), run = self._queue.popleft(), self._run
                assert run is not None
                if not self._gate.enter(self._ended):
                    continue  # ended while waiting: the loop sees it
                try:
                    ok, head, body = run.send(request)
                except Exception as e:  # the engine's own failure: the call fails, not the server
                    log.exception("fetch of execution %s failed", self.execution_id)
                    ok, head, body = False, refusal(f"fetch failed: {type(e).__name__}: {e}"), b""
                finally:
                    self._gate.leave()
                self._handoff("perform:returned")
                self._reply(call_id, ok, head, body if ok else None, "ok" if ok else "failed", span)
        except BaseException:
            with self._lock:
                self._threads -= 1
            raise

    def _count(self, outcome: str) -> None:
        if self._on_outcome is not None:
            self._on_outcome(outcome)

    def _traced(self, span: _Span | None, outcome: str) -> None:
        if span is not None and self._on_span is not None:
            self._on_span(span.start_ns, time.time_ns(), {**span.attributes, "fetch.outcome": outcome})

    def _reply(
        self, call_id: int, ok: bool, head: str, body: bytes | None, outcome: str, span: _Span | None = None
    ) -> None:
        """Sends the reply unless the execution ended (the call's ``outcome`` is counted then,
        else ``abandoned``). The check and the send are one step under the lock, so no reply
        leaves once ``end`` has returned."""
        reply = FetchReply(self.execution_id, call_id, ok, head, body)
        with self._lock:
            if self._ended.is_set():
                self._count("abandoned")
                self._traced(span, "abandoned")
                return  # nobody waits for it any more
            self._count(outcome)
            self._traced(span, outcome)
            self._handoff("reply:checked")
            try:
                try:
                    self._send(reply)
                except Undeliverable as e:  # nothing was sent: this call fails, not the worker
                    message = f"fetch failed: the response could not be sent to the worker: {e}"
                    self._send(FetchReply(self.execution_id, call_id, False, refusal(message[:4096]), None))
            except TimeoutError as e:  # part of a frame is out: the stream is lost
                lost = self._lost = f"the worker took no fetch reply: {e}"
            except OSError:
                return  # the worker is gone: the slot's reader sees it
            else:
                return
        if self._on_lost is not None:
            self._on_lost(lost)
