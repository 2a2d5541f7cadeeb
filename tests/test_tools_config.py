"""The tool servers file (--tools-config, mcp_v8/tools/config.py): the mcpServers shape,
per-server exposure and approval, and a startup error naming the field for each mistake."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mcp_v8 import config
from mcp_v8.tools.config import (
    HttpServer,
    StdioServer,
    ToolsConfigError,
    load_tools_config,
    parse_tools_config,
)


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "tools.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_both_transports_and_the_per_server_fields() -> None:
    tools = parse_tools_config(
        {
            "mcpServers": {
                "files": {"command": "files-server", "args": ["--root", "/srv"], "env": {"A": "1"}},
                "github": {
                    "type": "http",
                    "url": "https://example.com/mcp",
                    "headers": {"Authorization": "Bearer x"},
                    "tools": ["search", "create_issue"],
                    "approve": ["create_issue"],
                },
                "db": {"command": "db", "approve": "*"},
                "ops": {"url": "http://127.0.0.1:9000/mcp", "approveDestructive": True},
            }
        }
    )
    files, github, db, ops = tools.servers
    assert files.transport == StdioServer("files-server", ("--root", "/srv"), {"A": "1"})
    assert files.tools is None and files.exposes("anything") and not files.gates_any
    assert github.transport == HttpServer("https://example.com/mcp", {"Authorization": "Bearer x"})
    assert github.exposes("search") and not github.exposes("delete_repo")
    assert github.gated("create_issue", None) and not github.gated("search", {"destructiveHint": True})
    assert db.gated("select", None) and db.gated("drop", {"readOnlyHint": True})
    assert isinstance(ops.transport, HttpServer)  # a url without type is Streamable HTTP
    assert ops.gated("rm", {"destructiveHint": True})
    assert not ops.gated("ls", {"destructiveHint": False}) and not ops.gated("ls", None)
    assert tools.server("db") is db and tools.server("nothing") is None


@pytest.mark.parametrize(
    ("data", "names"),
    [
        ([], "expected a JSON object"),
        ({"servers": {}}, "servers: unknown field"),
        ({"mcpServers": []}, "mcpServers: expected an object"),
        ({"mcpServers": {"a b": {"command": "x"}}}, "mcpServers.a b: a server name"),
        ({"mcpServers": {"s": "x"}}, "mcpServers.s: expected an object"),
        ({"mcpServers": {"s": {}}}, "mcpServers.s.command: expected the program"),
        ({"mcpServers": {"s": {"command": "x", "args": "-v"}}}, "mcpServers.s.args: expected an array"),
        (
            {"mcpServers": {"s": {"command": "x", "env": {"A": 1}}}},
            "mcpServers.s.env: expected an object of strings",
        ),
        ({"mcpServers": {"s": {"command": "x", "url": "http://h"}}}, "mcpServers.s: both command and url"),
        (
            {"mcpServers": {"s": {"type": "sse", "url": "http://h"}}},
            "mcpServers.s.type: expected 'stdio' or 'http'",
        ),
        ({"mcpServers": {"s": {"type": "http", "url": "ftp://h"}}}, "mcpServers.s.url: expected an http"),
        ({"mcpServers": {"s": {"type": "http", "url": "http://h", "headers": []}}}, "mcpServers.s.headers"),
        ({"mcpServers": {"s": {"command": "x", "tools": "add"}}}, "mcpServers.s.tools: expected an array"),
        (
            {"mcpServers": {"s": {"command": "x", "approve": "all"}}},
            "mcpServers.s.approve: expected an array",
        ),
        (
            {"mcpServers": {"s": {"command": "x", "approveDestructive": "yes"}}},
            "mcpServers.s.approveDestructive: expected true or false",
        ),
        ({"mcpServers": {"s": {"command": "x", "aprove": ["a"]}}}, "mcpServers.s.aprove: unknown field"),
        ({"mcpServers": {"s": {"command": "x", "headers": {}}}}, "mcpServers.s.headers: unknown field"),
    ],
)
def test_each_mistake_is_named(data: Any, names: str) -> None:
    with pytest.raises(ToolsConfigError) as caught:
        parse_tools_config(data)
    assert names in str(caught.value)


def test_an_unreadable_or_invalid_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ToolsConfigError, match="cannot read .*missing.json"):
        load_tools_config(tmp_path / "missing.json")
    with pytest.raises(ToolsConfigError, match="tools.json is not JSON"):
        load_tools_config(write(tmp_path, "{mcpServers"))
    with pytest.raises(ToolsConfigError, match=r"tools.json: mcpServers.s.command"):
        load_tools_config(write(tmp_path, {"mcpServers": {"s": {"command": 3}}}))


def test_the_setting_checks_the_file_at_startup(tmp_path: Path) -> None:
    good = write(tmp_path, {"mcpServers": {"s": {"command": "x"}}})
    assert config.from_env({"MCP_V8_TOOLS_CONFIG": str(good)}).tools_config == good
    assert config.from_env({}).tools_config is None
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"mcpServers": {"s": {"type": "http"}}}))
    with pytest.raises(ValueError, match=r"tools_config: .*bad.json: mcpServers.s.url"):
        config.from_env({"MCP_V8_TOOLS_CONFIG": str(bad)})
    with pytest.raises(ValueError, match="tools_config: cannot read"):
        config.Settings(tools_config=tmp_path / "none.json")


def test_gating_a_tool_needs_an_approver_token_of_its_own(tmp_path: Path) -> None:
    gated = write(
        tmp_path, {"mcpServers": {"a": {"command": "x"}, "b": {"command": "y", "approveDestructive": True}}}
    )
    with pytest.raises(ValueError, match=r"tools_config gates tools of b .* no approver_token"):
        config.Settings(tools_config=gated)
    with pytest.raises(ValueError, match="approver_token must differ from api_token"):
        config.Settings(tools_config=gated, approver_token="same", api_token="same")
    settings = config.from_env(
        {"MCP_V8_TOOLS_CONFIG": str(gated), "MCP_V8_APPROVER_TOKEN": "approver-secret"}
    )
    assert settings.approver_token == "approver-secret"
    assert config.shown("approver_token", settings.approver_token) == "(set)"
    assert "approver-secret" in config.secrets(settings)
    ungated = write(tmp_path, {"mcpServers": {"a": {"command": "x"}}})
    assert config.Settings(tools_config=ungated).approver_token is None


def test_the_headers_of_http_tool_servers_are_secrets(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "mcpServers": {
                "gh": {
                    "type": "http",
                    "url": "https://h/mcp",
                    "headers": {"Authorization": "Bearer tok-123456"},
                },
                "local": {"command": "x", "env": {"DEBUG": "1"}},
            }
        },
    )
    found = config.secrets(config.Settings(tools_config=path))
    assert "Bearer tok-123456" in found and "tok-123456" in found
    assert "1" not in found  # a stdio server's environment is not taken for secrets
