"""Tool servers for the tests, written with the MCP SDK (``MCPServer``): the same tools over
stdio (``python tests/tool_servers.py stdio``) or Streamable HTTP (``... http PORT``).

Tools: ``add``, ``echo``, ``sleep`` (writes ``started`` to its ``started`` file when it
begins, and ``cancelled`` to its ``marker`` file when the call is cancelled), ``fail`` (an
``isError`` result), ``image`` (a PNG), ``point`` (a structured result with an output
schema), ``pid`` (of the server's process), ``delete_everything`` (annotated destructive)
and ``grow`` (adds a tool, then sends ``notifications/tools/list_changed``).

:class:`HttpToolServer` in ``tool_server_process.py`` runs this file over HTTP for a test."""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from pathlib import Path

from mcp.server.mcpserver import Context, Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel

# A 1x1 transparent PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)

server = MCPServer("test-tools", log_level="WARNING")


class Point(BaseModel):
    x: float
    y: float


@server.tool(description="Adds two integers.")
def add(a: int, b: int) -> int:
    return a + b


@server.tool(description="Returns its text unchanged.")
def echo(text: str) -> str:
    return text


@server.tool(description="Sleeps, then says how long.")
async def sleep(seconds: float, marker: str = "", started: str = "") -> str:
    if started:
        Path(started).write_text("started")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        if marker:
            Path(marker).write_text("cancelled")
        raise
    return f"slept {seconds}"


@server.tool(description="Always fails with its message.")
def fail(message: str) -> str:
    raise ToolError(message)


@server.tool(description="A small PNG image.")
def image() -> Image:
    return Image(data=PNG, format="png")


@server.tool(description="A point from its coordinates.")
def point(x: float, y: float) -> Point:
    return Point(x=x, y=y)


@server.tool(description="The process id of this tool server.")
def pid() -> int:
    return os.getpid()


@server.tool(
    description="Deletes everything under a path (pretends to).",
    annotations=ToolAnnotations(destructive_hint=True, read_only_hint=False),
)
def delete_everything(path: str) -> str:
    return f"deleted {path}"


@server.tool(description="Adds a tool of that name (it echoes) and says the tool list changed.")
async def grow(name: str, ctx: Context) -> str:
    def added(text: str) -> str:
        return text

    server.add_tool(added, name=name, description="Added at run time.")
    await ctx.session.send_tool_list_changed()
    return f"added {name}"


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
