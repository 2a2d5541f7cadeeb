"""The execution state machine against a fake worker: no V8, no subprocess, no sleeps.

A ``FakeWorker`` is a thread of the test process that speaks the worker protocol on the
slot's socket and does what each job's code names (``complete``, ``until-cancel``,
``ignore-cancel``, ``finish-on-cancel``, ``crash``, ``print-until-cancel``, and the
misbehaviours of ``STRAYS`` and ``FRAMES``: messages out of step, and bytes that break the
channel's protocol). A ``ParkingSlot`` parks ``run`` or
``cancel`` at a hand-off point with the slot's lock held, and its lock reports when
another thread has to wait for it, so each interleaving of a cancel with a job's
hand-off to the worker is forced, not hoped for. Every wait has a generous bound that
only turns a hang into a failure.
"""

from __future__ import annotations

import array
import ast
import contextlib
import dataclasses
import hashlib
import json
import os
import queue
import re
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, BinaryIO, Callable

import msgpack
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mcp_v8 import _engine
from mcp_v8.errors import SnapshotError
from mcp_v8.executions import CancelOutcome, ExecutionManager, ExecutionSpec, FetchPolicy, Limits, QueueFull
from mcp_v8.executions.approvals import Approvals, Decision
from mcp_v8.executions.heap_fds import heap_memfd, read_heap
from mcp_v8.executions.pool import WorkerOptions, WorkerSlot, WorkerStartError
from mcp_v8.executions.protocol import (
    OUTPUT_CHUNK,
    Cancel,
    Done,
    FetchCall,
    FetchReply,
    Job,
    JobResult,
    Message,
    Output,
    ProtocolError,
    Ready,
    Spans,
    Stop,
    ToolCall,
    ToolReply,
    WorkerSpan,
    encode,
)
from mcp_v8.executions.spec import ToolLimits
from mcp_v8.executions.tool_caller import ToolInfo
from mcp_v8.executions.worker import _run
from mcp_v8.js_error import JsError
from mcp_v8.storage import (
    Catalogue,
    FileHeapStore,
    HeapInUse,
    HeapNotFound,
    HeapSigner,
    LocalHeaps,
    PendingToolCall,
    SQLiteExecutionStore,
    SQLiteHeapIndex,
    SQLiteHeapTags,
    SQLiteOutputLog,
    open_database,
)

from .interleavings import ObservedLock, Parking, ThreadWorker

HANG = 30.0  # seconds; only ever reached when the code under test is broken
WORKER_CANCELLED = "cancelled in the worker"
SLOT_CANCELLED = "execution cancelled"
# A real snapshot envelope (of an earlier release): what a worker sends as its new heap.
ENVELOPE = (Path(__file__).parent / "fixtures" / "heaps" / "format2-8fc0805.snap").read_bytes()
ENVELOPE_KEY = _engine.snapshot_key(ENVELOPE)
LATE_HEAP = ENVELOPE_KEY


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def packed(value: Any) -> bytes:
    """A frame holding ``value`` in msgpack, whatever it is."""
    return frame(msgpack.packb(value, use_bin_type=True))


def done_body(execution_id: str = "a", **fields: Any) -> dict[str, Any]:
    body = {
        "execution_id": execution_id,
        "status": "completed",
        "result": "1",
        "error": None,
        "js_error": None,
        "heap": None,
        "heap_size": None,
        "duration_ms": 1.0,
        "pending_tool_calls": [],
    }
    return {**body, **fields}


# What a worker out of step with its slot might send while running a job "a": well-formed
# messages, but not the job's next one.
STRAYS: dict[str, Message] = {
    "stray-output": Output("another-execution", "not mine\n"),
    "stray-done": Done("another-execution", JobResult(status="completed", result="1")),
    "stray-ready": Ready(),
    "stray-fetch": FetchCall("another-execution", 1, "[]", None),  # a fetch for a job not its own
    "spans-unasked": Spans("a", ()),  # its own job's spans, from a worker started without --trace
}


def span(**fields: Any) -> dict[str, Any]:
    """A worker's span as the ``spans`` message carries it, with ``fields`` changed."""
    return {"name": "execute", "start_ns": 1, "end_ns": 2, "attributes": {}, "parent": None, **fields}


# What breaks the channel's protocol (raw bytes): each one kills the worker.
FRAMES: dict[str, bytes] = {
    "garbage": frame(b"\x80\x05not msgpack, nor anything"),
    "a-pickle": frame(
        b"\x80\x05\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94."
    ),
    "empty-frame": frame(b""),
    "huge-length-prefix": struct.pack(">I", 0xFFFFFFFF),  # checked before a byte of the body is read
    "not-a-list": packed({"kind": "output", "execution_id": "a", "text": "x"}),
    "short-list": packed(["output", 1]),
    "unknown-kind": packed(["progress", 1, {"execution_id": "a", "percent": 50}]),
    "a-servers-kind": packed(["run", 1, {"execution_id": "a", "spec": {}}]),
    "unknown-version": packed(["output", 2, {"execution_id": "a", "text": "x"}]),
    "wrong-field-type": packed(["output", 1, {"execution_id": "a", "text": b"bytes\n"}]),
    "bool-for-an-integer": packed(["done", 3, done_body(heap_size=True)]),
    "fetch-body-as-text": packed(
        ["fetch", 1, {"execution_id": "a", "call_id": 1, "args": "[]", "body": "xxxx"}]
    ),
    "fetch-negative-call-id": packed(
        ["fetch", 1, {"execution_id": "a", "call_id": -1, "args": "[]", "body": None}]
    ),
    "fetch-with-a-policy": packed(
        ["fetch", 1, {"execution_id": "a", "call_id": 1, "args": "[]", "body": None, "origins": ["http://x"]}]
    ),
    "fetch-args-too-long": packed(
        ["fetch", 1, {"execution_id": "a", "call_id": 1, "args": "x" * ((1 << 20) + 1), "body": None}]
    ),
    "a-fetch-reply-from-the-worker": packed(
        ["fetch_reply", 1, {"execution_id": "a", "call_id": 1, "ok": True, "head": "{}", "body": None}]
    ),
    "tool-call-call-id-as-text": packed(
        ["tool_call", 1, {"execution_id": "a", "call_id": "1", "server": "s", "tool": "t", "arguments": "{}"}]
    ),
    "tool-call-without-a-server": packed(
        ["tool_call", 1, {"execution_id": "a", "call_id": 1, "server": "", "tool": "t", "arguments": "{}"}]
    ),
    "tool-call-name-too-long": packed(
        [
            "tool_call",
            1,
            {"execution_id": "a", "call_id": 1, "server": "s", "tool": "t" * 257, "arguments": "{}"},
        ]
    ),
    "tool-call-with-credentials": packed(
        [
            "tool_call",
            1,
            {"execution_id": "a", "call_id": 1, "server": "s", "tool": "t", "arguments": "{}", "headers": {}},
        ]
    ),
    "tool-call-arguments-too-long": packed(
        [
            "tool_call",
            1,
            {
                "execution_id": "a",
                "call_id": 1,
                "server": "s",
                "tool": "t",
                "arguments": "x" * ((4 << 20) + 1),
            },
        ]
    ),
    "a-tool-reply-from-the-worker": packed(
        ["tool_reply", 1, {"execution_id": "a", "call_id": 1, "answer": '{"value": 1}'}]
    ),
    "missing-field": packed(["output", 1, {"execution_id": "a"}]),
    "unknown-field": packed(["output", 1, {"execution_id": "a", "text": "x", "extra": 1}]),
    "not-a-status": packed(["done", 3, done_body(status="exploded")]),
    "not-a-heap-key": packed(["done", 3, done_body(heap="../../etc/passwd")]),
    "bad-js-error": packed(["done", 3, done_body(status="failed", js_error={"name": "E"})]),
    "an-older-done": packed(["done", 2, {k: v for k, v in done_body().items() if k != "pending_tool_calls"}]),
    "pending-call-without-arguments": packed(
        [
            "done",
            3,
            done_body(status="waiting", pending_tool_calls=[{"call_id": 1, "server": "s", "tool": "t"}]),
        ]
    ),
    "pending-calls-not-a-list": packed(["done", 3, done_body(pending_tool_calls={"call_id": 1})]),
    "extension-type": frame(
        msgpack.packb(["output", 1, {"execution_id": "a", "text": msgpack.ExtType(5, b"x")}])
    ),
    "trailing-bytes": frame(msgpack.packb(["output", 1, {"execution_id": "a", "text": "x"}]) + b"\x00"),
    "invalid-utf8": frame(b"\x93\xa6output\x01\x82\xacexecution_id\xa1a\xa4text\xa2\xff\xfe"),
    "oversized-output": packed(["output", 1, {"execution_id": "a", "text": "x" * (OUTPUT_CHUNK + 1)}]),
    "deep-nesting": frame(b"\x91" * 100_000 + b"\xc0"),
    "spans-name-not-a-word": packed(["spans", 1, {"execution_id": "a", "spans": [span(name="Run; drop")]}]),
    "spans-ending-before-they-start": packed(
        ["spans", 1, {"execution_id": "a", "spans": [span(start_ns=10, end_ns=9)]}]
    ),
    "spans-negative-time": packed(["spans", 1, {"execution_id": "a", "spans": [span(start_ns=-1)]}]),
    "spans-too-many": packed(["spans", 1, {"execution_id": "a", "spans": [span()] * 257}]),
    "spans-too-many-attributes": packed(
        ["spans", 1, {"execution_id": "a", "spans": [span(attributes={f"a{i}": "v" for i in range(33)})]}]
    ),
    "spans-parent-not-an-index": packed(["spans", 1, {"execution_id": "a", "spans": [span(parent="0")]}]),
    "spans-parent-out-of-range": packed(["spans", 1, {"execution_id": "a", "spans": [span(parent=256)]}]),
    "spans-parent-missing": packed(
        ["spans", 1, {"execution_id": "a", "spans": [{k: v for k, v in span().items() if k != "parent"}]}]
    ),
    "spans-attribute-not-text": packed(
        ["spans", 1, {"execution_id": "a", "spans": [span(attributes={"a": 1})]}]
    ),
}


