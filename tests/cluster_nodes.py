"""Nodes of a cluster for tests: real ``mcp-v8 serve`` processes sharing a real PostgreSQL, and
the little the tests ask of them (the HTTP API, SQL on the database, waiting for a condition)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from .live_server import children, free_port
from .service_helpers import SIGNING_KEY

TERMINAL = {"completed", "failed", "cancelled", "timed_out"}


class Node:
    """One ``mcp-v8 serve`` process on the cluster's database, in a process group of its own (its
    workers have sessions of their own: :meth:`kill` kills them by pid)."""

    def __init__(
        self, data_dir: Path, database_url: str, *extra: str, env: dict[str, str] | None = None
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [
            sys.executable, "-m", "mcp_v8", "serve", "--port", str(self.port), "--data-dir", str(data_dir),
            "--database-url", database_url, "--workers", "1", "--node-lease-secs", "2", *extra,
        ]  # fmt: skip
        self.env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "MCP_V8_HEAP_SIGNING_KEY": SIGNING_KEY,
            **(env or {}),
        }
        self.log = data_dir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.workers: list[int] = []

    def start(self, timeout: float = 120.0) -> Node:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"node exited: {self.log_tail()}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.url + "/api/version", timeout=2).status_code == 200:
                    self.workers = children(self.process.pid)
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"node did not start: {self.log_tail()}")

    def log_tail(self, n: int = 60) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        return ""

    def kill(self) -> None:
        """SIGKILL to the node's process group and to its workers: a machine that died."""
        assert self.process is not None
        pids = children(self.process.pid) + self.workers
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        for pid in self.workers:  # they exit once the node is gone; never leave one behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    # -- the HTTP API ----------------------------------------------------------------------------

    def submit(self, code: str, **fields: Any) -> str:
        r = requests.post(self.url + "/api/exec", json={"code": code, **fields}, timeout=60)
        assert r.status_code == 202, (r.status_code, r.text)
        return str(r.json()["execution_id"])

    def get(self, eid: str, wait_ms: int = 0) -> dict[str, Any]:
        r = requests.get(f"{self.url}/api/executions/{eid}", params={"wait_ms": wait_ms}, timeout=60)
        assert r.status_code == 200, (r.status_code, r.text)
        info: dict[str, Any] = r.json()
        return info

    def wait(self, eid: str, timeout: float = 90.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            info = self.get(eid, 10_000)
            if info["status"] in TERMINAL:
                return info
            assert time.monotonic() < deadline, f"{eid} still {info['status']} after {timeout:.0f} s"

    def run(self, code: str, **fields: Any) -> dict[str, Any]:
        return self.wait(self.submit(code, **fields))

    def output(self, eid: str) -> str:
        r = requests.get(f"{self.url}/api/executions/{eid}/output", timeout=60)
        assert r.status_code == 200, (r.status_code, r.text)
        return str(r.json()["data"])

    def wait_output(self, eid: str, needle: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.output(eid):
            assert time.monotonic() < deadline, f"{needle!r} never printed by {eid}"
            time.sleep(0.05)

    def running(self) -> list[str]:
        """The ids of every execution listed as running (all pages)."""
        found: list[str] = []
        params: dict[str, Any] = {"status": "running", "limit": 1000}
        while True:
            r = requests.get(self.url + "/api/executions", params=params, timeout=60)
            assert r.status_code == 200, (r.status_code, r.text)
            page = r.json()
            found += [e["execution_id"] for e in page["executions"]]
            if page["next_cursor"] is None:
                return found
            params["cursor"] = page["next_cursor"]


def sql(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description is not None else []


def until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        time.sleep(interval)
