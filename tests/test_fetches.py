"""The fetches the server makes for its workers (executions/fetches.py), without V8.

:class:`Fetches` is driven against a fake run whose requests block until the test releases
them or the execution ends, and parked at its hand-off points, so each interleaving of a reply
with the end of its execution is forced, not hoped for. Then a slot relays the ``fetch`` calls
of a fake worker (a thread speaking the protocol) to real requests, made with the engine's fetch
code against an HTTP server on loopback started by the test. Every wait has a generous bound
that only turns a hang into a failure.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import queue
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO, Callable

import pytest

from mcp_v8.executions.fetches import Fetches, FetchGate
from mcp_v8.executions.pool import WorkerOptions, WorkerSlot
from mcp_v8.executions.protocol import (
    Cancel,
    Done,
    FetchCall,
    FetchReply,
    Job,
    JobResult,
    Ready,
    Stop,
    Undeliverable,
)
from mcp_v8.executions.spec import ExecutionSpec, FetchPolicy, Limits
from mcp_v8.logs import configure, execution_context

from .interleavings import ObservedLock, Parking, ThreadWorker

HANG = 30.0  # seconds; only ever reached when the code under test is broken
POLICY = FetchPolicy(("http://127.0.0.1:1",), 1000, 50)


def refusal(message: str) -> str:
    return json.dumps({"name": "TypeError", "message": message})


class FakeRun:
    """A fetch run whose requests wait until ``release(args)`` or ``end()``; it counts what it
    admits as the engine's run does."""

    def __init__(self, max_requests: int = 50) -> None:
        self.max_requests = max_requests
        self._lock = threading.Lock()
        self.admitted = 0
        self.in_flight = 0
        self.peak = 0
        self.started: queue.Queue[str] = queue.Queue()
        self.performed: list[str] = []
        self.checked: list[str] = []
        self.ended = threading.Event()
        self._go: dict[str, threading.Event] = {}

    def _gate(self, args: str) -> threading.Event:
        with self._lock:
            return self._go.setdefault(args, threading.Event())

    def release(self, args: str) -> None:
        self._gate(args).set()

    def admit(self) -> str | None:
        with self._lock:
            self.admitted += 1
            if self.admitted > self.max_requests:
                return refusal(f"fetch refused: more than {self.max_requests} requests")
            return None

    def check(self, args_json: str, body: bytes | None = None) -> Any:
        """The request (here a list holding its args), or the refusal (text) of one whose args say
        ``refused``."""
        self.checked.append(args_json)
        if "refused" in args_json:
            return refusal(f"fetch refused: {args_json}")
        return [args_json]

    def send(self, request: Any) -> tuple[bool, str, bytes]:
        (args_json,) = request
        with self._lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            self.performed.append(args_json)
        self.started.put(args_json)
        gate = self._gate(args_json)
        while not (gate.is_set() or self.ended.is_set()):
            gate.wait(0.005)
        with self._lock:
            self.in_flight -= 1
        if self.ended.is_set():
            return False, refusal("fetch failed: the execution ended"), b""
        return True, json.dumps({"status": 200, "url": args_json}), b"body of " + args_json.encode()

    def end(self) -> None:
        self.ended.set()

    def next_started(self) -> str:
        return self.started.get(timeout=HANG)


class ParkingFetches(Parking, Fetches):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = ObservedLock()  # type: ignore[assignment]

    @property
    def waited(self) -> threading.Event:
        return self._lock.waited  # type: ignore[attr-defined,no-any-return]


class Sent:
    """The replies a Fetches sends (its ``send``)."""

    def __init__(self) -> None:
        self.replies: queue.Queue[FetchReply] = queue.Queue()

    def __call__(self, reply: FetchReply) -> None:
        self.replies.put(reply)

    def next(self) -> FetchReply:
        return self.replies.get(timeout=HANG)

    def all(self) -> list[FetchReply]:
        out = []
        while not self.replies.empty():
            out.append(self.replies.get_nowait())
        return out


