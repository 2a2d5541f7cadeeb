"""Code mode through the whole service: a script's tool calls made by the server against real
tool servers named in --tools-config: tests/tool_servers.py over stdio (``calc``) and over
Streamable HTTP (``remote``), and mcp-v8's own ``mcp`` over stdio (``sandbox``); and an
official MCP SDK client driving mcp-v8's run_js."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from falcon import testing

from mcp_v8.app import Service, create_app
from mcp_v8.config import Settings
from mcp_v8.executions.tool_calls import DEFAULT_CALL_TIMEOUT

from .live_server import LiveServer
from .service_helpers import HOST, submit, wait
from .tool_server_process import WAIT, HttpToolServer, stdio_server, wait_until


def _pythonpath() -> dict[str, str]:
    """A stdio server gets the SDK's default environment: it needs this checkout's path."""
    return {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}


@pytest.fixture(scope="module")
def http_server() -> Iterator[HttpToolServer]:
    server = HttpToolServer().start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory, http_server: HttpToolServer
) -> Iterator[testing.TestClient]:
    base = tmp_path_factory.mktemp("code-mode")
    tools_file = base / "tools.json"
    sandbox_env = {"MCP_V8_DATA_DIR": str(base / "sandbox"), "MCP_V8_WORKERS": "1", **_pythonpath()}
    tools_file.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "calc": stdio_server(),
                    "remote": {"type": "http", "url": http_server.url},
                    "sandbox": {
                        "command": sys.executable,
                        "args": ["-m", "mcp_v8", "mcp"],
                        "env": sandbox_env,
                    },
                }
            }
        )
    )
    service = Service(Settings(data_dir=base / "data", workers=1, tools_config=tools_file)).start()
    try:
        client = testing.TestClient(create_app(service=service))
        wait_until(
            lambda: all(s["state"] == "ready" for s in servers(client)), what="the tool servers are ready"
        )
        yield client
    finally:
        service.close()


def servers(client: testing.TestClient) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = client.simulate_get("/api/tools", headers=HOST).json["servers"]
    return found


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


def test_cancel_abandons_a_call_in_flight_and_the_tool_server_is_told(
    client: testing.TestClient, tmp_path: Path
) -> None:
    started, marker = tmp_path / "started", tmp_path / "cancelled"
    args = json.dumps({"seconds": 600, "started": str(started), "marker": str(marker)})
    # Were the call not cancelled with the execution, only its own deadline would end it (the
    # per-call timeout; the execution's is the longest allowed): the marker is waited for half
    # as long, a wide margin for a notification that takes well under a second.
    execution_id = submit(client, f"await tools.calc.sleep({args})", execution_timeout_secs=300)
    wait_until(started.exists, what="the tool server runs the call")
    resp = client.simulate_post(f"/api/executions/{execution_id}/cancel", headers=HOST)
    assert resp.status_code == 200, resp.text
    assert wait(client, execution_id, timeout=WAIT)["status"] == "cancelled"
    # the session sent notifications/cancelled: the tool server cancelled the sleep
    wait_until(
        lambda: marker.exists() and marker.read_text() == "cancelled",
        timeout=DEFAULT_CALL_TIMEOUT / 2,
        what="notifications/cancelled",
    )
    assert json.loads(run(client, "await tools.calc.add({a: 1, b: 1})")["result"]) == {"result": 2}


def test_a_stdio_tool_server_that_dies_mid_call_fails_the_call_and_comes_back(
    client: testing.TestClient, tmp_path: Path
) -> None:
    first = run(client, "(await tools.calc.pid()).result")
    assert first["status"] == "completed", json.dumps(first)
    pid = json.loads(first["result"])
    started = tmp_path / "started"
    execution_id = submit(
        client,
        f"""
        let caught;
        try {{ await tools.calc.sleep({json.dumps({"seconds": 600, "started": str(started)})}); }}
        catch (e) {{ caught = [e.name, e instanceof ToolError, e.message]; }}
        caught
        """,
    )
    wait_until(started.exists, what="the tool server runs the call")
    os.kill(pid, signal.SIGKILL)
    info = wait(client, execution_id, timeout=WAIT)
    assert info["status"] == "completed", json.dumps(info)
    name, is_tool_error, message = json.loads(info["result"])
    assert (name, is_tool_error) == ("Error", False)  # a failure of the call, not the tool's error
    assert "lost during the call" in message, message
    # A later execution's call succeeds once the session has started the server again.
    again = """
        let r;
        try { r = [(await tools.calc.add({a: 3, b: 4})).result, (await tools.calc.pid()).result]; }
        catch (e) { r = e.message; }
        r
        """
    seen: list[Any] = []
    wait_until(
        lambda: seen.append(json.loads(run(client, again)["result"])) or isinstance(seen[-1], list),
        what="a call succeeds after the server came back",
    )
    assert seen[-1][0] == 7 and seen[-1][1] != pid
    assert all(isinstance(s, list) or "calc" in s for s in seen), seen  # the failures said why


def test_a_streamable_http_tool_server(client: testing.TestClient) -> None:
    info = run(
        client,
        """
        const [sum, said, p] = await Promise.all([
          tools.remote.add({a: 2, b: 40}), tools.remote.echo({text: 'héllo'}), tools.remote.point({x: 1, y: 2.5}),
        ]);
        ({sum, said, p})
        """,
    )
    assert info["status"] == "completed", json.dumps(info)
    assert json.loads(info["result"]) == {
        "sum": {"result": 42},
        "said": {"result": "héllo"},
        "p": {"x": 1, "y": 2.5},
    }


def test_an_image_result_is_the_image_block(client: testing.TestClient) -> None:
    info = run(client, "await tools.calc.image()")
    assert info["status"] == "completed", json.dumps(info)
    # the block as the tool sent it: the PNG in base64 (the 1x1 PNG of tests/tool_servers.py)
    assert json.loads(info["result"]) == {
        "type": "image",
        "data": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
        "mimeType": "image/png",
    }


def test_mcp_v8_itself_as_a_tool_server_from_a_script(client: testing.TestClient) -> None:
    """mcp-v8's own `mcp` over stdio: a script runs a script in another sandbox, as a tool."""
    info = run(
        client,
        """
        const r = await tools.sandbox.run_js({code: '6 * 7', snapshot: false});
        [r.status, r.result, typeof r.execution_id]
        """,
    )
    assert info["status"] == "completed", json.dumps(info)
    assert json.loads(info["result"]) == ["completed", "42", "string"]


