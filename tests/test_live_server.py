"""The real server (``mcp-v8 serve`` on Waitress) end to end."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from mcp_v8.client import Client

from .live_server import LiveServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("live"), "--workers", "2").start()
    yield live
    live.stop()


def exec_and_wait(url: str, code: str, **fields: Any) -> dict[str, object]:
    with Client(url) as client:
        return dataclasses.asdict(client.execute(code, timeout=60, **fields))


def test_submit_long_poll_and_resume(server: LiveServer) -> None:
    first = exec_and_wait(server.url, "var hits = 1; hits")
    assert first["status"] == "completed" and first["result"] == "1"
    second = exec_and_wait(server.url, "hits += 1", heap=first["heap"])
    assert second["result"] == "2"


def test_long_poll_returns_as_soon_as_done(server: LiveServer) -> None:
    eid = requests.post(
        server.url + "/api/exec",
        json={"code": "new Promise(r => setTimeout(() => r('slow'), 300))"},
        timeout=10,
    ).json()["execution_id"]
    info = requests.get(f"{server.url}/api/executions/{eid}", params={"wait_ms": 30000}, timeout=60).json()
    assert info["status"] == "completed" and info["result"] == '"slow"'
    running = requests.post(
        server.url + "/api/exec", json={"code": "while (true) {}", "execution_timeout_secs": 30}, timeout=10
    ).json()["execution_id"]
    info = requests.get(f"{server.url}/api/executions/{running}", params={"wait_ms": 200}, timeout=10).json()
    assert info["status"] == "running"  # the wait elapsed first
    assert requests.post(f"{server.url}/api/executions/{running}/cancel", timeout=10).json()["ok"] is True


def test_live_output_then_cancel(server: LiveServer) -> None:
    code = "let i = 0; setInterval(() => console.log('tick ' + i++), 10);"
    eid = requests.post(
        server.url + "/api/exec", json={"code": code, "execution_timeout_secs": 60}, timeout=10
    ).json()["execution_id"]
    seen: list[str] = []
    cursor = 0
    deadline = time.monotonic() + 30
    while len(seen) < 5 and time.monotonic() < deadline:
        page = requests.get(
            f"{server.url}/api/executions/{eid}/output", params={"line_offset": cursor}, timeout=10
        ).json()
        assert page["status"] == "running"
        seen += page["data"].splitlines()
        cursor = page["next_line_offset"]
        time.sleep(0.05)
    assert seen[:5] == [f"tick {i}" for i in range(5)]
    assert requests.post(f"{server.url}/api/executions/{eid}/cancel", timeout=10).json() == {
        "ok": True,
        "error": None,
    }
    info = requests.get(f"{server.url}/api/executions/{eid}", params={"wait_ms": 10000}, timeout=30).json()
    assert info["status"] == "cancelled"


def test_restart_keeps_completed_executions(tmp_path: Path) -> None:
    live = LiveServer(tmp_path / "data", "--workers", "1").start()
    try:
        done = exec_and_wait(live.url, "console.log('persisted'); 6 * 7")
        running = requests.post(
            live.url + "/api/exec", json={"code": "console.log('x'); while (true) {}", "execution_timeout_secs": 60},
            timeout=10,
        ).json()["execution_id"]  # fmt: skip
        time.sleep(0.5)
    finally:
        live.stop()
    again = LiveServer(tmp_path / "data", "--workers", "1", port=live.port).start()
    try:
        info = requests.get(f"{again.url}/api/executions/{done['execution_id']}", timeout=10).json()
        assert info["status"] == "completed" and info["result"] == "42"
        out = requests.get(f"{again.url}/api/executions/{done['execution_id']}/output", timeout=10).json()
        assert out["data"] == "persisted\n"
        lost = requests.get(f"{again.url}/api/executions/{running}", timeout=10).json()
        assert lost["status"] in ("failed", "cancelled")
        assert lost["error"]
        resumed = exec_and_wait(again.url, "1 + 1", heap=done["heap"])
        assert resumed["status"] == "completed"
    finally:
        again.stop()


def test_unusable_data_dir_fails_at_start(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = subprocess.run(
        [sys.executable, "-m", "mcp_v8", "serve", "--data-dir", str(blocker / "data"), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "data directory" in proc.stderr and "not usable" in proc.stderr


def test_wsgi_module_for_other_servers(tmp_path: Path) -> None:
    """mcp_v8.wsgi:app is a WSGI callable configured from MCP_V8_* variables; importing
    it starts nothing (no database, no worker process) until the first request."""
    code = (
        "import os\n"
        "from wsgiref.util import setup_testing_defaults\n"
        "from mcp_v8.wsgi import app\n"
        "assert os.listdir(os.environ['MCP_V8_DATA_DIR']) == [], 'import created files'\n"
        "def parent(pid):\n"
        "    try:\n"
        "        return open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[1]\n"
        "    except OSError:\n"
        "        return None\n"
        "children = [p for p in os.listdir('/proc') if p.isdigit() and parent(p) == str(os.getpid())]\n"
        "assert children == [], 'import started processes'\n"
        "env = {'PATH_INFO': '/api/version', 'HTTP_HOST': '127.0.0.1'}\n"
        "setup_testing_defaults(env)\n"
        "status = []\n"
        "body = b''.join(app(env, lambda s, h: status.append(s)))\n"
        "print(status[0], body.decode())\n"
        "app.app.service.close()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "MCP_V8_DATA_DIR": str(tmp_path), "MCP_V8_WORKERS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("200 OK") and '"version": "0.1.0"' in proc.stdout
    assert (tmp_path / "registry.sqlite3").exists()