class Background:
    def __init__(self, fn: Callable[[], Any]) -> None:
        self.done = threading.Event()
        self.value: Any = None

        def main() -> None:
            try:
                self.value = fn()
            finally:
                self.done.set()

        threading.Thread(target=main, daemon=True).start()

    def result(self) -> Any:
        assert self.done.wait(HANG), "the call never returned"
        return self.value


def call(call_id: int, args: str | None = None, body: bytes | None = None) -> FetchCall:
    return FetchCall("e", call_id, args or f"call {call_id}", body)


def make(run: FakeRun, sent: Sent, *, gate: FetchGate | None = None, **kwargs: Any) -> ParkingFetches:
    return ParkingFetches("e", POLICY, sent, gate=gate or FetchGate(), make_run=lambda policy: run, **kwargs)


def wait_until(predicate: Callable[[], bool]) -> bool:
    done = threading.Event()
    for _ in range(int(HANG / 0.005)):
        if predicate():
            return True
        done.wait(0.005)
    return predicate()


# -- Fetches against a fake run ------------------------------------------------------------


def test_requests_run_off_the_reader_and_answer_in_the_order_they_finish() -> None:
    run, sent = FakeRun(), Sent()
    fetches = make(run, sent)
    fetches.submit(call(1))
    fetches.submit(call(2))  # returned at once: neither request has answered
    assert {run.next_started(), run.next_started()} == {"call 1", "call 2"}
    run.release("call 2")
    first = sent.next()
    assert (first.execution_id, first.call_id, first.ok, first.body) == ("e", 2, True, b"body of call 2")
    run.release("call 1")
    assert sent.next().call_id == 1
    fetches.end()


def test_at_most_per_execution_requests_run_at_once_the_rest_wait_their_turn() -> None:
    run, sent = FakeRun(), Sent()
    fetches = make(run, sent, per_execution=2)
    for i in range(1, 6):
        fetches.submit(call(i))
    started = [run.next_started(), run.next_started()]
    assert started == ["call 1", "call 2"] and run.started.empty()
    for i in range(1, 6):
        run.release(f"call {i}")
    assert sorted(sent.next().call_id for _ in range(5)) == [1, 2, 3, 4, 5]
    assert run.peak == 2 and run.performed[2:] == ["call 3", "call 4", "call 5"]


def test_the_servers_gate_bounds_requests_across_executions() -> None:
    gate = FetchGate(1)
    run_a, run_b, sent_a, sent_b = FakeRun(), FakeRun(), Sent(), Sent()
    a = make(run_a, sent_a, gate=gate)
    b = ParkingFetches("b", POLICY, sent_b, gate=gate, make_run=lambda policy: run_b)
    a.submit(call(1))
    assert run_a.next_started() == "call 1"
    b.submit(FetchCall("b", 1, "b's", None))  # waits for the gate
    b.end()  # ended while waiting: it leaves without a request
    assert wait_until(lambda: b._threads == 0)
    run_a.release("call 1")
    assert sent_a.next().call_id == 1
    assert run_b.performed == [] and sent_b.all() == []


def test_a_waiter_at_the_gate_goes_when_a_place_frees() -> None:
    gate = FetchGate(1)
    run, sent = FakeRun(), Sent()
    fetches = make(run, sent, gate=gate)
    fetches.submit(call(1))
    fetches.submit(call(2))
    assert run.next_started() == "call 1"
    assert run.started.empty()  # the second holds no place
    run.release("call 1")
    run.release("call 2")
    assert run.next_started() == "call 2"
    assert sorted(sent.next().call_id for _ in range(2)) == [1, 2]


def test_past_max_requests_a_call_is_refused_at_once_and_never_made() -> None:
    run, sent = FakeRun(max_requests=1), Sent()
    fetches = make(run, sent)
    fetches.submit(call(1))
    fetches.submit(call(2))  # refused by the run's count, on the submitting thread
    refused = sent.next()
    assert (refused.call_id, refused.ok, refused.body) == (2, False, None)
    assert "more than 1 requests" in json.loads(refused.head)["message"]
    assert run.next_started() == "call 1"
    run.release("call 1")
    assert sent.next().call_id == 1 and run.performed == ["call 1"]


