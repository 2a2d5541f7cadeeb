"""Code mode through the whole service: a script's tool calls made by the server against a real
stdio tool server (tests/tool_servers.py) named in --tools-config."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from falcon import testing

from mcp_v8.app import Service, create_app
from mcp_v8.config import Settings

from .service_helpers import HOST, submit, wait

SERVERS = Path(__file__).resolve().parent / "tool_servers.py"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[testing.TestClient]:
    base = tmp_path_factory.mktemp("code-mode")
    tools_file = base / "tools.json"
    tools_file.write_text(
        json.dumps({"mcpServers": {"calc": {"command": sys.executable, "args": [str(SERVERS), "stdio"]}}})
    )
    service = Service(Settings(data_dir=base / "data", workers=1, tools_config=tools_file)).start()
    try:
        client = testing.TestClient(create_app(service=service))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            calc = client.simulate_get("/api/tools", headers=HOST).json["servers"][0]
            if calc["state"] == "ready":
                break
            time.sleep(0.1)
        yield client
    finally:
        service.close()


def run(client: testing.TestClient, code: str, **fields: Any) -> dict[str, Any]:
    return wait(client, submit(client, code, **fields), timeout=120)


def test_a_script_uses_three_tools_in_one_execution(client: testing.TestClient) -> None:
    info = run(
        client,
        """
        // add returns an int: the SDK's servers wrap it as structuredContent {result: 5}.
        const {result: sum} = await tools.calc.add({a: 2, b: 3});
        const said = await mcp.callTool('calc', 'echo', {text: `sum=${sum}`});
        const p = await tools.calc.point({x: sum, y: 1});
        ({sum, said, p})
        """,
    )
    assert info["status"] == "completed", json.dumps(info)
    assert json.loads(info["result"]) == {"sum": 5, "said": {"result": "sum=5"}, "p": {"x": 5, "y": 1}}


def test_calls_awaited_together_run_in_parallel(client: testing.TestClient) -> None:
    # Four one-second sleeps awaited together: in sequence they would take four seconds at least.
    info = run(
        client,
        """
        const t0 = Date.now();
        const said = await Promise.all([1, 2, 3, 4].map(() => tools.calc.sleep({seconds: 1})));
        ({said, ms: Date.now() - t0})
        """,
    )
    assert info["status"] == "completed", json.dumps(info)
    result = json.loads(info["result"])
    assert result["said"] == [{"result": "slept 1.0"}] * 4
    assert result["ms"] < 4000, result


def test_a_bad_argument_is_refused_before_the_call(client: testing.TestClient) -> None:
    info = run(
        client,
        """
        let caught;
        try { await tools.calc.add({a: 'x', b: 1}); } catch (e) { caught = `${e.name}: ${e.message}`; }
        caught
        """,
    )
    assert info["status"] == "completed", json.dumps(info)
    assert json.loads(info["result"]).startswith("TypeError: calc.add: arguments.a"), info


def test_a_failing_tool_throws_tool_error(client: testing.TestClient) -> None:
    info = run(
        client,
        """
        let caught;
        try { await tools.calc.fail({message: 'no luck'}); }
        catch (e) { caught = [e instanceof ToolError, e.server, e.tool, e.message]; }
        caught
        """,
    )
    assert info["status"] == "completed", json.dumps(info)
    is_tool_error, server, tool, message = json.loads(info["result"])
    assert (is_tool_error, server, tool) == (True, "calc", "fail")
    assert "no luck" in message


def test_a_typescript_script_calls_tools_with_no_import(client: testing.TestClient) -> None:
    """The declarations are ambient: a TypeScript script uses `tools`, `mcp` and `ToolError`
    with type annotations and imports nothing. (The request has no language field: the
    service detects TypeScript, as the engine's `auto` does.)"""
    info = run(
        client,
        """
        interface Sum { result: number }
        const sum: Sum = (await tools.calc.add({a: 20, b: 22})) as Sum;
        const via: unknown = await mcp.callTool('calc', 'add', {a: 1, b: 1});
        let failed: string = '';
        try { await tools.calc.fail({message: 'typed'}); }
        catch (e: unknown) { if (e instanceof ToolError) failed = `${e.server}.${e.tool}`; }
        ({sum: sum.result, via, failed})
        """,
    )
    assert info["status"] == "completed", json.dumps(info)
    assert json.loads(info["result"]) == {"sum": 42, "via": {"result": 2}, "failed": "calc.fail"}