# -- the fake worker ---------------------------------------------------------------------


class FakeWorker(ThreadWorker):
    """A worker process played by a thread: what a slot's ``spawn`` returns."""

    def __init__(self, sock: socket.socket, stderr_path: Path, greeting: Message | bytes) -> None:
        super().__init__(sock)
        self._greeting = greeting
        self._stderr_path = stderr_path
        self.received: queue.Queue[Any] = queue.Queue()
        self.stopped_reading = threading.Event()
        self.release = threading.Event()  # a worker that stopped reading goes on
        self._start()

    def _killed(self) -> None:
        self.release.set()

    def next_message(self) -> Any:
        return self.received.get(timeout=HANG)

    def all_received(self) -> list[Any]:
        messages = []
        while not self.received.empty():
            messages.append(self.received.get_nowait())
        return messages

    def _send(self, message: Message | bytes) -> None:
        if isinstance(message, bytes):
            self._sock.sendall(message)
        else:
            self._conn.send(message)

    def _send_heap(self, execution_id: str, data: bytes, key: str | None = None) -> None:
        """A completed job's ``done`` with its new heap in a memfd, as a worker sends it."""
        fd = heap_memfd(data)
        try:
            result = JobResult(status="completed", result="1", heap=key or ENVELOPE_KEY, heap_size=len(data))
            self._conn.send(Done(execution_id, result, heap_fd=fd))
        finally:
            os.close(fd)

    def _pause(self, execution_id: str, code: str) -> None:
        """Calls the gated tool ``gated.drop`` (call 4, its arguments as sent) and, once the
        server answered, pauses: a ``waiting`` done naming the calls ``code`` says."""
        self._conn.send(ToolCall(execution_id, 4, "gated", "drop", '{"what": "all"}'))
        reply = self._conn.recv()
        self.received.put(reply)
        named = (PendingToolCall(4, "gated", "other", '{"what": "nothing"}'),)
        if code == "pause-naming-other-calls":
            named = (PendingToolCall(5, "gated", "drop", "{}"),)
        if code == "pause-without-heap":
            self._conn.send(Done(execution_id, JobResult(status="waiting", pending_tool_calls=named)))
            return
        fd = heap_memfd(ENVELOPE)
        result = JobResult(
            status="waiting", heap=ENVELOPE_KEY, heap_size=len(ENVELOPE), pending_tool_calls=named
        )
        try:
            self._conn.send(Done(execution_id, result, heap_fd=fd))
        finally:
            os.close(fd)

    def _send_fds(self, message: Message, fds: list[int]) -> None:
        """``message`` with ``fds`` on its first byte, whatever its kind says."""
        data = encode(message)
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
        self._sock.sendmsg([data[:1]], rights)
        self._sock.sendall(data[1:])

    def _main(self) -> None:
        current: Job | None = None
        try:
            self._send(self._greeting)
            while True:
                message = self._conn.recv()
                self.received.put(message)
                if isinstance(message, Job):
                    current = message
                    eid, code = message.execution_id, message.spec.code
                    if code == "complete":
                        self._send(Output(eid, f"ran {eid}\n"))
                        self._send(Done(eid, JobResult(status="completed", result='"done"')))
                    elif code == "print-until-cancel":  # a script printing in a loop
                        self._send(Output(eid, "tick\n"))
                    elif code in STRAYS or code in FRAMES:  # not the job's next message
                        self._send(Output(eid, "before\n"))
                        self._send(STRAYS[code] if code in STRAYS else FRAMES[code])
                    elif code == "truncated":  # a frame that stops after its first bytes
                        self._send(Output(eid, "before\n"))
                        self._send(struct.pack(">I", 100) + b"\x93" * 10)
                    elif code == "truncated-then-exit":
                        self._send(struct.pack(">I", 100) + b"\x93" * 10)
                        self.returncode = 3
                        return
                    elif code == "stop-reading":  # ends its job, then takes no more messages
                        self._send(Done(eid, JobResult(status="completed", result="1")))
                        self.stopped_reading.set()
                        self.release.wait(HANG)
                        return
                    elif code == "heap-present":  # whether the job came with its heap's bytes
                        present = False
                        if message.heap_fd is not None:
                            try:
                                data = read_heap(message.heap_fd, 1 << 30)
                                present = hashlib.sha256(data).hexdigest() == message.spec.heap
                            finally:
                                os.close(message.heap_fd)
                        result = JobResult(status="completed", result="true" if present else "false")
                        self._send(Done(eid, result))
                    elif code == "store-heap":  # a new heap, sent back as a worker sends it
                        self._send_heap(eid, ENVELOPE)
                    elif code in ("pause-on-held", "pause-naming-other-calls", "pause-without-heap"):
                        self._pause(eid, code)
                    elif code in BAD_HEAPS:
                        BAD_HEAPS[code](self, eid)
                    elif code == "throw":
                        thrown = JsError("TypeError", "bad", "TypeError: bad\n    at <input>:1:1", 1, 1)
                        result = JobResult(status="failed", error=thrown.stack, js_error=thrown)
                        self._send(Done(eid, result))
                    elif code == "crash":
                        with open(self._stderr_path, "ab") as stderr:
                            stderr.write(b"#\n# Fatal javascript OOM in a fake worker\n#\n")
                        self.returncode = -signal.SIGKILL
                        return
                elif (
                    isinstance(message, Cancel)
                    and current is not None
                    and message.execution_id == current.execution_id
                ):
                    code = current.spec.code
                    if code in ("until-cancel", "print-until-cancel"):
                        result = JobResult(status="cancelled", error=WORKER_CANCELLED)
                        self._send(Done(current.execution_id, result))
                    elif code == "finish-on-cancel":  # the job ended as the cancel arrived
                        fd = heap_memfd(ENVELOPE)
                        result = JobResult(
                            status="completed", result='"late"', heap=LATE_HEAP, heap_size=len(ENVELOPE)
                        )
                        try:
                            self._conn.send(Done(current.execution_id, result, heap_fd=fd))
                        finally:
                            os.close(fd)
                elif isinstance(message, Stop):
                    self.returncode = 0
                    return
        except (EOFError, OSError):
            if self.returncode is None:
                self.returncode = 0
        finally:
            self._sock.close()


def _heap_fd(worker: FakeWorker, eid: str, fd: int, key: str = ENVELOPE_KEY) -> None:
    try:
        result = JobResult(status="completed", result="1", heap=key, heap_size=1)
        worker._conn.send(Done(eid, result, heap_fd=fd))
    finally:
        os.close(fd)


def _socket_fd(worker: FakeWorker, eid: str) -> None:
    a, b = socket.socketpair()
    b.close()
    _heap_fd(worker, eid, a.detach())


def _pipe_fd(worker: FakeWorker, eid: str) -> None:
    r, w = os.pipe()
    os.write(w, ENVELOPE[:1000])
    os.close(w)
    _heap_fd(worker, eid, r)


def _oversized(worker: FakeWorker, eid: str) -> None:
    fd = heap_memfd(b"")
    os.ftruncate(fd, 1 << 36)  # sparse: 64 GiB that cost nothing until read
    _heap_fd(worker, eid, fd)


def _garbage(worker: FakeWorker, eid: str) -> None:
    data = b"not a snapshot envelope" * 100
    _heap_fd(worker, eid, heap_memfd(data), hashlib.sha256(data).hexdigest())


def _other_key(worker: FakeWorker, eid: str) -> None:
    _heap_fd(worker, eid, heap_memfd(ENVELOPE), "e" * 64)


def _fds(worker: FakeWorker, message: Message, count: int) -> None:
    fds = [heap_memfd(ENVELOPE) for _ in range(count)]
    try:
        worker._send_fds(message, fds)
    finally:
        for fd in fds:
            os.close(fd)


def _heap_result(eid: str) -> Done:
    return Done(eid, JobResult(status="completed", result="1", heap=ENVELOPE_KEY, heap_size=len(ENVELOPE)))


