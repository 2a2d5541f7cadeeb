"""Code mode against plain tool calls, in the same run: a task of 20 tool calls (``add``, each on
the previous sum) done by one ``run_js`` whose script makes the 20 calls, against the same 20
calls made by a client as 20 MCP ``tools/call`` requests straight to the tool server.

Every client is the official MCP SDK's ``ClientSession``; the tool server is one small program
written with the SDK (``add``), run over stdio or Streamable HTTP. The ways, each timed from the
first request of the task to its last answer (sessions opened and initialized beforehand):

- ``code mode``: the client calls ``run_js`` on a running ``mcp-v8 serve`` (its ``/mcp``,
  Streamable HTTP, ``--workers 1``) whose ``--tools-config`` names the tool server over stdio;
  the script's 20 calls are made by mcp-v8 (``"snapshot": false``: the bench is about the calls).
- ``code mode, 0 calls``: the same ``run_js`` with a script that makes none: what one execution
  costs by itself, so that (t(20 calls) - t(0 calls)) / 20 is what a call adds in code mode.
- ``direct, stdio``: the client starts the tool server and makes the 20 calls over stdio.
- ``direct, HTTP``: the client makes the 20 calls to the tool server over Streamable HTTP.

Bytes are counted on the wire, per task:

- over HTTP (the client's side of ``code mode`` and ``direct, HTTP``), by a loopback TCP proxy
  in a process of its own that adds up what passes each way: HTTP heads and bodies, all of it;
  the proxy adds a hop, so bytes are counted in a pass of their own (the same sessions' twins
  through the proxy) and the times come from the sessions without it;
- over stdio, from the tool server process's ``/proc/<pid>/io`` (``rchar``: what it read on
  stdin, ``wchar``: what it wrote on stdout and stderr), which counts the pipe's bytes exactly
  and adds nothing in between. This also gives what mcp-v8 itself exchanged with its tool
  server during a code-mode task (the 20 calls still happen, on the server's side).

Rounds alternate the ways; the table gives medians. Standalone: prints a table and writes
``results/code_mode.json``::

    .venv/bin/python benches/code_mode.py [--rounds 9] [--calls 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchlib import RESULTS, children, cmdline, log
from server import Server, free_port

TOOL_SERVER = """
import sys
from mcp.server.mcpserver import MCPServer

server = MCPServer("bench-tools", log_level="WARNING")


@server.tool(description="Adds two integers.")
def add(a: int, b: int) -> int:
    return a + b


if sys.argv[1] == "stdio":
    server.run("stdio")
else:
    server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
