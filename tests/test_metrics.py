"""``GET /metrics`` through falcon.testing against a real service (worker processes, a real
stdio tool server, a real HTTP server for ``fetch``): scraped and parsed with the client
library's parser, while executions of every outcome move the counters and histograms."""

from __future__ import annotations

import http.server
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from falcon import testing
from prometheus_client.parser import text_string_to_metric_families

from mcp_v8.app import Service, create_app
from mcp_v8.config import Settings

from .service_helpers import HOST
from .tool_server_process import tools_ready

TOKEN = "metrics-test-token"
AUTH = {**HOST, "Authorization": f"Bearer {TOKEN}"}
SERVERS = Path(__file__).resolve().parent / "tool_servers.py"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


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
def origin() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, origin: str) -> Iterator[Service]:
    base = tmp_path_factory.mktemp("metrics")
    tools_file = base / "tools.json"
    tools_file.write_text(
        json.dumps({"mcpServers": {"calc": {"command": sys.executable, "args": [str(SERVERS), "stdio"]}}})
    )
    settings = Settings(
        data_dir=base / "data", workers=1, api_token=TOKEN, allow_fetch=(origin,), tools_config=tools_file
    )
    svc = Service(settings).start()
    try:
        yield svc
    finally:
        svc.close()


@pytest.fixture(scope="module")
def client(service: Service) -> testing.TestClient:
    return tools_ready(testing.TestClient(create_app(service=service)), AUTH)


def scrape(client: testing.TestClient) -> Samples:
    resp = client.simulate_get("/metrics", headers=AUTH)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def submit(client: testing.TestClient, code: str, **fields: Any) -> str:
    resp = client.simulate_post("/api/exec", json={"code": code, **fields}, headers=AUTH)
    assert resp.status_code == 202, resp.text
    return str(resp.json["execution_id"])


