"""The tool servers file (``--tools-config``): the ``mcpServers`` shape MCP clients already
use, plus per server which tools are exposed and which need approval. Checked whole at
startup; every error names the field it is about."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

# A server's name is the key of ``tools.<server>`` in scripts and a path segment of the API.
SERVER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")

_COMMON_KEYS = {"type", "tools", "approve", "approveDestructive"}
_STDIO_KEYS = _COMMON_KEYS | {"command", "args", "env", "cwd"}
_HTTP_KEYS = _COMMON_KEYS | {"url", "headers"}


class ToolsConfigError(ValueError):
    """The tools file is unreadable or malformed; the message names the field."""


@dataclass(frozen=True)
class StdioServer:
    command: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None


@dataclass(frozen=True)
class HttpServer:
    url: str
    headers: dict[str, str] = field(default_factory=dict)


Transport = Union[StdioServer, HttpServer]


@dataclass(frozen=True)
class ServerConfig:
    """One tool server: how to reach it, which of its tools are exposed (None: all), which need
    approval (``approve_all``, ``approve`` names, or destructive ones with ``approve_destructive``)."""

    name: str
    transport: Transport
    tools: frozenset[str] | None = None
    approve: frozenset[str] = frozenset()
    approve_all: bool = False
    approve_destructive: bool = False

    def exposes(self, tool: str) -> bool:
        return self.tools is None or tool in self.tools

    def gated(self, tool: str, annotations: dict[str, Any] | None) -> bool:
        """Whether a call of ``tool`` needs approval. A tool is destructive only when its
        annotations say ``destructiveHint: true`` (the MCP default for a tool that is not
        read-only is ``true``, but a hint the server did not give is not trusted either way:
        gate such a tool by name)."""
        if self.approve_all or tool in self.approve:
            return True
        return self.approve_destructive and bool((annotations or {}).get("destructiveHint") is True)

    @property
    def gates_any(self) -> bool:
        return self.approve_all or bool(self.approve) or self.approve_destructive


@dataclass(frozen=True)
class ToolsConfig:
    servers: tuple[ServerConfig, ...]

    def server(self, name: str) -> ServerConfig | None:
        return next((s for s in self.servers if s.name == name), None)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ToolsConfigError(f"{where}: expected an array of strings")
    return tuple(value)


def _string_map(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ToolsConfigError(f"{where}: expected an object of strings")
    return dict(value)


def _server(name: str, raw: Any) -> ServerConfig:
    where = f"mcpServers.{name}"
    if not SERVER_NAME.fullmatch(name):
        raise ToolsConfigError(
            f"{where}: a server name is a letter or '_' then letters, digits, '_' or '-' (at most 64)"
        )
    if not isinstance(raw, dict):
        raise ToolsConfigError(f"{where}: expected an object")
    if "command" in raw and "url" in raw:
        raise ToolsConfigError(f"{where}: both command and url; a server has one (command: stdio, url: http)")
    kind = raw.get("type", "http" if "url" in raw else "stdio")
    if kind in ("http", "streamable-http", "streamableHttp"):
        allowed = _HTTP_KEYS
        url = raw.get("url")
        if not isinstance(url, str) or not re.match(r"https?://", url):
            raise ToolsConfigError(f"{where}.url: expected an http:// or https:// URL")
        transport: Transport = HttpServer(url, _string_map(raw.get("headers", {}), f"{where}.headers"))
    elif kind == "stdio":
        allowed = _STDIO_KEYS
        command = raw.get("command")
        if not isinstance(command, str) or not command:
            raise ToolsConfigError(f"{where}.command: expected the program to start (a string)")
        cwd = raw.get("cwd")
        if cwd is not None and not isinstance(cwd, str):
            raise ToolsConfigError(f"{where}.cwd: expected a directory (a string)")
        transport = StdioServer(
            command,
            _strings(raw.get("args", []), f"{where}.args"),
            _string_map(raw.get("env", {}), f"{where}.env"),
            cwd,
        )
    else:
        raise ToolsConfigError(f"{where}.type: expected 'stdio' or 'http' (Streamable HTTP), not {kind!r}")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ToolsConfigError(f"{where}.{unknown[0]}: unknown field (allowed: {', '.join(sorted(allowed))})")
    tools = raw.get("tools")
    approve = raw.get("approve", [])
    approve_all = approve == "*"
    destructive = raw.get("approveDestructive", False)
    if not isinstance(destructive, bool):
        raise ToolsConfigError(f"{where}.approveDestructive: expected true or false")
    return ServerConfig(
        name=name,
        transport=transport,
        tools=None if tools is None else frozenset(_strings(tools, f"{where}.tools")),
        approve=frozenset() if approve_all else frozenset(_strings(approve, f"{where}.approve")),
        approve_all=approve_all,
        approve_destructive=destructive,
    )


def parse_tools_config(data: Any) -> ToolsConfig:
    """The configuration of a decoded tools file; :class:`ToolsConfigError` names the bad field."""
    if not isinstance(data, dict):
        raise ToolsConfigError("expected a JSON object with mcpServers")
    unknown = sorted(set(data) - {"mcpServers"})
    if unknown:
        raise ToolsConfigError(f"{unknown[0]}: unknown field (the file holds mcpServers)")
    servers = data.get("mcpServers")
    if not isinstance(servers, dict):
        raise ToolsConfigError("mcpServers: expected an object of servers by name")
    return ToolsConfig(tuple(_server(name, raw) for name, raw in servers.items()))


def load_tools_config(path: Path) -> ToolsConfig:
    """The tools file at ``path``, checked; :class:`ToolsConfigError` says what is wrong and where."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ToolsConfigError(f"cannot read {path}: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ToolsConfigError(f"{path} is not JSON: {e}") from None
    try:
        return parse_tools_config(data)
    except ToolsConfigError as e:
        raise ToolsConfigError(f"{path}: {e}") from None