"""

_BUFFER = 1 << 16


class ByteProxy:
    """A loopback TCP proxy to ``url``'s server in a process of its own (forked before any
    thread or event loop of the bench): ``proxy.url`` reaches the server through it, and
    ``proxy.counts()`` is (bytes from the client, bytes from the server) so far."""

    def __init__(self, url: str) -> None:
        scheme, rest = url.split("://", 1)
        hostport, _, path = rest.partition("/")
        host, port = hostport.rsplit(":", 1)
        self._upstream = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"{scheme}://127.0.0.1:{self._listener.getsockname()[1]}/{path}"
        ctx = multiprocessing.get_context("fork")
        self._up: Any = ctx.Value("q", 0, lock=True)
        self._down: Any = ctx.Value("q", 0, lock=True)
        self._process: Any = ctx.Process(target=self._serve, daemon=True)
        self._process.start()
        self._listener.close()  # the child holds it

    def counts(self) -> tuple[int, int]:
        return int(self._up.value), int(self._down.value)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._process.pid, signal.SIGKILL)
        self._process.join(10)

    def _serve(self) -> None:
        while True:
            client, _ = self._listener.accept()
            try:
                server = socket.create_connection(self._upstream)
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for source, sink, counter in ((client, server, self._up), (server, client, self._down)):
                threading.Thread(
                    target=self._pump, args=(source, sink, counter, (client, server)), daemon=True
                ).start()

    @staticmethod
    def _pump(
        source: socket.socket, sink: socket.socket, counter: Any, both: tuple[socket.socket, ...]
    ) -> None:
        try:
            while data := source.recv(_BUFFER):
                with counter.get_lock():
                    counter.value += len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in both:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def io_bytes(pid: int) -> tuple[int, int]:
    """(bytes read, bytes written) by process ``pid`` through read/write calls so far."""
    fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(fields["rchar"]), int(fields["wchar"])


def tool_server_pid(parent: int, script: Path) -> int:
    found = [p for p in children(parent) if str(script) in cmdline(p) and "stdio" in cmdline(p)]
    assert len(found) == 1, (parent, found)
    return found[0]


def wait_for_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing answers on port {port}")


def script(calls: int) -> str:
    return f"let sum = 0;\nfor (let i = 1; i <= {calls}; i++) sum = (await tools.bench.add({{a: sum, b: i}})).result;\nsum"


async def run(
    args: argparse.Namespace, service: Server, tool_script: Path, http_url: str, proxies: dict[str, ByteProxy]
) -> dict[str, Any]:
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client
    from mcp.client.streamable_http import streamable_http_client

    n = args.calls
    expected = n * (n + 1) // 2
    code = script(n)
    async with contextlib.AsyncExitStack() as stack:

        async def session(streams: Any) -> ClientSession:
            read, write = (await stack.enter_async_context(streams))[:2]
            s = await stack.enter_async_context(ClientSession(read, write))
            await s.initialize()
            return s

        mcp_v8 = await session(streamable_http_client(service.url + "/mcp"))
        mcp_v8_counted = await session(streamable_http_client(proxies["code mode"].url))
        stdio = await session(
            stdio_client(StdioServerParameters(command=sys.executable, args=[str(tool_script), "stdio"]))
        )
        http = await session(streamable_http_client(http_url))
        http_counted = await session(streamable_http_client(proxies["direct, HTTP"].url))
        direct_pid = tool_server_pid(os.getpid(), tool_script)
        behind_pid = tool_server_pid(service.pid, tool_script)

        async def run_js(s: ClientSession, source: str, value: int) -> None:
            result = await s.call_tool("run_js", {"code": source, "snapshot": False})
            assert not result.is_error and result.structured_content is not None, result.content
            assert result.structured_content["result"] == str(value), result.structured_content

        async def code_mode(s: ClientSession) -> None:
            await run_js(s, code, expected)

        async def no_calls(s: ClientSession) -> None:  # what one execution costs without tools
            await run_js(s, script(0), 0)

        async def direct(s: ClientSession) -> None:
            total = 0
            for i in range(1, n + 1):
                result = await s.call_tool("add", {"a": total, "b": i})
                assert not result.is_error and result.structured_content is not None, result.content
                total = result.structured_content["result"]
            assert total == expected, total

        async def timed(task: Any, s: ClientSession) -> float:
            t = time.perf_counter()
            await task(s)
            return time.perf_counter() - t

        ways = {
            "code mode": (code_mode, mcp_v8),
            "code mode, 0 calls": (no_calls, mcp_v8),
            "direct, stdio": (direct, stdio),
            "direct, HTTP": (direct, http),
        }
        counted = {
            "code mode": (code_mode, mcp_v8_counted),
            "code mode, 0 calls": (no_calls, mcp_v8_counted),
            "direct, HTTP": (direct, http_counted),
        }
        proxy_of = {
            "code mode": "code mode",
            "code mode, 0 calls": "code mode",
            "direct, HTTP": "direct, HTTP",
        }
        for task, s in [*ways.values(), *counted.values()]:  # warm every session and path
            await task(s)
        seconds: dict[str, list[float]] = {w: [] for w in ways}
        sent: dict[str, list[int]] = {w: [] for w in ways}
        received: dict[str, list[int]] = {w: [] for w in ways}
        behind: dict[str, list[int]] = {"sent": [], "received": []}
        for r in range(args.rounds):
            log(f"round {r + 1}/{args.rounds}")
            for name, (task, s) in ways.items():
                before = io_bytes(direct_pid), io_bytes(behind_pid)
                seconds[name].append(await timed(task, s))
                after = io_bytes(direct_pid), io_bytes(behind_pid)
                if name == "direct, stdio":  # what the tool server read is what the client sent
                    sent[name].append(after[0][0] - before[0][0])
                    received[name].append(after[0][1] - before[0][1])
                if name == "code mode":  # mcp-v8 and its tool server, behind the client's back
                    behind["sent"].append(after[1][0] - before[1][0])
                    behind["received"].append(after[1][1] - before[1][1])
            for name, (task, s) in counted.items():
                up, down = proxies[proxy_of[name]].counts()
                await task(s)
                up2, down2 = proxies[proxy_of[name]].counts()
                sent[name].append(up2 - up)
                received[name].append(down2 - down)
    rows: dict[str, Any] = {}
    for name in ways:
        rows[name] = {
            "wall_ms": statistics.median(seconds[name]) * 1e3,
            "sent_bytes": statistics.median(sent[name]),
            "received_bytes": statistics.median(received[name]),
        }
        rows[name]["total_bytes"] = rows[name]["sent_bytes"] + rows[name]["received_bytes"]
    per_call_ms = {
        "code mode": (rows["code mode"]["wall_ms"] - rows["code mode, 0 calls"]["wall_ms"]) / n,
        "direct, stdio": rows["direct, stdio"]["wall_ms"] / n,
        "direct, HTTP": rows["direct, HTTP"]["wall_ms"] / n,
    }
    return {
        "calls": n,
        "per_call_ms": per_call_ms,
        "rounds": args.rounds,
        "rows": rows,
        "code_mode_server_to_tool_server": {k: statistics.median(v) for k, v in behind.items()},
        "raw": {"seconds": seconds, "sent": sent, "received": received, "behind": behind},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mcp-v8-code-mode-") as root:
        tool_script = Path(root) / "bench_tool_server.py"
        tool_script.write_text(TOOL_SERVER)
        tools_file = Path(root) / "tools.json"
        tools_file.write_text(
            json.dumps(
                {"mcpServers": {"bench": {"command": sys.executable, "args": [str(tool_script), "stdio"]}}}
            )
        )
        port = free_port()
        http_server = subprocess.Popen([sys.executable, str(tool_script), "http", str(port)])
        try:
            wait_for_port(port)
            with Server(workers=1, tools_config=tools_file) as service:
                deadline = time.monotonic() + 90
                while service.get("/api/tools")["servers"][0]["state"] != "ready":
                    assert time.monotonic() < deadline, service.get("/api/tools")
                    time.sleep(0.1)
                http_url = f"http://127.0.0.1:{port}/mcp"
                # forked before any event loop or thread of this process
                proxies = {"code mode": ByteProxy(service.url + "/mcp"), "direct, HTTP": ByteProxy(http_url)}
                try:
                    results = asyncio.run(run(args, service, tool_script, http_url, proxies))
                finally:
                    for proxy in proxies.values():
                        proxy.stop()
        finally:
            http_server.kill()
            http_server.wait(30)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "code_mode.json").write_text(json.dumps(results, indent=2) + "\n")
    n = results["calls"]
    print(f"a task of {n} tool calls, median of {results['rounds']} rounds")
    print(f"{'way':<16} {'wall ms':>9} {'sent B':>9} {'received B':>11} {'total B':>9}")
    for name, row in results["rows"].items():
        print(
            f"{name:<16} {row['wall_ms']:>9.1f} {row['sent_bytes']:>9.0f} "
            f"{row['received_bytes']:>11.0f} {row['total_bytes']:>9.0f}"
        )
    print(
        "per call (ms; code mode: (t(n calls) - t(0 calls)) / n): "
        + ", ".join(f"{k} {v:.2f}" for k, v in results["per_call_ms"].items())
    )
    behind = results["code_mode_server_to_tool_server"]
    print(
        f"code mode, mcp-v8 <-> its tool server over stdio (not the client's): "
        f"{behind['sent']:.0f} B to it, {behind['received']:.0f} B from it"
    )


if __name__ == "__main__":
    main()