TASK = """
const {result: sum} = await tools.calc.add({a: 19, b: 23});
const said = await tools.calc.echo({text: `the sum is ${sum}`});
const p = await tools.calc.point({x: sum, y: -1});
({sum, said, p})
"""


async def _sdk_client_task(transport: str, tools_file: Path, data_dir: Path) -> tuple[str, dict[str, Any]]:
    """An MCP client with nothing but the official SDK: reaches mcp-v8 over ``transport`` (stdio:
    it starts `mcp-v8 mcp`; http: `mcp-v8 serve`'s /mcp), finds the tools with search_tools,
    then does the task in one run_js call."""
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client
    from mcp.client.streamable_http import streamable_http_client

    async with contextlib.AsyncExitStack() as stack:
        if transport == "stdio":
            env = {
                "MCP_V8_TOOLS_CONFIG": str(tools_file),
                "MCP_V8_DATA_DIR": str(data_dir),
                "MCP_V8_WORKERS": "1",
                **_pythonpath(),
            }
            params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_v8", "mcp"], env=env)
            read, write = await stack.enter_async_context(stdio_client(params))
        else:
            server = LiveServer(data_dir, "--workers", "1", "--tools-config", str(tools_file))
            await asyncio.to_thread(server.start)
            stack.callback(server.stop)
            read, write = await stack.enter_async_context(streamable_http_client(server.url + "/mcp"))
        session = await stack.enter_async_context(ClientSession(read, write))
        await session.initialize()
        listed = {t.name: t for t in (await session.list_tools()).tools}
        description = listed["run_js"].description or ""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while True:  # the tool servers connect in the background
            found = await session.call_tool("search_tools", {"query": "add"})
            if found.structured_content and found.structured_content["matches"]:
                break
            assert loop.time() < deadline, "calc never listed"
            await asyncio.sleep(0.2)
        result = await session.call_tool("run_js", {"code": TASK})
        assert not result.is_error, result.content
        assert result.structured_content is not None
        return description, result.structured_content


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_an_official_sdk_client_with_only_run_js_does_a_three_tool_task(
    transport: str, tmp_path: Path
) -> None:
    """The issue's "done when": a client with only run_js completes a task that needs three tools
    in one execution."""
    tools_file = tmp_path / "tools.json"
    tools_file.write_text(json.dumps({"mcpServers": {"calc": stdio_server()}}))
    description, execution = asyncio.run(
        asyncio.wait_for(_sdk_client_task(transport, tools_file, tmp_path / "data"), timeout=WAIT * 2)
    )
    assert "scripts can call the tools of `calc`" in description
    assert execution["status"] == "completed", execution
    assert json.loads(execution["result"]) == {
        "sum": 42,
        "said": {"result": "the sum is 42"},
        "p": {"x": 42, "y": -1},
    }


