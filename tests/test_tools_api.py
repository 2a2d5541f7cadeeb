"""GET /api/tools and GET /api/tools/declarations on a service whose --tools-config names a
real stdio tool server (tests/tool_servers.py), checked against openapi.json."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from falcon import testing
from openapi_schema_validator import OAS31Validator

from mcp_v8.app import Service, create_app
from mcp_v8.config import Settings
from mcp_v8.mcp.tools import RUN_JS

from .service_helpers import HOST

SERVERS = Path(__file__).resolve().parent / "tool_servers.py"
SPEC = json.loads((Path(__file__).resolve().parents[1] / "openapi.json").read_text(encoding="utf-8"))


def conforms(name: str, value: Any) -> None:
    OAS31Validator({"$ref": f"#/components/schemas/{name}", "components": SPEC["components"]}).validate(value)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[testing.TestClient]:
    base = tmp_path_factory.mktemp("tools")
    tools_file = base / "tools.json"
    tools_file.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "calc": {"command": sys.executable, "args": [str(SERVERS), "stdio"], "approve": ["echo"]},
                    "gone": {"type": "http", "url": "http://127.0.0.1:9/mcp"},
                }
            }
        )
    )
    settings = Settings(data_dir=base / "data", workers=1, tools_config=tools_file, approver_token="approver")
    service = Service(settings).start()
    try:
        yield testing.TestClient(create_app(service=service))
    finally:
        service.close()


def servers(client: testing.TestClient) -> dict[str, Any]:
    resp = client.simulate_get("/api/tools", headers=HOST)
    assert resp.status_code == 200, resp.text
    conforms("ToolCatalogue", resp.json)
    return {s["name"]: s for s in resp.json["servers"]}


def test_the_servers_their_states_and_tools(client: testing.TestClient) -> None:
    deadline = time.monotonic() + 90
    while servers(client)["calc"]["state"] != "ready" and time.monotonic() < deadline:
        time.sleep(0.1)
    found = servers(client)
    assert list(found) == ["calc", "gone"]  # the file's order
    calc = found["calc"]
    assert (calc["transport"], calc["state"], calc["last_error"]) == ("stdio", "ready", None)
    tools = {t["name"]: t for t in calc["tools"]}
    assert tools["add"]["inputSchema"]["required"] == ["a", "b"]
    assert tools["echo"]["gated"] and not tools["add"]["gated"]
    while servers(client)["gone"]["last_error"] is None and time.monotonic() < deadline:
        time.sleep(0.1)
    gone = servers(client)["gone"]
    assert gone["state"] in ("down", "connecting") and gone["last_error"] and gone["tools"] == []


def test_the_declarations(client: testing.TestClient) -> None:
    deadline = time.monotonic() + 90
    while servers(client)["calc"]["state"] != "ready" and time.monotonic() < deadline:
        time.sleep(0.1)
    resp = client.simulate_get("/api/tools/declarations", headers=HOST)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    assert "declare const tools: {" in resp.text
    assert (
        "    add(args: {\n      a: number;\n      b: number;\n    }): Promise<{\n      result: number;\n    }>;"
        in resp.text
    )
    assert "  gone: {\n  };" in resp.text


def mcp(client: testing.TestClient, method: str, params: dict[str, Any]) -> dict[str, Any]:
    resp = client.simulate_post(
        "/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
        headers={
            **HOST,
            "MCP-Protocol-Version": "2025-06-18",
            "Accept": "application/json, text/event-stream",
        },
    )
    assert resp.status_code == 200, resp.text
    result: dict[str, Any] = resp.json["result"]
    return result


def test_search_tools_and_describe_tools_over_mcp(client: testing.TestClient) -> None:
    deadline = time.monotonic() + 90
    while servers(client)["calc"]["state"] != "ready" and time.monotonic() < deadline:
        time.sleep(0.1)
    listed = {t["name"]: t for t in mcp(client, "tools/list", {})["tools"]}
    assert {"search_tools", "describe_tools", "run_js"} <= set(listed)
    found = mcp(
        client, "tools/call", {"name": "search_tools", "arguments": {"query": "integers", "limit": 3}}
    )
    assert not found.get("isError")
    matches = found["structuredContent"]["matches"]
    assert matches[0].startswith(
        "tools.calc.add(args: { a: number; b: number }): Promise<{ result: number }>"
    )
    assert len(matches) <= 3
    assert "tools.calc.add(" in found["content"][0]["text"]
    described = mcp(
        client, "tools/call", {"name": "describe_tools", "arguments": {"names": ["calc.echo", "zz"]}}
    )
    text = described["structuredContent"]["declarations"]
    assert "tools.calc.echo(args: {" in text and "Needs approval" in text and "// zz: no such tool" in text
    refused = mcp(client, "tools/call", {"name": "describe_tools", "arguments": {"names": []}})
    assert refused["isError"] and "names" in refused["content"][0]["text"]


def test_run_js_names_the_tool_servers_and_says_how_to_call_them(client: testing.TestClient) -> None:
    run_js = next(t for t in mcp(client, "tools/list", {})["tools"] if t["name"] == "run_js")
    description = run_js["description"]
    assert description.startswith(RUN_JS)  # what it said before, then the tool servers
    assert "scripts can call the tools of `calc`, `gone`." in description  # the file's order
    for said in ("tools.<server>.<tool>(args)", "mcp.callTool(server, tool, args)", "ToolError"):
        assert said in description, said
    assert "search_tools" in description and "describe_tools" in description
    assert "`waiting`" in description and "pending_tool_calls" in description


def test_an_unknown_query_parameter_is_refused(client: testing.TestClient) -> None:
    resp = client.simulate_get("/api/tools", params={"q": "x"}, headers=HOST)
    assert resp.status_code == 400
    assert "'q'" in resp.text


def test_without_tools_config_there_are_no_servers(tmp_path: Path) -> None:
    service = Service(Settings(data_dir=tmp_path, workers=1)).start()
    try:
        client = testing.TestClient(create_app(service=service))
        assert client.simulate_get("/api/tools", headers=HOST).json == {"servers": []}
        listed = {t["name"]: t for t in mcp(client, "tools/list", {})["tools"]}
        assert "run_js" in listed and not {"search_tools", "describe_tools"} & set(listed)
        assert listed["run_js"]["description"] == RUN_JS  # says nothing of tool servers
        text = client.simulate_get("/api/tools/declarations", headers=HOST).text
        assert text.endswith("\ndeclare const tools: {\n};\n"), text  # no server
        assert "declare class ToolError" in text and "callTool(" in text  # the surface is there still
    finally:
        service.close()
