"""OpenTelemetry traces of executions (``--otlp-endpoint``), received by an OTLP/HTTP receiver on
loopback that decodes what arrives with ``opentelemetry-proto``: a real service (worker
processes, a real stdio tool server, a real HTTP origin for ``fetch``), over REST and over MCP,
joined to the caller's trace by its W3C ``traceparent``. And off by default: no spans, no exporter
thread, nothing of opentelemetry imported."""

from __future__ import annotations

import http.server
import io
import json
import logging
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from falcon import testing
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from mcp_v8.app import Service, create_app
from mcp_v8.config import Settings, from_env
from mcp_v8.executions.protocol import WorkerSpan
from mcp_v8.logs import configure
from mcp_v8.tracing import OFF, Tracer, endpoint_from, parse_traceparent

from .pg_server import PostgresServer
from .service_helpers import HOST, SIGNING_KEY
from .tool_server_process import tools_ready

SERVERS = Path(__file__).resolve().parent / "tool_servers.py"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
CLUSTER_TRACE = "5cf92f3577b34da6a3ce929d0e0e4737"


class Span:
    """A span as the receiver decoded it."""

    def __init__(self, proto: Any) -> None:
        self.trace_id = proto.trace_id.hex()
        self.span_id = proto.span_id.hex()
        self.parent = proto.parent_span_id.hex()
        self.name = proto.name
        self.start, self.end = proto.start_time_unix_nano, proto.end_time_unix_nano
        self.attributes = {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in proto.attributes}

    def __repr__(self) -> str:
        return f"Span({self.name}, parent={self.parent})"


class Receiver:
    """An OTLP/HTTP trace receiver (POST /v1/traces, protobuf) on loopback."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.requests = 0
        self._cond = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = self.path == "/v1/traces" and self.headers["Content-Type"] == "application/x-protobuf"
                if ok:
                    request = ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    spans = [
                        Span(s) for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans
                    ]
                    with receiver._cond:
                        receiver.spans += spans
                        receiver.requests += 1
                        receiver._cond.notify_all()
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def trace(self, trace_id: str, until: Any, timeout: float = 60.0) -> list[Span]:
        """The spans of ``trace_id`` once ``until(spans)`` holds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                spans = [s for s in self.spans if s.trace_id == trace_id]
                if until(spans):
                    return spans
                left = deadline - time.monotonic()
                assert left > 0, f"the trace never completed: {spans}"
                self._cond.wait(left)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, origin: str, receiver: Receiver) -> Iterator[Service]:
    base = tmp_path_factory.mktemp("traces")
    tools_file = base / "tools.json"
    tools_file.write_text(
        json.dumps({"mcpServers": {"calc": {"command": sys.executable, "args": [str(SERVERS), "stdio"]}}})
    )
    settings = Settings(
        data_dir=base / "data",
        workers=1,
        allow_fetch=(origin,),
        tools_config=tools_file,
        otlp_endpoint=receiver.url,
    )
    svc = Service(settings).start()
    try:
        yield svc
    finally:
        svc.close()


@pytest.fixture(scope="module")
def client(service: Service) -> testing.TestClient:
    return tools_ready(testing.TestClient(create_app(service=service)), HOST)


def _names(spans: list[Span]) -> list[str]:
    return sorted(s.name for s in spans)


def _complete(*names: str) -> Any:
    """The trace holds its root (ended) and every span named."""
    return lambda spans: {"mcp_v8.execution", *names} <= {s.name for s in spans}


def _phases_of(spans: list[Span], execute: Span) -> list[Span]:
    """The children of ``execute`` in the order they started, checked to follow one another
    within it."""
    phases = sorted((s for s in spans if s.parent == execute.span_id), key=lambda s: s.start)
    last = execute.start
    for s in phases:
        assert last <= s.start <= s.end <= execute.end, (s, last, execute.end)
        last = s.end
    return phases