def test_a_call_the_policy_refuses_is_answered_at_once_and_never_queued() -> None:
    run, sent = FakeRun(), Sent()
    outcomes: list[str] = []
    fetches = make(run, sent, per_execution=1, on_outcome=outcomes.append)
    fetches.submit(call(1))  # takes the one request thread
    fetches.submit(call(2, "refused: not an allowed origin"))
    refused = sent.next()  # while the first is still in flight
    assert (refused.call_id, refused.ok, json.loads(refused.head)["message"]) == (
        2,
        False,
        "fetch refused: refused: not an allowed origin",
    )
    run.release("call 1")
    assert sent.next().call_id == 1
    assert run.checked == ["call 1", "refused: not an allowed origin"] and run.performed == ["call 1"]
    assert outcomes == ["refused", "ok"]  # what GET /metrics counts


class FailingRun(FakeRun):
    def send(self, request: Any) -> tuple[bool, str, bytes]:
        raise RuntimeError("the engine broke")


def test_a_failed_request_is_counted_and_its_log_line_names_the_execution() -> None:
    run, sent, stream = FailingRun(), Sent(), io.StringIO()
    outcomes: list[str] = []
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure("json", logging.INFO, stream)
        fetches = make(run, sent, on_outcome=outcomes.append)
        with execution_context("exec-9"):  # as the slot's relay, on the dispatcher's thread
            fetches.submit(call(1))
        failed = sent.next()  # answered from the request's own thread
        fetches.end()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert (failed.ok, json.loads(failed.head)["message"]) == (
        False,
        "fetch failed: RuntimeError: the engine broke",
    )
    assert outcomes == ["failed"]
    (line,) = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert (line["message"], line["execution_id"]) == ("fetch of execution e failed", "exec-9")
    assert "RuntimeError: the engine broke" in line["exception"]


def test_end_stops_the_requests_in_flight_drops_the_queued_ones_and_ignores_later_calls() -> None:
    run, sent = FakeRun(), Sent()
    outcomes: list[str] = []
    fetches = make(run, sent, per_execution=1, on_outcome=outcomes.append)
    fetches.submit(call(1))
    fetches.submit(call(2))  # queued behind the first
    assert run.next_started() == "call 1"
    fetches.end()
    assert run.ended.is_set()  # the run's sockets shut: the request returns at once
    assert wait_until(lambda: fetches._threads == 0)
    fetches.submit(call(3))
    fetches.end()  # idempotent
    assert run.performed == ["call 1"] and sent.all() == []
    assert outcomes == ["abandoned"] * 3  # each counted once: in flight, queued, after the end


def test_a_request_that_returns_after_the_end_answers_nobody() -> None:
    run, sent = FakeRun(), Sent()
    fetches = make(run, sent)
    returned = fetches.park("perform:returned")
    fetches.submit(call(1))
    run.release("call 1")
    assert returned.reached.wait(HANG)  # its answer is in hand, not yet looked at
    fetches.end()
    returned.release.set()
    assert wait_until(lambda: fetches._threads == 0)
    assert sent.all() == []


def test_a_reply_checked_before_the_end_is_out_before_end_returns() -> None:
    run, sent = FakeRun(), Sent()
    fetches = make(run, sent)
    checked = fetches.park("reply:checked")
    fetches.submit(call(1))
    run.release("call 1")
    assert checked.reached.wait(HANG)  # the thread holds the lock, about to send
    ending = Background(fetches.end)
    assert fetches.waited.wait(HANG)  # end waits for that send
    assert not ending.done.is_set() and sent.all() == []
    checked.release.set()
    ending.result()
    assert [r.call_id for r in sent.all()] == [1]  # sent before end returned, none after


def test_a_reply_the_channel_cannot_carry_fails_that_call_not_the_worker() -> None:
    run, replies = FakeRun(), Sent()

    def send(reply: FetchReply) -> None:
        if reply.ok:
            raise Undeliverable("a 'fetch_reply' message of 999 bytes is over its limit")
        replies(reply)

    fetches = ParkingFetches("e", POLICY, send, gate=FetchGate(), make_run=lambda policy: run)
    fetches.submit(call(1))
    run.release("call 1")
    failed = replies.next()
    assert (failed.call_id, failed.ok, failed.body) == (1, False, None)
    assert json.loads(failed.head) == {
        "name": "TypeError",
        "message": "fetch failed: the response could not be sent to the worker: "
        "a 'fetch_reply' message of 999 bytes is over its limit",
    }
    assert fetches.lost is None


