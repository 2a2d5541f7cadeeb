"""Without V8: who may read ``/metrics`` (the token, ``--metrics-public``, the Host check), the
labels of the HTTP requests counted, registries kept apart per service, and JSON log lines."""

from __future__ import annotations

import io
import json
import logging
import threading
from typing import Any

import falcon
import pytest
from falcon import testing
from falcon.routing import CompiledRouter
from prometheus_client.parser import text_string_to_metric_families

from mcp_v8.config import Settings, from_env
from mcp_v8.logs import JsonFormatter, configure, execution_context
from mcp_v8.metrics import Metrics
from mcp_v8.resources.metrics import MetricsResource, RequestMetrics
from mcp_v8.resources.security import METRICS_ROUTE, SecurityMiddleware

TOKEN = "unit-metrics-token"
BY_ADDRESS = {"Host": "10.1.2.3:3000"}  # a scraper names the server by its address
LOCAL = {"Host": "127.0.0.1:3000"}
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class _Thing:
    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        if id == "missing":
            raise falcon.HTTPNotFound(description="no such thing")
        resp.media = {"id": id}


def _client(**settings: Any) -> tuple[testing.TestClient, Metrics]:
    metrics = Metrics()
    router = CompiledRouter()
    app = falcon.App(
        middleware=[RequestMetrics(metrics, router), SecurityMiddleware(Settings(**settings))], router=router
    )
    app.add_route(METRICS_ROUTE, MetricsResource(metrics))
    app.add_route("/api/things/{id}", _Thing())
    return testing.TestClient(app), metrics


