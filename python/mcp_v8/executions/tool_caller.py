"""What the executions need of the tool servers: :class:`ToolCaller`.

The control plane (the tool servers' configuration, one MCP client session per server) is the
implementation; the executions only name a tool and hand it arguments. A call is made by the
server, never by a worker: a worker asks over its channel (``tool_call``, :mod:`.protocol`), and
:class:`~.tool_calls.ToolCalls` checks the call, then hands it to the caller.

The contract (a fake in the tests holds to it too):

- :meth:`ToolCaller.tools` is the catalogue as it stands: for each server, its tools by name,
  each with its ``inputSchema`` (a JSON Schema object). It may change between calls (a server
  reconnects with another list); a call is checked against the catalogue of its moment.
- :meth:`ToolCaller.call` makes one call and returns the MCP ``CallToolResult`` as a dict (its
  ``content``, ``structuredContent`` and ``isError`` fields, as the protocol spells them). It
  blocks the calling thread (any thread, several at once) until the result, ``deadline``
  (``time.monotonic()``; then :class:`ToolTimeout`) or ``abandoned`` is set (the execution ended:
  then it returns or raises anything soon, nobody reads it; an MCP client sends the server
  ``notifications/cancelled``). A call that could not be made raises :class:`ToolUnavailable`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["ToolCaller", "ToolInfo", "ToolTimeout", "ToolUnavailable"]


@dataclass(frozen=True)
class ToolInfo:
    """One tool of a server: its input schema (JSON Schema), and what else the catalogue knows.
    ``needs_approval``: a gated tool (a call waits for a person's decision; not yet made)."""

    input_schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})
    description: str = ""
    output_schema: Mapping[str, Any] | None = None
    needs_approval: bool = False


class ToolUnavailable(Exception):
    """The call could not be made (the server is down, the session broke, it refused the call);
    the message says why, for the script."""


class ToolTimeout(ToolUnavailable):
    """The call passed its deadline."""


class ToolCaller(Protocol):
    def tools(self) -> Mapping[str, Mapping[str, ToolInfo]]:
        """Each server's tools by name."""
        ...

    def call(
        self, server: str, tool: str, arguments_json: str, deadline: float, abandoned: threading.Event
    ) -> Mapping[str, Any]:
        """Makes the call: the ``CallToolResult`` as a dict. Raises :class:`ToolUnavailable`
        (:class:`ToolTimeout` past ``deadline``)."""
        ...