# Heaps a worker sends that the server refuses, and what the execution's error says: each kills the
# worker (only its execution fails), and every descriptor received is closed.
BAD_HEAPS: dict[str, Callable[[FakeWorker, str], None]] = {
    "heap-socket": _socket_fd,
    "heap-pipe": _pipe_fd,
    "heap-oversized": _oversized,
    "heap-garbage": _garbage,
    "heap-other-key": _other_key,
    "fd-on-output": lambda w, eid: _fds(w, Output(eid, "x\n"), 1),
    "two-fds-on-done": lambda w, eid: _fds(w, _heap_result(eid), 2),
    "three-fds-on-done": lambda w, eid: _fds(w, _heap_result(eid), 3),
    "fd-on-done-without-heap": lambda w, eid: _fds(w, Done(eid, JobResult(status="completed")), 1),
    "heap-without-fd": lambda w, eid: w._send(encode(_heap_result(eid))),
}
BAD_HEAP_ERRORS = {
    "heap-socket": "worker sent a heap descriptor that is not a regular file",
    "heap-pipe": "worker sent a heap descriptor that is not a regular file",
    "heap-oversized": "worker sent a heap of 68719476736 bytes, more than its limit of 201326592",
    "heap-garbage": "worker sent a heap that is not a valid snapshot: not an mcp-v8 heap snapshot (bad magic)",
    "heap-other-key": f"worker sent heap {ENVELOPE_KEY} as {'e' * 64}",
    "fd-on-output": "worker sent a 'output' message with no heap and 1 file descriptors",
    "two-fds-on-done": "worker sent a 'done' message with a heap and 2 file descriptors",
    "three-fds-on-done": "worker sent more file descriptors than a message may carry",
    "fd-on-done-without-heap": "worker sent a 'done' message with no heap and 1 file descriptors",
    "heap-without-fd": "worker sent a 'done' message with a heap and 0 file descriptors",
}


class FakeWorkers:
    """A ``spawn`` function: starts fake workers and keeps them, oldest first."""

    def __init__(self) -> None:
        self.started: list[FakeWorker] = []
        self.greeting: Message | bytes = Ready()  # what the next worker says first

    def __call__(self, options: WorkerOptions, sock: socket.socket, stderr: BinaryIO) -> FakeWorker:
        worker = FakeWorker(sock, Path(stderr.name), self.greeting)
        self.started.append(worker)
        return worker

    @property
    def current(self) -> FakeWorker:
        return self.started[-1]


# -- forcing interleavings --------------------------------------------------------------


class ParkingSlot(Parking, WorkerSlot):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Set when a thread waits for the slot's lock; tests also set it when the thread
        # they watch returns, so that a broken hand-off fails instead of hanging.
        self.moved = threading.Event()
        self._lock = ObservedLock(self.moved)  # type: ignore[assignment]


class Background:
    """Runs ``fn`` in a thread; sets ``also`` (if given) when it returns."""

    def __init__(self, fn: Callable[[], Any], also: threading.Event | None = None) -> None:
        self._done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None

        def main() -> None:
            try:
                self._value = fn()
            except BaseException as e:
                self._error = e
            finally:
                self._done.set()
                if also is not None:
                    also.set()

        threading.Thread(target=main, daemon=True).start()

    def result(self) -> Any:
        assert self._done.wait(HANG), "the call never returned"
        if self._error is not None:
            raise self._error
        return self._value


def spec(code: str, *, timeout_secs: float = 60.0, heap_limit_mb: int = 8, **fields: Any) -> ExecutionSpec:
    limits = Limits(
        heap_limit_mb=heap_limit_mb,
        timeout_secs=timeout_secs,
        max_result_bytes=1 << 20,
        max_output_bytes=1 << 20,
    )
    return ExecutionSpec(code=code, limits=limits, **fields)


def job(execution_id: str, code: str, timeout: float = 60.0, **fields: Any) -> Job:
    return Job(execution_id, spec(code, timeout_secs=timeout, **fields))


class Reports:
    def __init__(self) -> None:
        self.crashes: list[tuple[str, str]] = []
        self.restarts = 0

    def crashed(self, execution_id: str, reason: str) -> None:
        self.crashes.append((execution_id, reason))

    def restarted(self) -> None:
        self.restarts += 1


@pytest.fixture
def workers() -> FakeWorkers:
    return FakeWorkers()


@pytest.fixture
def reports() -> Reports:
    return Reports()


@pytest.fixture
def make_slot(tmp_path: Path, workers: FakeWorkers, reports: Reports) -> Iterator[Callable[..., ParkingSlot]]:
    slots: list[ParkingSlot] = []

    def make(**kwargs: Any) -> ParkingSlot:
        options = WorkerOptions()
        slot = ParkingSlot(
            0,
            tmp_path,
            options,
            spawn=workers,
            on_crash=reports.crashed,
            on_restart=reports.restarted,
            **kwargs,
        )
        slot.start()
        slots.append(slot)
        return slot

    yield make
    for slot in slots:
        slot.release_all()
        slot.stop()


def job_ids(messages: list[Any]) -> list[str]:
    return [m.execution_id for m in messages if isinstance(m, Job)]


# -- the slot: a cancel against the hand-off of its job -----------------------------------


def test_cancel_before_run_is_seen_and_the_job_never_sent(
    make_slot: Callable[..., ParkingSlot], workers: FakeWorkers
) -> None:
    slot = make_slot()
    slot.cancel("a")
    assert slot.run(job("a", "complete"), lambda text: None) == JobResult(
        status="cancelled", error=SLOT_CANCELLED
    )
    assert slot.run(job("b", "complete"), lambda text: None).status == "completed"
    assert job_ids(workers.current.all_received()) == ["b"]


def test_cancel_arriving_while_run_is_between_its_check_and_the_send(
    make_slot: Callable[..., ParkingSlot], workers: FakeWorkers
) -> None:
    # run() has found no cancel and is about to send the job when the cancel comes: the
    # cancel must wait and then reach the worker, after the job.
    slot = make_slot()
    park = slot.park("run:checked")
    runner = Background(lambda: slot.run(job("a", "until-cancel"), lambda text: None))
    assert park.reached.wait(HANG)
    canceller = Background(lambda: slot.cancel("a"), also=slot.moved)
    assert slot.moved.wait(HANG)  # the cancel waits for the lock (or, broken, has returned)
    park.release.set()
    canceller.result()
    assert runner.result() == JobResult(status="cancelled", error=WORKER_CANCELLED)
    messages = workers.current.all_received()
    assert job_ids(messages) == ["a"]
    assert messages[1:] == [Cancel("a")]
    assert slot.alive()


def test_run_starting_while_cancel_is_between_its_check_and_its_write(
    make_slot: Callable[..., ParkingSlot], workers: FakeWorkers
) -> None:
    # cancel() has found no running job and is about to record itself when run() starts:
    # run() must wait and then see the cancel instead of sending the job.
    slot = make_slot()
    park = slot.park("cancel:checked")
    canceller = Background(lambda: slot.cancel("a"))
    assert park.reached.wait(HANG)
    runner = Background(lambda: slot.run(job("a", "complete"), lambda text: None), also=slot.moved)
    assert slot.moved.wait(HANG)  # run waits for the lock (or, broken, has returned)
    park.release.set()
    canceller.result()
    assert runner.result() == JobResult(status="cancelled", error=SLOT_CANCELLED)
    assert workers.current.all_received() == []


def test_cancel_while_running_reaches_the_worker(
    make_slot: Callable[..., ParkingSlot], workers: FakeWorkers, reports: Reports
) -> None:
    slot = make_slot()
    runner = Background(lambda: slot.run(job("a", "until-cancel"), lambda text: None))
    assert job_ids([workers.current.next_message()]) == ["a"]
    slot.cancel("a")
    slot.cancel("a")  # a second cancel changes nothing
    assert runner.result() == JobResult(status="cancelled", error=WORKER_CANCELLED)
    assert workers.current.all_received() == [Cancel("a")]
    assert slot.alive() and len(workers.started) == 1 and reports.restarts == 0


def test_cancel_after_finish_sends_nothing(
    make_slot: Callable[..., ParkingSlot], workers: FakeWorkers
) -> None:
    slot = make_slot()
    output: list[str] = []
    assert slot.run(job("a", "complete"), output.append) == JobResult(status="completed", result='"done"')
    assert output == ["ran a\n"]
    slot.cancel("a")
    assert slot.run(job("b", "complete"), output.append).status == "completed"
    messages = workers.current.all_received()
    assert job_ids(messages) == ["a", "b"] and len(messages) == 2  # no cancel in between


def test_worker_death_mid_job_fails_that_job_and_the_next_gets_a_new_worker(
    make_slot: Callable[..., ParkingSlot], workers: FakeWorkers, reports: Reports
) -> None:
    slot = make_slot()
    result = slot.run(job("a", "crash"), lambda text: None)
    reason = "killed by signal SIGKILL (Fatal javascript OOM in a fake worker)"
    assert result == JobResult(status="failed", error=f"worker crashed: {reason}")
    assert reports.crashes == [("a", reason)] and reports.restarts == 0
    assert not slot.alive()
    assert slot.run(job("b", "complete"), lambda text: None).status == "completed"
    assert len(workers.started) == 2 and reports.restarts == 1


def test_backstop_kills_a_worker_that_ignores_a_cancel(
    make_slot: Callable[..., ParkingSlot], workers: FakeWorkers, reports: Reports
) -> None:
    slot = make_slot(grace_seconds=0.0)
    runner = Background(lambda: slot.run(job("a", "ignore-cancel"), lambda text: None))
    stubborn = workers.current
    assert job_ids([stubborn.next_message()]) == ["a"]
    slot.cancel("a")
    assert runner.result() == JobResult(
        status="cancelled", error="worker did not stop after cancel and was killed"
    )
    assert stubborn.returncode == -signal.SIGKILL
    assert reports.crashes == []  # a kill by the backstop is no crash
    assert slot.run(job("b", "complete"), lambda text: None).status == "completed"
    assert len(workers.started) == 2 and reports.restarts == 1


