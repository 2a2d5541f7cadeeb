"""Principals through the service (real worker processes): an auth config of two tenants with
tokens of different scopes, and JWTs from a JWKS server on loopback, over REST and /mcp. Every
route of the contract: 401 without a token or with a wrong one, 403 naming the scope a token
lacks, and a token holding it gets through; a token without ``cancel`` leaves the execution
running; MCP offers each principal the tools of its scopes only."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from falcon import testing

from mcp_v8.app import Service, create_app
from mcp_v8.auth import ROUTE_SCOPES, hash_token
from mcp_v8.config import Settings
from mcp_v8.principal import SCOPES

from .jwks_server import AUDIENCE, ISSUER, JwksServer, Key, claims
from .service_helpers import HOST

SPEC = Path(__file__).resolve().parent.parent / "python" / "mcp_v8" / "openapi.json"

# acme's tokens, each but "all" lacking one scope; beta's one.
ACME = {
    "all": ["run", "read", "cancel", "approve"],
    "no-run": ["read", "cancel", "approve"],
    "no-read": ["run", "cancel", "approve"],
    "no-cancel": ["run", "read", "approve"],
    "no-approve": ["run", "read", "cancel"],
    "no-admin": ["run", "read", "cancel", "approve"],
    "admin": ["admin", "read"],
}
BETA = {"beta": ["run", "read"]}


def token(name: str) -> str:
    return f"test-token-{name}-0123456789abcdef"


def bearer(name: str) -> dict[str, str]:
    return {**HOST, "Authorization": f"Bearer {token(name)}"}


def _tokens(names: dict[str, list[str]]) -> list[dict[str, Any]]:
    return [{"name": n, "sha256": hash_token(token(n)), "scopes": s} for n, s in names.items()]


KEY = Key.ec("key-1")


@pytest.fixture(scope="module")
def idp() -> Iterator[JwksServer]:
    server = JwksServer([KEY]).start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, idp: JwksServer) -> Iterator[Service]:
    config = tmp_path_factory.mktemp("auth") / "auth.json"
    config.write_text(
        json.dumps(
            {
                "tenants": {
                    "acme": {"tokens": _tokens(ACME), "quotas": {"concurrent_executions": 2}},
                    "beta": {"tokens": _tokens(BETA)},
                },
                "jwt": {"jwks_url": idp.url, "issuer": ISSUER, "audience": AUDIENCE},
            }
        )
    )
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("data"), workers=1, live_workers=0, auth_config=config
    )
    svc = Service(settings).start()
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def client(service: Service) -> testing.TestClient:
    return testing.TestClient(create_app(service=service))


def _routes() -> list[tuple[str, str]]:
    spec = json.loads(SPEC.read_text())
    return [
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "post", "patch", "delete")
    ]


EXAMPLE = {
    "{id}": "00000000-0000-4000-8000-000000000000",
    "{key}": "a" * 64,
    "{platform}": "linux-x86_64",
}
BODIES = {
    "/api/exec": {"code": "1 + 1"},
    "/api/heaps/query": {"tags": {"a": "b"}},
    "/api/heaps/{key}/tags": {"a": "b"},
    "/api/executions/{id}/approve": {"decisions": [{"call_id": 1, "approve": True}]},
    "/mcp": {"jsonrpc": "2.0", "id": 1, "method": "ping"},
}
QUERIES = {"/api/sessions/log": "session=s", "/api/sessions/snapshot": "session=s"}


def _call(client: testing.TestClient, method: str, template: str, headers: dict[str, str]) -> Any:
    path = template
    for name, value in EXAMPLE.items():
        path = path.replace(name, value)
    body = BODIES.get(template) if method in ("POST", "PATCH") else None
    return client.simulate_request(
        method,
        path,
        query_string=QUERIES.get(template),
        headers={**headers, "Content-Type": "application/json"},
        body=None if body is None else json.dumps(body),
    )


@pytest.mark.parametrize(("method", "template"), _routes())
def test_every_route_needs_a_principal_and_its_scope(
    client: testing.TestClient, method: str, template: str
) -> None:
    scope = ROUTE_SCOPES[(method, template)]
    if scope == "public":
        assert _call(client, method, template, HOST).status_code not in (401, 403)
        return
    for headers in (HOST, {**HOST, "Authorization": "Bearer not-a-token-of-this-server"}):
        resp = _call(client, method, template, headers)
        assert resp.status_code == 401, (method, template, resp.text)
        assert resp.headers["WWW-Authenticate"].startswith('Bearer realm="mcp-v8"')
        assert "error" in resp.json
    if scope in SCOPES:
        resp = _call(client, method, template, bearer(f"no-{scope}"))
        assert resp.status_code == 403, (method, template, resp.text)
        assert resp.json == {"error": f"this token lacks the '{scope}' scope"}
        holder = "admin" if scope == "admin" else "all"
    else:
        holder = "no-run"  # any principal
    resp = _call(client, method, template, bearer(holder))
    assert resp.status_code not in (401, 403), (method, template, resp.text)


def _wait(client: testing.TestClient, eid: str, who: str = "all") -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        info: dict[str, Any] = client.simulate_get(
            f"/api/executions/{eid}", params={"wait_ms": "5000"}, headers=bearer(who)
        ).json
        if info["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return info


def _submit(client: testing.TestClient, code: str, who: str, **fields: Any) -> str:
    resp = client.simulate_post("/api/exec", json={"code": code, **fields}, headers=bearer(who))
    assert resp.status_code == 202, resp.text
    return str(resp.json["execution_id"])


def _mcp(client: testing.TestClient, who: str | None, method: str, params: Any = None) -> Any:
    headers = {**HOST} if who is None else bearer(who)
    message = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params or {}}
    return client.simulate_post(
        "/mcp", json=message, headers={**headers, "MCP-Protocol-Version": "2025-06-18"}
    )


def test_without_cancel_the_execution_keeps_running(client: testing.TestClient) -> None:
    eid = _submit(client, "while (true) {}", "no-cancel", execution_timeout_secs=120)
    resp = client.simulate_post(f"/api/executions/{eid}/cancel", headers=bearer("no-cancel"))
    assert resp.status_code == 403 and resp.json == {"error": "this token lacks the 'cancel' scope"}
    result = _mcp(
        client, "no-cancel", "tools/call", {"name": "cancel_execution", "arguments": {"execution_id": eid}}
    )
    assert result.status_code == 200
    assert result.json["result"]["isError"] is True
    assert result.json["result"]["content"][0]["text"] == "this token lacks the 'cancel' scope"
    time.sleep(0.5)
    info = client.simulate_get(f"/api/executions/{eid}", headers=bearer("no-cancel")).json
    assert info["status"] in ("queued", "running"), info
    resp = client.simulate_post(f"/api/executions/{eid}/cancel", headers=bearer("all"))
    assert resp.status_code == 200 and resp.json["ok"] is True
    assert _wait(client, eid)["status"] == "cancelled"


def test_mcp_offers_each_principal_the_tools_of_its_scopes(client: testing.TestClient) -> None:
    assert _mcp(client, None, "tools/list").status_code == 401

    def tools(who: str) -> set[str]:
        resp = _mcp(client, who, "tools/list")
        assert resp.status_code == 200, resp.text
        return {t["name"] for t in resp.json["result"]["tools"]}

    everything = tools("all")
    assert {"run_js", "cancel_execution", "approve_tool_calls", "get_execution"} <= everything
    assert everything - tools("no-run") == {"run_js", "set_heap_tags", "delete_heap_tags"}
    assert everything - tools("no-cancel") == {"cancel_execution"}
    assert everything - tools("no-approve") == {"approve_tool_calls"}
    assert tools("no-read") == {
        "run_js",
        "cancel_execution",
        "approve_tool_calls",
        "set_heap_tags",
        "delete_heap_tags",
    }
    refused = _mcp(client, "no-run", "tools/call", {"name": "run_js", "arguments": {"code": "1"}})
    assert refused.json["result"] == {
        "content": [{"type": "text", "text": "this token lacks the 'run' scope"}],
        "isError": True,
    }
    ran = _mcp(
        client, "all", "tools/call", {"name": "run_js", "arguments": {"code": "6 * 7", "snapshot": False}}
    )
    assert ran.json["result"]["structuredContent"]["result"] == "42", ran.text
    approve = _mcp(
        client,
        "all",
        "tools/call",
        {
            "name": "approve_tool_calls",
            "arguments": {"execution_id": EXAMPLE["{id}"], "decisions": [{"call_id": 1, "approve": True}]},
        },
    )
    assert approve.json["result"]["isError"] is True
    assert (
        "scope" not in approve.json["result"]["content"][0]["text"]
    )  # the principal may: the service answers


def test_jwt_principals(client: testing.TestClient, idp: JwksServer) -> None:
    def as_jwt(jwt: str) -> dict[str, str]:
        return {**HOST, "Authorization": f"Bearer {jwt}"}

    runner = as_jwt(KEY.sign(claims("beta", "run read")))
    resp = client.simulate_post("/api/exec", json={"code": "'from a JWT'", "wait_ms": 30000}, headers=runner)
    assert resp.status_code == 200 and resp.json["result"] == '"from a JWT"', resp.text
    eid = resp.json["execution_id"]
    assert client.simulate_get(f"/api/executions/{eid}", headers=runner).json["status"] == "completed"
    reader = as_jwt(KEY.sign(claims("beta", ["read"])))
    resp = client.simulate_post("/api/exec", json={"code": "1"}, headers=reader)
    assert resp.status_code == 403 and resp.json == {"error": "this token lacks the 'run' scope"}
    for jwt, why in (
        (KEY.sign(claims("gamma")), "the token's tenant 'gamma' is not a tenant of this server"),
        (KEY.sign(claims("beta", aud="elsewhere")), "the token's audience is not this server"),
        (KEY.sign(claims("beta", exp=int(time.time()) - 600)), "the token has expired"),
        (Key.ec("key-1").sign(claims("beta")), "the token's signature does not verify"),
    ):
        resp = client.simulate_get("/api/executions", headers=as_jwt(jwt))
        assert resp.status_code == 401 and resp.json == {"error": why}
        assert re.fullmatch(r'Bearer realm="mcp-v8", error="invalid_token"', resp.headers["WWW-Authenticate"])
    listed = _mcp(client, None, "tools/list")
    assert listed.status_code == 401
    resp = client.simulate_post(
        "/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={**reader, "MCP-Protocol-Version": "2025-06-18"},
    )
    assert "run_js" not in {t["name"] for t in resp.json["result"]["tools"]}
    assert idp.fetches == 1  # one fetch served every JWT
