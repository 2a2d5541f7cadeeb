"""The MCP server end to end, spoken to with the official SDK's own client: ``mcp-v8 mcp`` over
stdio (a subprocess) and ``POST /mcp`` of a real ``mcp-v8 serve`` over Streamable HTTP; then the
HTTP and stdio transports raw, for what the SDK never sends."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from .live_server import LiveServer
from .test_mcp_protocol import MALFORMED

VERSIONS = ("2025-03-26", "2025-06-18", "2025-11-25")
STRUCTURED = ("2025-06-18", "2025-11-25")
TOOLS = {
    "run_js",
    "get_execution",
    "get_execution_output",
    "cancel_execution",
    "list_executions",
    "list_sessions",
    "list_session_snapshots",
    "get_heap_tags",
    "set_heap_tags",
    "delete_heap_tags",
    "query_heaps_by_tags",
}
TEST_TIMEOUT = 120  # seconds for one test's whole exchange: generous, the machine may be loaded
WAIT_MS = 30000
TOKEN = "s3cret-token-for-mcp"

Connect = Callable[[], Client]


def run(body: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        with anyio.fail_after(TEST_TIMEOUT):
            await body()

    anyio.run(bounded)


def stdio_params(data_dir: Path, **env: str) -> StdioServerParameters:
    # The SDK passes the server a few variables only: PYTHONPATH too, so that the server runs
    # the code under test (a work tree before the installed package).
    path = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcp_v8", "mcp"],
        env={"MCP_V8_DATA_DIR": str(data_dir), "MCP_V8_WORKERS": "2", "PYTHONUNBUFFERED": "1", **path, **env},
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("mcp-http"), "--workers", "2").start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def stdio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcp-stdio")


@pytest.fixture(params=["stdio", "http"])
def connect(request: pytest.FixtureRequest) -> Connect:
    """A factory of SDK clients (mode auto: the server/discover probe, then initialize)."""
    if request.param == "stdio":
        params = stdio_params(request.getfixturevalue("stdio_dir"))
        return lambda: Client(params)
    url = request.getfixturevalue("server").url + "/mcp"
    return lambda: Client(url)


async def call(client: Client, name: str, arguments: dict[str, Any], **kw: Any) -> Any:
    """A tool's result, also checking that its text content is its structuredContent's JSON
    (or, for an error, carries it after the message)."""
    result = await client.call_tool(name, arguments, **kw)
    text = result.content[0].text  # type: ignore[union-attr]
    if result.structured_content is not None and not result.is_error:
        assert json.loads(text) == result.structured_content
    return result


async def run_js(client: Client, code: str, **fields: Any) -> dict[str, Any]:
    result = await call(client, "run_js", {"code": code, **fields})
    sc = result.structured_content
    assert sc is not None, result
    assert result.is_error == (sc["status"] in ("failed", "timed_out", "cancelled"))
    return dict(sc)


async def until_terminal(client: Client, execution_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while True:
        sc = (
            await call(client, "get_execution", {"execution_id": execution_id, "wait_ms": WAIT_MS})
        ).structured_content
        if sc["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return dict(sc)


# -- 1. initialize and tools/list ---------------------------------------------------------


def test_initialize_falls_back_and_lists_tools(connect: Connect) -> None:
    async def body() -> None:
        async with connect() as client:
            assert client.protocol_version in VERSIONS
            # the server/discover probe failed (method not found or 400): the initialize handshake ran
            assert client.session.initialize_result is not None
            assert client.session.discover_result is None
            assert client.server_info is not None and client.server_info.name == "mcp-v8"
            assert client.server_capabilities.tools is not None
            assert client.instructions and "run_js" in client.instructions
            listing = await client.list_tools()
            tools = {t.name: t for t in listing.tools}
            assert set(tools) == TOOLS
            for tool in tools.values():
                assert tool.input_schema["type"] == "object"
                assert tool.description
                if client.protocol_version in STRUCTURED:
                    assert tool.output_schema is not None and tool.output_schema.get("type") == "object"
            assert "code" in tools["run_js"].input_schema["required"]

    run(body)


# -- 2. run_js and heaps --------------------------------------------------------------------


def test_run_js_resumes_its_heap(connect: Connect) -> None:
    async def body() -> None:
        async with connect() as client:
            first = await run_js(client, "var n = 41; n")
            assert first["status"] == "completed" and first["result"] == "41"
            assert isinstance(first["heap"], str) and len(first["heap"]) == 64
            assert first["js_error"] is None and first["error"] is None
            second = await run_js(client, "n + 1", heap=first["heap"])
            assert second["status"] == "completed" and second["result"] == "42"
            # a typescript run and a promise result
            third = await run_js(
                client, "const f = (x: number): number => x * 2; await Promise.resolve(f(21))"
            )
            assert third["result"] == "42"

    run(body)


# -- 3. a failing script --------------------------------------------------------------------


def test_failing_script_is_an_error_with_its_position(connect: Connect) -> None:
    async def body() -> None:
        async with connect() as client:
            result = await client.call_tool("run_js", {"code": "let a = 1;\nnull.x"})
            assert result.is_error is True
            text = result.content[0].text  # type: ignore[union-attr]
            assert "failed" in text and "TypeError" in text
            sc = result.structured_content
            assert sc is not None and sc["status"] == "failed"
            err = sc["js_error"]
            assert err["name"] == "TypeError"
            assert "null" in err["message"]
            assert err["line"] == 2 and isinstance(err["column"], int)
            assert "<input>:2" in err["stack"]
            thrown = await run_js(client, "function f() {\n  throw new RangeError('too far');\n}\nf()")
            assert thrown["js_error"]["name"] == "RangeError"
            assert thrown["js_error"]["message"] == "too far"
            assert thrown["js_error"]["line"] == 2
            # The engine's fields, never the text parsed back: this message names another position.
            misleading = await run_js(client, "let b = 2;\n\nnull.x // <input>:9:9")
            assert (misleading["js_error"]["line"], misleading["js_error"]["name"]) == (3, "TypeError")
            named = await run_js(client, "throw new TypeError('at <input>:9:9')")
            assert (named["js_error"]["line"], named["js_error"]["message"]) == (1, "at <input>:9:9")
            plain = await run_js(client, "throw 5")
            assert plain["js_error"] == {
                "name": None,
                "message": "Uncaught 5",
                "stack": "Uncaught 5",
                "line": None,
                "column": None,
            }

    run(body)


# -- 4. long scripts and cancellation -------------------------------------------------------


def test_long_script_returns_running_then_cancel_tool(connect: Connect) -> None:
    async def body() -> None:
        async with connect() as client:
            sc = await run_js(client, "while (true) {}", wait_ms=200, execution_timeout_secs=120)
            assert sc["status"] in ("queued", "running")
            assert sc["output"]["has_more"] is True
            cancel = await call(client, "cancel_execution", {"execution_id": sc["execution_id"]})
            assert cancel.is_error is False and cancel.structured_content["ok"] is True
            final = await until_terminal(client, sc["execution_id"])
            assert final["status"] == "cancelled"
            again = await client.call_tool("get_execution", {"execution_id": sc["execution_id"]})
            assert again.is_error is True  # a cancelled run reads as an error
            # cancelling a finished execution is a refusal, not a protocol error
            late = await client.call_tool("cancel_execution", {"execution_id": sc["execution_id"]})
            assert late.is_error is True and late.content[0].text  # type: ignore[union-attr]
            # an unknown execution
            unknown = await client.call_tool("get_execution", {"execution_id": str(uuid.uuid4())})
            assert unknown.is_error is True and "not found" in unknown.content[0].text  # type: ignore[union-attr]
            assert (await run_js(client, "1 + 1"))["result"] == "2"

    run(body)


async def _execution_of_session(client: Client, session: str) -> dict[str, Any]:
    """The one execution of ``session`` (waits for it to be listed)."""
    deadline = time.monotonic() + 60
    while True:
        listed = await call(client, "list_executions", {"session": session})
        executions = listed.structured_content["executions"]
        if executions or time.monotonic() > deadline:
            assert len(executions) == 1, executions
            return dict(executions[0])
        await anyio.sleep(0.1)


def test_stdio_request_timeout_sends_cancelled_and_cancels_the_execution(stdio_dir: Path) -> None:
    async def body() -> None:
        async with Client(stdio_params(stdio_dir)) as client:
            session = "timeout-" + uuid.uuid4().hex[:8]
            with pytest.raises(MCPError) as caught:
                # the read timeout abandons the request: the SDK sends notifications/cancelled
                await client.call_tool(
                    "run_js",
                    {"code": "while (true) {}", "execution_timeout_secs": 120, "session": session},
                    read_timeout_seconds=3,
                )
            assert "timed out" in caught.value.error.message
            execution = await _execution_of_session(client, session)
            final = await until_terminal(client, execution["execution_id"])
            assert final["status"] == "cancelled", final
            assert await client.session.send_ping() is not None
            assert (await run_js(client, "'after'"))["result"] == '"after"'

    run(body)


def test_stdio_cancelling_the_caller_cancels_the_execution(stdio_dir: Path) -> None:
    async def body() -> None:
        async with Client(stdio_params(stdio_dir)) as client:
            session = "scope-" + uuid.uuid4().hex[:8]
            with anyio.move_on_after(
                3
            ) as scope:  # the caller gives up: the SDK sends notifications/cancelled
                await client.call_tool(
                    "run_js", {"code": "while (true) {}", "execution_timeout_secs": 120, "session": session}
                )
            assert scope.cancelled_caught
            execution = await _execution_of_session(client, session)
            final = await until_terminal(client, execution["execution_id"])
            assert final["status"] == "cancelled", final
            assert (await run_js(client, "'after'"))["result"] == '"after"'

    run(body)


# -- 5. output paging -----------------------------------------------------------------------


def test_output_paging(connect: Connect) -> None:
    async def body() -> None:
        async with connect() as client:
            sc = await run_js(client, "for (let i = 0; i < 250; i++) console.log('line ' + i); 'done'")
            assert sc["status"] == "completed" and sc["result"] == '"done"'
            out = sc["output"]
            assert out["data"].splitlines() == [f"line {i}" for i in range(100)]
            assert out["has_more"] is True and out["next_line_offset"] == 100 and out["total_lines"] == 250
            lines: list[str] = out["data"].splitlines()
            offset = out["next_line_offset"]
            while True:
                page = (
                    await call(
                        client,
                        "get_execution_output",
                        {"execution_id": sc["execution_id"], "line_offset": offset, "line_limit": 60},
                    )
                ).structured_content
                lines += page["data"].splitlines()
                offset = page["next_line_offset"]
                if not page["has_more"]:
                    break
            assert lines == [f"line {i}" for i in range(250)]
            bad = await client.call_tool(
                "get_execution_output", {"execution_id": sc["execution_id"], "line_offset": -1}
            )
            assert bad.is_error is True and "line_offset" in bad.content[0].text  # type: ignore[union-attr]

    run(body)


# -- 6. progress ----------------------------------------------------------------------------

TICKS = "for (let i = 0; i < 5; i++) { console.log('tick ' + i); await new Promise(r => setTimeout(r, 100)); } 'ticked'"


def test_stdio_progress_carries_console_output(stdio_dir: Path) -> None:
    async def body() -> None:
        messages: list[str] = []
        values: list[float] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            values.append(progress)
            messages.append(message or "")

        async with Client(stdio_params(stdio_dir)) as client:
            result = await client.call_tool("run_js", {"code": TICKS}, progress_callback=on_progress)
            assert result.is_error is False and result.structured_content["result"] == '"ticked"'
            assert "".join(messages).splitlines() == [f"tick {i}" for i in range(5)]
            assert values == sorted(values) and len(set(values)) == len(values)  # increasing
            # a failing run still reports the output it made before failing
            messages.clear()
            failed = await client.call_tool(
                "run_js",
                {"code": "console.log('before'); throw new Error('boom')"},
                progress_callback=on_progress,
            )
            assert failed.is_error is True and "before" in "".join(messages)

    run(body)


def test_progress_callback_over_http_gets_result(server: LiveServer) -> None:
    async def body() -> None:
        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            pass

        async with Client(server.url + "/mcp") as client:
            result = await client.call_tool("run_js", {"code": TICKS}, progress_callback=on_progress)
            assert result.is_error is False and result.structured_content["result"] == '"ticked"'
            assert result.structured_content["output"]["data"].splitlines() == [f"tick {i}" for i in range(5)]

    run(body)


# -- 7. sessions and heap tags --------------------------------------------------------------


def test_session_and_heap_tags(connect: Connect) -> None:
    async def body() -> None:
        session = "s1-" + uuid.uuid4().hex[:8]
        async with connect() as client:
            sc = await run_js(
                client,
                "var parsed = [1, 2, 3]; parsed.length",
                session=session,
                tags={"step": "parsed"},
                snapshot=True,  # a live step makes a heap only when asked
            )
            assert sc["result"] == "3" and sc["session"] == session and sc["tags"] == {"step": "parsed"}
            heap = sc["heap"]
            sessions = (await call(client, "list_sessions", {"limit": 1000})).structured_content["sessions"]
            mine = [s for s in sessions if s["session"] == session]
            assert len(mine) == 1 and mine[0]["latest_heap"] == heap and mine[0]["executions"] == 1
            log = (await call(client, "list_session_snapshots", {"session": session})).structured_content
            assert [e["execution_id"] for e in log["executions"]] == [sc["execution_id"]]
            assert log["executions"][0]["heap"] == heap and log["executions"][0]["tags"] == {"step": "parsed"}

            got = (await call(client, "get_heap_tags", {"heap": heap})).structured_content
            assert got["tags"] == {"step": "parsed"} and got["session"] == session
            marker = uuid.uuid4().hex
            tags = {"step": "checked", "marker": marker, "extra": "x"}
            assert (await call(client, "set_heap_tags", {"heap": heap, "tags": tags})).structured_content[
                "tags"
            ] == tags
            assert (await call(client, "get_heap_tags", {"heap": heap})).structured_content["tags"] == tags
            found = (
                await call(client, "query_heaps_by_tags", {"tags": {"marker": marker}})
            ).structured_content
            assert [h["heap"] for h in found["heaps"]] == [heap]
            none = (
                await call(client, "query_heaps_by_tags", {"tags": {"marker": "no-" + marker}})
            ).structured_content
            assert none["heaps"] == []
            kept = (
                await call(client, "delete_heap_tags", {"heap": heap, "keys": ["extra"]})
            ).structured_content
            assert kept["tags"] == {"step": "checked", "marker": marker}
            cleared = (await call(client, "delete_heap_tags", {"heap": heap})).structured_content
            assert cleared["tags"] == {}
            gone = (
                await call(client, "query_heaps_by_tags", {"tags": {"marker": marker}})
            ).structured_content
            assert gone["heaps"] == []
            # the session's heap resumes
            assert (await run_js(client, "parsed.length + 1", heap=heap))["result"] == "4"
            missing = await client.call_tool("get_heap_tags", {"heap": "0" * 64})
            assert missing.is_error is True and "not found" in missing.content[0].text  # type: ignore[union-attr]

    run(body)


def test_run_js_with_a_session_alone_runs_live(connect: Connect) -> None:
    async def body() -> None:
        session = "live-" + uuid.uuid4().hex[:8]
        async with connect() as client:
            listing = {t.name: t for t in (await client.list_tools()).tools}
            assert "live context" in (listing["run_js"].description or "")
            assert "live" not in listing["run_js"].input_schema["properties"]  # the server decides
            first = await run_js(client, "let n = 1; n", session=session)
            assert (first["result"], first["heap"], first["session"]) == ("1", None, session)
            assert (await run_js(client, "n += 1", session=session))["result"] == "2"
            made = await run_js(client, "n", session=session, snapshot=True)
            assert made["result"] == "2" and made["heap"] is not None and made["session"] == session
            # With a heap it runs as before: that heap resumed, a new one made.
            chained = await run_js(client, "n += 10", session=session, heap=made["heap"])
            assert chained["result"] == "12" and chained["heap"] not in (None, made["heap"])
            assert (await run_js(client, "n", session=session))["result"] == "2"  # the live one went on

    run(body)


def test_mcp_sessions_snapshot_runs_every_run_js_on_heaps(tmp_path: Path) -> None:
    async def body() -> None:
        async with Client(stdio_params(tmp_path, MCP_V8_MCP_SESSIONS="snapshot")) as client:
            listing = {t.name: t for t in (await client.list_tools()).tools}
            assert "live context" not in (listing["run_js"].description or "")
            sc = await run_js(client, "var kept = 1; kept", session="s")
            assert sc["heap"] is not None  # a heap chain, as without live sessions

    run(body)


# -- 8. bad arguments and unknown tools -----------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "arguments", "field"),
    [
        ("run_js", {}, "code"),
        ("run_js", {"code": "1", "heap": "not-hex"}, "heap"),
        ("run_js", {"code": "1", "execution_timeout_secs": "soon"}, "execution_timeout_secs"),
        ("run_js", {"code": "1", "wait_ms": -5}, "wait_ms"),
        ("run_js", {"code": "1", "no_such_field": 1}, "no_such_field"),
        ("get_execution", {"execution_id": "nope"}, "execution_id"),
        ("set_heap_tags", {"heap": "0" * 64}, "tags"),
        ("query_heaps_by_tags", {"tags": "x"}, "tags"),
    ],
)
def test_bad_arguments_name_the_field(
    connect: Connect, tool: str, arguments: dict[str, Any], field: str
) -> None:
    async def body() -> None:
        async with connect() as client:
            result = await client.call_tool(tool, arguments)
            assert result.is_error is True
            text = result.content[0].text  # type: ignore[union-attr]
            assert field in text, text

    run(body)


def test_unknown_heap_and_unknown_tool(connect: Connect) -> None:
    async def body() -> None:
        async with connect() as client:
            result = await client.call_tool("run_js", {"code": "1", "heap": "a" * 64})
            assert result.is_error is True
            assert "heap" in result.content[0].text and "not found" in result.content[0].text  # type: ignore[union-attr]
            with pytest.raises(MCPError) as caught:
                await client.call_tool("no_such_tool", {})
            assert caught.value.code == -32602 and "no_such_tool" in caught.value.error.message
            assert (await run_js(client, "'still here'"))["result"] == '"still here"'

    run(body)


# -- 9. hostile scripts over stdio ------------------------------------------------------------

HOSTILE = [
    ("memory-bomb", "const a = []; while (true) a.push({n: a.length});", {"heap_memory_max_mb": 32}),
    ("oom-fill", "new Array(1e9).fill(0)", {"heap_memory_max_mb": 32}),
    ("busy-loop", "while (true) {}", {"execution_timeout_secs": 1}),
    ("deep-recursion", "function r(n) { return r(n + 1) + 1; } r(0)", {}),
    ("huge-string", "'x'.repeat(2 ** 30)", {}),
    ("string-doubling", "let s = 'ab'; while (true) s += s;", {"heap_memory_max_mb": 32}),
    (
        "console-flood",
        "const line = 'x'.repeat(1000); while (true) console.log(line);",
        {"execution_timeout_secs": 1},
    ),
    ("pending-forever", "await new Promise(() => {})", {"execution_timeout_secs": 1}),
]


def test_stdio_hostile_scripts_leave_the_server_answering(stdio_dir: Path) -> None:
    async def body() -> None:
        async with Client(stdio_params(stdio_dir)) as client:
            survivor = await run_js(client, "var survivor = 42; survivor")
            for name, code, limits in HOSTILE:
                sc = await run_js(client, code, **limits)
                if sc["status"] in ("queued", "running"):
                    sc = await until_terminal(client, sc["execution_id"])
                assert sc["status"] in ("failed", "timed_out"), (name, sc)
                assert sc["error"], (name, sc)
                assert await client.session.send_ping() is not None
            again = await run_js(client, "survivor + 1", heap=survivor["heap"])
            assert again["result"] == "43"

    run(body)


# -- the SDK over HTTP with a bearer token ------------------------------------------------------


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    os.environ["MCP_V8_API_TOKEN"] = TOKEN
    try:
        live = LiveServer(tmp_path_factory.mktemp("mcp-token"), "--workers", "2").start()
    finally:
        del os.environ["MCP_V8_API_TOKEN"]
    yield live
    live.stop()


def test_bearer_token(token_server: LiveServer) -> None:
    url = token_server.url + "/mcp"
    ping: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    assert requests.post(url, json=ping, timeout=30).status_code == 401
    assert (
        requests.post(url, json=ping, headers={"Authorization": "Bearer wrong"}, timeout=30).status_code
        == 401
    )
    ok = requests.post(url, json=ping, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert ok.status_code == 200 and ok.json() == {"jsonrpc": "2.0", "id": 1, "result": {}}

    async def body() -> None:
        # without the token the SDK's connect fails: an MCPError inside its task groups' ExceptionGroups
        with pytest.raises(Exception) as refused:  # noqa: B017 - an ExceptionGroup, checked below
            async with Client(url) as client:
                await client.list_tools()
        assert any(isinstance(e, MCPError) for e in leaves(refused.value))
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=60) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            assert client.protocol_version in VERSIONS
            assert (await run_js(client, "6 * 7"))["result"] == "42"

    run(body)


def leaves(group: BaseException) -> list[BaseException]:
    """The exceptions in (nested) exception groups."""
    inner = getattr(group, "exceptions", None)
    if isinstance(inner, tuple):
        return [leaf for e in inner for leaf in leaves(e)]
    return [group]


# -- POST /mcp raw ------------------------------------------------------------------------------


def post(server: LiveServer, body: Any, *, version: str | None = None, **headers: str) -> requests.Response:
    if version is not None:
        headers["MCP-Protocol-Version"] = version
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = requests.post(
        server.url + "/mcp", data=data, headers={"Content-Type": "application/json", **headers}, timeout=60
    )
    assert resp.status_code < 500, resp.text
    return resp


def test_http_get_and_delete_are_405(server: LiveServer) -> None:
    for method in ("GET", "DELETE"):
        resp = requests.request(
            method, server.url + "/mcp", headers={"Accept": "text/event-stream"}, timeout=30
        )
        assert resp.status_code == 405, (method, resp.text)
        assert "POST" in resp.headers.get("Allow", "")


def test_http_disallowed_origin_is_403(server: LiveServer) -> None:
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    for origin in ("http://evil.example", "null", server.url):
        assert post(server, ping, Origin=origin).status_code == 403, origin
    assert post(server, ping).status_code == 200  # no Origin: allowed


def test_http_protocol_versions(server: LiveServer) -> None:
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    bad = post(server, ping, version="2099-01-01")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == -32600
    assert "2099-01-01" in bad.json()["error"]["message"]
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    for version, structured in [
        (None, False),
        ("2025-03-26", False),
        ("2025-06-18", True),
        ("2025-11-25", True),
    ]:
        resp = post(server, listing, version=version)
        assert resp.status_code == 200
        tools = resp.json()["result"]["tools"]
        assert {t["name"] for t in tools} == TOOLS
        assert all(("outputSchema" in t) == structured for t in tools), version
    call_ = {
        "jsonrpc": "2.0",
        "id": 3,
        "method": "tools/call",
        "params": {"name": "run_js", "arguments": {"code": "1"}},
    }
    old = post(server, call_, version="2025-03-26").json()["result"]
    assert "structuredContent" not in old and json.loads(old["content"][0]["text"])["result"] == "1"
    new = post(server, call_, version="2025-06-18").json()["result"]
    assert new["structuredContent"]["result"] == "1"
    init = {"jsonrpc": "2.0", "id": 4, "method": "initialize", "params": {"protocolVersion": "2024-11-05",
            "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}  # fmt: skip
    assert post(server, init).json()["result"]["protocolVersion"] in VERSIONS


def test_http_notifications_and_responses_are_202(server: LiveServer) -> None:
    for message in (
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}},
        {"jsonrpc": "2.0", "id": 9, "result": {}},
    ):
        resp = post(server, message, version="2025-11-25")
        assert resp.status_code == 202 and resp.content == b"", message


def test_http_parse_error_and_invalid_request(server: LiveServer) -> None:
    for raw in (b"{bad", b"", b"\xff\xfe", b'"\\ud800"', b"[" * 100000):
        resp = post(server, raw)
        assert resp.status_code == 400, raw[:20]
        assert resp.json()["error"]["code"] == -32700 and resp.json()["id"] is None
    for message in ({"jsonrpc": "1.0", "id": 1, "method": "ping"}, {"id": 1, "method": "ping"}, 42, "x",
                    {"jsonrpc": "2.0", "id": 1}):  # fmt: skip
        resp = post(server, message)
        assert resp.status_code == 400, message
        assert resp.json()["error"]["code"] == -32600, message
    unknown = post(server, {"jsonrpc": "2.0", "id": 5, "method": "no/such"})
    assert unknown.status_code == 200 and unknown.json()["error"]["code"] == -32601


def test_http_batches(server: LiveServer) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "run_js", "arguments": {"code": "2 + 3"}},
        },
        {"jsonrpc": "2.0", "id": 3, "method": "no/such"},
    ]
    resp = post(server, batch)  # no header: 2025-03-26, which has batches
    assert resp.status_code == 200
    answers = {r["id"]: r for r in resp.json()}
    assert set(answers) == {1, 2, 3}
    assert answers[1]["result"] == {}
    assert json.loads(answers[2]["result"]["content"][0]["text"])["result"] == "5"
    assert answers[3]["error"]["code"] == -32601
    only_notes = post(
        server, [{"jsonrpc": "2.0", "method": "notifications/initialized"}], version="2025-03-26"
    )
    assert only_notes.status_code == 202 and only_notes.content == b""
    assert post(server, [], version="2025-03-26").status_code == 400
    # a message that is not JSON-RPC in a batch: answered -32600, whether the server refuses the
    # whole batch (400) or answers it in place (200 and an array, as JSON-RPC 2.0 has it)
    for bad in (
        [{"jsonrpc": "1.0", "id": 4, "method": "ping"}, {"jsonrpc": "2.0", "id": 5, "method": "ping"}],
        [1, 2],
    ):
        resp = post(server, bad, version="2025-03-26")
        assert resp.status_code in (200, 400), resp.text
        body = resp.json()
        errors = [r["error"]["code"] for r in (body if isinstance(body, list) else [body]) if "error" in r]
        assert -32600 in errors, body
    for version in ("2025-06-18", "2025-11-25"):
        refused = post(server, batch, version=version)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == -32600


def test_http_huge_message_is_413(server: LiveServer) -> None:
    # Settings.max_body_bytes defaults to 2 MiB
    code = "'" + "x" * (3 << 20) + "'"
    message = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "run_js", "arguments": {"code": code}},
    }
    assert post(server, message).status_code == 413
    assert post(server, {"jsonrpc": "2.0", "id": 2, "method": "ping"}).status_code == 200


def test_http_code_over_the_code_limit_is_a_tool_error(server: LiveServer) -> None:
    code = "'" + "x" * (1 << 20) + "'"  # under the body limit, maybe over max_code_bytes
    message = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "run_js", "arguments": {"code": code}},
    }
    resp = post(server, message, version="2025-11-25")
    assert resp.status_code == 200
    result = resp.json()["result"]
    if result["isError"]:
        assert "code" in result["content"][0]["text"]


# -- stdio raw ----------------------------------------------------------------------------------


class RawStdio:
    """``mcp-v8 mcp`` spoken to line by line; every stdout line must be JSON."""

    def __init__(self, data_dir: Path, **settings: str) -> None:
        env = {**os.environ, "MCP_V8_DATA_DIR": str(data_dir), "MCP_V8_WORKERS": "2", "PYTHONUNBUFFERED": "1"}
        env.update(settings)
        self.stderr_path = data_dir / f"stderr-{uuid.uuid4().hex[:8]}.log"
        self.stderr = open(self.stderr_path, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mcp_v8", "mcp"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=env,
        )
        self.lines: queue.Queue[bytes] = queue.Queue()
        self.replies: list[Any] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def send(self, raw: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(raw)
        self.process.stdin.flush()

    def _take(self, timeout: float) -> None:
        line = self.lines.get(timeout=timeout)
        self.replies.append(json.loads(line))  # nothing but JSON on stdout

    def send_message(self, message: Any) -> None:
        self.send(json.dumps(message).encode() + b"\n")

    def wait_for(self, *ids: Any, timeout: float = 60) -> None:
        """Reads replies until one for each of ``ids`` has come."""
        self.wait_until(lambda: set(ids) <= {r.get("id") for r in self.answers()}, timeout)

    def wait_until(self, done: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            self._take(max(0.1, deadline - time.monotonic()))

    def answers(self, *ids: Any) -> list[dict[str, Any]]:
        """The responses (to ``ids`` when given), not the notifications."""
        return [r for r in self.flat() if "method" not in r and (not ids or r.get("id") in ids)]

    def answer(self, id: Any) -> dict[str, Any]:
        self.wait_for(id)
        (found,) = self.answers(id)
        return found

    def flat(self) -> list[dict[str, Any]]:
        return [item for reply in self.replies for item in (reply if isinstance(reply, list) else [reply])]

    def finish(self, timeout: float = 60) -> None:
        """Closes stdin, waits for the exit, reads the rest."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.stderr.close()
        self._reader.join(10)
        while not self.lines.empty():
            self._take(1)