def test_a_reply_the_worker_stops_taking_loses_the_channel() -> None:
    run, lost = FakeRun(), queue.Queue[str]()

    def send(reply: FetchReply) -> None:
        raise TimeoutError("the worker took no message for 30 s")

    fetches = ParkingFetches(
        "e", POLICY, send, gate=FetchGate(), make_run=lambda policy: run, on_lost=lost.put
    )
    fetches.submit(call(1))
    run.release("call 1")
    assert lost.get(timeout=HANG) == "the worker took no fetch reply: the worker took no message for 30 s"
    assert fetches.lost is not None


def test_a_policy_the_engine_refuses_refuses_each_call() -> None:
    sent = Sent()

    def refuse(policy: FetchPolicy) -> FakeRun:
        raise ValueError('"ftp://x": only http and https origins can be allowed')

    fetches = ParkingFetches("e", FetchPolicy(("ftp://x",)), sent, gate=FetchGate(), make_run=refuse)
    fetches.submit(call(1))
    refused = sent.next()
    assert not refused.ok and "invalid fetch policy" in json.loads(refused.head)["message"]


# -- a slot relaying a fake worker's calls to real requests --------------------------------


class Server:
    """/json answers; /hang answers nothing, and sets ``dropped`` when its client goes."""

    def __init__(self) -> None:
        self.dropped = threading.Event()
        self.arrived = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.arrived.set()
                if self.path == "/hang":
                    self.connection.settimeout(HANG * 4)
                    try:
                        if self.connection.recv(1) == b"":
                            outer.dropped.set()
                    except OSError:
                        outer.dropped.set()
                    return
                body = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def fetch_args(url: str) -> str:
    return json.dumps([{"url": url, "method": "GET", "headers": [], "body": None, "redirect": "follow"}])


