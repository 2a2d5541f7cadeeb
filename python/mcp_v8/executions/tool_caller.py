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

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..tools import caller as plane

__all__ = ["SessionsCaller", "ToolCaller", "ToolInfo", "ToolTimeout", "ToolUnavailable"]

# How often a call in flight looks at its execution's ``abandoned`` event.
ABANDON_POLL_SECS = 0.05


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


class SessionsCaller:
    """:class:`ToolCaller` over the control plane's (:class:`mcp_v8.tools.caller.ToolCaller`,
    the tool servers' sessions): its catalogue as the executions read it, its errors as
    :class:`ToolUnavailable`, an abandoned call cancelled (the tool server is sent
    ``notifications/cancelled``)."""

    def __init__(self, caller: plane.ToolCaller) -> None:
        self._caller = caller

    def tools(self) -> Mapping[str, Mapping[str, ToolInfo]]:
        return {
            server.name: {
                t.name: ToolInfo(
                    input_schema=t.input_schema,
                    description=t.description,
                    output_schema=t.output_schema,
                    needs_approval=t.gated,
                )
                for t in server.tools
            }
            for server in self._caller.catalogue()
        }

    def call(
        self, server: str, tool: str, arguments_json: str, deadline: float, abandoned: threading.Event
    ) -> Mapping[str, Any]:
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            raise ToolTimeout(f"{server}.{tool} did not answer within its time")
        try:
            pending = self._caller.start_call(server, tool, json.loads(arguments_json), timeout)
            while not pending.wait(ABANDON_POLL_SECS):
                if abandoned.is_set():
                    pending.cancel()
                    raise ToolUnavailable(f"{server}.{tool}: the call was abandoned")
            result = pending.result()
        except plane.ToolTimeout as e:
            raise ToolTimeout(str(e)) from None
        except plane.ToolCallError as e:
            raise ToolUnavailable(str(e)) from None
        out: dict[str, Any] = {"content": result.content, "isError": result.is_error}
        if result.structured_content is not None:
            out["structuredContent"] = result.structured_content
        return out
