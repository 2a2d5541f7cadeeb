"""The MCP JSON-RPC layer without V8: parsing, classification, versions, and the stdio
session's handling of requests in flight (driven with a fake server)."""

from __future__ import annotations

import io
import json
import queue
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from mcp_v8.js_error import JsError
from mcp_v8.mcp.inflight import InFlight
from mcp_v8.mcp.protocol import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    ProtocolError,
    Request,
    classify,
    negotiate,
    parse,
    progress_token,
)
from mcp_v8.mcp.stdio import StdioSession
from mcp_v8.mcp.tools import Call

from .interleavings import ObservedLock, Parking
from .test_executions_state import Background

HANG = 30.0


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{bad", PARSE_ERROR),
        (b"[" * 100_000, PARSE_ERROR),  # nests too deeply for the parser
        (b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"x": "\\ud800"}}', PARSE_ERROR),
        (b"\xff\xfe", PARSE_ERROR),
    ],
)
def test_what_is_not_json_text_is_a_parse_error(raw: bytes, code: int) -> None:
    with pytest.raises(ProtocolError) as e:
        parse(raw)
    assert e.value.code == code


@pytest.mark.parametrize(
    ("message", "code", "id"),
    [
        (5, INVALID_REQUEST, None),
        ({"jsonrpc": "1.0", "id": 3, "method": "ping"}, INVALID_REQUEST, 3),
        ({"jsonrpc": "2.0", "id": 3}, INVALID_REQUEST, 3),
        ({"jsonrpc": "2.0", "id": 3, "method": 7}, INVALID_REQUEST, 3),
        ({"jsonrpc": "2.0", "id": True, "method": "ping"}, INVALID_REQUEST, None),
        ({"jsonrpc": "2.0", "id": None, "method": "ping"}, INVALID_REQUEST, None),
        ({"jsonrpc": "2.0", "id": "a", "method": "ping", "params": [1]}, INVALID_PARAMS, "a"),
    ],
)
def test_invalid_messages(message: Any, code: int, id: Any) -> None:
    with pytest.raises(ProtocolError) as e:
        classify(message)
    assert (e.value.code, e.value.id) == (code, id)


def test_requests_notifications_and_responses() -> None:
    request = classify({"jsonrpc": "2.0", "id": 0, "method": "tools/list"})
    assert request == Request(0, "tools/list", {}) and not request.is_notification
    note = classify({"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert note is not None and note.is_notification
    assert classify({"jsonrpc": "2.0", "id": 4, "result": {}}) is None  # a client's response
    call = classify(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "run_js", "_meta": {"progressToken": "p"}},
        }
    )
    assert call is not None and progress_token(call) == "p"
    assert progress_token(Request(1, "tools/call", {"name": "run_js"})) is None


def test_negotiation() -> None:
    assert negotiate("2025-03-26") == "2025-03-26"
    assert negotiate("2025-06-18") == "2025-06-18"
    assert negotiate("2026-07-28") == "2025-11-25"  # unknown: the latest, the client decides
    assert negotiate(None) == "2025-11-25"


def test_js_errors_come_from_the_engines_fields_never_from_its_text() -> None:
    # The error text names another position and name than the engine's fields: the fields win.
    outcome = SimpleNamespace(
        error="RangeError: see <input>:9:9\n    at f (<input>:2:21)",
        error_name="RangeError",
        error_message="see <input>:9:9",
        error_line=2,
        error_column=21,
    )
    assert JsError.from_outcome(outcome).to_dict() == {  # type: ignore[union-attr]
        "name": "RangeError",
        "message": "see <input>:9:9",
        "stack": "RangeError: see <input>:9:9\n    at f (<input>:2:21)",
        "line": 2,
        "column": 21,
    }
    thrown = SimpleNamespace(
        error="Uncaught 5", error_name=None, error_message="Uncaught 5", error_line=None, error_column=None
    )
    assert JsError.from_outcome(thrown) == JsError(name=None, message="Uncaught 5", stack="Uncaught 5")
    completed = SimpleNamespace(
        error=None, error_name=None, error_message=None, error_line=None, error_column=None
    )
    assert JsError.from_outcome(completed) is None
    assert JsError.from_dict(JsError.from_outcome(outcome).to_dict()) == JsError.from_outcome(outcome)  # type: ignore[union-attr]
    for broken in ({}, {"name": 1, "message": "", "stack": "", "line": None, "column": None}, "TypeError: x"):
        with pytest.raises(ValueError):
            JsError.from_dict(broken)  # type: ignore[arg-type]


