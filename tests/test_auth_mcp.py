"""Principals over MCP with the SDK's own client: ``mcp-v8 mcp --tenant`` on stdio acts for its
tenant with run, read, cancel and approve; ``POST /mcp`` of a real ``mcp-v8 serve --auth-config``
over Streamable HTTP with a tenant's token, whose scopes decide the tools offered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
import requests
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_v8.auth import hash_token

from .live_server import LiveServer
from .test_mcp import leaves, run, run_js, stdio_params

RUNNER, READER = "runner-token-0123456789abcdef", "reader-token-0123456789abcdef"


def _config(directory: Path) -> Path:
    path = directory / "auth.json"
    tokens = [
        {"name": "runner", "sha256": hash_token(RUNNER), "scopes": ["run", "read", "cancel"]},
        {"name": "reader", "sha256": hash_token(READER), "scopes": ["read"]},
    ]
    path.write_text(json.dumps({"tenants": {"acme": {"tokens": tokens}, "beta": {"tokens": []}}}))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    directory = tmp_path_factory.mktemp("auth-mcp")
    live = LiveServer(directory / "data", "--workers", "1", "--auth-config", str(_config(directory))).start()
    yield live
    live.stop()


def test_stdio_acts_for_its_tenant(tmp_path: Path) -> None:
    params = stdio_params(tmp_path / "data", MCP_V8_AUTH_CONFIG=str(_config(tmp_path)), MCP_V8_TENANT="acme")

    async def body() -> None:
        async with Client(params) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"run_js", "cancel_execution", "approve_tool_calls"} <= names  # the local user approves
            assert (await run_js(client, "6 * 7", snapshot=False))["result"] == "42"

    run(body)


def test_http_tools_follow_the_tokens_scopes(server: LiveServer) -> None:
    url = server.url + "/mcp"
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    refused = requests.post(url, json=ping, timeout=30)
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == 'Bearer realm="mcp-v8"'

    async def body() -> None:
        with pytest.raises(Exception) as no_token:  # noqa: B017 - an ExceptionGroup of the SDK's tasks
            async with Client(url) as client:
                await client.list_tools()
        assert leaves(no_token.value)
        for token, can_run in ((RUNNER, True), (READER, False)):
            async with (
                httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http,
                Client(streamable_http_client(url, http_client=http)) as client,
            ):
                names = {t.name for t in (await client.list_tools()).tools}
                assert ("run_js" in names) == can_run and "approve_tool_calls" not in names
                assert "list_executions" in names
                if can_run:
                    assert (await run_js(client, "6 * 7", snapshot=False))["result"] == "42"
                else:
                    result = await client.call_tool("run_js", {"code": "1"})
                    assert result.is_error
                    assert result.content[0].text == "this token lacks the 'run' scope"  # type: ignore[union-attr]

    run(body)