def test_backstop_kills_a_worker_past_its_deadline(
    make_slot: Callable[..., ParkingSlot], workers: FakeWorkers
) -> None:
    slot = make_slot(grace_seconds=0.0, start_allowance_seconds=0.0)
    result = slot.run(job("a", "ignore-cancel", timeout=0.0), lambda text: None)
    assert result == JobResult(
        status="timed_out", error="worker did not stop after its 0 s timeout and was killed"
    )
    assert workers.current.returncode == -signal.SIGKILL


# -- the slot: after run() returns, its worker is idle and in step, or killed --------------


def assert_replaced(
    slot: WorkerSlot, workers: FakeWorkers, reports: Reports, old: FakeWorker, *, restarts: int = 1
) -> None:
    """``old`` was killed under job "a", and the next job runs on a new worker."""
    assert old.returncode == -signal.SIGKILL  # not left running its job
    assert not slot.alive()
    assert slot.run(job("b", "complete"), lambda text: None) == JobResult(status="completed", result='"done"')
    assert workers.current is not old and reports.restarts == restarts
    assert job_ids(old.all_received()) == ["a"]  # the old process never saw the next job


def test_a_failing_output_write_kills_the_worker_and_fails_only_its_job(
    make_slot: Callable[..., ParkingSlot], workers: FakeWorkers, reports: Reports
) -> None:
    # The output log refuses a write (a database outage, a log pruned or closed under the
    # execution) while the script goes on printing: the worker must not be left running it.
    slot = make_slot()
    printing = workers.current

    def on_output(text: str) -> None:
        raise RuntimeError("the database is unavailable")

    result = slot.run(job("a", "print-until-cancel"), on_output)
    assert result == JobResult(
        status="failed", error="console output could not be stored: RuntimeError: the database is unavailable"
    )
    assert reports.crashes == []  # the worker did not crash: the slot stopped it
    assert_replaced(slot, workers, reports, printing)


def test_an_output_write_failing_with_os_error_is_no_crash(
    make_slot: Callable[..., ParkingSlot], workers: FakeWorkers, reports: Reports
) -> None:
    # An OSError of the output log (a full disk) is not the worker's connection breaking.
    slot = make_slot()
    printing = workers.current

    def on_output(text: str) -> None:
        raise OSError(28, "No space left on device")

    result = slot.run(job("a", "print-until-cancel"), on_output)
    assert result == JobResult(
        status="failed",
        error="console output could not be stored: OSError: [Errno 28] No space left on device",
    )
    assert reports.crashes == []
    assert_replaced(slot, workers, reports, printing)


@pytest.mark.parametrize("stray", sorted(STRAYS) + sorted(FRAMES))
def test_a_message_out_of_step_or_off_the_protocol_kills_the_worker_and_fails_only_its_job(
    make_slot: Callable[..., ParkingSlot], workers: FakeWorkers, reports: Reports, stray: str
) -> None:
    slot = make_slot()
    confused = workers.current
    output: list[str] = []
    result = slot.run(job("a", stray), output.append)
    assert output == ["before\n"]  # what came before the stray message was relayed
    assert result.status == "failed" and result.js_error is None
    assert result.error is not None and result.error.startswith("worker sent ")
    assert "not mine" not in result.error and "xxxx" not in result.error  # the payload is not echoed
    assert reports.crashes == []
    assert_replaced(slot, workers, reports, confused)


def open_fds() -> dict[str, str]:
    """This process's descriptors and what each is (a memfd, a pipe, a socket, a file)."""
    found = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            found[name] = os.readlink(f"/proc/self/fd/{name}")
    return found


@pytest.mark.parametrize("bad", sorted(BAD_HEAPS))
def test_a_bad_heap_descriptor_kills_the_worker_fails_only_its_job_and_leaks_nothing(
    make_slot: Callable[..., ParkingSlot], workers: FakeWorkers, reports: Reports, bad: str
) -> None:
    slot = make_slot()
    assert slot.run(job("warm", "complete"), lambda text: None).status == "completed"
    before = open_fds()
    sender = workers.current
    result = slot.run(job("a", bad, heap_limit_mb=64), lambda text: None)
    assert (result.status, result.error, result.heap, result.envelope) == (
        "failed",
        BAD_HEAP_ERRORS[bad],
        None,
        None,
    )
    assert sender.wait(HANG) == -signal.SIGKILL and reports.crashes == []
    assert slot.run(job("b", "store-heap"), lambda text: None).envelope == ENVELOPE  # a new worker
    slot.kill()
    leaked = {fd: what for fd, what in open_fds().items() if fd not in before or before[fd] != what}
    assert not [what for what in leaked.values() if "memfd" in what or "pipe" in what], leaked


def test_a_job_without_the_descriptor_its_heap_needs_is_never_sent(
    make_slot: Callable[..., ParkingSlot], workers: FakeWorkers
) -> None:
    slot = make_slot()
    worker = workers.current
    assert slot.run(job("a", "complete", heap="0" * 64), lambda text: None) == JobResult(
        status="failed",
        error="the execution could not be sent to a worker: a 'run' message needs a heap descriptor",
    )
    fd = heap_memfd(b"a heap")
    try:  # nor one with a descriptor its spec does not name
        refused = slot.run(dataclasses.replace(job("b", "complete"), heap_fd=fd), lambda text: None)
    finally:
        os.close(fd)
    assert (
        refused.error
        == "the execution could not be sent to a worker: a 'run' message carries no heap descriptor"
    )
    assert slot.run(job("c", "complete"), lambda text: None).status == "completed"
    assert workers.current is worker and job_ids(worker.all_received()) == ["c"]


def test_a_heap_the_worker_sends_is_read_once_checked_and_keyed_by_the_server(
    make_slot: Callable[..., ParkingSlot], workers: FakeWorkers
) -> None:
    slot = make_slot()
    result = slot.run(job("a", "store-heap"), lambda text: None)
    assert (result.status, result.heap, result.heap_size) == ("completed", ENVELOPE_KEY, len(ENVELOPE))
    assert result.envelope == ENVELOPE


class GatedCaller:
    """A ToolCaller with one gated tool, ``gated.drop``, which it must never be asked to call."""

    def tools(self) -> dict[str, dict[str, ToolInfo]]:
        return {"gated": {"drop": ToolInfo(needs_approval=True)}}

    def call(self, *args: Any) -> dict[str, Any]:
        raise AssertionError("a held call was made")


def test_a_paused_job_is_answered_with_the_calls_the_server_held_not_the_workers_word(
    make_slot: Callable[..., ParkingSlot], workers: FakeWorkers
) -> None:
    slot = make_slot(tool_caller=GatedCaller())
    result = slot.run(dataclasses.replace(job("a", "pause-on-held"), tool_calls_made=2), lambda text: None)
    assert job_ids([workers.current.next_message()]) == ["a"]
    assert workers.current.next_message() == ToolReply("a", 4, '{"held": true}')
    assert (result.status, result.heap, result.envelope) == ("waiting", ENVELOPE_KEY, ENVELOPE)
    # The worker named the call with another tool and arguments: the server's record stands.
    assert result.pending_tool_calls == (PendingToolCall(4, "gated", "drop", '{"what": "all"}'),)
    assert result.tool_calls_made == 3  # two before the pause, and the held one
    assert slot.run(job("b", "complete"), lambda text: None).status == "completed"  # in step


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("pause-naming-other-calls", "the worker paused the script on tool calls this server did not hold"),
        ("pause-without-heap", "the worker paused the script without its heap"),
    ],
)
def test_a_pause_the_server_cannot_resume_fails_the_job(
    make_slot: Callable[..., ParkingSlot], code: str, error: str
) -> None:
    slot = make_slot(tool_caller=GatedCaller())
    result = slot.run(job("a", code), lambda text: None)
    assert (result.status, result.error, result.pending_tool_calls) == ("failed", error, ())


def test_a_frame_whose_length_prefix_is_huge_is_refused_before_its_body(
    make_slot: Callable[..., ParkingSlot], workers: FakeWorkers, reports: Reports
) -> None:
    slot = make_slot()
    result = slot.run(job("a", "huge-length-prefix"), lambda text: None)
    assert result.error is not None
    assert re.fullmatch(
        r"worker sent a frame of 4294967295 bytes, more than the \d+ any message may have", result.error
    )


def test_a_truncated_frame_kills_the_worker_once_its_bytes_stop_coming(
    make_slot: Callable[..., ParkingSlot], workers: FakeWorkers, reports: Reports
) -> None:
    # The worker stays alive and silent in the middle of a frame: without a bound on the
    # frame's arrival the slot would wait for the job's whole timeout (60 s here).
    slot = make_slot(frame_seconds=0.5)
    stalled = workers.current
    runner = Background(lambda: slot.run(job("a", "truncated"), lambda text: None))
    result = runner.result()  # within HANG (30 s): the frame's bound, not the job's timeout
    assert result == JobResult(
        status="failed", error="worker sent a truncated message (10 of 100 bytes in 0.5 s)"
    )
    assert reports.crashes == []
    assert_replaced(slot, workers, reports, stalled)


