"""The tool servers' client sessions (mcp_v8/tools/sessions.py) against real tool servers
written with the MCP SDK (tests/tool_servers.py), one over stdio and one over Streamable
HTTP, started by the tests: listing with schemas and gates, calls, errors, timeouts that
reach the tool server as notifications/cancelled, and servers that die and come back."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp_v8.tools.caller import (
    ServerUnavailable,
    ToolCallError,
    ToolProtocolError,
    ToolTimeout,
    UnknownServer,
    UnknownTool,
)
from mcp_v8.tools.config import parse_tools_config
from mcp_v8.tools.sessions import ToolSessions

from .tool_server_process import WAIT, HttpToolServer, stdio_server, wait_until


@pytest.fixture
def http_server() -> Iterator[HttpToolServer]:
    server = HttpToolServer().start()
    yield server
    server.kill()


def sessions_for(servers: dict[str, Any]) -> ToolSessions:
    return ToolSessions(
        parse_tools_config({"mcpServers": servers}), ping_interval=0.5, backoff_initial=0.2, backoff_max=1.0
    ).start()


@pytest.fixture
def sessions(http_server: HttpToolServer) -> Iterator[ToolSessions]:
    tool_sessions = sessions_for(
        {
            "local": stdio_server(approveDestructive=True),
            "remote": {
                "type": "http",
                "url": http_server.url,
                "tools": ["add", "echo", "sleep", "point", "pid"],
                "approve": ["echo"],
            },
        }
    )
    try:
        assert tool_sessions.wait_ready(WAIT), tool_sessions.catalogue()
        yield tool_sessions
    finally:
        tool_sessions.close()


def tools_of(sessions: ToolSessions, name: str) -> dict[str, Any]:
    server = next(s for s in sessions.catalogue() if s.name == name)
    return {t.name: t for t in server.tools}


def test_the_catalogue_has_each_server_its_state_schemas_and_gates(sessions: ToolSessions) -> None:
    servers = {s.name: s for s in sessions.catalogue()}
    assert {n: (s.transport, s.state, s.last_error) for n, s in servers.items()} == {
        "local": ("stdio", "ready", None),
        "remote": ("http", "ready", None),
    }
    local = tools_of(sessions, "local")
    assert set(local) == {
        "add",
        "echo",
        "sleep",
        "fail",
        "image",
        "point",
        "pid",
        "delete_everything",
        "grow",
    }
    assert local["add"].input_schema["required"] == ["a", "b"]
    assert local["add"].input_schema["properties"]["a"]["type"] == "integer"
    assert local["add"].description == "Adds two integers."
    assert local["point"].output_schema is not None
    assert set(local["point"].output_schema["properties"]) == {"x", "y"}
    assert local["image"].output_schema is None
    assert local["delete_everything"].annotations == {"destructiveHint": True, "readOnlyHint": False}
    # approveDestructive gates the destructive tool only
    assert {n for n, t in local.items() if t.gated} == {"delete_everything"}

    remote = tools_of(sessions, "remote")
    assert set(remote) == {"add", "echo", "sleep", "point", "pid"}  # its `tools` list
    assert {n for n, t in remote.items() if t.gated} == {"echo"}
    assert servers["remote"].as_json()["tools"][0].keys() == {
        "name",
        "description",
        "inputSchema",
        "outputSchema",
        "annotations",
        "gated",
    }


@pytest.mark.parametrize("server", ["local", "remote"])
def test_calls_return_content_structured_content_and_errors(sessions: ToolSessions, server: str) -> None:
    added = sessions.call(server, "add", {"a": 2, "b": 40}, timeout=WAIT)
    assert added.structured_content == {"result": 42}
    assert added.content == [{"type": "text", "text": "42"}]
    assert not added.is_error
    assert sessions.call(server, "echo", {"text": "héllo"}, timeout=WAIT).content == [
        {"type": "text", "text": "héllo"}
    ]
    assert sessions.call(server, "point", {"x": 1, "y": 2.5}, timeout=WAIT).structured_content == {
        "x": 1.0,
        "y": 2.5,
    }


def test_an_error_result_an_image_and_a_refused_argument(sessions: ToolSessions) -> None:
    failed = sessions.call("local", "fail", {"message": "boom"}, timeout=WAIT)
    assert failed.is_error
    assert "boom" in failed.content[0]["text"]
    image = sessions.call("local", "image", {}, timeout=WAIT)
    assert image.content[0]["type"] == "image"
    assert image.content[0]["mimeType"] == "image/png"
    assert image.content[0]["data"].startswith("iVBOR")
    # The tool server's own validation: an error result naming the argument.
    refused = sessions.call("local", "add", {"a": "two", "b": 1}, timeout=WAIT)
    assert refused.is_error
    assert "valid integer" in refused.content[0]["text"]


def test_unknown_servers_and_tools_and_unexposed_ones_are_refused(sessions: ToolSessions) -> None:
    with pytest.raises(UnknownServer, match="'nowhere'"):
        sessions.call("nowhere", "add", {}, timeout=WAIT)
    with pytest.raises(UnknownTool, match="'nothing'"):
        sessions.call("local", "nothing", {}, timeout=WAIT)
    with pytest.raises(UnknownTool, match="'fail'"):  # not in remote's `tools`
        sessions.call("remote", "fail", {"message": "x"}, timeout=WAIT)


@pytest.mark.parametrize("server", ["local", "remote"])
def test_a_timeout_abandons_the_call_and_the_tool_server_is_told(
    sessions: ToolSessions, server: str, tmp_path: Path
) -> None:
    marker = tmp_path / "cancelled"
    with pytest.raises(ToolTimeout, match="within 1 s"):
        sessions.call(server, "sleep", {"seconds": 600, "marker": str(marker)}, timeout=1)
    wait_until(marker.exists, what="the tool server sees notifications/cancelled")
    assert marker.read_text() == "cancelled"
    # the session goes on
    assert sessions.call(server, "add", {"a": 1, "b": 1}, timeout=WAIT).structured_content == {"result": 2}


def test_a_call_cancelled_by_its_caller_is_cancelled_at_the_tool_server(
    sessions: ToolSessions, tmp_path: Path
) -> None:
    marker = tmp_path / "cancelled"
    pending = sessions.start_call("local", "sleep", {"seconds": 600, "marker": str(marker)}, timeout=WAIT)
    time.sleep(0.5)  # let the request go out; if it had not, nothing would reach the server either
    pending.cancel()
    with pytest.raises(ToolCallError, match="abandoned"):
        pending.result()
    wait_until(marker.exists, what="the tool server sees notifications/cancelled")


def test_calls_from_many_threads_run_at_once(sessions: ToolSessions) -> None:
    results: dict[int, Any] = {}

    def call(i: int) -> None:
        server = "local" if i % 2 else "remote"
        results[i] = sessions.call(server, "sleep", {"seconds": 2}, timeout=WAIT).structured_content

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: {"result": "slept 2.0"} for i in range(8)}


def _pid(sessions: ToolSessions, server: str) -> int | None:
    try:
        result = sessions.call(server, "pid", {}, timeout=WAIT)
    except ServerUnavailable:
        return None
    assert result.structured_content is not None
    return int(result.structured_content["result"])


def test_a_stdio_server_that_dies_mid_call_is_started_again(sessions: ToolSessions) -> None:
    first = _pid(sessions, "local")
    assert first is not None
    pending = sessions.start_call("local", "sleep", {"seconds": 600}, timeout=WAIT)
    time.sleep(0.5)
    os.kill(first, signal.SIGKILL)
    with pytest.raises(ServerUnavailable, match="lost during the call"):
        pending.result()
    pids: list[int | None] = []
    wait_until(lambda: pids.append(_pid(sessions, "local")) or pids[-1] is not None, what="a new process")
    assert pids[-1] != first
    assert sessions.call("local", "add", {"a": 3, "b": 4}, timeout=WAIT).structured_content == {"result": 7}


def test_an_http_server_that_dies_mid_call_is_reconnected_when_it_comes_back(
    sessions: ToolSessions, http_server: HttpToolServer
) -> None:
    pending = sessions.start_call("remote", "sleep", {"seconds": 600}, timeout=WAIT)
    time.sleep(0.5)
    http_server.kill()
    with pytest.raises((ServerUnavailable, ToolProtocolError, ToolCallError)):
        pending.result()
    wait_until(
        lambda: next(s for s in sessions.catalogue() if s.name == "remote").state != "ready",
        what="the lost server is seen",
    )
    remote = next(s for s in sessions.catalogue() if s.name == "remote")
    assert remote.last_error
    with pytest.raises(ServerUnavailable, match="'remote' is (down|connecting)"):
        sessions.call("remote", "add", {"a": 1, "b": 2}, timeout=WAIT)
    http_server.start()  # the same port
    wait_until(lambda: sessions.wait_ready(0.1), what="the server is ready again")
    assert sessions.call("remote", "add", {"a": 1, "b": 2}, timeout=WAIT).structured_content == {"result": 3}


def test_a_server_that_cannot_start_is_down_with_its_error_and_the_others_serve(tmp_path: Path) -> None:
    sessions = sessions_for(
        {"broken": {"command": str(tmp_path / "no-such-program")}, "local": stdio_server()}
    )
    try:
        wait_until(
            lambda: {s.name: s.state for s in sessions.catalogue()}.get("local") == "ready",
            what="local is ready",
        )
        wait_until(
            lambda: next(s for s in sessions.catalogue() if s.name == "broken").last_error is not None,
            what="broken has an error",
        )
        broken = next(s for s in sessions.catalogue() if s.name == "broken")
        assert broken.state in ("down", "connecting")
        assert broken.tools == ()
        assert "no-such-program" in str(broken.last_error) or "No such file" in str(broken.last_error)
        with pytest.raises(ServerUnavailable, match="'broken' is"):
            sessions.call("broken", "add", {"a": 1, "b": 2}, timeout=WAIT)
        assert sessions.call("local", "add", {"a": 1, "b": 2}, timeout=WAIT).structured_content == {
            "result": 3
        }
    finally:
        sessions.close()


def test_a_call_after_close_is_refused_clearly() -> None:
    sessions = sessions_for({"local": stdio_server()})
    sessions.close()
    with pytest.raises(ServerUnavailable, match="closed"):
        sessions.call("local", "add", {"a": 1, "b": 2}, timeout=WAIT)


def test_mcp_v8_itself_as_a_tool_server(tmp_path: Path) -> None:
    """mcp-v8's own MCP server over stdio, as a tool server: its run_js called like any tool."""
    path = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}
    env = {"MCP_V8_DATA_DIR": str(tmp_path), "MCP_V8_WORKERS": "1", **path}
    sessions = sessions_for(
        {"sandbox": {"command": sys.executable, "args": ["-m", "mcp_v8", "mcp"], "env": env}}
    )
    try:
        assert sessions.wait_ready(WAIT), sessions.catalogue()
        tools = tools_of(sessions, "sandbox")
        assert "run_js" in tools and tools["run_js"].output_schema is not None
        assert tools["cancel_execution"].annotations is not None
        assert tools["cancel_execution"].annotations["destructiveHint"] is True
        result = sessions.call("sandbox", "run_js", {"code": "6 * 7"}, timeout=WAIT)
        assert not result.is_error, result.content
        assert result.structured_content is not None
        assert (result.structured_content["status"], result.structured_content["result"]) == (
            "completed",
            "42",
        )
    finally:
        sessions.close()


def test_the_tools_are_listed_again_when_the_server_says_they_changed(sessions: ToolSessions) -> None:
    assert "grown" not in tools_of(sessions, "local")
    assert sessions.call("local", "grow", {"name": "grown"}, timeout=WAIT).structured_content == {
        "result": "added grown"
    }
    wait_until(lambda: "grown" in tools_of(sessions, "local"), what="the new tool is listed")
    assert tools_of(sessions, "local")["grown"].description == "Added at run time."
    assert sessions.call("local", "grown", {"text": "hi"}, timeout=WAIT).content == [
        {"type": "text", "text": "hi"}
    ]