def test_stdio_raw_stdout_is_only_json_rpc(stdio_dir: Path) -> None:
    raw = RawStdio(stdio_dir)
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-03-26",
            "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}  # fmt: skip
    messages = [
        b"this is not json\n",
        b"\n",
        json.dumps(init).encode() + b"\n",
        b'{"jsonrpc":"1.0","id":2,"method":"ping"}\n',
        b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n',
        b'{"jsonrpc":"2.0","id":3,"method":"ping"}\n',
        b'{"jsonrpc":"2.0","id":4,"method":"tools/list"}\n',
        b'[{"jsonrpc":"2.0","id":5,"method":"ping"},{"jsonrpc":"2.0","id":6,"method":"no/such"}]\n',
        b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"run_js","arguments":'
        b'{"code":"console.log(\'to the console\'); print = 1; 7"}}}\n',
        b'{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"nope"}}\n',
        b"\xff\xfe garbage bytes\n",
        b'{"jsonrpc":"2.0","id":9,"method":"ping"}\n',
    ]
    for message in messages:
        raw.send(message)
    raw.wait_for(1, 2, 3, 4, 5, 6, 7, 8, 9)
    raw.finish()
    assert raw.process.returncode == 0
    by_id = {}
    errors_without_id = []
    for item in raw.flat():
        assert item["jsonrpc"] == "2.0" and ("result" in item or "error" in item), item
        if item.get("id") is None:
            errors_without_id.append(item["error"]["code"])
        else:
            by_id[item["id"]] = item
    assert sorted(errors_without_id) == [-32700, -32700]
    assert by_id[1]["result"]["protocolVersion"] == "2025-03-26"
    assert by_id[2]["error"]["code"] == -32600
    assert by_id[3]["result"] == {} and by_id[5]["result"] == {} and by_id[9]["result"] == {}
    assert all("outputSchema" not in t for t in by_id[4]["result"]["tools"])  # 2025-03-26
    assert by_id[6]["error"]["code"] == -32601
    result7 = by_id[7]["result"]
    assert "structuredContent" not in result7
    assert json.loads(result7["content"][0]["text"])["result"] == "7"
    assert by_id[8]["error"]["code"] == -32602