def test_a_traced_execution_with_a_fetch_a_tool_call_and_a_snapshot_is_one_trace_under_the_callers_span(
    client: testing.TestClient, service: Service, receiver: Receiver, origin: str
) -> None:
    code = f"""
      const status = await fetch('{origin}/x?secret=s3cr3t').then(r => r.status);
      const {{result: sum}} = await tools.calc.add({{a: 2, b: 3}});
      globalThis.kept = [status, sum];
      kept
    """
    headers = {**HOST, "traceparent": TRACEPARENT}
    resp = client.simulate_post("/api/exec", json={"code": code, "snapshot": True}, headers=headers)
    assert resp.status_code == 202, resp.text
    eid = resp.json["execution_id"]
    info = client.simulate_get(f"/api/executions/{eid}", params={"wait_ms": "30000"}, headers=HOST).json
    assert info["status"] == "completed", info
    assert json.loads(info["result"]) == [200, 5]
    assert info["trace_id"] == CALLER_TRACE  # the record keeps it, the answer says it
    assert service.tracing.flush()

    spans = receiver.trace(CALLER_TRACE, _complete("mcp_v8.store", "mcp_v8.long_poll"))
    by_name = {s.name: s for s in spans}
    root = by_name["mcp_v8.execution"]
    assert root.parent == CALLER_SPAN  # under the caller's span
    assert root.attributes["mcp_v8.execution.id"] == eid
    assert root.attributes["mcp_v8.execution.status"] == "completed"
    assert root.attributes["mcp_v8.execution.mode"] == "snapshot"
    worker = by_name["mcp_v8.worker"]
    server_side = [
        "mcp_v8.fetch",
        "mcp_v8.long_poll",
        "mcp_v8.queue",
        "mcp_v8.store",
        "mcp_v8.submit",
        "mcp_v8.tool_call",
        "mcp_v8.worker",
    ]
    assert _names([s for s in spans if s.parent == root.span_id]) == server_side
    # The worker's own phases, sent over its channel: the run, and the snapshot handed back.
    assert _names([s for s in spans if s.parent == worker.span_id]) == [
        "mcp_v8.worker.execute",
        "mcp_v8.worker.heap_write",
    ]
    # The engine's phases, each where it ran: in order, one after the other, inside `execute`.
    execute = by_name["mcp_v8.worker.execute"]
    phases = _phases_of(spans, execute)
    assert [s.name for s in phases] == [
        "mcp_v8.worker.transpile",
        "mcp_v8.worker.restore",
        "mcp_v8.worker.evaluate",
        "mcp_v8.worker.run",
        "mcp_v8.worker.snapshot",
    ]
    assert len(spans) == len(server_side) + 3 + len(phases)  # one trace, nothing else in it
    for s in spans:
        assert s.end >= s.start > 0
    for s in spans:
        if s.parent == worker.span_id:  # within the run the server saw
            assert worker.start <= s.start <= s.end <= worker.end
    fetch = by_name["mcp_v8.fetch"]
    assert fetch.attributes == {
        "mcp_v8.fetch.method": "GET",
        "mcp_v8.fetch.origin": origin,  # never its path or query
        "mcp_v8.fetch.outcome": "ok",
    }
    tool = by_name["mcp_v8.tool_call"]
    assert (tool.attributes["mcp_v8.tool.server"], tool.attributes["mcp_v8.tool.name"]) == ("calc", "add")
    assert tool.attributes["mcp_v8.tool.outcome"] == "ok"
    assert int(by_name["mcp_v8.worker.heap_write"].attributes["mcp_v8.worker.bytes"]) > 1000  # the envelope
    assert root.start <= by_name["mcp_v8.submit"].start <= by_name["mcp_v8.queue"].start
    assert by_name["mcp_v8.worker"].start >= by_name["mcp_v8.queue"].end - 1_000_000

    # Its heap resumed: the next execution's own trace has the restore, server and worker sides.
    resp = client.simulate_post(
        "/api/exec",
        json={"code": "kept", "heap": info["heap"], "snapshot": False, "wait_ms": 30000},
        headers=HOST,
    )
    resumed = resp.json
    assert resumed["status"] == "completed" and json.loads(resumed["result"]) == [200, 5]
    assert resumed["trace_id"] not in (None, CALLER_TRACE)  # no traceparent: a trace of its own
    assert service.tracing.flush()
    spans = receiver.trace(resumed["trace_id"], _complete("mcp_v8.heap_load", "mcp_v8.worker.heap_read"))
    root = next(s for s in spans if s.name == "mcp_v8.execution")
    assert root.parent == ""  # the root of a new trace
    assert root.attributes["mcp_v8.execution.mode"] == "no_snapshot"
    assert "mcp_v8.heap_load" in _names([s for s in spans if s.parent == root.span_id])
    execute = next(s for s in spans if s.name == "mcp_v8.worker.execute")
    assert [s.name for s in _phases_of(spans, execute)] == [  # a heap restored, none made
        "mcp_v8.worker.transpile",
        "mcp_v8.worker.restore",
        "mcp_v8.worker.evaluate",
        "mcp_v8.worker.run",
    ]