def _requests(metrics: Metrics) -> dict[tuple[str, str, str], float]:
    text = metrics.exposition().decode()
    return {
        (s.labels["method"], s.labels["route"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "mcp_v8_http_requests"
        for s in family.samples
        if s.name == "mcp_v8_http_requests_total"
    }


def test_with_a_token_metrics_need_it_and_skip_the_host_check() -> None:
    client, _ = _client(api_token=TOKEN)
    assert client.simulate_get("/metrics", headers=BY_ADDRESS).status_code == 401
    assert client.simulate_get("/metrics", headers={**BY_ADDRESS, **AUTH}).status_code == 200
    assert client.simulate_get("/api/things/1", headers={**BY_ADDRESS, **AUTH}).status_code == 400  # Host


def test_metrics_public_needs_no_token_and_skips_the_host_check() -> None:
    client, _ = _client(api_token=TOKEN, metrics_public=True)
    resp = client.simulate_get("/metrics", headers=BY_ADDRESS)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert client.simulate_get("/api/things/1", headers=LOCAL).status_code == 401  # the rest keep the token


def test_without_a_token_the_host_check_stays() -> None:
    # No token: the Host check is what keeps a web page (DNS rebinding) from reading them.
    client, _ = _client()
    assert client.simulate_get("/metrics", headers=BY_ADDRESS).status_code == 400
    assert client.simulate_get("/metrics", headers=LOCAL).status_code == 200
    public, _ = _client(metrics_public=True)
    assert public.simulate_get("/metrics", headers=BY_ADDRESS).status_code == 200


@pytest.mark.filterwarnings("ignore:Unknown REQUEST_METHOD")
def test_requests_are_counted_by_route_template_never_by_path() -> None:
    client, metrics = _client(api_token=TOKEN)
    for i in range(3):
        client.simulate_get(f"/api/things/{i}", headers={**LOCAL, **AUTH})
    client.simulate_get("/api/things/missing", headers={**LOCAL, **AUTH})
    client.simulate_get("/api/things/7", headers=LOCAL)  # refused before routing: its route all the same
    client.simulate_get("/api/things/7", headers=BY_ADDRESS)
    client.simulate_get("/nowhere/at/all", headers={**LOCAL, **AUTH})
    client.simulate_request("BREW", "/api/things/1", headers={**LOCAL, **AUTH})
    assert _requests(metrics) == {
        ("GET", "/api/things/{id}", "200"): 3,
        ("GET", "/api/things/{id}", "404"): 1,
        ("GET", "/api/things/{id}", "401"): 1,
        ("GET", "/api/things/{id}", "400"): 1,
        ("GET", "(unmatched)", "404"): 1,
        ("OTHER", "/api/things/{id}", "400"): 1,  # falcon refuses a method it does not know
    }


def test_each_service_counts_in_a_registry_of_its_own() -> None:
    first, second = Metrics(), Metrics()
    first.worker_crashes.inc()
    first.tool_call("ok")
    first.tool_call("TypeError")
    first.tool_call("ToolDenied")
    first.tool_call("ToolError")
    assert (Metrics.total(first.worker_crashes), Metrics.total(second.worker_crashes)) == (1, 0)
    assert Metrics.total(first.tool_calls) == 4
    text = first.exposition().decode()
    for outcome in ("ok", "refused", "denied", "failed"):
        assert f'mcp_v8_tool_calls_total{{outcome="{outcome}"}} 1.0' in text
    assert "mcp_v8_worker_crashes_total 0.0" in second.exposition().decode()


def test_a_cluster_gauge_is_read_at_each_scrape_and_skipped_when_it_fails() -> None:
    metrics = Metrics()
    depth = [3]

    def read() -> float:
        if depth[0] < 0:
            raise RuntimeError("the database is away")
        return depth[0]

    metrics.cluster_gauge("mcp_v8_cluster_queued", "the queue", read)
    assert "mcp_v8_cluster_queued 3.0" in metrics.exposition().decode()
    depth[0] = 5
    assert "mcp_v8_cluster_queued 5.0" in metrics.exposition().decode()
    depth[0] = -1
    text = metrics.exposition().decode()
    assert "mcp_v8_cluster_queued " not in text and "mcp_v8_workers" in text


def test_json_log_lines_carry_the_execution_a_thread_handles() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        formatter = configure("json", logging.INFO, stream)
        assert isinstance(formatter, JsonFormatter)
        formatter.node = "node-1"
        log = logging.getLogger("mcp_v8.test")
        log.info("before %s", "any")
        with execution_context("exec-1"):
            log.warning("inside")
            other = threading.Thread(target=lambda: log.info("another thread"))
            other.start()
            other.join()
            try:
                raise ValueError("boom")
            except ValueError:
                log.exception("failed")
        log.info("after")
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["level"], e["message"], e.get("execution_id")) for e in lines] == [
        ("INFO", "before any", None),
        ("WARNING", "inside", "exec-1"),
        ("INFO", "another thread", None),
        ("ERROR", "failed", "exec-1"),
        ("INFO", "after", None),
    ]
    assert all(e["logger"] == "mcp_v8.test" and e["node"] == "node-1" for e in lines)
    assert lines[0]["time"].endswith("Z") and "T" in lines[0]["time"]
    assert "ValueError: boom" in lines[3]["exception"]


def test_log_format_and_metrics_public_settings() -> None:
    assert Settings().log_format == "text" and Settings().metrics_public is False
    env = from_env({"MCP_V8_LOG_FORMAT": "JSON", "MCP_V8_METRICS_PUBLIC": "true"})
    assert (env.log_format, env.metrics_public) == ("json", True)
    with pytest.raises(ValueError, match="expected one of text, json"):
        from_env({"MCP_V8_LOG_FORMAT": "xml"})


def test_tool_call_outcomes_are_a_bounded_set() -> None:
    from mcp_v8.metrics import _tool_outcome

    outcomes = ("ok", "TypeError", "ToolDenied", "ToolError", "Error", "abandoned", "held", "AnythingElse")
    assert [_tool_outcome(o) for o in outcomes] == [
        "ok",
        "refused",
        "denied",
        "failed",
        "failed",
        "abandoned",
        "held",  # a call the execution paused on: not a failure
        "failed",
    ]