def test_stdio_raw_batches_refused_after_2025_06_18(stdio_dir: Path) -> None:
    raw = RawStdio(stdio_dir)
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18",
            "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}  # fmt: skip
    raw.send(json.dumps(init).encode() + b"\n")
    raw.send(b'[{"jsonrpc":"2.0","id":2,"method":"ping"}]\n')
    raw.send(b'{"jsonrpc":"2.0","id":3,"method":"tools/list"}\n')
    raw.wait_for(1, 3)
    raw.finish()
    replies = raw.replies
    assert replies[0]["id"] == 1 and replies[0]["result"]["protocolVersion"] == "2025-06-18"
    assert replies[1]["id"] is None and replies[1]["error"]["code"] == -32600
    assert all("outputSchema" in t for t in replies[2]["result"]["tools"])


def test_stdio_raw_cancel_right_behind_the_request(stdio_dir: Path) -> None:
    raw = RawStdio(stdio_dir)
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
            "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}  # fmt: skip
    raw.send(json.dumps(init).encode() + b"\n")
    raw.wait_for(1)
    session = "race-" + uuid.uuid4().hex[:8]
    run_js = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "run_js",
              "arguments": {"code": "while (true) {}", "execution_timeout_secs": 60, "session": session}}}  # fmt: skip
    cancel = {
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": {"requestId": 2, "reason": "gone"},
    }
    raw.send(json.dumps(run_js).encode() + b"\n" + json.dumps(cancel).encode() + b"\n")  # one write
    try:
        status = "queued"
        deadline = time.monotonic() + 60
        n = 10
        while status in ("queued", "running") and time.monotonic() < deadline:
            n += 1
            listing = {"jsonrpc": "2.0", "id": n, "method": "tools/call",
                       "params": {"name": "list_executions", "arguments": {"session": session}}}  # fmt: skip
            raw.send(json.dumps(listing).encode() + b"\n")
            raw.wait_for(n)
            executions = next(r for r in raw.flat() if r.get("id") == n)["result"]["structuredContent"][
                "executions"
            ]
            status = executions[0]["status"] if executions else "queued"
            time.sleep(0.2)
        assert status == "cancelled"
        assert 2 not in {r.get("id") for r in raw.flat()}  # a cancelled request gets no response
    finally:
        raw.finish()  # stdin's end cancels what is in flight


