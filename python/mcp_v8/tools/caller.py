"""How the rest of the server calls a tool: the :class:`ToolCaller` interface, the result
of a call and the errors it raises. Free of the MCP SDK, so that code using it imports on
any Python and without the ``mcp-v8[tools]`` extra."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


class ToolCallError(Exception):
    """A tool call that did not produce a result (as opposed to a result with ``is_error``)."""

    def __init__(self, server: str, tool: str, message: str) -> None:
        super().__init__(message)
        self.server = server
        self.tool = tool


class UnknownServer(ToolCallError):
    """No tool server of that name is configured."""


class UnknownTool(ToolCallError):
    """The server is up but has no such tool, or does not expose it (its ``tools`` list)."""


class ServerUnavailable(ToolCallError):
    """The tool server is not connected (connecting or down), or its connection was lost
    during the call; the message has its last error."""


class ToolTimeout(ToolCallError):
    """No result within the call's timeout; the call was abandoned (the tool server was sent
    ``notifications/cancelled``)."""


class ToolProtocolError(ToolCallError):
    """The tool server answered the call with a JSON-RPC error (invalid arguments, an
    internal error) instead of a result."""

    def __init__(self, server: str, tool: str, message: str, code: int) -> None:
        super().__init__(server, tool, message)
        self.code = code


@dataclass(frozen=True)
class ToolResult:
    """What a tool returned: its content blocks as JSON objects (``{"type": "text", "text":
    ...}``, ``{"type": "image", "data": base64, "mimeType": ...}``, resources...), its
    ``structuredContent`` if any, and whether it reported an error (``isError``)."""

    content: list[dict[str, Any]] = field(default_factory=list)
    structured_content: dict[str, Any] | None = None
    is_error: bool = False


@dataclass(frozen=True)
class ToolInfo:
    """One exposed tool as its server lists it (schemas and annotations in MCP's JSON
    spelling) and whether a call of it needs approval."""

    name: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    annotations: dict[str, Any] | None
    gated: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "inputSchema": self.input_schema,
            "outputSchema": self.output_schema,
            "annotations": self.annotations,
            "gated": self.gated,
        }


SERVER_STATES = ("connecting", "ready", "down")


@dataclass(frozen=True)
class ServerInfo:
    """A tool server's state (``connecting``, ``ready`` or ``down``), its last error (kept
    while it reconnects) and the tools it exposes (those of its last listing; empty before
    the first)."""

    name: str
    transport: str  # "stdio" or "http" (a library's callables: "library")
    state: str
    last_error: str | None
    tools: tuple[ToolInfo, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "transport": self.transport,
            "state": self.state,
            "last_error": self.last_error,
            "tools": [t.as_json() for t in self.tools],
        }


class PendingCall(Protocol):
    """A call under way: its result (raising the errors of :meth:`ToolCaller.call`), or
    abandoned by :meth:`cancel` (the tool server is sent ``notifications/cancelled``)."""

    def result(self) -> ToolResult: ...

    def wait(self, timeout: float) -> bool:
        """Waits up to ``timeout`` seconds for the call to end; whether it has."""
        ...

    def cancel(self) -> None: ...


class ToolCaller(Protocol):
    """Calls tools on the configured tool servers, from any thread.

    ``call`` blocks until the result, and raises :class:`UnknownServer`,
    :class:`UnknownTool`, :class:`ServerUnavailable`, :class:`ToolTimeout` (after
    ``timeout`` seconds; the call is abandoned) or :class:`ToolProtocolError`. A result with
    ``is_error`` is a result, not an exception. ``start_call`` begins the same call and returns at
    once, for callers that may abandon it (an execution cancelled). ``catalogue`` is every
    configured server with its state and exposed tools."""

    def call(self, server: str, tool: str, arguments: dict[str, Any], timeout: float) -> ToolResult: ...

    def start_call(
        self, server: str, tool: str, arguments: dict[str, Any], timeout: float
    ) -> PendingCall: ...

    def catalogue(self) -> list[ServerInfo]: ...