class FakeOps:
    def __init__(self) -> None:
        self.cancelled: list[str] = []

    def cancel(self, execution_id: str) -> dict[str, Any]:
        self.cancelled.append(execution_id)
        return {"ok": True, "error": None}


class FakeServer:
    """Answers ping at once; a tools/call watches execution "e-<id>" and blocks until cancelled
    or finished by the test (``finish``). ``started`` has the ids of the calls that ran."""

    def __init__(self) -> None:
        self.ops = FakeOps()
        self.waiting = threading.Event()
        self.gate = threading.Event()  # a tools/call reaches watch() once it is set
        self.gate.set()
        self.started: queue.Queue[Any] = queue.Queue()
        self._wakes: dict[Any, threading.Event] = {}
        self._lock = threading.Lock()

    def _wake(self, id: Any) -> threading.Event:
        with self._lock:
            return self._wakes.setdefault(id, threading.Event())

    def finish(self, id: Any) -> None:
        self._wake(id).set()

    def handle(self, request: Request, version: str, call: Call | None = None) -> dict[str, Any] | None:
        if request.is_notification:
            return None
        if request.method == "tools/call":
            assert call is not None
            assert self.gate.wait(HANG)
            wake = self._wake(request.id)
            if not call.watch(f"e-{request.id}", wake, owned=True):
                self.ops.cancel(f"e-{request.id}")  # as the tools do: cancelled before it started
                return None
            self.started.put(request.id)
            self.waiting.set()
            assert wake.wait(HANG)
        return {"jsonrpc": "2.0", "id": request.id, "result": {"version": version}}


class Lines(io.RawIOBase):
    """stdin fed line by line by the test: readline blocks until a line (or the end) comes."""

    def __init__(self) -> None:
        self._lines: list[bytes] = []
        self._cond = threading.Condition()
        self._closed = False

    def feed(self, message: Any) -> None:
        raw = message if isinstance(message, bytes) else json.dumps(message).encode()
        with self._cond:
            self._lines.append(raw + b"\n")
            self._cond.notify()

    def end(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def readline(self, size: int | None = -1) -> bytes:
        with self._cond:
            assert self._cond.wait_for(lambda: self._lines or self._closed, HANG)
            return self._lines.pop(0) if self._lines else b""


def test_a_cancelled_request_cancels_its_execution_and_gets_no_response() -> None:
    server = FakeServer()
    out = io.BytesIO()
    stdin = Lines()
    session = StdioSession(server, out, tool_calls=32)  # type: ignore[arg-type]
    runner = threading.Thread(target=session.run, args=(stdin,))
    runner.start()
    stdin.feed(
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-03-26"}}
    )
    stdin.feed({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "run_js"}})
    assert server.waiting.wait(HANG)
    stdin.feed({"jsonrpc": "2.0", "id": 2, "method": "ping"})  # answered while the call waits
    stdin.feed({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}})
    stdin.feed(b"not json")
    stdin.feed([{"jsonrpc": "2.0", "id": 3, "method": "ping"}, {"jsonrpc": "2.0", "method": "x"}])
    stdin.end()
    runner.join(HANG)
    assert not runner.is_alive()
    responses = [json.loads(line) for line in out.getvalue().splitlines()]
    by_id = {r.get("id"): r for r in responses if not isinstance(r, list)}
    assert by_id[1]["result"] == {"version": "2025-03-26"}
    assert by_id[2]["result"] == {"version": "2025-03-26"}
    assert 7 not in by_id  # cancelled: no response
    assert by_id[None]["error"]["code"] == PARSE_ERROR
    batches = [r for r in responses if isinstance(r, list)]
    assert batches == [[{"jsonrpc": "2.0", "id": 3, "result": {"version": "2025-03-26"}}]]
    assert server.ops.cancelled == ["e-7"]


def test_batches_are_refused_after_a_later_version_was_negotiated() -> None:
    server = FakeServer()
    out = io.BytesIO()
    stdin = Lines()
    session = StdioSession(server, out, tool_calls=32)  # type: ignore[arg-type]
    stdin.feed(
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}
    )
    stdin.feed([{"jsonrpc": "2.0", "id": 3, "method": "ping"}])
    stdin.feed(b"[]")
    stdin.end()
    session.run(stdin)
    first, batch, empty = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["result"] == {"version": "2025-11-25"}
    assert batch["error"]["code"] == INVALID_REQUEST and "2025-11-25" in batch["error"]["message"]
    assert empty["error"]["code"] == INVALID_REQUEST