def test_mcp_keeps_its_data_in_the_users_data_directory(tmp_path: Path) -> None:
    """Without MCP_V8_DATA_DIR, ``mcp-v8 mcp`` keeps its data under $XDG_DATA_HOME/mcp-v8, not in
    the working directory its client starts it in."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_V8_")}
    env.update({"XDG_DATA_HOME": str(tmp_path / "xdg"), "MCP_V8_WORKERS": "1"})
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
         "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "run_js", "arguments": {"code": "6 * 7", "snapshot": False}}},
    ]  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "mcp_v8", "mcp"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=cwd,
        env=env,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write(json.dumps(messages[0]).encode() + b"\n")
        process.stdin.flush()
        assert json.loads(process.stdout.readline())["id"] == 1
        process.stdin.write(json.dumps(messages[1]).encode() + b"\n")
        process.stdin.flush()
        reply = json.loads(process.stdout.readline())
        assert reply["id"] == 2 and reply["result"]["structuredContent"]["result"] == "42"
    finally:
        process.stdin.close()
        process.wait(60)
    assert (tmp_path / "xdg" / "mcp-v8" / "registry.sqlite3").is_file()
    assert list(cwd.iterdir()) == []


# -- malformed messages and a full house of tool calls ---------------------------------------

INIT = {"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {"protocolVersion": "2025-11-25",
        "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}  # fmt: skip
CANCEL = "notifications/cancelled"
JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
ABSENT = object()


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(ABSENT), strategy)


# What a client may put in each field the server reads, right or wrong: ids of every JSON type,
# params that are not objects, progress tokens, cursors, arguments, _meta, cancel targets.
_META = st.one_of(JSON, st.fixed_dictionaries({"progressToken": JSON}))
_ARGUMENTS = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {"code": st.sampled_from(["1", "'x'", "", "throw 1", "[", "await 1"])},
        optional={
            "wait_ms": JSON,
            "heap": JSON,
            "session": JSON,
            "tags": JSON,
            "snapshot": JSON,
            "execution_timeout_secs": st.sampled_from([1, 0, -1, "1", None, 1.5]),
        },
    ),  # fmt: skip
)
_PARAMS = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {},
        optional={
            "name": st.one_of(st.sampled_from(["run_js", "list_executions", "get_execution", "nope"]), JSON),
            "arguments": _ARGUMENTS,
            "_meta": _META,
            "cursor": JSON,
            "protocolVersion": st.one_of(st.sampled_from(["2025-03-26", "2025-11-25"]), JSON),
            "requestId": JSON,
            "reason": JSON,
        },
    ),
)
_FIELDS = {
    "jsonrpc": st.sampled_from(["2.0", "2.0", "2.0", "1.0", 2.0, None]),
    "id": _maybe(st.one_of(JSON, st.integers(-(2**70), 2**70))),
    "method": _maybe(
        st.one_of(
            st.sampled_from(
                ["ping", "initialize", "tools/list", "tools/call", CANCEL, "notifications/initialized"]
            ),
            JSON,
        )
    ),
    "params": _maybe(_PARAMS),
    "result": _maybe(JSON),
}
MESSAGES = st.one_of(
    st.fixed_dictionaries(_FIELDS).map(lambda m: {k: v for k, v in m.items() if v is not ABSENT}),
    JSON,
    st.lists(
        st.fixed_dictionaries(_FIELDS).map(lambda m: {k: v for k, v in m.items() if v is not ABSENT}),
        max_size=3,
    ),
)


def _no_internal_errors(replies: list[dict[str, Any]]) -> None:
    for reply in replies:
        assert reply["jsonrpc"] == "2.0", reply
        if "error" in reply:
            assert reply["error"]["code"] in (-32700, -32600, -32601, -32602), reply


def test_stdio_fuzz_malformed_messages_leave_the_server_answering(stdio_dir: Path) -> None:
    """Regression: one ``notifications/cancelled`` with ``"requestId": [1]`` ended the stdio
    server. Each generated message is followed by a ping that must be answered; then a real
    run_js; stdout is JSON-RPC throughout and no message is an internal error."""
    raw = RawStdio(stdio_dir)
    try:
        raw.send_message(INIT)
        raw.wait_for("init")
        raw.send_message({"jsonrpc": "2.0", "method": CANCEL, "params": {"requestId": [1]}})
        pings = iter(range(10**6))

        @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(MESSAGES)
        def one(message: Any) -> None:
            raw.send(json.dumps(message).encode() + b"\n")
            ping = f"ping-{uuid.uuid4().hex}-{next(pings)}"
            raw.send_message({"jsonrpc": "2.0", "id": ping, "method": "ping"})
            assert raw.answer(ping)["result"] == {}

        one()
        for line in (b"NaN\n", b'{"jsonrpc":"2.0","id":1e400,"method":"ping"}\n', b"[" * 200 + b"\n"):
            raw.send(line)
        raw.send_message({"jsonrpc": "2.0", "id": "last-ping", "method": "ping"})
        assert raw.answer("last-ping")["result"] == {}
        run = {"jsonrpc": "2.0", "id": "last-run", "method": "tools/call",
               "params": {"name": "run_js", "arguments": {"code": "6 * 7"}}}  # fmt: skip
        raw.send_message(run)
        assert raw.answer("last-run")["result"]["structuredContent"]["result"] == "42"
    finally:
        raw.finish()
    assert raw.process.returncode == 0
    _no_internal_errors(raw.flat())
    assert b"Traceback" not in raw.stderr_path.read_bytes()


def test_stdio_control_messages_never_wait_behind_tool_calls(stdio_dir: Path) -> None:
    """With --mcp-tool-calls 2 and two endless run_js calls, a third call waits while ping,
    tools/list and cancels are answered; a reused id is refused and a cancel names the first;
    the waiting call, cancelled, never runs."""
    raw = RawStdio(stdio_dir, MCP_V8_MCP_TOOL_CALLS="2")
    tag = uuid.uuid4().hex[:8]

    def run_js(id: Any, code: str, session: str, token: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"name": "run_js", "arguments": {"code": code, "session": f"{session}-{tag}",
                                  "execution_timeout_secs": 120, "snapshot": False}}  # fmt: skip
        if token is not None:
            params["_meta"] = {"progressToken": token}
        return {"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}

    def listed(id: Any, session: str) -> list[dict[str, Any]]:
        raw.send_message({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": "list_executions", "arguments": {"session": f"{session}-{tag}"}}})  # fmt: skip
        return list(raw.answer(id)["result"]["structuredContent"]["executions"])

    def progressed(token: str) -> bool:
        return any(r.get("params", {}).get("progressToken") == token for r in raw.flat() if "method" in r)

    try:
        raw.send_message(INIT)
        raw.wait_for("init")
        endless = "console.log('started'); while (true) {}"
        raw.send_message(run_js(10, endless, "a", token="a"))
        raw.send_message(run_js(11, endless, "b", token="b"))
        raw.wait_until(lambda: progressed("a") and progressed("b"))  # both run: the slots are full
        raw.send_message(run_js(12, "'c'", "c"))  # waits for a slot
        raw.send_message({"jsonrpc": "2.0", "id": 13, "method": "ping"})
        raw.send_message({"jsonrpc": "2.0", "id": 14, "method": "tools/list"})
        raw.send_message(run_js(10, "'again'", "again"))  # 10 is in flight
        assert raw.answer(13)["result"] == {}
        assert len(raw.answer(14)["result"]["tools"]) == len(TOOLS)
        assert raw.answers(10, 11) == []  # answered while both calls still wait (for up to 30 s)
        raw.wait_for(10)
        (refused,) = raw.answers(10)
        assert refused["error"]["code"] == -32600 and "in use" in refused["error"]["message"]
        raw.send_message({"jsonrpc": "2.0", "method": CANCEL, "params": {"requestId": 12}})  # waiting
        raw.send_message({"jsonrpc": "2.0", "method": CANCEL, "params": {"requestId": 10}})  # the first 10
        raw.send_message(run_js(15, "'after'", "d"))  # a's slot frees
        assert raw.answer(15)["result"]["structuredContent"]["result"] == '"after"'
        assert listed(16, "c") == []  # the cancelled waiting call never ran
        assert listed(17, "again") == []  # nor did the refused one
        # a's live context made room for d's: its heap is in a's log too, a completed entry of no code
        (a,) = [e for e in listed(18, "a") if e["status"] != "completed"]
        final = {"jsonrpc": "2.0", "id": 19, "method": "tools/call", "params": {
            "name": "get_execution", "arguments": {"execution_id": a["execution_id"], "wait_ms": 30000}}}  # fmt: skip
        raw.send_message(final)
        assert raw.answer(19)["result"]["structuredContent"]["status"] == "cancelled"
        assert raw.answers(12) == [] and len(raw.answers(10)) == 1  # cancelled: not answered
    finally:
        raw.finish()  # stdin's end cancels b
    assert raw.process.returncode == 0
    _no_internal_errors(raw.flat())


UNSUPPORTED = {"jsonrpc": "2.0", "id": None,
               "error": {"code": -32600, "message": "Unsupported Media Type: Content-Type must be application/json"}}  # fmt: skip


def test_http_content_type_other_than_json_is_415(server: LiveServer) -> None:
    """As the MCP SDK's own server answers; the REST API keeps parsing any body as JSON."""
    ping = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()
    url = server.url + "/mcp"
    for content_type in (None, "", "text/plain", "application/x-www-form-urlencoded", "application/jsonl",
                         "application/json-seq", "multipart/form-data; boundary=x", "text/json"):  # fmt: skip
        headers = {} if content_type is None else {"Content-Type": content_type}
        resp = requests.post(url, data=ping, headers=headers, timeout=60)
        assert resp.status_code == 415, (content_type, resp.status_code, resp.text)
        assert resp.headers["Content-Type"].startswith("application/json")
        assert resp.json() == UNSUPPORTED
    for content_type in ("application/json", "application/json; charset=utf-8", "Application/JSON",
                         "application/json ;charset=UTF-8"):  # fmt: skip
        resp = requests.post(url, data=ping, headers={"Content-Type": content_type}, timeout=60)
        assert resp.status_code == 200 and resp.json()["result"] == {}, content_type
    rest = requests.post(
        server.url + "/api/exec", data=b'{"code": "1"}', headers={"Content-Type": "text/plain"}, timeout=60
    )
    assert rest.status_code == 202, rest.text


def test_http_malformed_fields_are_json_rpc_errors(server: LiveServer) -> None:
    for message, code, id in MALFORMED:
        resp = post(server, message, version="2025-11-25")
        assert resp.status_code == 400, (message, resp.text)
        error = resp.json()
        assert (error["error"]["code"], error["id"]) == (code or -32602, id), message
    assert post(server, {"jsonrpc": "2.0", "id": 1, "method": "ping"}).json()["result"] == {}


def test_http_fuzz_malformed_messages(server: LiveServer) -> None:
    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(MESSAGES)
    def one(message: Any) -> None:
        resp = post(server, message, version="2025-03-26")  # never a 5xx
        if resp.status_code != 202:
            body = resp.json()
            _no_internal_errors(body if isinstance(body, list) else [body])

    one()
    assert post(server, {"jsonrpc": "2.0", "id": 1, "method": "ping"}).json()["result"] == {}