class FetchingWorker(ThreadWorker):
    """A worker played by a thread. A job's code is ``fetch <url>`` (fetch, then done with the
    reply as its result), ``fetch-until-cancel <url>`` (fetch; done on cancel, or once
    ``finish`` is set) or ``fetch-ignoring-cancel <url>`` (done only once ``finish`` is set)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.replies: list[FetchReply] = []
        self.finish = threading.Event()
        self._start()

    def _main(self) -> None:
        current: Job | None = None
        try:
            self._conn.send(Ready())
            while True:
                message = self._conn.recv()
                if isinstance(message, Job):
                    current = message
                    what, url = message.spec.code.split(" ", 1)
                    self._conn.send(FetchCall(message.execution_id, 1, fetch_args(url), None))
                    if what in ("fetch-until-cancel", "fetch-ignoring-cancel"):
                        threading.Thread(target=self._finish_later, args=(message,), daemon=True).start()
                elif isinstance(message, FetchReply):
                    self.replies.append(message)
                    if current is not None and current.spec.code.startswith("fetch "):
                        result = json.dumps(
                            [message.ok, json.loads(message.head), (message.body or b"").decode()]
                        )
                        self._conn.send(
                            Done(current.execution_id, JobResult(status="completed", result=result))
                        )
                elif (
                    isinstance(message, Cancel)
                    and current is not None
                    and "until-cancel" in current.spec.code
                ):
                    self._conn.send(
                        Done(current.execution_id, JobResult(status="cancelled", error="cancelled"))
                    )
                elif isinstance(message, Stop):
                    self.returncode = 0
                    return
        except (EOFError, OSError):
            if self.returncode is None:
                self.returncode = 0
        finally:
            self._sock.close()

    def _finish_later(self, job: Job) -> None:
        if self.finish.wait(HANG):
            with contextlib.suppress(OSError):
                self._conn.send(Done(job.execution_id, JobResult(status="timed_out", error="timed out")))


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


@pytest.fixture
def slot(tmp_path: Path) -> Iterator[tuple[WorkerSlot, list[FetchingWorker]]]:
    started: list[FetchingWorker] = []

    def spawn(options: WorkerOptions, sock: socket.socket, stderr: BinaryIO) -> FetchingWorker:
        started.append(FetchingWorker(sock))
        return started[-1]

    s = WorkerSlot(
        0,
        tmp_path,
        WorkerOptions(),
        spawn=spawn,
        fetch_gate=FetchGate(),
        start_allowance_seconds=0.0,
        grace_seconds=2 * HANG,  # the backstop's kill (which ends everything) never comes first
    )
    s.start()
    yield s, started
    s.stop()


def job(execution_id: str, code: str, origins: tuple[str, ...], timeout: float = 60.0) -> Job:
    limits = Limits(heap_limit_mb=8, timeout_secs=timeout, max_result_bytes=1 << 20, max_output_bytes=1 << 20)
    return Job(execution_id, ExecutionSpec(code=code, limits=limits, fetch=FetchPolicy(origins, 1000, 5)))


def test_the_slot_makes_the_workers_fetch_under_the_policy_of_the_spec_it_sent(
    slot: tuple[WorkerSlot, list[FetchingWorker]], server: Server
) -> None:
    s, _ = slot
    result = s.run(job("a", f"fetch {server.origin}/json", (server.origin,)), lambda text: None)
    assert result.status == "completed", result
    ok, head, body = json.loads(result.result or "null")
    assert ok and head["status"] == 200 and body == '{"ok": true}'
    # The worker names no policy: the spec's allows no other origin, and an empty one none.
    other = f"http://localhost:{server.origin.rsplit(':', 1)[1]}"
    result = s.run(job("b", f"fetch {other}/json", (server.origin,)), lambda text: None)
    ok, head, _ = json.loads(result.result or "null")
    assert not ok and "is not an allowed origin" in head["message"]
    result = s.run(job("c", f"fetch {server.origin}/json", ()), lambda text: None)
    ok, head, _ = json.loads(result.result or "null")
    assert not ok and "fetch is off" in head["message"]


def test_a_cancel_ends_the_fetch_in_flight_on_the_server_and_drops_its_reply(
    slot: tuple[WorkerSlot, list[FetchingWorker]], server: Server
) -> None:
    s, started = slot
    running = Background(
        lambda: s.run(
            job("a", f"fetch-until-cancel {server.origin}/hang", (server.origin,)), lambda text: None
        )
    )
    assert server.arrived.wait(HANG), "the request never reached the server"
    s.cancel("a")
    assert server.dropped.wait(HANG), "the request outlived its cancel"
    assert running.result().status == "cancelled"
    assert started[-1].replies == [] and started[-1].returncode is None  # no reply; the worker lives on


def test_a_cancel_ends_the_servers_request_before_the_worker_answers_it(
    slot: tuple[WorkerSlot, list[FetchingWorker]], server: Server
) -> None:
    s, started = slot
    running = Background(
        lambda: s.run(
            job("a", f"fetch-ignoring-cancel {server.origin}/hang", (server.origin,)), lambda text: None
        )
    )
    assert server.arrived.wait(HANG), "the request never reached the server"
    s.cancel("a")  # the worker says nothing: the server's request ends all the same
    assert server.dropped.wait(HANG), "the request waited for the worker"
    started[-1].finish.set()
    running.result()
    assert started[-1].replies == []


def test_the_jobs_timeout_ends_its_fetches_on_the_server_whatever_the_worker_does(
    slot: tuple[WorkerSlot, list[FetchingWorker]], server: Server
) -> None:
    s, started = slot
    running = Background(
        lambda: s.run(
            job("a", f"fetch-until-cancel {server.origin}/hang", (server.origin,), timeout=0.5),
            lambda text: None,
        )
    )
    assert server.arrived.wait(HANG), "the request never reached the server"
    # The fake worker ignores its timeout: the server ends the request at the job's deadline.
    assert server.dropped.wait(HANG), "the request outlived its execution's timeout"
    started[-1].finish.set()
    assert running.result().status == "timed_out"
    assert started[-1].replies == []