def test_ending_stdin_cancels_the_calls_in_flight() -> None:
    server = FakeServer()
    out = io.BytesIO()
    stdin = Lines()
    session = StdioSession(server, out, tool_calls=32)  # type: ignore[arg-type]
    runner = threading.Thread(target=session.run, args=(stdin,))
    runner.start()
    stdin.feed({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "run_js"}})
    assert server.waiting.wait(HANG)
    stdin.end()
    runner.join(HANG)
    assert not runner.is_alive() and server.ops.cancelled == ["e-9"]


def test_a_cancel_right_behind_its_request_is_not_lost() -> None:
    """The cancel is read before a request thread took the call up: the call was registered
    as it was read, so the cancel finds it, and the execution is cancelled when it starts."""
    server = FakeServer()
    server.gate.clear()
    out = io.BytesIO()
    stdin = Lines()
    session = StdioSession(server, out, tool_calls=32)  # type: ignore[arg-type]
    runner = threading.Thread(target=session.run, args=(stdin,))
    runner.start()
    stdin.feed({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "run_js"}})
    stdin.feed({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 4}})
    stdin.feed({"jsonrpc": "2.0", "id": 5, "method": "ping"})  # answered: the cancel was read
    deadline = threading.Event()
    for _ in range(3000):
        if b'"id":5' in out.getvalue():
            break
        deadline.wait(0.01)
    assert b'"id":5' in out.getvalue()
    server.gate.set()
    stdin.end()
    runner.join(HANG)
    assert not runner.is_alive()
    assert server.ops.cancelled == ["e-4"]
    assert b'"id":4' not in out.getvalue()


# -- malformed messages: each a clean JSON-RPC error, or an ignored notification -------------

CANCEL = "notifications/cancelled"


def _request(method: str, params: Any, id: Any = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "method": method, "params": params}


def _note(method: str, params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}


# (message, code, id of the answer); code None: a notification, logged and ignored over stdio.
MALFORMED: list[tuple[Any, int | None, Any]] = [
    # ids of every JSON type but string and integer
    ({"jsonrpc": "2.0", "id": [1], "method": "ping"}, INVALID_REQUEST, None),
    ({"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}, INVALID_REQUEST, None),
    ({"jsonrpc": "2.0", "id": 1.5, "method": "ping"}, INVALID_REQUEST, None),
    ({"jsonrpc": "2.0", "id": False, "method": "ping"}, INVALID_REQUEST, None),
    ({"jsonrpc": "2.0", "id": None, "method": "tools/list"}, INVALID_REQUEST, None),
    (
        {"jsonrpc": "2.0", "id": [1], "method": "tools/call", "params": {"name": "run_js"}},
        INVALID_REQUEST,
        None,
    ),
    # params that are not objects
    (_request("ping", [1], "a"), INVALID_PARAMS, "a"),
    (_request("tools/call", "run_js", 2), INVALID_PARAMS, 2),
    (_request("tools/list", None, 3), INVALID_PARAMS, 3),
    # the fields the server reads
    (_request("tools/call", {"name": 5}, 4), INVALID_PARAMS, 4),
    (_request("tools/call", {}, 5), INVALID_PARAMS, 5),
    (_request("tools/call", {"name": "run_js", "arguments": [1]}, 6), INVALID_PARAMS, 6),
    (_request("tools/call", {"name": "run_js", "arguments": "1+1"}, 7), INVALID_PARAMS, 7),
    (_request("tools/call", {"name": "run_js", "_meta": [1]}, 8), INVALID_PARAMS, 8),
    (_request("tools/call", {"name": "run_js", "_meta": {"progressToken": [1]}}, 9), INVALID_PARAMS, 9),
    (_request("tools/call", {"name": "run_js", "_meta": {"progressToken": True}}, 10), INVALID_PARAMS, 10),
    (_request("tools/call", {"name": "run_js", "_meta": {"progressToken": None}}, 11), INVALID_PARAMS, 11),
    (_request("tools/list", {"cursor": 5}, 12), INVALID_PARAMS, 12),
    (_request("tools/list", {"cursor": "never-issued"}, 13), INVALID_PARAMS, 13),
    (_request("initialize", {"capabilities": {}}, 14), INVALID_PARAMS, 14),
    (_request("initialize", {"protocolVersion": ["2025-11-25"]}, 15), INVALID_PARAMS, 15),
    (_request("ping", {"_meta": "x"}, 16), INVALID_PARAMS, 16),
    # notifications: never answered over stdio
    (_note(CANCEL, {"requestId": [1]}), None, None),
    (_note(CANCEL, {"requestId": {"id": 1}}), None, None),
    (_note(CANCEL, {"requestId": 1.5}), None, None),
    (_note(CANCEL, {"requestId": True}), None, None),
    (_note(CANCEL, {"requestId": None}), None, None),
    (_note(CANCEL, {}), None, None),
    (_note(CANCEL, {"requestId": 1, "reason": 5}), None, None),
    (_note(CANCEL, [1]), None, None),
    (_note(CANCEL, "1"), None, None),
    (_note("notifications/initialized", 5), None, None),
    (_note("notifications/whatever", {"_meta": [1]}), None, None),
]


@pytest.mark.parametrize(("message", "code", "id"), MALFORMED)
def test_malformed_fields_are_protocol_errors(message: Any, code: int | None, id: Any) -> None:
    with pytest.raises(ProtocolError) as e:
        classify(message)
    assert e.value.notification == (code is None)
    assert (e.value.code, e.value.id) == (code or INVALID_PARAMS, id)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"x": NaN}}',
        b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"x": -Infinity}}',
        b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"_meta": {"progressToken": 1e400}}}',
        b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"x": ' + b"[" * 70 + b"]" * 70 + b"}}",
    ],
)
def test_what_no_client_could_read_back_is_a_parse_error(raw: bytes) -> None:
    with pytest.raises(ProtocolError) as e:
        parse(raw)
    assert e.value.code == PARSE_ERROR