GATED_TASK = """
const {result: sum} = await tools.calc.add({a: 40, b: 2});
let said;
try { said = await tools.calc.echo({text: `the sum is ${sum}`}); }
catch (e) { said = `${e.name}: ${e.reason}`; }
({sum, said})
"""


async def _elicited_run(tools_file: Path, data_dir: Path, answer: dict[str, Any]) -> tuple[list[Any], Any]:
    """run_js over stdio by an SDK client that declares elicitation and answers ``answer``
    (an ElicitResult's fields) to each question; the questions asked and the run."""
    from mcp import types
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    asked: list[Any] = []

    async def on_elicit(context: Any, params: Any) -> Any:
        asked.append(params)
        return types.ElicitResult(**answer)

    env = {
        "MCP_V8_TOOLS_CONFIG": str(tools_file),
        "MCP_V8_APPROVER_TOKEN": "the-approver",
        "MCP_V8_DATA_DIR": str(data_dir),
        "MCP_V8_WORKERS": "1",
        **_pythonpath(),
    }
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_v8", "mcp"], env=env)
    async with contextlib.AsyncExitStack() as stack:
        read, write = await stack.enter_async_context(stdio_client(params))
        session = await stack.enter_async_context(ClientSession(read, write, elicitation_callback=on_elicit))
        await session.initialize()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while True:  # the tool servers connect in the background
            found = await session.call_tool("search_tools", {"query": "echo"})
            if found.structured_content and found.structured_content["matches"]:
                break
            assert loop.time() < deadline, "calc never listed"
            await asyncio.sleep(0.2)
        result = await session.call_tool("run_js", {"code": GATED_TASK})
        return asked, result.structured_content


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ({"action": "accept", "content": {"approve": True}}, {"result": "the sum is 42"}),
        ({"action": "accept", "content": {"approve": False, "reason": "not now"}}, "ToolDenied: not now"),
        ({"action": "decline"}, "ToolDenied: declined by the user"),
    ],
)
def test_over_stdio_the_person_behind_the_client_approves_through_elicitation(
    answer: dict[str, Any], said: Any, tmp_path: Path
) -> None:
    tools_file = tmp_path / "tools.json"
    tools_file.write_text(json.dumps({"mcpServers": {"calc": stdio_server(approve=["echo"])}}))
    asked, execution = asyncio.run(
        asyncio.wait_for(_elicited_run(tools_file, tmp_path / "data", answer), timeout=WAIT * 2)
    )
    assert len(asked) == 1  # one gated call: one question, naming it
    assert "calc.echo" in asked[0].message and '"the sum is 42"' in asked[0].message
    assert execution["status"] == "completed", execution
    assert json.loads(execution["result"]) == {"sum": 42, "said": said}


def test_a_dismissed_question_leaves_the_run_waiting_for_the_approver(tmp_path: Path) -> None:
    tools_file = tmp_path / "tools.json"
    tools_file.write_text(json.dumps({"mcpServers": {"calc": stdio_server(approve=["echo"])}}))
    asked, execution = asyncio.run(
        asyncio.wait_for(_elicited_run(tools_file, tmp_path / "data", {"action": "cancel"}), timeout=WAIT * 2)
    )
    assert len(asked) == 1
    assert execution["status"] == "waiting", execution
    assert [(c["server"], c["tool"]) for c in execution["pending_tool_calls"]] == [("calc", "echo")]