def test_a_frame_truncated_by_the_workers_end_is_a_crash(
    make_slot: Callable[..., ParkingSlot], workers: FakeWorkers, reports: Reports
) -> None:
    slot = make_slot()
    result = slot.run(job("a", "truncated-then-exit"), lambda text: None)
    assert result == JobResult(status="failed", error="worker crashed: exit code 3")
    assert reports.crashes == [("a", "exit code 3")]
    assert slot.run(job("b", "complete"), lambda text: None).status == "completed"
    assert len(workers.started) == 2


def test_a_worker_that_stops_taking_messages_is_killed(
    make_slot: Callable[..., ParkingSlot], workers: FakeWorkers, reports: Reports
) -> None:
    # A worker that reads nothing more would hold the dispatcher (and the slot's lock, which a
    # cancel needs) in the send of its next job forever.
    slot = make_slot(send_seconds=0.5)
    deaf = workers.current
    assert slot.run(job("a", "stop-reading"), lambda text: None).status == "completed"
    assert deaf.stopped_reading.wait(HANG)
    big = job("b", "x" * (16 << 20))  # far more than a socket's buffer holds
    runner = Background(lambda: slot.run(big, lambda text: None))
    try:
        assert runner.result() == JobResult(status="failed", error="the worker took no message for 0.5 s")
    finally:
        deaf.release.set()  # when broken: the fake closes its end, which ends the send
    assert reports.crashes == []
    assert_replaced(slot, workers, reports, deaf)