def test_well_formed_fields_pass() -> None:
    for message in (
        _request("tools/call", {"name": "run_js", "arguments": None, "_meta": {"progressToken": 1.5}}),
        _request("tools/call", {"name": "run_js", "_meta": {"progressToken": 10**30}}),
        _request("tools/list", {"cursor": None}),
        _request("initialize", {"protocolVersion": "1999-01-01"}),  # unknown: negotiated, not refused
        _request("ping", {"_meta": {}}, 10**40),
        _note(CANCEL, {"requestId": "x", "reason": "gone"}),
    ):
        assert classify(message) is not None, message


class Replies(io.RawIOBase):
    """A session's stdout: the messages written, which a test waits for by id."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._buffer = b""
        self.messages: list[Any] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        with self._cond:
            self._buffer += bytes(data)
            *lines, self._buffer = self._buffer.split(b"\n")
            self.messages += [json.loads(line) for line in lines]
            self._cond.notify_all()
        return len(data)

    def flat(self) -> list[dict[str, Any]]:
        with self._cond:
            return [m for ms in self.messages for m in (ms if isinstance(ms, list) else [ms])]

    def answers(self, id: Any) -> list[dict[str, Any]]:
        return [m for m in self.flat() if "method" not in m and m.get("id") == id]

    def wait_for(self, id: Any, count: int = 1) -> list[dict[str, Any]]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.answers(id)) >= count, HANG), (id, self.messages)
        return self.answers(id)


class Session:
    """A StdioSession on its own thread, fed by the test."""

    def __init__(self, server: FakeServer, tool_calls: int = 32) -> None:
        self.server = server
        self.out = Replies()
        self.stdin = Lines()
        self._session = StdioSession(server, self.out, tool_calls=tool_calls)  # type: ignore[arg-type]
        self._thread = threading.Thread(target=self._session.run, args=(self.stdin,), daemon=True)
        self._thread.start()

    def send(self, message: Any) -> None:
        self.stdin.feed(message)

    def end(self) -> None:
        self.stdin.end()
        self._thread.join(HANG)
        assert not self._thread.is_alive()


def test_malformed_messages_are_answered_in_order_and_the_session_goes_on() -> None:
    """Regression: ``notifications/cancelled`` with ``"requestId": [1]`` raised in the read loop
    and ended the session; the ping behind it was never answered."""
    server = FakeServer()
    session = Session(server)
    for message, _, _ in MALFORMED:
        session.send(message)
    session.send(b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"x": NaN}}')
    session.send({"jsonrpc": "2.0", "id": "last", "method": "ping"})
    session.out.wait_for("last")
    session.end()
    expected = [(code, id) for _, code, id in MALFORMED if code is not None] + [(PARSE_ERROR, None)]
    answered = [(m["error"]["code"], m["id"]) for m in session.out.messages[:-1]]
    assert answered == expected  # the reader answers them in order; notifications not at all
    assert session.out.messages[-1] == {"jsonrpc": "2.0", "id": "last", "result": {"version": "2025-11-25"}}
    assert server.started.empty() and server.ops.cancelled == []


def test_a_reused_id_does_not_overwrite_the_call_in_flight() -> None:
    server = FakeServer()
    session = Session(server)
    run = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "run_js"}}
    session.send(run)
    assert server.started.get(timeout=HANG) == 7
    session.send(run)  # the same id again: refused, the first keeps running
    session.send({"jsonrpc": "2.0", "id": 7, "method": "ping"})
    refused = session.out.wait_for(7, 2)
    assert [r["error"]["code"] for r in refused] == [INVALID_REQUEST, INVALID_REQUEST]
    assert "in use" in refused[0]["error"]["message"]
    session.send(_note(CANCEL, {"requestId": 7}))  # names the first
    session.send({"jsonrpc": "2.0", "id": "p", "method": "ping"})
    session.out.wait_for("p")
    assert server.ops.cancelled == ["e-7"]
    # answered, an id is free again
    session.send({**run, "id": 8})
    assert server.started.get(timeout=HANG) == 8
    server.finish(8)
    assert "result" in session.out.wait_for(8)[0]
    session.send({**run, "id": 8})
    assert server.started.get(timeout=HANG) == 8
    server.finish(8)
    session.out.wait_for(8, 2)
    session.end()
    assert server.started.empty()  # nothing else ran: the second 7 never did
    assert all("error" in r for r in session.out.answers(7))  # the cancelled first is not answered
    assert [("result" in r) for r in session.out.answers(8)] == [True, True]


def test_control_messages_never_wait_behind_tool_calls() -> None:
    """With every slot taken by a long call, ping, tools/list, initialize and cancels are
    answered; a call beyond the slots waits in order, and cancelling it drops it unrun."""
    server = FakeServer()
    session = Session(server, tool_calls=2)
    for id in (1, 2, 3):
        session.send({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "run_js"}})
    assert {server.started.get(timeout=HANG), server.started.get(timeout=HANG)} == {1, 2}
    session.send({"jsonrpc": "2.0", "id": 4, "method": "ping"})
    session.send({"jsonrpc": "2.0", "id": 5, "method": "tools/list"})
    session.send(_request("initialize", {"protocolVersion": "2025-06-18"}, 6))
    for id in (4, 5, 6):
        assert "result" in session.out.wait_for(id)[0]
    assert server.started.empty()  # 3 waits for a slot
    session.send(_note(CANCEL, {"requestId": 3}))  # a waiting call: dropped
    session.send({"jsonrpc": "2.0", "id": 7, "method": "ping"})
    session.out.wait_for(7)  # the reader is past the cancel
    server.finish(1)
    assert "result" in session.out.wait_for(1)[0]
    session.send({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "run_js"}})
    assert server.started.get(timeout=HANG) == 9  # the free slot went to 9: 3 is gone
    session.send(_note(CANCEL, {"requestId": 2}))  # a running call: cancelled with its execution
    session.send({"jsonrpc": "2.0", "id": 10, "method": "ping"})
    session.out.wait_for(10)
    session.end()  # cancels 9
    assert sorted(server.ops.cancelled) == ["e-2", "e-9"]
    assert session.out.answers(2) == session.out.answers(3) == session.out.answers(9) == []
    assert server.started.empty()


def test_a_batch_is_answered_once_its_tool_calls_are() -> None:
    server = FakeServer()
    session = Session(server, tool_calls=1)
    session.send(_request("initialize", {"protocolVersion": "2025-03-26"}, 0))
    session.out.wait_for(0)
    session.send(
        [
            {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "run_js"}},
            {"jsonrpc": "2.0", "id": 2, "method": "ping"},
            {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "run_js"}},
            {"jsonrpc": "2.0", "id": 1, "method": "ping"},  # in use by the first
        ]
    )
    assert server.started.get(timeout=HANG) == 1
    session.send(_note(CANCEL, {"requestId": 3}))  # waiting: dropped from the batch's answer
    session.send({"jsonrpc": "2.0", "id": "p", "method": "ping"})
    session.out.wait_for("p")
    server.finish(1)
    batch = session.out.wait_for(2)
    session.end()
    answers = next(m for m in session.out.messages if isinstance(m, list))
    assert sorted(("result" in a, a["id"]) for a in answers) == [(False, 1), (True, 1), (True, 2)]
    assert batch and server.started.empty() and server.ops.cancelled == []


# -- the in-flight table's hand-offs, forced ---------------------------------------------------


class ParkingInFlight(Parking, InFlight):
    def __init__(self, slots: int) -> None:
        self.executions_cancelled: list[str] = []
        super().__init__(slots, self.executions_cancelled.append)
        self.moved = threading.Event()  # set when a thread waits for the lock
        self._lock = ObservedLock(self.moved)  # type: ignore[assignment]
        self.replies: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.ran: list[str] = []

    def call(self, id: str, until: threading.Event | None = None) -> Call:
        call = Call()

        def run() -> dict[str, Any]:
            self.ran.append(id)
            if until is not None:
                if not call.watch(f"x-{id}", until, owned=True):
                    self.executions_cancelled.append(f"x-{id}")  # as the tools do
                    return {"id": id}
                assert until.wait(HANG)
            return {"id": id}

        assert self.add(id, call, run, lambda response: self.replies.put((id, response)))
        return call

    def reply(self) -> tuple[str, Any]:
        return self.replies.get(timeout=HANG)


def test_a_cancel_that_finds_a_call_waiting_drops_it_though_a_slot_frees_meanwhile() -> None:
    table = ParkingInFlight(1)
    a_done = threading.Event()
    table.call("a", a_done)
    table.call("b")
    park = table.park("cancel:found")
    cancel = Background(lambda: table.cancel("b"))
    assert park.reached.wait(HANG)
    a_done.set()  # a ends: its thread would take b up, and waits for the lock
    assert table.moved.wait(HANG)
    park.release.set()
    cancel.result()
    assert table.reply() == ("b", None)
    assert table.reply() == ("a", {"id": "a"})
    table.close()
    assert table.ran == ["a"] and table.executions_cancelled == []
    assert not table.holds("b")


def test_a_cancel_behind_the_take_up_of_a_waiting_call_stops_it() -> None:
    """The cancel waits for the lock while b is taken up: it then finds b running, before or
    while it runs (which one is the scheduler's choice). Either way b is not answered, and an
    execution it started is cancelled."""
    table = ParkingInFlight(1)
    a_done, b_done = threading.Event(), threading.Event()
    table.call("a", a_done)
    table.call("b", b_done)  # runs until its call is cancelled
    park = table.park("next:taken")
    a_done.set()
    assert park.reached.wait(HANG)  # b is taken up, not yet run
    cancel = Background(lambda: table.cancel("b"))
    assert table.moved.wait(HANG)
    park.release.set()
    cancel.result()
    assert table.reply() == ("a", {"id": "a"})
    assert table.reply() == ("b", None)
    table.close()
    assert (table.ran, table.executions_cancelled) in ((["a"], []), (["a", "b"], ["x-b"]))


def test_closing_drops_the_waiting_calls_and_cancels_the_running_ones() -> None:
    table = ParkingInFlight(1)
    a_done = threading.Event()
    table.call("a", a_done)
    table.call("b")
    while table.ran != ["a"]:
        assert table.replies.empty()
        threading.Event().wait(0.01)
    table.close()  # cancels a's call (which wakes it) and its execution, drops b
    assert table.reply() == ("a", None)
    assert table.ran == ["a"] and table.executions_cancelled == ["x-a"]
    assert table.replies.empty() and not table.holds("a") and not table.holds("b")


def test_an_id_is_in_flight_until_answered() -> None:
    table = ParkingInFlight(1)
    a_done = threading.Event()
    table.call("a", a_done)
    assert not table.add("a", Call(), lambda: None, lambda response: None)
    a_done.set()
    assert table.reply() == ("a", {"id": "a"})
    assert not table.holds("a")
    table.call("a")
    assert table.reply() == ("a", {"id": "a"})
    table.close()
    assert table.ran == ["a", "a"]
