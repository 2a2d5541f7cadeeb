"""A real ``mcp-v8 serve`` in a subprocess on a free loopback port, always stopped on exit."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from benchlib import BENCHES, VENV_BIN, children, cmdline, log


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_command() -> list[str]:
    exe = VENV_BIN / "mcp-v8"
    return [str(exe), "serve"] if exe.exists() else [sys.executable, "-m", "mcp_v8", "serve"]


class Server:
    """``with Server(workers=2) as s:`` starts ``mcp-v8 serve`` on 127.0.0.1 with a fresh data dir
    and stops it (SIGTERM, then SIGKILL) whatever happens inside the block."""

    def __init__(
        self, *, workers: int, queue_limit: int = 256, threads: int | None = None, **extra: Any
    ) -> None:
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._tmp = tempfile.mkdtemp(prefix="mcp-v8-bench-")
        self.data_dir = Path(self._tmp) / "data"
        self.args = ["--host", "127.0.0.1", "--port", str(self.port), "--data-dir", str(self.data_dir)]
        self.args += ["--workers", str(workers)]
        self.args += ["--queue-limit", str(queue_limit)]
        if threads is not None:
            self.args += ["--threads", str(threads)]
        for name, value in extra.items():
            self.args += ["--" + name.replace("_", "-"), str(value)]
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = Path(self._tmp) / "server.log"

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 90.0) -> Server:
        command = [*serve_command(), *self.args]
        log(f"server: {' '.join(command[1:])}")
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # embedded defaults, whatever MCP_V8_* the calling shell has set
                env={
                    **{k: v for k, v in os.environ.items() if not k.startswith("MCP_V8_")},
                    "PYTHONUNBUFFERED": "1",
                },
            )
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"server exited: {self.log_tail()}")
                try:
                    self.get("/api/version")
                    if len(self.worker_pids()) >= self.workers:
                        return self
                except (urllib.error.URLError, ConnectionError):
                    pass
                time.sleep(0.1)
            raise RuntimeError(f"server did not start: {self.log_tail()}")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def log_tail(self, limit: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=60) as resp:
            return json.loads(resp.read())

    def post(self, path: str, body: dict[str, Any]) -> Any:
        req = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())

    def worker_pids(self) -> list[int]:
        """The worker processes: children of the server running ``mcp_v8.executions.worker``."""
        return [p for p in children(self.pid) if "mcp_v8.executions.worker" in cmdline(p)]


def run_loadgen(url: str, *, timeout: float, **options: Any) -> dict[str, Any]:
    """Runs benches/loadgen.py in its own process and returns its JSON report."""
    command = [sys.executable, str(BENCHES / "loadgen.py"), "--url", url]
    for name, value in options.items():
        if value is True:
            command.append("--" + name.replace("_", "-"))  # a flag
        elif value is not False:
            command += ["--" + name.replace("_", "-"), str(value)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed ({done.returncode}): {done.stderr.strip()[-1000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result
