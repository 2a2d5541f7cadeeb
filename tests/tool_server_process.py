"""The test tool servers (tests/tool_servers.py) as processes the tests start: the stdio entry
of a tools file, and :class:`HttpToolServer`, the same tools over Streamable HTTP on a free
loopback port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .live_server import free_port

SERVERS = Path(__file__).resolve().parent / "tool_servers.py"
WAIT = 90.0  # seconds: wide, for a busy 2-core machine


def wait_until(predicate: Any, timeout: float = WAIT, what: str = "") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def tools_ready(client: Any, headers: dict[str, str]) -> Any:
    """``client`` (a falcon TestClient) once every tool server of its service is ready."""

    def ready() -> bool:
        servers = client.simulate_get("/api/tools", headers=headers).json["servers"]
        return all(s["state"] == "ready" for s in servers)

    wait_until(ready, what="the tool servers are ready")
    return client


def stdio_server(**extra: Any) -> dict[str, Any]:
    """A tools file's entry for the test tool server over stdio (``extra``: tools, approve...)."""
    return {"command": sys.executable, "args": [str(SERVERS), "stdio"], **extra}


class HttpToolServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> HttpToolServer:
        self.process = subprocess.Popen([sys.executable, str(SERVERS), "http", str(self.port)])

        def answers() -> bool:
            assert self.process is not None and self.process.poll() is None, "the tool server ended"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_until(answers, what="the HTTP tool server answers")
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