def wait(client: testing.TestClient, execution_id: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        resp = client.simulate_get(
            f"/api/executions/{execution_id}", params={"wait_ms": "5000"}, headers=AUTH
        )
        assert resp.status_code == 200, resp.text
        info: dict[str, Any] = resp.json
        if info["status"] != "running" or time.monotonic() > deadline:
            return info


def run(client: testing.TestClient, code: str, **fields: Any) -> dict[str, Any]:
    return wait(client, submit(client, code, **fields))


def until(client: testing.TestClient, name: str, wanted: float, timeout: float = 60.0) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(client)
        if value(samples, name) == wanted or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


def test_metrics_need_the_token(client: testing.TestClient) -> None:
    refused = client.simulate_get("/metrics", headers=HOST)
    assert refused.status_code == 401
    assert refused.json == {"error": "a valid bearer token is required"}
    # A scraper names the server by its address: with the token, the Host check does not apply.
    by_address = client.simulate_get("/metrics", headers={**AUTH, "Host": "10.1.2.3:3000"})
    assert by_address.status_code == 200
    other = client.simulate_get("/api/stats", headers={**AUTH, "Host": "10.1.2.3:3000"})
    assert other.status_code == 400  # every other route keeps it


def test_every_outcome_moves_its_counters_and_histograms(
    client: testing.TestClient, service: Service
) -> None:
    before = scrape(client)
    assert value(before, "mcp_v8_workers") == 1
    completed = run(client, "console.log('x'.repeat(1000)); var kept = 41; kept")
    assert completed["status"] == "completed"
    resumed = run(client, "kept + 1", heap=completed["heap"], snapshot=False)
    assert (resumed["status"], resumed["result"]) == ("completed", "42")
    assert run(client, "throw new Error('no')", snapshot=False)["status"] == "failed"
    assert run(client, "while (true) {}", execution_timeout_secs=1)["status"] == "timed_out"
    crashed = run(client, "new Array(1e9).fill(0)", heap_memory_max_mb=64)
    assert crashed["status"] == "failed" and crashed["error"].startswith("worker crashed:")
    # A cancel of the running one, and of one waiting behind it: the gauges show both.
    running = submit(client, "while (true) {}", execution_timeout_secs=120, snapshot=False)
    waiting = submit(client, "1", snapshot=False)
    busy = until(client, "mcp_v8_workers_busy", 1)
    assert (value(busy, "mcp_v8_workers_busy"), value(busy, "mcp_v8_queued")) == (1, 1)
    for eid in (waiting, running):
        assert client.simulate_post(f"/api/executions/{eid}/cancel", headers=AUTH).json["ok"] is True
        assert wait(client, eid)["status"] == "cancelled"
    after = until(client, "mcp_v8_workers_busy", 0)
    assert value(after, "mcp_v8_queued") == 0

    ended = "mcp_v8_executions_ended_total"
    assert delta(before, after, ended, status="completed", mode="snapshot") == 1
    assert delta(before, after, ended, status="completed", mode="no_snapshot") == 1
    assert delta(before, after, ended, status="failed", mode="no_snapshot") == 1
    assert delta(before, after, ended, status="timed_out", mode="snapshot") == 1
    assert delta(before, after, ended, status="failed", mode="snapshot") == 1  # the crash
    assert delta(before, after, ended, status="cancelled", mode="no_snapshot") == 2
    started = "mcp_v8_executions_started_total"
    assert delta(before, after, started, mode="snapshot") == 3
    assert delta(before, after, started, mode="no_snapshot") == 4
    assert delta(before, after, "mcp_v8_worker_crashes_total") == 1
    assert delta(before, after, "mcp_v8_worker_restarts_total") == 1  # the next job's worker
    # Six ran on the worker; the one cancelled while waiting never did.
    assert delta(before, after, "mcp_v8_queue_wait_seconds_count") == 6
    assert delta(before, after, "mcp_v8_run_seconds_count", mode="snapshot") == 3
    assert delta(before, after, "mcp_v8_run_seconds_count", mode="no_snapshot") == 3
    assert delta(before, after, "mcp_v8_run_seconds_sum", mode="snapshot") >= 1.0  # the timeout's second
    assert delta(before, after, "mcp_v8_run_seconds_bucket", mode="snapshot", le="+Inf") == 3
    # Only the first produced a heap (a timed out or crashed execution keeps none); one resumed it.
    assert delta(before, after, "mcp_v8_snapshot_save_seconds_count") == 1
    assert delta(before, after, "mcp_v8_snapshot_save_bytes_count") == 1
    assert delta(before, after, "mcp_v8_snapshot_restore_bytes_count") == 1
    stored = service.catalogue.meta(completed["heap"])
    assert stored is not None
    assert delta(before, after, "mcp_v8_snapshot_save_bytes_sum") == stored.size
    assert delta(before, after, "mcp_v8_snapshot_restore_bytes_sum") == stored.size
    assert delta(before, after, "mcp_v8_output_bytes_total") >= 1000

    # /api/stats reads the same counters.
    stats = client.simulate_get("/api/stats", headers=AUTH).json
    assert stats["worker_crashes"] == value(after, "mcp_v8_worker_crashes_total")
    assert stats["worker_restarts"] == value(after, "mcp_v8_worker_restarts_total")
    assert stats["sandbox"]["violations"] == value(after, "mcp_v8_sandbox_violations_total")
    assert stats["last_worker_crash"]["execution_id"] == crashed["execution_id"]


def test_fetch_and_tool_calls_by_outcome(client: testing.TestClient, origin: str) -> None:
    before = scrape(client)
    code = f"""
      const ok = await fetch('{origin}/x').then(r => r.status);
      const refused = await fetch('http://example.invalid/').then(() => 'reached', e => e.name);
      const {{result: sum}} = await tools.calc.add({{a: 2, b: 3}});
      let bad = null;
      try {{ await tools.calc.add({{a: 'x', b: 1}}); }} catch (e) {{ bad = e.name; }}
      [ok, refused, sum, bad]
    """
    info = run(client, code, snapshot=False)
    assert info["status"] == "completed", info
    assert json.loads(info["result"]) == [200, "TypeError", 5, "TypeError"]
    after = scrape(client)
    assert delta(before, after, "mcp_v8_fetch_calls_total", outcome="ok") == 1
    assert delta(before, after, "mcp_v8_fetch_calls_total", outcome="refused") == 1
    assert delta(before, after, "mcp_v8_tool_calls_total", outcome="ok") == 1
    assert delta(before, after, "mcp_v8_tool_calls_total", outcome="refused") == 1


def test_http_requests_by_route_template_and_mcp_calls_by_tool(client: testing.TestClient) -> None:
    before = scrape(client)
    eid = run(client, "1", snapshot=False)["execution_id"]
    client.simulate_get(f"/api/executions/{eid}", headers=AUTH)
    client.simulate_get("/api/executions/not-an-id-at-all", headers=AUTH)
    client.simulate_get("/api/stats", headers=HOST)  # refused before routing: still its route
    client.simulate_get("/no/such/path", headers=AUTH)
    resp = client.simulate_post(
        "/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "run_js", "arguments": {"code": "6 * 7"}}},
        headers={**AUTH, "MCP-Protocol-Version": "2025-06-18", "Accept": "application/json, text/event-stream"},
    )  # fmt: skip
    assert resp.status_code == 200, resp.text
    after = scrape(client)
    requests = "mcp_v8_http_requests_total"
    assert delta(before, after, requests, method="POST", route="/api/exec", status="202") == 1
    assert delta(before, after, requests, method="GET", route="/api/executions/{id}", status="200") >= 2
    assert delta(before, after, requests, method="GET", route="/api/executions/{id}", status="404") == 1
    assert delta(before, after, requests, method="GET", route="/api/stats", status="401") == 1
    assert delta(before, after, requests, method="GET", route="(unmatched)", status="404") == 1
    assert delta(before, after, requests, method="POST", route="/mcp", status="200") == 1
    assert not any("not-an-id" in dict(labels).get("route", "") for _, labels in after)
    assert delta(before, after, "mcp_v8_http_request_duration_seconds_count", route="/api/exec") == 1
    assert delta(before, after, "mcp_v8_mcp_tool_calls_total", tool="run_js", outcome="ok") == 1