def test_run_js_over_mcp_joins_the_trace_of_meta_traceparent(
    client: testing.TestClient, service: Service, receiver: Receiver
) -> None:
    trace_id, span_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    params = {
        "name": "run_js",
        "arguments": {"code": "6 * 7"},
        "_meta": {"traceparent": f"00-{trace_id}-{span_id}-01"},
    }
    resp = client.simulate_post(
        "/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params},
        headers={
            **HOST,
            "MCP-Protocol-Version": "2025-06-18",
            "Accept": "application/json, text/event-stream",
        },
    )
    assert resp.status_code == 200, resp.text
    result = resp.json["result"]["structuredContent"]
    assert result["status"] == "completed" and result["trace_id"] == trace_id
    assert service.tracing.flush()
    spans = receiver.trace(trace_id, _complete("mcp_v8.worker.execute", "mcp_v8.long_poll"))
    root = next(s for s in spans if s.name == "mcp_v8.execution")
    assert root.parent == span_id
    assert {"mcp_v8.submit", "mcp_v8.queue", "mcp_v8.worker", "mcp_v8.long_poll"} <= {
        s.name for s in spans if s.parent == root.span_id
    }


def test_an_invalid_traceparent_is_ignored_and_starts_a_trace_of_its_own(
    client: testing.TestClient, receiver: Receiver
) -> None:
    for bad in (f"00-{'0' * 32}-{CALLER_SPAN}-01", f"ff-{CALLER_TRACE}-{CALLER_SPAN}-01", "nonsense"):
        resp = client.simulate_post(
            "/api/exec", json={"code": "1", "wait_ms": 30000}, headers={**HOST, "traceparent": bad}
        )
        assert resp.status_code == 200, resp.text
        assert resp.json["trace_id"] not in (None, CALLER_TRACE, "0" * 32)


OFF_SCRIPT = """
import json, sys, threading
from pathlib import Path
from falcon import testing
from mcp_v8.app import Service, create_app
from mcp_v8.config import Settings

svc = Service(Settings(data_dir=Path(sys.argv[1]), workers=1)).start()
try:
    client = testing.TestClient(create_app(service=svc))
    headers = {"Host": "127.0.0.1:3000", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    info = client.simulate_post("/api/exec", json={"code": "1", "wait_ms": 30000}, headers=headers).json
    print(json.dumps({
        "status": info["status"],
        "trace_id": info["trace_id"],
        "enabled": svc.tracing.enabled,
        "imported": sorted(m for m in sys.modules if m.startswith("opentelemetry")),
        "threads": sorted(t.name for t in threading.enumerate()),
    }))
finally:
    svc.close()
"""