def test_a_base_exception_in_the_relay_kills_the_worker_and_propagates(
    make_slot: Callable[..., ParkingSlot], workers: FakeWorkers, reports: Reports
) -> None:
    slot = make_slot()
    printing = workers.current

    def on_output(text: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        slot.run(job("a", "print-until-cancel"), on_output)
    assert_replaced(slot, workers, reports, printing)


def test_an_unexpected_error_in_run_kills_the_worker(
    make_slot: Callable[..., ParkingSlot],
    workers: FakeWorkers,
    reports: Reports,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slot = make_slot()
    idle = workers.current

    def broken(point: str) -> None:  # a bug anywhere in run(): here, before the job is sent
        raise RuntimeError(f"broken at {point}")

    monkeypatch.setattr(slot, "_handoff", broken)
    result = slot.run(job("a", "complete"), lambda text: None)
    assert result == JobResult(
        status="failed", error="internal error relaying the worker: RuntimeError: broken at run:checked"
    )
    monkeypatch.undo()
    assert idle.returncode == -signal.SIGKILL and not slot.alive()
    assert slot.run(job("b", "complete"), lambda text: None).status == "completed"
    assert workers.current is not idle and reports.restarts == 1


@pytest.mark.parametrize(
    ("greeting", "said"),
    [
        (Output("a", "hello\n"), "said a 'output' message about 'a' instead of ready"),
        (packed(["hello", 1, {}]), "sent a message of unknown kind 'hello' instead of ready"),
        (frame(b"\x80\x05garbage"), "sent an unreadable message"),
    ],
)
def test_a_worker_that_does_not_say_ready_is_killed(
    tmp_path: Path, workers: FakeWorkers, reports: Reports, greeting: Message | bytes, said: str
) -> None:
    options = WorkerOptions()
    slot = WorkerSlot(0, tmp_path, options, spawn=workers, on_restart=reports.restarted)
    workers.greeting = greeting
    try:
        with pytest.raises(WorkerStartError, match=re.escape(said)):
            slot.start()
        assert workers.current.returncode == -signal.SIGKILL and not slot.alive()
        workers.greeting = Ready()
        assert slot.run(job("b", "complete"), lambda text: None).status == "completed"
    finally:
        slot.stop()


# -- the manager: queue and first terminal status ---------------------------------------


class Service:
    def __init__(
        self, tmp_path: Path, workers: FakeWorkers, queue_limit: int, processes: int = 1, **more: Any
    ) -> None:
        self.database = open_database(tmp_path)
        self.executions = SQLiteExecutionStore(self.database)
        self.output = SQLiteOutputLog(self.database, max_output_bytes=1 << 20)
        self.heaps = FileHeapStore(tmp_path, durable=False)
        self.catalogue = Catalogue(
            SQLiteHeapIndex(self.database),
            SQLiteHeapTags(self.database),
            LocalHeaps(self.heaps),
            HeapSigner([b"the key of this test service"], trust_unsigned=True),
        )
        self.manager = ExecutionManager(
            executions=self.executions,
            output=self.output,
            catalogue=self.catalogue,
            data_dir=tmp_path,
            workers=processes,
            queue_limit=queue_limit,
            spawn_worker=workers,
            **more,
        )
        self.manager.start()

    def submit(self, code: str, **fields: Any) -> str:
        return self.manager.submit(spec(code, **fields))

    def finished(self, execution_id: str) -> Any:
        self.manager.wait(execution_id, HANG)
        record = self.executions.get(execution_id)
        assert record is not None and record.status != "running", "never finished"
        return record

    def close(self) -> None:
        self.manager.close()
        self.output.close()
        self.executions.close()
        self.database.close()


@pytest.fixture
def make_service(tmp_path: Path, workers: FakeWorkers) -> Iterator[Callable[..., Service]]:
    services: list[Service] = []

    def make(queue_limit: int = 4, workers_: int = 1, **more: Any) -> Service:
        service = Service(tmp_path, workers, queue_limit, workers_, **more)
        services.append(service)
        return service

    yield make
    for service in services:
        service.close()


def test_a_paused_execution_waits_without_its_worker_and_runs_on_once_resumed(
    make_service: Callable[..., Service], workers: FakeWorkers
) -> None:
    service = make_service(tool_caller=GatedCaller())
    paused = service.submit("pause-on-held")
    record = service.finished(paused)  # the long-poll returns a waiting execution
    assert (record.status, record.waiting_heap, record.tool_calls_made) == ("waiting", ENVELOPE_KEY, 1)
    assert record.pending_tool_calls == (PendingToolCall(4, "gated", "drop", '{"what": "all"}'),)
    assert record.resume_spec is not None and record.resume_spec["code"] == ""
    assert service.catalogue.in_use(ENVELOPE_KEY)  # published, and kept while it waits
    assert service.finished(service.submit("complete")).status == "completed"  # the one worker is free
    # Its resume, the same execution, runs on the same worker with the rest of its calls.
    assert service.executions.resume(paused, owner=None) is not None  # what a decision does first
    service.manager.resume(paused, spec("complete", heap=ENVELOPE_KEY), 1)
    done = service.finished(paused)
    assert (done.status, done.result) == ("completed", '"done"')
    assert not service.catalogue.in_use(ENVELOPE_KEY)
    # A waiting execution is cancelled; one whose deadline passed fails.
    cancelled = service.submit("pause-on-held")
    assert service.finished(cancelled).status == "waiting"
    assert service.manager.cancel(cancelled) is CancelOutcome.ACCEPTED
    assert service.finished(cancelled).status == "cancelled"
    assert service.manager.cancel(cancelled) is CancelOutcome.ALREADY_FINISHED


def test_a_resume_cancelled_before_it_was_queued_never_reaches_a_worker(
    make_service: Callable[..., Service], workers: FakeWorkers
) -> None:
    service = make_service(tool_caller=GatedCaller())
    paused = service.submit("pause-on-held")
    assert service.finished(paused).status == "waiting"
    assert service.executions.resume(paused, owner=None) is not None  # decided: its calls being made
    assert service.manager.cancel(paused) is CancelOutcome.ACCEPTED  # cancelled meanwhile
    service.manager.resume(paused, spec("complete", heap=ENVELOPE_KEY), 1)
    after = service.submit("complete")
    assert service.finished(after).status == "completed"
    assert job_ids([m for m in workers.current.all_received() if isinstance(m, Job)]) == [paused, after]
    assert service.finished(paused).status == "cancelled"


class BlockingGatedCaller(GatedCaller):
    """``gated.drop``, gated; once approved, its call blocks until it is abandoned."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.abandoned = threading.Event()

    def call(
        self, server: str, tool: str, arguments: str, deadline: float, abandoned: threading.Event
    ) -> Any:
        self.started.set()
        if abandoned.wait(HANG):
            self.abandoned.set()
        return {"content": []}


def test_a_cancel_abandons_the_approved_calls_being_made_and_nothing_resumes(
    make_service: Callable[..., Service], workers: FakeWorkers
) -> None:
    caller = BlockingGatedCaller()
    service = make_service(tool_caller=caller)
    approvals = Approvals(service.executions, service.manager, caller)
    paused = service.submit("pause-on-held")
    assert service.finished(paused).status == "waiting"
    assert approvals.decide(paused, [Decision(4, approved=True)]).status == "running"
    assert caller.started.wait(HANG), "the approved call was never made"
    assert service.manager.cancel(paused) is CancelOutcome.ACCEPTED
    assert caller.abandoned.wait(HANG), "the approved call outlived the cancel"
    assert service.finished(paused).status == "cancelled"
    deadline = time.monotonic() + HANG
    while service.manager.waiters.is_live(paused) and time.monotonic() < deadline:
        time.sleep(0.01)  # the decision's thread lets it go
    assert not service.manager.waiters.is_live(paused)
    after = service.submit("complete")
    assert service.finished(after).status == "completed"
    assert job_ids([m for m in workers.current.all_received() if isinstance(m, Job)]) == [paused, after]


def test_an_undecided_wait_fails_at_its_deadline_once(
    make_service: Callable[..., Service], workers: FakeWorkers
) -> None:
    service = make_service(tool_caller=GatedCaller(), approval_timeout_secs=0.0)
    paused = service.submit("pause-on-held")
    assert service.finished(paused).status == "waiting"
    assert service.manager.expire_waiting() == [paused]
    assert service.manager.expire_waiting() == []
    record = service.finished(paused)
    assert record.status == "failed" and "no decision on its held tool calls within 0 s" in (
        record.error or ""
    )


def test_cancel_while_queued_never_reaches_a_worker(
    make_service: Callable[..., Service], workers: FakeWorkers
) -> None:
    service = make_service()
    busy = service.submit("until-cancel")
    assert job_ids([workers.current.next_message()]) == [busy]  # the only worker is taken
    queued = service.submit("complete")
    assert service.manager.stats()["queued"] == 1
    assert service.manager.cancel(queued) is CancelOutcome.ACCEPTED
    assert service.finished(queued).status == "cancelled"
    assert service.manager.stats()["queued"] == 0
    assert service.manager.cancel(busy) is CancelOutcome.ACCEPTED
    after = service.submit("complete")
    assert service.finished(after).result == '"done"'
    assert service.finished(busy).status == "cancelled"
    assert job_ids(workers.current.all_received()) == [after]  # never the cancelled one
    assert service.manager.cancel(after) is CancelOutcome.ALREADY_FINISHED
    assert service.manager.cancel("no-such-execution") is CancelOutcome.UNKNOWN


class CountingGets:
    """Counts the execution store's ``get`` calls (the instance the manager holds)."""

    def __init__(self, service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        real = service.executions.get

        def get(execution_id: str) -> Any:
            self.calls.append(execution_id)
            return real(execution_id)

        monkeypatch.setattr(service.executions, "get", get)


def test_a_long_poll_is_handed_the_terminal_record_without_reading_it(
    make_service: Callable[..., Service], workers: FakeWorkers, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = make_service()
    eid = service.submit("until-cancel")
    assert job_ids([workers.current.next_message()]) == [eid]
    gets = CountingGets(service, monkeypatch)
    registered: queue.Queue[str] = queue.Queue()
    monkeypatch.setattr(service.manager.waiters, "_waiting", registered.put)
    answers: list[Any] = []
    waiters = [
        threading.Thread(target=lambda: answers.append(service.manager.wait(eid, HANG))) for _ in range(2)
    ]
    for waiter in waiters:
        waiter.start()
    assert [registered.get(timeout=HANG) for _ in waiters] == [eid, eid]  # both wait on the live id
    assert service.manager.cancel(eid) is CancelOutcome.ACCEPTED  # a live id: no read either
    for waiter in waiters:
        waiter.join(HANG)
    assert gets.calls == []
    stored = service.executions.get(eid)
    assert stored is not None and stored.status == "cancelled"
    assert answers == [stored, stored]
    assert service.manager.waiters.waiting() == 0  # the last waiter leaves nothing behind


def test_a_long_poll_reads_what_is_not_running_here_and_times_out_on_what_is(
    make_service: Callable[..., Service], workers: FakeWorkers, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = make_service()
    done = service.submit("complete")
    finished = service.finished(done)
    busy = service.submit("until-cancel")
    assert job_ids([workers.current.next_message(), workers.current.next_message()]) == [done, busy]
    gets = CountingGets(service, monkeypatch)
    assert service.manager.wait(done, HANG) == finished  # terminal: read once, no wait
    assert service.manager.wait("no-such-execution", HANG) is None  # unknown: the caller answers 404
    assert gets.calls == [done, "no-such-execution"]
    assert service.manager.wait(busy, 0.01) is None  # still running: the caller reads it
    assert gets.calls == [done, "no-such-execution"]
    assert service.manager.cancel(busy) is CancelOutcome.ACCEPTED


def test_the_snapshot_flag_reaches_the_worker(
    make_service: Callable[..., Service], workers: FakeWorkers
) -> None:
    service = make_service()
    sent: dict[str, bool] = {}
    for flag in (False, True):
        eid = service.submit("complete", snapshot=flag)
        assert service.finished(eid).status == "completed"
        sent[eid] = flag
    default = service.submit("complete")  # a spec takes a snapshot unless told not to
    assert service.finished(default).status == "completed"
    sent[default] = True
    jobs = [m for m in workers.current.all_received() if isinstance(m, Job)]
    assert {j.execution_id: j.spec.snapshot for j in jobs} == sent


def put_heap(service: Service, blob: bytes = b"a heap") -> str:
    """A heap as a worker leaves it, made known to the catalogue as the manager does."""
    key = hashlib.sha256(blob).hexdigest()
    service.catalogue.add(key, blob, session=None, tags=None)
    return key


def test_a_heap_is_in_use_while_an_execution_resuming_it_is_queued_or_running(
    make_service: Callable[..., Service], workers: FakeWorkers
) -> None:
    service = make_service()
    manager, catalogue = service.manager, service.catalogue
    key = put_heap(service)
    assert not catalogue.in_use(key)
    with pytest.raises(HeapNotFound):
        service.submit("complete", heap="0" * 64)  # refused before it is counted
    assert catalogue.in_use_all() == set()
    running = service.submit("until-cancel", heap=key)
    assert job_ids([workers.current.next_message()]) == [running]
    queued = [service.submit("complete", heap=key) for _ in range(2)]
    assert catalogue.in_use(key) and catalogue.in_use_all() == {key}
    with pytest.raises(HeapInUse):
        catalogue.delete(key)
    assert manager.cancel(queued[0]) is CancelOutcome.ACCEPTED  # one of three: still in use
    assert catalogue.in_use(key)
    assert manager.cancel(running) is CancelOutcome.ACCEPTED
    assert service.finished(queued[1]).status == "completed"  # the last one finished
    assert not catalogue.in_use(key)
    assert catalogue.delete(key) is True
    assert not service.heaps.exists(key)
    assert catalogue.delete(key) is False  # gone already
    with pytest.raises(HeapNotFound):
        service.submit("complete", heap=key)


def test_a_failed_submit_does_not_keep_its_heap_in_use(
    make_service: Callable[..., Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    service = make_service()
    key = put_heap(service)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(service.executions, "create", broken)
    with pytest.raises(OSError, match="disk full"):
        service.submit("complete", heap=key)
    assert not service.catalogue.in_use(key)
    assert service.catalogue.delete(key) is True


def test_deleting_a_heap_races_submits_that_resume_it(
    make_service: Callable[..., Service], workers: FakeWorkers
) -> None:
    """Submits of executions resuming a heap race its deletion: each submit is either refused
    (the heap is gone) or accepted with the heap kept until its execution has run, which the
    fake worker checks (``heap-present``) when the job reaches it."""
    service = make_service(queue_limit=64)
    key = put_heap(service)
    deleted = threading.Event()
    accepted: list[str] = []
    refused: list[int] = []
    lock = threading.Lock()
    attempts_made = threading.Condition()
    made = [0]  # the deleter's finished attempts, under ``attempts_made``

    def deleter_ran_while_both_idle() -> None:
        # Runs in one submitter while both wait at the barrier, out of use: a whole attempt
        # that starts now finds no user, so the race ends however the machine schedules it.
        with attempts_made:
            seen = made[0]
            assert attempts_made.wait_for(lambda: made[0] >= seen + 2 or deleted.is_set(), HANG)

    gap = threading.Barrier(2, action=deleter_ran_while_both_idle)

    def submitter() -> None:
        for round in range(10**6):
            try:
                eid = service.submit("heap-present", heap=key)
            except HeapNotFound:
                with lock:
                    refused.append(1)
                gap.abort()  # the other submitter must not wait for this one at the gap
                return
            with lock:
                accepted.append(eid)
            service.finished(eid)  # none of this thread's in use between two submits
            if round < 100:
                time.sleep(0.001)  # free rounds: the deleter races submits wherever it lands
                continue
            # Broken when the other submitter was refused: the heap is gone already.
            with contextlib.suppress(threading.BrokenBarrierError):
                gap.wait(HANG)
        raise AssertionError("the heap was never deleted")

    def deleter() -> int:
        attempts = 0
        while True:
            attempts += 1
            try:
                if service.catalogue.delete(key):
                    deleted.set()
                    return attempts
            except HeapInUse:
                pass
            finally:
                with attempts_made:
                    made[0] += 1
                    attempts_made.notify_all()
            time.sleep(0)  # lets the other threads have the GIL without waiting out its interval

    threads = [Background(submitter) for _ in range(2)]
    attempts = Background(deleter)
    for t in threads:
        t.result()
    assert attempts.result() >= 1 and deleted.is_set()
    results = [service.finished(eid).result for eid in accepted]
    assert results == ["true"] * len(accepted)  # every accepted execution found its heap
    assert len(refused) == 2  # each submitter ended on a refusal
    assert service.catalogue.in_use_all() == set()
    assert not service.heaps.exists(key)


def test_close_returns_once_the_running_execution_is_recorded(
    make_service: Callable[..., Service], workers: FakeWorkers
) -> None:
    """The stores close right after the manager: close waits for the dispatcher to write how
    the execution it was running ended, so nothing is written to a closed database."""
    service = make_service()
    busy = service.submit("until-cancel")
    assert job_ids([workers.current.next_message()]) == [busy]
    queued = service.submit("complete")
    service.manager.close()
    records = {eid: service.executions.get(eid) for eid in (busy, queued)}
    assert {eid: r.status for eid, r in records.items() if r is not None} == {
        busy: "failed",
        queued: "failed",
    }


def test_full_queue_is_refused(make_service: Callable[..., Service], workers: FakeWorkers) -> None:
    service = make_service(queue_limit=1)
    busy = service.submit("until-cancel")
    assert job_ids([workers.current.next_message()]) == [busy]
    queued = service.submit("complete")
    with pytest.raises(QueueFull):
        service.submit("complete")
    with pytest.raises(HeapNotFound):  # an unknown heap is the client's mistake, full queue or not
        service.submit("complete", heap="0" * 64)
    assert service.manager.stats()["queued"] == 1
    assert service.manager.cancel(queued) is CancelOutcome.ACCEPTED
    again = service.submit("complete")  # its place is free again
    assert service.manager.cancel(busy) is CancelOutcome.ACCEPTED
    assert service.finished(again).status == "completed"


def test_first_terminal_status_wins_against_a_late_worker_result(
    make_service: Callable[..., Service], workers: FakeWorkers
) -> None:
    service = make_service()
    late = service.submit("finish-on-cancel")
    assert job_ids([workers.current.next_message()]) == [late]
    assert service.manager.cancel(late) is CancelOutcome.ACCEPTED
    # The worker answers the cancel with a completed result. The next execution on the
    # only worker finishing means that answer has been handled.
    assert service.finished(service.submit("complete")).status == "completed"
    record = service.finished(late)
    assert (record.status, record.error, record.result, record.heap) == (
        "cancelled",
        SLOT_CANCELLED,
        None,
        None,
    )
    assert workers.current.all_received()[0] == Cancel(late)


def test_worker_crash_fails_its_execution_and_is_counted(
    make_service: Callable[..., Service], workers: FakeWorkers
) -> None:
    service = make_service()
    crashed = service.submit("crash")
    record = service.finished(crashed)
    assert (record.status, record.error) == (
        "failed",
        "worker crashed: killed by signal SIGKILL (Fatal javascript OOM in a fake worker)",
    )
    assert service.finished(service.submit("complete")).status == "completed"
    stats = service.manager.stats()
    assert (
        stats["worker_crashes"],
        stats["worker_restarts"],
        stats["last_worker_crash"]["execution_id"],
    ) == (
        1,
        1,
        crashed,
    )


def _ended(service: Service) -> dict[tuple[str, str], float]:
    text = service.manager.metrics.exposition().decode()
    return {
        (s.labels["status"], s.labels["mode"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "mcp_v8_executions_ended_total"
    }


def test_each_execution_started_here_is_counted_ended_once_whoever_writes_its_end(
    make_service: Callable[..., Service], workers: FakeWorkers
) -> None:
    service = make_service()
    metrics = service.manager.metrics
    late = service.submit("finish-on-cancel")
    assert job_ids([workers.current.next_message()]) == [late]
    queued = service.submit("complete", snapshot=False)
    assert (service.manager.stats()["workers_busy"], service.manager.stats()["queued"]) == (1, 1)
    assert "mcp_v8_queued 1.0" in metrics.exposition().decode()
    # A cancel of the queued one and of the running one: each end is written by the cancel,
    # and the running one's worker then answers "completed", which loses (first writer wins).
    assert service.manager.cancel(queued) is CancelOutcome.ACCEPTED
    assert service.manager.cancel(late) is CancelOutcome.ACCEPTED
    # The next execution on the only worker finishing means the late answer has been handled.
    assert service.finished(service.submit("complete")).status == "completed"
    assert service.finished(late).status == "cancelled"
    assert _ended(service) == {
        ("cancelled", "snapshot"): 1,
        ("cancelled", "no_snapshot"): 1,
        ("completed", "snapshot"): 1,
    }
    assert metrics.total(metrics.executions_started) == 3
    # An execution another process runs (its record only is here): this cancel writes its end,
    # which that process counts when it reads it; counted here, it would be counted twice.
    elsewhere = "run-by-another-process"
    service.output.create(elsewhere)
    service.executions.create(elsewhere, session=None, tags=None, heap_in=None, code_bytes=1, owner="other")
    assert service.manager.cancel(elsewhere) is CancelOutcome.ACCEPTED
    assert service.finished(elsewhere).status == "cancelled"
    assert sum(_ended(service).values()) == 3
    assert "mcp_v8_queued 0.0" in metrics.exposition().decode()
    assert "mcp_v8_workers_busy 0.0" in metrics.exposition().decode()


# -- the worker's side of the heap store -----------------------------------------------


class StubEngine:
    """Stands in for the engine in the worker's job runner."""

    def __init__(self, snapshot: bytes | None = None, refuse: str | None = None) -> None:
        self.snapshot = snapshot
        self.refuse = refuse
        self.restored: list[bytes | None] = []
        self.asked_snapshot: list[bool] = []

    def execute(self, code: str, *, heap: bytes | None, snapshot: bool, **kwargs: Any) -> Any:
        self.restored.append(heap)
        self.asked_snapshot.append(snapshot)
        if self.refuse is not None:
            raise SnapshotError(self.refuse)
        key = hashlib.sha256(self.snapshot).hexdigest() if self.snapshot is not None else None
        return SimpleNamespace(
            status="completed",
            result="1",
            error=None,
            error_name=None,
            error_message=None,
            error_line=None,
            error_column=None,
            snapshot=self.snapshot,
            heap_key=key,
            duration_ms=1.5,
        )


def run_in_worker(engine: StubEngine, job: Job) -> tuple[JobResult, bytes | None]:
    output = SimpleNamespace(write=lambda level, text: None)
    return _run(engine, job, None, output)  # type: ignore[arg-type]


def with_heap(request: Job, data: bytes) -> Job:
    """``request`` with the descriptor of ``data``, as the server sends a heap to restore."""
    return dataclasses.replace(request, heap_fd=heap_memfd(data))


def test_worker_restores_the_heap_it_is_given_and_returns_the_new_one(tmp_path: Path) -> None:
    before = b"envelope before"
    after = b"envelope after, longer"
    engine = StubEngine(snapshot=after)
    request = job("a", "x", heap=hashlib.sha256(before).hexdigest(), session="s", tags={"k": "v"})
    result, envelope = run_in_worker(engine, with_heap(request, before))
    key = hashlib.sha256(after).hexdigest()
    assert result == JobResult(
        status="completed", result="1", heap=key, heap_size=len(after), duration_ms=1.5
    )
    assert envelope == after  # sent back with ``done`` as a descriptor; the worker stores nothing
    assert engine.restored == [before] and engine.asked_snapshot == [True]
    assert os.listdir(tmp_path) == []


def test_worker_without_snapshot_restores_the_heap_and_returns_none() -> None:
    before = b"envelope before"
    # Even an engine that hands back a snapshot gets none sent for a job that asked for none.
    engine = StubEngine(snapshot=b"not asked for")
    request = job("a", "x", heap=hashlib.sha256(before).hexdigest(), snapshot=False)
    result, envelope = run_in_worker(engine, with_heap(request, before))
    assert result == JobResult(status="completed", result="1", duration_ms=1.5) and envelope is None
    assert (engine.restored, engine.asked_snapshot) == ([before], [False])


def test_worker_fails_a_job_whose_heap_the_engine_refuses() -> None:
    stored = b"corrupt envelope"
    refusing = StubEngine(refuse="heap snapshot is corrupt")
    request = job("b", "x", heap=hashlib.sha256(stored).hexdigest())
    assert run_in_worker(refusing, with_heap(request, stored)) == (
        JobResult(status="failed", error="cannot restore heap: heap snapshot is corrupt"),
        None,
    )


# -- the channel: what cannot be sent, what is never used --------------------------------


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"code": "lone \ud800 surrogate"}, "surrogate"),  # text UTF-8 cannot carry
        ({"tags": {f"k{i}": "v" for i in range(65)}}, "spec.tags has 65 entries, more than its limit of 64"),
        ({"session": "s" * 1025}, "spec.session is 1025 bytes, more than its limit of 1024"),
        ({"heap": "not a key"}, "spec.heap"),
    ],
)
def test_a_job_that_cannot_be_sent_fails_and_the_worker_stays(
    make_slot: Callable[..., ParkingSlot],
    workers: FakeWorkers,
    reports: Reports,
    fields: dict[str, Any],
    why: str,
) -> None:
    slot = make_slot()
    idle = workers.current
    bad = Job("a", dataclasses.replace(spec("complete"), **fields))
    result = slot.run(bad, lambda text: None)
    assert result.status == "failed" and result.error is not None
    assert result.error.startswith(
        "the execution could not be sent to a worker: a 'run' message cannot be sent"
    )
    assert why in result.error
    assert slot.alive() and idle.returncode is None  # nothing was sent: the worker is in step
    assert slot.run(job("b", "complete"), lambda text: None).status == "completed"
    assert workers.current is idle and reports.restarts == 0
    assert job_ids(idle.all_received()) == ["b"]


def test_a_cancel_for_a_job_that_could_not_be_sent_is_forgotten(
    make_slot: Callable[..., ParkingSlot], workers: FakeWorkers
) -> None:
    slot = make_slot()
    slot.cancel("a")
    assert slot.run(job("a", "lone \ud800"), lambda text: None).status == "failed"
    assert slot.run(job("b", "complete"), lambda text: None).status == "completed"  # not cancelled


CHANNEL_MODULES = ("protocol", "pool", "worker", "spec", "wire")


@pytest.mark.parametrize("name", CHANNEL_MODULES)
def test_no_channel_module_imports_pickle(name: str) -> None:
    import mcp_v8.executions

    source = Path(mcp_v8.executions.__file__).with_name(f"{name}.py").read_text(encoding="utf-8")
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            imported.add("__import__")
    assert not imported & {
        "pickle",
        "_pickle",
        "cPickle",
        "marshal",
        "shelve",
        "dill",
        "cloudpickle",
        "__import__",
    }


def test_every_message_kind_goes_through_the_channel_unchanged() -> None:
    from mcp_v8.executions.protocol import (
        KINDS,
        Close,
        Closed,
        Ended,
        Open,
        Opened,
        SessionHeap,
        Snapshot,
        Step,
        decode,
        encode,
    )

    thrown = JsError("RangeError", "too far", "RangeError: too far\n    at f (<input>:2:8)", 2, 8)
    messages: list[tuple[Message, str]] = [
        (job("e", "let ü = '🎉'; ü", session="s", tags={"k": "v"}, heap="a" * 64, snapshot=False), "server"),
        (Cancel("e"), "server"),
        (Stop(), "server"),
        (Ready(), "worker"),
        (Output("e", "line ü\n"), "worker"),
        (FetchCall("e", 7, '[{"url": "http://h/ü"}]', b"\x00body"), "worker"),
        (FetchCall("e", (1 << 64) - 1, "[]", None), "worker"),
        (FetchReply("e", 7, True, '{"status": 200}', b"\xffbytes"), "server"),
        (FetchReply("e", 8, False, '{"name": "TypeError", "message": "no"}', None), "server"),
        (ToolCall("e", 7, "calc", "odd-name ü", '{"a": [1, 2]}'), "worker"),
        (ToolCall("e", (1 << 64) - 1, "s" * 256, "t", "{}"), "worker"),
        (ToolReply("e", 7, '{"value": {"sum": 3}}'), "server"),
        (ToolReply("e", 8, '{"error": {"name": "ToolError", "message": "no", "content": []}}'), "server"),
        (ToolReply("e", 9, '{"held": true}'), "server"),
        (
            Done(
                "e", JobResult(status="completed", result='"x"', heap="b" * 64, heap_size=9, duration_ms=2.5)
            ),
            "worker",
        ),
        (
            Done("e", JobResult(status="failed", error=thrown.stack, js_error=thrown, duration_ms=1.0)),
            "worker",
        ),
        (
            Done(
                "e",
                JobResult(
                    status="waiting",
                    heap="b" * 64,
                    heap_size=9,
                    pending_tool_calls=(
                        PendingToolCall(3, "gh", "delete ü", '{"repo": "x"}'),
                        PendingToolCall(9, "s", "t", "{}"),
                    ),
                ),
            ),
            "worker",
        ),
        (
            Spans(
                "e",
                (
                    WorkerSpan("execute", 1, 2, {"bytes": "9 ü"}),
                    WorkerSpan("run", 1, 2, parent=0),
                    WorkerSpan("heap_write", 2, 2),
                ),
            ),
            "worker",
        ),
        (Spans("e", ()), "worker"),
        (Open("sess ü", "c" * 64, 64), "server"),
        (Open("s", None, 1), "server"),
        (Step("e", "sess ü", spec("n += 1", session="sess ü", snapshot=True)), "server"),
        (Snapshot("s"), "server"),
        (Close("s", True), "server"),
        (Opened("s", None), "worker"),
        (Opened("s", "cannot restore heap: ü"), "worker"),
        (SessionHeap("s", "d" * 64, 12, None), "worker"),
        (SessionHeap("s", None, None, "cannot snapshot the session"), "worker"),
        (Closed("s", None, None, None), "worker"),
        (Ended("s", "HeapLimitError: heap limit exceeded"), "worker"),
    ]
    assert {m.KIND for m, _ in messages} == set(KINDS)
    for message, sender in messages:
        data = encode(message)
        assert decode(data[4:], sender) == message
        with pytest.raises(ProtocolError, match="unknown kind"):  # each side sends its own kinds only
            decode(data[4:], "worker" if sender == "server" else "server")


def test_the_specs_wire_form_is_versioned_and_strict() -> None:
    from mcp_v8.executions.spec import SchemaError, spec_from_wire, spec_to_wire

    full = dataclasses.replace(
        spec(
            "1",
            session="s",
            tags={"k": "v"},
            heap="c" * 64,
            snapshot=False,
            filename="job.ts",
            language="typescript",
        ),
        fetch=FetchPolicy(("http://127.0.0.1:8080",), 5, 2),
        tools=ToolLimits(max_calls=3, call_timeout=2.5, max_result_bytes=1000),
        tenant="acme",
    )
    full = dataclasses.replace(full, limits=dataclasses.replace(full.limits, wall_timeout_secs=90.0))
    wire = spec_to_wire(full)
    assert (
        wire["version"] == 3 and spec_from_wire(json.loads(json.dumps(wire))) == full
    )  # as the queue holds it
    # A version 2 spec (a release before tenants) is the default tenant's.
    v2 = {k: v for k, v in wire.items() if k != "tenant"}
    assert spec_from_wire({**v2, "version": 2}) == dataclasses.replace(full, tenant="default")
    # A version 1 spec (a release before the tool limits, in the shared queue) is read with the
    # default tool limits.
    old = {k: v for k, v in v2.items() if k != "tools"}
    old["limits"] = {k: v for k, v in wire["limits"].items() if k != "wall_timeout_secs"}
    assert spec_from_wire({**old, "version": 1}) == dataclasses.replace(
        full,
        tools=ToolLimits(),
        limits=dataclasses.replace(full.limits, wall_timeout_secs=None),
        tenant="default",
    )
    for broken, said in [
        ({**wire, "version": 4}, "spec.version 4 is not one this release reads"),
        ({**old, "version": 2}, "spec has missing field(s) tools"),
        ({**wire, "version": 2}, "spec has unknown field(s) tenant"),
        (v2, "spec has missing field(s) tenant"),
        ({**wire, "tenant": "Not A Tenant"}, "spec.tenant does not match"),
        ({**wire, "limits": old["limits"]}, "spec.limits has missing field(s) wall_timeout_secs"),
        ({**v2, "version": 1}, "spec has unknown field(s) tools"),
        (
            {**wire, "tools": {**wire["tools"], "max_calls": -1}},
            "spec.tools.max_calls must be between 0 and",
        ),
        ({**wire, "priority": 7}, "spec has unknown field(s) priority"),
        ({k: v for k, v in wire.items() if k != "code"}, "spec has missing field(s) code"),
        (
            {**wire, "limits": {**wire["limits"], "timeout_secs": "60"}},
            "spec.limits.timeout_secs must be a number",
        ),
        ({**wire, "snapshot": 1}, "spec.snapshot must be true or false"),
        ("a spec", "spec must be a map, not str"),
    ]:
        with pytest.raises(SchemaError, match=re.escape(said)):
            spec_from_wire(broken)


def test_a_bad_worker_fails_only_its_execution(
    make_service: Callable[..., Service], workers: FakeWorkers
) -> None:
    service = make_service(workers_=2)
    busy = service.submit("until-cancel")

    def holder() -> FakeWorker | None:
        for worker in workers.started:
            if busy in job_ids(list(worker.received.queue)):
                return worker
        return None

    deadline = time.monotonic() + HANG
    while holder() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    holding = holder()
    assert holding is not None
    broken = service.submit("garbage")  # on the other worker: this one is busy
    record = service.finished(broken)
    assert record.status == "failed" and record.error.startswith("worker sent an unreadable message")
    assert service.finished(service.submit("complete")).status == "completed"  # on a new worker
    assert len(workers.started) == 3 and holding.returncode is None  # the busy one ran on
    assert service.manager.cancel(busy) is CancelOutcome.ACCEPTED
    assert service.finished(busy).status == "cancelled"


def test_the_scripts_error_reaches_the_record_and_a_crash_has_none(
    make_service: Callable[..., Service], workers: FakeWorkers
) -> None:
    service = make_service()
    thrown = service.finished(service.submit("throw"))
    assert (thrown.status, thrown.error) == ("failed", "TypeError: bad\n    at <input>:1:1")
    assert thrown.js_error == JsError("TypeError", "bad", "TypeError: bad\n    at <input>:1:1", 1, 1)
    crashed = service.finished(service.submit("crash"))
    assert crashed.error.startswith("worker crashed") and crashed.js_error is None


def test_a_heap_is_indexed_with_the_specs_session_and_tags(
    make_service: Callable[..., Service], workers: FakeWorkers
) -> None:
    service = make_service()
    record = service.finished(service.submit("store-heap", session="s", tags={"k": "v"}))
    assert record.heap is not None
    meta = service.catalogue.meta(record.heap)
    assert meta is not None and (meta.session, meta.tags) == ("s", {"k": "v"})
    on_disk = service.heaps.meta(record.heap)  # the worker wrote no session or tags of its own
    assert on_disk is not None and (on_disk.session, on_disk.tags) == (None, None)
