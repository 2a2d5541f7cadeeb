"""``mcp_v8.client.Client`` against a real ``mcp-v8 serve`` (Waitress, worker processes)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mcp_v8 import ExecutionTimeout, JSError
from mcp_v8.client import Client, HeapInfo
from mcp_v8.errors import (
    APIError,
    AuthError,
    BadRequestError,
    ConflictError,
    InvalidResponseError,
    NotFoundError,
    QueueFullError,
    ServerError,
)

from .live_server import LiveServer

TOKEN = "client-test-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("client"), "--workers", "2", "--api-token", TOKEN).start()
    yield live
    live.stop()


@pytest.fixture
def client(server: LiveServer) -> Iterator[Client]:
    with Client(server.url, token=TOKEN) as c:
        yield c


def test_tool_limits_are_request_fields_and_records_are_read(client: Client) -> None:
    # No tool servers here: the call is refused, and its record says so.
    execution = client.execute(
        "try { await tools.calc.add({a: 1}) } catch (e) { e.name }",
        execution_timeout_secs=10,
        wall_timeout_secs=20,
        max_tool_calls=1,
    )
    assert execution.status == "completed" and execution.result == '"TypeError"'
    (record,) = client.tool_calls(execution.execution_id)
    assert (record["server"], record["tool"], record["outcome"]) == ("calc", "add", "TypeError")
    with pytest.raises(NotFoundError):
        client.tool_calls("00000000-0000-0000-0000-000000000000")


def test_execute_waits_and_resumes_a_heap(client: Client) -> None:
    first = client.execute("var n = 41; n", session="client-resume")
    assert (first.status, first.value, first.done) == ("completed", 41, True)
    second = client.execute("n += 1; ({n, wasm: typeof WebAssembly})", heap=first.heap, snapshot=False)
    assert second.value == {"n": 42, "wasm": "object"}
    assert second.heap is None  # no snapshot asked
    assert client.get(first.execution_id) == first


def test_execute_live_keeps_the_sessions_context(client: Client) -> None:
    assert client.execute("let k = 1; k", session="client-live", live=True).heap is None
    step = client.execute("k += 1", session="client-live", live=True)
    assert (step.value, step.heap, step.session) == (2, None, "client-live")
    with pytest.raises(ConflictError, match="already live"):
        client.execute("k", session="client-live", live=True, heap=client.execute("1").heap)


def test_execute_without_wait_then_wait_and_output(client: Client) -> None:
    code = "for (let i = 0; i < 3; i++) console.log('line ' + i); await new Promise(r => setTimeout(r, 200)); 'end'"
    started = client.execute(code, wait=False)
    assert (started.status, started.result) == ("running", None)
    lines = list(client.output(started.execution_id))  # follows it until it ends
    assert lines == ["line 0\n", "line 1\n", "line 2\n"]
    done = client.wait(started.execution_id)
    assert (done.status, done.value) == ("completed", "end")


def test_wait_with_a_timeout_returns_it_running_then_cancel(client: Client) -> None:
    busy = client.execute("while (true) {}", execution_timeout_secs=60, timeout=0.2)
    assert busy.status == "running"
    assert client.wait(busy.execution_id, timeout=0.1).status == "running"
    assert client.cancel(busy.execution_id) is True
    assert client.wait(busy.execution_id).status == "cancelled"
    assert client.cancel(busy.execution_id) is False  # already ended
    assert client.cancel("00000000-0000-0000-0000-000000000000") is False


def test_check_raises_what_the_engine_raises(client: Client) -> None:
    with pytest.raises(JSError, match="boom"):
        client.execute("throw new Error('boom')").check()
    thrown = client.execute("null;\nthrow new RangeError('far')")
    assert thrown.js_error is not None and (thrown.js_error["name"], thrown.js_error["line"]) == (
        "RangeError",
        2,
    )
    with pytest.raises(ExecutionTimeout):
        client.execute("while (true) {}", execution_timeout_secs=1).check()
    assert client.execute("1 + 1").check().value == 2


def test_http_errors_keep_the_server_text(server: LiveServer, client: Client) -> None:
    with pytest.raises(BadRequestError, match="execution_timeout_secs must be between") as bad:
        client.execute("1", execution_timeout_secs=0)
    assert bad.value.status == 400
    with pytest.raises(
        BadRequestError, match=r"wall_timeout_secs \(5\) must be at least execution_timeout_secs"
    ):
        client.execute("1", execution_timeout_secs=10, wall_timeout_secs=5)
    with pytest.raises(BadRequestError, match="max_tool_calls must be between"):
        client.execute("1", max_tool_calls=-1)
    with pytest.raises(NotFoundError, match="heap .* not found"):
        client.execute("1", heap="0" * 64)
    with pytest.raises(NotFoundError):
        client.get("00000000-0000-0000-0000-000000000000")
    with pytest.raises(NotFoundError, match="session"):
        list(client.session_log("no-such-session"))
    with Client(server.url) as anonymous:
        assert anonymous.version()["version"]  # public
        with pytest.raises(AuthError, match="bearer token"):
            anonymous.execute("1")


def test_listings_follow_their_cursors(client: Client) -> None:
    ids = [client.execute(f"{i}", session="client-pages").execution_id for i in range(5)]
    log = list(client.session_log("client-pages", page_size=2))  # three pages
    assert [e.execution_id for e in log] == ids
    assert all(e.status == "completed" and e.heap for e in log)
    listed = [e.execution_id for e in client.executions(session="client-pages", page_size=2)]
    assert listed == ids[::-1]
    mine = [s for s in client.sessions(page_size=1) if s.session == "client-pages"]
    assert len(mine) == 1 and mine[0].executions == 5 and mine[0].latest_heap == log[-1].heap


def test_threads_share_a_client(client: Client) -> None:
    results: list[object] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        value = client.execute(f"{i} * 2").value
        with lock:
            results.append(value)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(results) == [i * 2 for i in range(6)]  # type: ignore[type-var]


def test_a_full_queue_is_retried_after_retry_after(tmp_path: Path) -> None:
    live = LiveServer(tmp_path, "--workers", "1", "--queue-limit", "1").start()
    try:
        with Client(live.url, retries=0) as impatient, Client(live.url, retries=5) as patient:
            busy = impatient.execute("await new Promise(r => setTimeout(r, 1500)); 1", wait=False)
            # The worker takes the first; fill the queue's one place behind it.
            deadline = time.monotonic() + 60
            while impatient.stats()["workers_busy"] == 0:
                assert time.monotonic() < deadline, "the worker never took the first execution"
                time.sleep(0.02)
            queued = impatient.execute("2", wait=False)
            with pytest.raises(QueueFullError) as full:
                impatient.execute("3", wait=False)
            assert full.value.status == 429
            # Retry-After (1 s) outlasts the busy execution: the retry gets in.
            assert patient.execute("3").value == 3
            assert impatient.wait(busy.execution_id).value == 1
            assert impatient.wait(queued.execution_id).value == 2
    finally:
        live.stop()


def test_heaps_metadata_tags_query_and_delete(client: Client) -> None:
    heaps = [
        client.execute(f"var h{i} = {i}", session="client-heaps", tags={"suite": "client-heaps"}).heap
        for i in range(3)
    ]
    assert all(heaps)
    first = client.heap(str(heaps[0]))
    assert isinstance(first, HeapInfo)
    assert (first.heap, first.session, first.tags) == (heaps[0], "client-heaps", {"suite": "client-heaps"})
    assert first.size_bytes > 0 and first.last_used_at >= first.created_at
    tagged = client.tag_heap(str(heaps[1]), {"stage": "ready", "suite": None})
    assert tagged.tags == {"stage": "ready"}
    assert [h.heap for h in client.query_heaps({"suite": "client-heaps"}, page_size=1)] == [
        heaps[2],
        heaps[0],
    ]
    assert [h.heap for h in client.query_heaps({"stage": "ready"})] == [heaps[1]]
    with pytest.raises(BadRequestError, match="at most 64 tags"):
        client.tag_heap(str(heaps[1]), {f"k{i}": "v" for i in range(64)})
    busy = client.execute("while (true) {}", heap=heaps[2], execution_timeout_secs=60, wait=False)
    with pytest.raises(ConflictError) as conflict:
        client.delete_heap(str(heaps[2]))
    assert conflict.value.status == 409
    assert client.cancel(busy.execution_id) is True
    client.delete_heap(str(heaps[2]))
    with pytest.raises(NotFoundError):
        client.heap(str(heaps[2]))
    with pytest.raises(NotFoundError):
        client.delete_heap(str(heaps[2]))
    with pytest.raises(BadRequestError, match="64 lowercase hex"):
        client.heap("nope")


def test_requests_and_reconnects_are_counted(client: Client) -> None:
    before = client.requests
    started = client.execute("await new Promise(r => setTimeout(r, 50)); 7", wait=False)
    assert client.requests == before + 1
    assert client.wait(started.execution_id).value == 7
    assert client.execute("8").value == 8  # the submit's own wait: one request
    assert client.requests == before + 3
    assert client.reconnects == 0


# What a proxy or a stranger answers in front of (or instead of) the API: path -> status, type, body.
HTML_502 = b"<html><head><title>502 Bad Gateway</title></head><body>" + b"x" * 5000 + b"</body></html>"
NOT_API = {
    "/api/exec": (502, "text/html", HTML_502),
    "/api/version": (200, "text/plain", b"\xff\xfe garbage, not JSON " + b"y" * 5000),
    "/api/stats": (200, "application/json", b"[1, 2, 3]"),
    "/api/executions/x": (404, "text/plain", b"nothing here"),
    "/api/executions/dropped": (
        200,
        "application/json",
        b'{"execution_id": "dropped", "status": "completed"}',
    ),
}


class _NotAPI(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so that a dropped connection can be seen

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, kind, body = NOT_API[self.path.split("?")[0]]
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        # Closes without saying so: the client's next request on it finds it gone.
        self.close_connection = self.path.startswith("/api/executions/dropped")

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def not_api() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _NotAPI)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_response_that_is_not_json_raises_with_its_status_and_an_excerpt(not_api: str) -> None:
    with Client(not_api, retries=0) as c:
        with pytest.raises(ServerError) as gateway:  # a 5xx: the class of its status
            c.execute("1")
        assert gateway.value.status == 502
        assert "text/html" in gateway.value.message and "502 Bad Gateway" in gateway.value.message
        assert len(gateway.value.message) < 300  # an excerpt, not the 5 kB page
        with pytest.raises(InvalidResponseError) as garbage:  # a 2xx that is not the API
            c.version()
        assert garbage.value.status == 200 and "garbage, not JSON" in garbage.value.message
        assert len(garbage.value.message) < 300
        with pytest.raises(InvalidResponseError, match="not a JSON object"):
            c.stats()  # JSON, but not an object
        with pytest.raises(NotFoundError, match="nothing here") as missing:
            c.get("x")
        assert missing.value.status == 404
        assert isinstance(garbage.value, APIError) and not isinstance(garbage.value, json.JSONDecodeError)


def test_a_keep_alive_connection_the_server_dropped_is_reopened_once(not_api: str) -> None:
    with Client(not_api) as c:
        assert c.get("dropped").status == "completed"  # the server closes it afterwards
        assert c.get("dropped").status == "completed"  # sent on the closed one, then again
        assert (c.requests, c.reconnects) == (3, 1)