def test_traces_are_off_by_default_with_nothing_of_opentelemetry_loaded(tmp_path: Path) -> None:
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run(
        [sys.executable, "-c", OFF_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["status"] == "completed"
    assert seen["trace_id"] is None and seen["enabled"] is False
    assert seen["imported"] == []
    assert not [t for t in seen["threads"] if "span" in t.lower() or "otel" in t.lower()]


def test_the_worker_s_spans_are_kept_within_the_run_the_server_saw(receiver: Receiver) -> None:
    tracer = Tracer(receiver.url + "/v1/traces")
    try:
        trace_id = tracer.begin("e-1", None, {})
        assert trace_id is not None
        start, end = 1_000_000_000_000, 1_000_500_000_000
        told = (
            WorkerSpan("execute", 0, (1 << 63) - 1, {"status": "completed"}),  # before and after the run
            WorkerSpan("heap_write", end + 5, end + 10),  # after it
            WorkerSpan("run", start - 10, end + 10, parent=0),  # a child of execute, outside the run
            WorkerSpan("evaluate", start + 10, start + 20, parent=3),  # its parent is not earlier
        )
        tracer.worker("e-1", start, end, told, {"worker.index": 0})
        tracer.end("e-1", {"execution.status": "completed"})
        tracer.worker("unknown", start, end, told, {})  # not traced here: nothing
        assert tracer.flush()
        spans = receiver.trace(
            trace_id, _complete("mcp_v8.worker.heap_write", "mcp_v8.worker.run", "mcp_v8.worker.evaluate")
        )
        by_name = {s.name: s for s in spans}
        run, worker = by_name["mcp_v8.worker.run"], by_name["mcp_v8.worker"]
        assert run.parent == by_name["mcp_v8.worker.execute"].span_id
        assert (run.start, run.end) == (start, end)  # within its parent, itself within the run
        assert by_name["mcp_v8.worker.evaluate"].parent == worker.span_id  # under the run instead
        assert (by_name["mcp_v8.worker.execute"].start, by_name["mcp_v8.worker.execute"].end) == (start, end)
        assert (by_name["mcp_v8.worker.heap_write"].start, by_name["mcp_v8.worker.heap_write"].end) == (
            end,
            end,
        )
        assert by_name["mcp_v8.worker.execute"].attributes == {"mcp_v8.worker.status": "completed"}
    finally:
        tracer.close()


def test_traceparent_and_endpoint_parsing() -> None:
    assert parse_traceparent(TRACEPARENT) == (int(CALLER_TRACE, 16), int(CALLER_SPAN, 16), 1)
    assert parse_traceparent(TRACEPARENT.upper()) is not None
    for bad in (None, 7, "", TRACEPARENT + "-x", TRACEPARENT[:-1], "00-" + "0" * 32 + f"-{CALLER_SPAN}-01"):
        assert parse_traceparent(bad) is None
    assert parse_traceparent(f"01-{CALLER_TRACE}-{CALLER_SPAN}-01-future") is not None  # a later version
    assert endpoint_from(None, {}) is None
    assert endpoint_from("http://c:4318", {}) == "http://c:4318/v1/traces"
    assert endpoint_from("http://c:4318/v1/traces", {}) == "http://c:4318/v1/traces"
    both = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://base:4318/",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t/x",
    }
    assert endpoint_from(None, both) == "http://t/x"
    assert (
        endpoint_from(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://base:4318/"})
        == "http://base:4318/v1/traces"
    )
    assert endpoint_from("http://flag:1", both) == "http://flag:1/v1/traces"
    assert from_env({"MCP_V8_OTLP_ENDPOINT": "http://c:4318"}).otlp_endpoint == "http://c:4318"
    with pytest.raises(ValueError, match="MCP_V8_OTLP_ENDPOINT"):
        from_env({"MCP_V8_OTLP_ENDPOINT": "ftp://c"})
    assert Settings().otlp_endpoint is None and OFF.enabled is False


def test_json_log_lines_about_a_traced_execution_carry_its_trace_id(client: testing.TestClient) -> None:
    stream = io.StringIO()
    # The manager's own logger gets the formatter too, enabled at INFO for the test: the line is
    # read whatever the rest of the process did to the loggers above it.
    root, package = logging.getLogger(), logging.getLogger("mcp_v8.executions.manager")
    saved = root.handlers[:], root.level
    package_saved = package.level, package.disabled
    mirror = io.StringIO()
    extra = logging.StreamHandler(mirror)
    try:
        formatter = configure("json", logging.INFO, stream)
        extra.setFormatter(formatter)
        package.setLevel(logging.INFO)
        package.disabled = False
        package.addHandler(extra)
        headers = {**HOST, "traceparent": f"00-{'ab' * 16}-{CALLER_SPAN}-01"}
        body = {"code": "new Array(1e9).fill(0)", "heap_memory_max_mb": 64, "wait_ms": 30000}
        info = client.simulate_post("/api/exec", json=body, headers=headers).json

        def crash_lines() -> list[dict[str, Any]]:
            lines = [json.loads(line) for line in mirror.getvalue().splitlines()]
            return [e for e in lines if "crashed while running" in e["message"]]

        # The dispatcher logs the crash beside recording it: the answer may come first.
        deadline = time.monotonic() + 30
        while not crash_lines() and time.monotonic() < deadline:
            time.sleep(0.02)
        crash = crash_lines()
        state = f"root: {root.handlers} level {root.level}; manager: {package_saved}"
    finally:
        package.removeHandler(extra)
        package.setLevel(package_saved[0])
        package.disabled = package_saved[1]
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    assert info["status"] == "failed" and info["error"].startswith("worker crashed:"), info
    assert [(e["execution_id"], e["trace_id"]) for e in crash] == [(info["execution_id"], "ab" * 16)], (
        state,
        mirror.getvalue()[-2000:],
    )


def test_spans_after_the_end_join_the_same_trace_for_the_latest_ended_executions(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mcp_v8.tracing as tracing

    monkeypatch.setattr(tracing, "ENDED_KEPT", 2)
    tracer = Tracer(receiver.url + "/v1/traces")
    try:
        ids = {eid: tracer.begin(eid, None, {}) for eid in ("old", "e-2", "e-3")}
        for eid in ids:
            tracer.end(eid, {"execution.status": "waiting"})
        with tracer.span("e-3", "long_poll"):  # a wait after the end, or a resume's run
            pass
        tracer.record("e-3", "queue", 1_000, 2_000)
        tracer.record("old", "queue", 1_000, 2_000)  # beyond the ended ones kept: not traced
        assert (tracer.trace_id("e-3"), tracer.trace_id("old")) == (ids["e-3"], None)
        assert tracer.flush()
        spans = receiver.trace(str(ids["e-3"]), _complete("mcp_v8.long_poll", "mcp_v8.queue"))
        root = next(s for s in spans if s.name == "mcp_v8.execution")
        assert sorted(s.name for s in spans if s.parent == root.span_id) == [
            "mcp_v8.long_poll",
            "mcp_v8.queue",
        ]
        assert receiver.trace(str(ids["old"]), lambda spans: len(spans) == 1)[0].name == "mcp_v8.execution"
    finally:
        tracer.close()


@pytest.mark.database
def test_an_execution_claimed_by_another_node_is_one_trace_across_both(
    tmp_path: Path, postgres_server: PostgresServer, receiver: Receiver
) -> None:
    """Submitted on node A (its worker busy), claimed and run by node B: B's spans (queue,
    worker, the engine's phases, store) join the trace A's root began under the caller's span,
    and A ends that root when it hears of the end."""
    database = postgres_server.create_database("traces_" + uuid.uuid4().hex[:12])
    started: list[Service] = []

    def node(name: str) -> tuple[Service, testing.TestClient]:
        settings = Settings(
            data_dir=tmp_path / name,
            workers=1,
            database_url=database,
            heap_signing_key=(SIGNING_KEY,),
            otlp_endpoint=receiver.url,
        )
        service = Service(settings).start()
        started.append(service)
        return service, testing.TestClient(create_app(service=service))

    try:
        a, client_a = node("a")
        # A's one worker busy (A alone claims it): A claims nothing more while it runs.
        accepted = client_a.simulate_post(
            "/api/exec", json={"code": "await new Promise(r => setTimeout(r, 600000))"}, headers=HOST
        ).json
        busy = accepted["execution_id"]
        busy_trace = client_a.simulate_get(f"/api/executions/{busy}", headers=HOST).json["trace_id"]
        assert busy_trace is not None
        deadline = time.monotonic() + 120
        while _owner(a, busy) is None:
            assert time.monotonic() < deadline, "node A never claimed its execution"
            time.sleep(0.05)
        b, client_b = node("b")

        resp = client_a.simulate_post(
            "/api/exec",
            json={"code": "globalThis.n = 20; await null; n + 1", "snapshot": True},
            headers={**HOST, "traceparent": f"00-{CLUSTER_TRACE}-{CALLER_SPAN}-01"},
        )
        assert resp.status_code == 202, resp.text
        eid = resp.json["execution_id"]
        deadline = time.monotonic() + 240
        info = {"status": "running"}
        while info["status"] == "running" and time.monotonic() < deadline:
            resp = client_b.simulate_get(f"/api/executions/{eid}", params={"wait_ms": "30000"}, headers=HOST)
            assert resp.status_code == 200, resp.text
            info = resp.json
        assert (info["status"], info["result"]) == ("completed", "21"), info
        assert info["trace_id"] == CLUSTER_TRACE  # the record A wrote keeps it
        assert _owner(a, eid) == b.lease.id  # B ran it
        assert client_a.simulate_post(f"/api/executions/{busy}/cancel", headers=HOST).status_code < 300

        for service in (a, b):
            assert service.tracing.flush()
        spans = receiver.trace(
            CLUSTER_TRACE,
            lambda got: (
                {"mcp_v8.store", "mcp_v8.worker.snapshot"} <= {s.name for s in got}
                and any(
                    s.name == "mcp_v8.execution" and "mcp_v8.execution.status" in s.attributes for s in got
                )
            ),
            timeout=120,
        )
        by_name = {s.name: s for s in spans}
        root = by_name["mcp_v8.execution"]
        assert root.parent == CALLER_SPAN
        assert root.attributes["mcp_v8.execution.id"] == eid
        assert root.attributes["mcp_v8.execution.status"] == "completed"  # A ended it, hearing of the end
        assert [s.name for s in spans].count("mcp_v8.execution") == 1

        # A's submit and B's queue wait, run and store: all children of A's root.
        assert {"mcp_v8.submit", "mcp_v8.queue", "mcp_v8.worker", "mcp_v8.store"} <= set(
            _names([s for s in spans if s.parent == root.span_id])
        )
        execute = by_name["mcp_v8.worker.execute"]
        assert execute.parent == by_name["mcp_v8.worker"].span_id
        assert [s.name for s in _phases_of(spans, execute)] == [
            "mcp_v8.worker.transpile",
            "mcp_v8.worker.restore",
            "mcp_v8.worker.evaluate",
            "mcp_v8.worker.run",
            "mcp_v8.worker.snapshot",
        ]

        # The one A accepted and claimed itself: its own root, ended once, its spans under it.
        spans = receiver.trace(
            busy_trace,
            lambda got: (
                any("mcp_v8.execution.status" in s.attributes for s in got)
                and "mcp_v8.worker" in {s.name for s in got}
            ),
            timeout=120,
        )
        roots = [s for s in spans if s.name == "mcp_v8.execution"]
        assert len(roots) == 1 and roots[0].attributes["mcp_v8.execution.status"] == "cancelled"
        assert {"mcp_v8.submit", "mcp_v8.queue", "mcp_v8.worker"} <= set(
            _names([s for s in spans if s.parent == roots[0].span_id])
        )
    finally:
        for service in started:
            service.close()


def _owner(service: Service, execution_id: str) -> str | None:
    """The lease of the node that claimed the execution (None: not claimed yet)."""
    rows = service.stores.work._db.run(  # type: ignore[union-attr]
        "SELECT owner FROM executions WHERE execution_id = :id", {"id": execution_id}
    )
    return None if not rows or rows[0][0] is None else str(rows[0][0])


@pytest.mark.database
def test_a_node_that_missed_the_end_ends_the_root_when_it_looks_again(
    tmp_path: Path, postgres_server: PostgresServer, receiver: Receiver
) -> None:
    """Node A (claiming nothing, deaf to events: its cluster threads stopped) accepts, B runs: A's
    root stays open until A looks again, as after a reconnection, and then ends with the status."""
    database = postgres_server.create_database("traces_" + uuid.uuid4().hex[:12])
    started: list[Service] = []
    try:
        for name in ("a", "b"):
            settings = Settings(
                data_dir=tmp_path / name,
                workers=1,
                database_url=database,
                heap_signing_key=(SIGNING_KEY,),
                otlp_endpoint=receiver.url,
            )
            started.append(Service(settings).start())
        a, b = started
        assert a.cluster is not None
        a.cluster.stop()
        eid = a.operations().submit({"code": "6 * 7"})
        trace_id = a.tracing.trace_id(eid)
        assert trace_id is not None
        ops = b.operations()
        deadline = time.monotonic() + 240
        info = ops.get(eid, 30_000)
        while info["status"] == "running" and time.monotonic() < deadline:
            info = ops.get(eid, 30_000)
        assert (info["status"], info["result"]) == ("completed", "42"), info
        assert b.tracing.flush()
        receiver.trace(
            trace_id,
            lambda got: "mcp_v8.store" in {s.name for s in got} or "mcp_v8.worker" in {s.name for s in got},
        )
        assert a.tracing.live(eid)  # A never heard of the end
        a.manager.wake(None)  # what its listener does once connected again
        assert not a.tracing.live(eid)
        assert a.tracing.flush()
        spans = receiver.trace(trace_id, lambda got: any(s.name == "mcp_v8.execution" for s in got))
        roots = [s for s in spans if s.name == "mcp_v8.execution"]
        assert len(roots) == 1 and roots[0].attributes["mcp_v8.execution.status"] == "completed"
        assert {"mcp_v8.submit", "mcp_v8.queue", "mcp_v8.worker"} <= set(
            _names([s for s in spans if s.parent == roots[0].span_id])
        )
    finally:
        for service in started:
            service.close()
