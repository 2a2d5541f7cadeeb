"""Each tenant's quotas through a real service on SQLite (worker processes, live workers, a real
stdio tool server): the 429 with Retry-After and the error naming the quota over REST, the isError
result over MCP, a cancel or a delete freeing what a quota held, GET /api/usage's numbers, the
tool servers a tenant's scripts see and may call, and the refusals counted in /metrics.

The quotas are those of the one tenant of a server without an auth config (``default``), read
from a dict each test sets (the service asks its quota source at every request). A busy script
holds a place until it is cancelled; no test depends on how fast anything runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from falcon import testing
from prometheus_client.parser import text_string_to_metric_families

from mcp_v8.app import Service, create_app
from mcp_v8.config import Settings
from mcp_v8.operations import NotFound
from mcp_v8.principal import DEFAULT_TENANT, Principal
from mcp_v8.quotas import UNLIMITED, TenantQuotas

from .service_helpers import HOST, submit, wait, wait_for_output
from .tool_server_process import stdio_server, tools_ready

BUSY = "console.log('busy'); const until = Date.now() + 120000; while (Date.now() < until) {}"
MCP_HEADERS = {**HOST, "MCP-Protocol-Version": "2025-06-18", "Accept": "application/json, text/event-stream"}
QUOTAS: dict[str, TenantQuotas] = {}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    base = tmp_path_factory.mktemp("quotas")
    tools_file = base / "tools.json"
    tools_file.write_text(json.dumps({"mcpServers": {"calc": stdio_server(), "calc2": stdio_server()}}))
    settings = Settings(
        data_dir=base / "data",
        workers=2,
        live_workers=1,
        live_sessions_per_worker=2,
        max_timeout_secs=300,
        tools_config=tools_file,
    )
    svc = Service(settings, quotas=lambda tenant: QUOTAS.get(tenant, UNLIMITED)).start()
    try:
        yield svc
    finally:
        svc.close()


@pytest.fixture(scope="module")
def client(service: Service) -> testing.TestClient:
    return tools_ready(testing.TestClient(create_app(service=service)), HOST)


@pytest.fixture(autouse=True)
def no_quotas() -> Iterator[None]:
    QUOTAS.clear()
    yield
    QUOTAS.clear()


def usage(client: testing.TestClient) -> dict[str, Any]:
    resp = client.simulate_get("/api/usage", headers=HOST)
    assert resp.status_code == 200, resp.text
    quotas: dict[str, Any] = resp.json["quotas"]
    return quotas


def cancel_and_wait(client: testing.TestClient, execution_id: str) -> None:
    resp = client.simulate_post(f"/api/executions/{execution_id}/cancel", headers=HOST)
    assert resp.json["ok"], resp.text
    assert wait(client, execution_id)["status"] == "cancelled"


def busy(client: testing.TestClient) -> str:
    """An execution that holds its place (running, on a worker) until cancelled."""
    execution_id = submit(client, BUSY, execution_timeout_secs=300, snapshot=False)
    wait_for_output(client, execution_id, "busy", timeout=120)
    return execution_id


def mcp_call(client: testing.TestClient, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    resp = client.simulate_post(
        "/mcp",
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": name, "arguments": arguments},
        },
        headers=MCP_HEADERS,
    )
    assert resp.status_code == 200, resp.text
    result: dict[str, Any] = resp.json["result"]
    return result


def test_the_concurrency_quota_answers_429_and_a_cancel_frees_it(client: testing.TestClient) -> None:
    QUOTAS[DEFAULT_TENANT] = TenantQuotas(concurrent_executions=1)
    holder = busy(client)
    refused = client.simulate_post("/api/exec", json={"code": "1"}, headers=HOST)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert refused.json == {
        "error": "tenant 'default' quota concurrent_executions (1) reached: 1 executions running"
    }
    assert usage(client)["concurrent_executions"] == {"limit": 1, "used": 1}
    result = mcp_call(client, "run_js", {"code": "1", "wait_ms": 1000})  # the same over MCP
    assert result["isError"] is True
    assert "quota concurrent_executions (1) reached" in result["content"][0]["text"]
    cancel_and_wait(client, holder)
    assert usage(client)["concurrent_executions"] == {"limit": 1, "used": 0}
    assert wait(client, submit(client, "6 * 7", snapshot=False))["result"] == "42"


def test_the_queue_quota_holds_those_waiting_for_a_worker(client: testing.TestClient) -> None:
    QUOTAS[DEFAULT_TENANT] = TenantQuotas(queued_executions=1)
    holders = [busy(client), busy(client)]  # both workers busy
    queued = submit(client, "1", snapshot=False)
    assert usage(client)["queued_executions"] == {"limit": 1, "used": 1}
    refused = client.simulate_post("/api/exec", json={"code": "2"}, headers=HOST)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert "quota queued_executions (1) reached" in refused.json["error"]
    cancel_and_wait(client, queued)
    assert usage(client)["queued_executions"]["used"] == 0
    for holder in holders:
        cancel_and_wait(client, holder)


def test_executions_per_minute_answer_429_until_the_next_minute(client: testing.TestClient) -> None:
    QUOTAS[DEFAULT_TENANT] = TenantQuotas(executions_per_minute=0)
    refused = client.simulate_post("/api/exec", json={"code": "1"}, headers=HOST)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json["error"].startswith("tenant 'default' quota executions_per_minute (0) reached: ")
    QUOTAS[DEFAULT_TENANT] = TenantQuotas(executions_per_minute=1000)
    before = usage(client)["executions_per_minute"]
    assert before["limit"] == 1000 and before["used"] >= 0


def test_heap_bytes_refuse_a_submit_until_a_heap_is_deleted(client: testing.TestClient) -> None:
    made = wait(client, submit(client, "globalThis.kept = 'x'.repeat(1000); 1", snapshot=True))
    key = made["heap"]
    assert key is not None
    stored = usage(client)["heap_bytes"]["used"]
    assert stored > 0
    QUOTAS[DEFAULT_TENANT] = TenantQuotas(heap_bytes=stored)
    refused = client.simulate_post("/api/exec", json={"code": "1"}, headers=HOST)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "60"
    assert f"quota heap_bytes ({stored}) reached: {stored} bytes of heaps stored" in refused.json["error"]
    assert client.simulate_delete(f"/api/heaps/{key}", headers=HOST).status_code == 200
    assert usage(client)["heap_bytes"] == {"limit": stored, "used": 0}
    assert wait(client, submit(client, "2", snapshot=False))["result"] == "2"


def test_a_live_session_past_the_quota_is_refused_until_one_ends(client: testing.TestClient) -> None:
    QUOTAS[DEFAULT_TENANT] = TenantQuotas(live_sessions=1)
    assert wait(client, submit(client, "globalThis.n = 1; n", live=True, session="q-one"))["result"] == "1"
    refused = client.simulate_post(
        "/api/exec", json={"code": "1", "live": True, "session": "q-two"}, headers=HOST
    )
    assert refused.status_code == 429, refused.text
    assert "quota live_sessions (1) reached: 1 live sessions open" in refused.json["error"]
    assert usage(client)["live_sessions"] == {"limit": 1, "used": 1}
    assert wait(client, submit(client, "++n", live=True, session="q-one"))["result"] == "2"  # its own steps
    ended = client.simulate_delete("/api/sessions/snapshot", params={"session": "q-one"}, headers=HOST)
    assert ended.status_code == 200, ended.text
    assert wait(client, submit(client, "3", live=True, session="q-two"))["result"] == "3"
    client.simulate_delete("/api/sessions/snapshot", params={"session": "q-two"}, headers=HOST)


def test_a_tenants_scripts_see_and_call_only_its_tool_servers(client: testing.TestClient) -> None:
    QUOTAS[DEFAULT_TENANT] = TenantQuotas(tool_servers=frozenset({"calc"}))
    servers = client.simulate_get("/api/tools", headers=HOST).json["servers"]
    assert [s["name"] for s in servers] == ["calc"]
    declarations = client.simulate_get("/api/tools/declarations", headers=HOST).text
    assert "calc2" not in declarations and "calc:" in declarations
    code = (
        "const {result} = await tools.calc.add({a: 2, b: 3});"
        "let refused = null; try { await mcp.callTool('calc2', 'add', {a: 1, b: 1}); }"
        " catch (e) { refused = e.message; } [result, refused]"
    )
    info = wait(client, submit(client, code, snapshot=False))
    assert info["status"] == "completed", info
    result, refused = json.loads(info["result"])
    assert (
        result == 5 and "no tool server 'calc2'" in refused and "calc2 " not in refused.split("servers:")[1]
    )
    assert usage(client)["tool_calls_per_minute"]["used"] >= 1
    assert client.simulate_get("/api/usage", headers=HOST).json["tool_servers"] == ["calc"]


def test_a_tool_call_past_the_per_minute_quota_throws_in_the_script(client: testing.TestClient) -> None:
    QUOTAS[DEFAULT_TENANT] = TenantQuotas(tool_calls_per_minute=0)
    code = "try { await tools.calc.add({a: 1, b: 1}); 'made' } catch (e) { e.message }"
    info = wait(client, submit(client, code, snapshot=False))
    assert "tenant 'default' quota tool_calls_per_minute (0) reached" in info["result"], info


def test_usage_is_the_callers_tenants_and_another_is_not_found(
    service: Service, client: testing.TestClient
) -> None:
    QUOTAS["acme"] = TenantQuotas(concurrent_executions=3)
    body = client.simulate_get("/api/usage", headers=HOST).json
    assert body["tenant"] == DEFAULT_TENANT and body["tool_servers"] is None
    assert set(body["quotas"]) == {
        "concurrent_executions",
        "queued_executions",
        "live_sessions",
        "heap_bytes",
        "executions_per_minute",
        "tool_calls_per_minute",
    }
    assert all(q["limit"] is None for q in body["quotas"].values())
    assert client.simulate_get("/api/usage", params={"bogus": "1"}, headers=HOST).status_code == 400
    reader = service.operations().for_principal(Principal("acme", frozenset({"read"})))
    assert reader.usage()["quotas"]["concurrent_executions"] == {"limit": 3, "used": 0}
    with pytest.raises(NotFound, match="tenant 'default' not found"):
        reader.usage(DEFAULT_TENANT)
    admin = service.operations().for_principal(Principal("ops", frozenset({"read", "admin"})))
    assert admin.usage("acme")["tenant"] == "acme"


def test_refusals_are_counted_by_tenant_and_quota(client: testing.TestClient) -> None:
    QUOTAS[DEFAULT_TENANT] = TenantQuotas(executions_per_minute=0)
    assert client.simulate_post("/api/exec", json={"code": "1"}, headers=HOST).status_code == 429
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(client.simulate_get("/metrics", headers=HOST).text)
        for s in family.samples
    }
    key = ("mcp_v8_quota_refusals_total", (("quota", "executions_per_minute"), ("tenant", "default")))
    assert samples[key] >= 1


def test_settings_give_every_tenant_its_default_quotas(tmp_path: Path) -> None:
    from mcp_v8.app import default_quotas

    settings = Settings(data_dir=tmp_path, tenant_max_concurrent=4, tenant_tool_calls_per_minute=60)
    assert default_quotas(settings) == TenantQuotas(concurrent_executions=4, tool_calls_per_minute=60)
    with pytest.raises(ValueError, match="tenant_max_queued must be at least 0"):
        Settings(data_dir=tmp_path, tenant_max_queued=-1)
