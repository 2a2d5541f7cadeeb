"""One MCP client session per tool server (the official MCP SDK, the ``mcp-v8[tools]`` extra),
held on a thread of its own that runs an asyncio loop: the service is WSGI and threaded, its
threads call tools through :class:`ToolSessions` (a :class:`~.caller.ToolCaller`).

Each server is kept connected by one task: connect, ``initialize``, list the tools, then
ping every ``ping_interval`` seconds, listing the tools again on
``notifications/tools/list_changed``; a lost connection (a failed ping, or a call that finds
it closed) makes the server ``down`` with its error, and it is connected again after a
backoff that doubles up to ``backoff_max`` (reset once a connection is ready).

A call abandoned (its timeout, or :meth:`PendingCall.cancel`) cancels its task in the loop;
the SDK then sends the tool server ``notifications/cancelled`` for the request."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import anyio
from mcp import types
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED

from .caller import (
    ServerInfo,
    ServerUnavailable,
    ToolCallError,
    ToolInfo,
    ToolProtocolError,
    ToolResult,
    ToolTimeout,
    UnknownServer,
    UnknownTool,
)
from .config import HttpServer, ServerConfig, ToolsConfig

log = logging.getLogger(__name__)


class ConnectionLost(Exception):
    pass


def describe(error: BaseException) -> str:
    """A one-line account of why a connection failed: the first leaf of an exception group
    (anyio wraps them), its type when its message is empty."""
    while isinstance(getattr(error, "exceptions", None), (list, tuple)) and error.exceptions:  # type: ignore[attr-defined]
        error = error.exceptions[0]  # type: ignore[attr-defined]
    if isinstance(error, MCPError):
        return error.error.message
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@dataclass
class _Server:
    config: ServerConfig
    state: str = "connecting"
    last_error: str | None = None
    tools: tuple[ToolInfo, ...] = ()
    # Used in the loop's thread only:
    session: ClientSession | None = field(default=None, repr=False)
    lost: asyncio.Event | None = field(default=None, repr=False)

    def info(self) -> ServerInfo:
        kind = "http" if isinstance(self.config.transport, HttpServer) else "stdio"
        return ServerInfo(self.config.name, kind, self.state, self.last_error, self.tools)


def _tool_info(server: ServerConfig, tool: types.Tool) -> ToolInfo:
    annotations = (
        tool.annotations.model_dump(by_alias=True, mode="json", exclude_none=True)
        if tool.annotations
        else None
    )
    return ToolInfo(
        name=tool.name,
        description=tool.description or "",
        input_schema=dict(tool.input_schema),
        output_schema=dict(tool.output_schema) if tool.output_schema is not None else None,
        annotations=annotations,
        gated=server.gated(tool.name, annotations),
    )


class _Pending:
    def __init__(self, future: concurrent.futures.Future[ToolResult], server: str, tool: str) -> None:
        self._future = future
        self._server = server
        self._tool = tool

    def result(self) -> ToolResult:
        try:
            return self._future.result()
        except concurrent.futures.CancelledError:
            raise ToolCallError(self._server, self._tool, "the call was abandoned") from None

    def wait(self, timeout: float) -> bool:
        done, _ = concurrent.futures.wait([self._future], timeout)
        return bool(done)

    def cancel(self) -> None:
        self._future.cancel()


class ToolSessions:
    """The tool servers of a :class:`ToolsConfig`, connected and kept connected; a
    :class:`~.caller.ToolCaller`. :meth:`start` before use, :meth:`close` at the end."""

    def __init__(
        self,
        config: ToolsConfig,
        *,
        ping_interval: float = 10.0,
        connect_timeout: float = 30.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        errlog: TextIO | None = None,
    ) -> None:
        self._lock = threading.Lock()  # guards the _Server fields other threads read (catalogue)
        self._servers = {s.name: _Server(s) for s in config.servers}
        self._ping_interval = ping_interval
        self._connect_timeout = connect_timeout
        self._backoff = (backoff_initial, backoff_max)
        self._errlog = errlog or sys.stderr
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="mcp-v8-tool-sessions", daemon=True)
        self._running = threading.Event()
        self._stop: asyncio.Event | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> ToolSessions:
        self._thread.start()
        self._running.wait()
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Ends every session (a stdio tool server's process is stopped) and the thread."""
        if not self._thread.is_alive():
            return
        stop = self._stop
        if stop is not None:
            self._loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        tasks = [asyncio.ensure_future(self._keep(s)) for s in self._servers.values()]
        self._running.set()
        await self._stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def wait_ready(self, timeout: float) -> bool:
        """Whether every server is ``ready`` within ``timeout`` seconds (for startup and tests)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if all(s.state == "ready" for s in self.catalogue()):
                return True
            time.sleep(0.05)
        return False

    # -- the sessions (in the loop's thread) --------------------------------------------------

    def _set(self, server: _Server, **values: Any) -> None:
        with self._lock:
            for key, value in values.items():
                setattr(server, key, value)

    async def _keep(self, server: _Server) -> None:
        delay = self._backoff[0]
        while True:
            self._set(server, state="connecting")
            try:
                await self._connect(server)
            except asyncio.CancelledError:
                raise
            except BaseException as e:  # anyio's groups are BaseExceptionGroup
                if isinstance(e, (KeyboardInterrupt, SystemExit)):
                    raise
                error = describe(e)
            was_ready = server.lost is not None
            self._set(server, state="down", last_error=error, session=None, lost=None)
            log.warning("tool server %s is down (%s); reconnecting", server.config.name, error)
            if was_ready:
                delay = self._backoff[0]
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff[1])

    async def _connect(self, server: _Server) -> None:
        transport = server.config.transport
        async with contextlib.AsyncExitStack() as stack:
            if isinstance(transport, HttpServer):
                client = await stack.enter_async_context(create_mcp_http_client(headers=transport.headers))
                read, write = await stack.enter_async_context(
                    streamable_http_client(transport.url, http_client=client)
                )
            else:
                params = StdioServerParameters(
                    command=transport.command,
                    args=list(transport.args),
                    env=transport.env or None,
                    cwd=transport.cwd,
                )
                read, write = await stack.enter_async_context(stdio_client(params, errlog=self._errlog))
            changed = asyncio.Event()

            async def on_message(message: Any) -> None:
                if isinstance(message, types.ToolListChangedNotification):
                    changed.set()

            session = await stack.enter_async_context(ClientSession(read, write, message_handler=on_message))
            with anyio.fail_after(self._connect_timeout):
                await session.initialize()
                tools = await self._list_tools(session)
            lost = asyncio.Event()
            infos = tuple(_tool_info(server.config, t) for t in tools if server.config.exposes(t.name))
            self._set(server, state="ready", last_error=None, tools=infos, session=session, lost=lost)
            log.info("tool server %s is ready (%d tools)", server.config.name, len(infos))
            await self._watch(server, session, lost, changed)

    async def _watch(
        self, server: _Server, session: ClientSession, lost: asyncio.Event, changed: asyncio.Event
    ) -> None:
        """Until the connection is lost: lists the tools again when the server says they
        changed, pings it when it has been quiet for ``ping_interval``."""
        while True:
            waits = [asyncio.ensure_future(lost.wait()), asyncio.ensure_future(changed.wait())]
            try:
                await asyncio.wait(waits, timeout=self._ping_interval, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            if lost.is_set():
                raise ConnectionLost("connection closed")
            try:
                with anyio.fail_after(self._connect_timeout):
                    if changed.is_set():
                        changed.clear()
                        listed = await self._list_tools(session)
                        infos = tuple(
                            _tool_info(server.config, t) for t in listed if server.config.exposes(t.name)
                        )
                        self._set(server, tools=infos)
                    else:
                        await session.send_ping()
            except Exception as e:
                raise ConnectionLost(
                    f"{'listing' if changed.is_set() else 'ping'} failed: {describe(e)}"
                ) from e

    @staticmethod
    async def _list_tools(session: ClientSession) -> list[types.Tool]:
        tools: list[types.Tool] = []
        cursor: str | None = None
        while True:
            page = await session.list_tools(
                params=types.PaginatedRequestParams(cursor=cursor) if cursor else None
            )
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                return tools

    async def _call(self, name: str, tool: str, arguments: dict[str, Any], timeout: float) -> ToolResult:
        server = self._servers.get(name)
        if server is None:
            raise UnknownServer(name, tool, f"no tool server named {name!r}")
        session, lost = server.session, server.lost
        if server.state != "ready" or session is None or lost is None:
            why = f": {server.last_error}" if server.last_error else ""
            raise ServerUnavailable(name, tool, f"tool server {name!r} is {server.state}{why}")
        if not any(t.name == tool for t in server.tools):
            raise UnknownTool(name, tool, f"tool server {name!r} has no tool {tool!r}")
        try:
            result = await asyncio.wait_for(session.call_tool(tool, arguments), timeout)
        except asyncio.TimeoutError:
            raise ToolTimeout(name, tool, f"{name}.{tool} gave no result within {timeout:g} s") from None
        except MCPError as e:
            if e.error.code == CONNECTION_CLOSED:
                lost.set()
                raise ServerUnavailable(
                    name, tool, f"tool server {name!r} was lost during the call"
                ) from None
            raise ToolProtocolError(name, tool, f"{name}.{tool}: {e.error.message}", e.error.code) from None
        except Exception as e:  # a result the SDK refuses (one that breaks the tool's outputSchema)
            raise ToolCallError(name, tool, f"{name}.{tool}: {describe(e)}") from None
        if not isinstance(result, types.CallToolResult):
            raise ToolCallError(name, tool, f"{name}.{tool}: not a tool result ({type(result).__name__})")
        return ToolResult(
            content=[
                block.model_dump(by_alias=True, mode="json", exclude_none=True) for block in result.content
            ],
            structured_content=result.structured_content,
            is_error=bool(result.is_error),
        )

    # -- ToolCaller ------------------------------------------------------------------------

    def start_call(self, server: str, tool: str, arguments: dict[str, Any], timeout: float) -> _Pending:
        coroutine = self._call(server, tool, arguments, timeout)
        try:
            future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        except RuntimeError:  # the loop is closed: the sessions were closed
            coroutine.close()
            raise ServerUnavailable(server, tool, "the tool sessions are closed") from None
        return _Pending(future, server, tool)

    def call(self, server: str, tool: str, arguments: dict[str, Any], timeout: float) -> ToolResult:
        return self.start_call(server, tool, arguments, timeout).result()

    def catalogue(self) -> list[ServerInfo]:
        with self._lock:
            return [s.info() for s in self._servers.values()]
