"""Tools for a script from Python callables, without a service: ``Engine.execute(code,
tools={"server": {"tool": callable}})``.

Each call of ``tools.<server>.<tool>(args)`` (or ``mcp.callTool(server, tool, args)``) runs
``callable(**args)`` on a thread of its own, so calls a script awaits together run in parallel;
the execution does not wait for a call once it has ended (its answer is dropped). The answer
follows :mod:`mcp_v8.tool_answers`:

- the return value, as JSON (a coroutine is run to its end first); one that is not JSON
  rejects with a ``TypeError``;
- arguments are checked against the schema of the callable's signature and type hints
  (:mod:`mcp_v8.tool_schemas`), as a tool server's ``inputSchema`` is in the service: what it
  refuses rejects with a ``TypeError`` naming the field, and the callable is not called; an
  unknown server or tool likewise;
- an exception the callable raises rejects with a ``ToolError`` (``content``: its message as
  a text block).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
from collections.abc import Mapping
from typing import Any, Callable

from . import _engine
from .tool_answers import error_answer
from .tool_arguments import ArgumentsError, check_arguments
from .tool_schemas import input_schema

__all__ = ["TOOL_CALL", "LocalTools"]

TOOL_CALL = "mcp-v8:tool"  # the host call of web.js's tools (rust/engine/src/tools.rs)


class LocalTools:
    """The tools of one execution: ``relay()`` for ``_engine.execute``."""

    def __init__(self, tools: Mapping[str, Mapping[str, Callable[..., Any]]]) -> None:
        for server, by_name in tools.items():
            if not isinstance(server, str) or not server or not isinstance(by_name, Mapping):
                raise TypeError("tools: a mapping of server names to mappings of tool names to callables")
            for name, fn in by_name.items():
                if not isinstance(name, str) or not name or not callable(fn):
                    raise TypeError(f"tools[{server!r}]: tool names must map to callables")
        self._tools = {server: dict(by_name) for server, by_name in tools.items()}
        self._schemas = {
            (server, name): input_schema(fn)
            for server, by_name in self._tools.items()
            for name, fn in by_name.items()
        }

    def relay(self) -> _engine.ToolRelay:
        relay: _engine.ToolRelay

        def on_call(call_id: int, request_json: str) -> None:
            request = json.loads(request_json)
            thread = threading.Thread(
                target=lambda: relay.reply(call_id, self.answer(request)), daemon=True, name="mcp-v8-tool"
            )
            thread.start()

        relay = _engine.ToolRelay(on_call)
        return relay

    def answer(self, request: Mapping[str, Any]) -> str:
        """The answer to one call (``{call_id, server, tool, arguments}``); never raises."""
        server, tool = request["server"], request["tool"]
        name = f"{server}.{tool}"
        fn = self._tools.get(server, {}).get(tool)
        if fn is None:
            return error_answer("TypeError", f"tool call refused: no tool {name}")
        try:
            check_arguments(server, tool, request["arguments"], self._schemas[server, tool])
        except ArgumentsError as e:
            return error_answer("TypeError", str(e))
        arguments = json.loads(request["arguments"])
        try:
            inspect.signature(fn).bind(**arguments)
        except TypeError as e:
            return error_answer("TypeError", f"{name}: {e}")
        except ValueError:  # a callable without a signature: it checks its own arguments
            pass
        try:
            value = fn(**arguments)
            if inspect.isawaitable(value):
                value = asyncio.run(_await(value))
        except Exception as e:
            message = f"{type(e).__name__}: {e}"
            return error_answer("ToolError", message, content=[{"type": "text", "text": message}])
        try:
            return json.dumps({"value": value}, allow_nan=False)
        except (TypeError, ValueError) as e:
            return error_answer("TypeError", f"{name} returned a value that is not JSON: {e}")


async def _await(value: Any) -> Any:
    return await value
