"""``mcp-v8 serve --processes N``: N serve processes on one port (SO_REUSEPORT), each a node of
the same PostgreSQL registry, started and stopped as one; and two processes on one data directory
without a database, each answering for the other's executions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import psycopg
import requests

from mcp_v8.client import Client

from .live_server import LiveServer, free_port
from .pg_server import PostgresServer
from .service_helpers import SIGNING_KEY

HANG = 60.0


def test_processes_share_a_port_and_answer_for_each_other(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    database = postgres_server.create_database("procs_" + uuid.uuid4().hex[:12])
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_V8_")}
    env["MCP_V8_HEAP_SIGNING_KEY"] = SIGNING_KEY
    parent = subprocess.Popen(
        [sys.executable, "-m", "mcp_v8", "serve", "--processes", "2", "--database-url", database,
         "--port", str(port), "--workers", "1", "--data-dir", str(tmp_path / "data")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + HANG
        nodes: list[tuple[str]] = []
        while time.monotonic() < deadline:
            with psycopg.connect(database, autocommit=True) as conn:
                try:
                    nodes = conn.execute("SELECT id FROM nodes").fetchall()
                except psycopg.errors.UndefinedTable:  # not migrated yet
                    nodes = []
            if len(nodes) == 2:
                break
            time.sleep(0.2)
        assert len(nodes) == 2  # two nodes, each with its lease
        # A process records its lease before it listens (its workers start in between): wait
        # until one answers on the port.
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/api/version", timeout=10).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        with Client(url) as client:
            done = [client.execute(f"{i} * 2", snapshot=False) for i in range(20)]
            assert [d.value for d in done] == [i * 2 for i in range(20)]
            first = client.execute("var kept = 'state'; kept")
            assert client.execute("kept", heap=first.heap).value == "state"  # whichever process runs it
        # Each new connection goes to either process; every one answers for every execution.
        for _ in range(10):
            answered = requests.get(f"{url}/api/executions/{first.execution_id}", timeout=10)
            assert answered.json()["heap"] == first.heap
    finally:
        parent.send_signal(signal.SIGTERM)
        parent.wait(HANG)
    assert parent.returncode == 0
    with psycopg.connect(database, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM nodes").fetchone() == (0,)  # both left
        assert conn.execute("SELECT count(*) FROM executions WHERE status = 'running'").fetchone() == (0,)


def test_processes_above_one_need_a_database() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mcp_v8", "serve", "--processes", "2"],
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert proc.returncode != 0
    assert "processes above 1 need database_url" in proc.stderr


def test_a_long_poll_in_a_sibling_process_answers_when_the_execution_ends(tmp_path: Path) -> None:
    """Two ``serve`` processes on one data directory and no database (as ``serve`` beside the
    ``mcp`` of an MCP client): an execution of one, long-polled on the other with a long
    ``wait_ms``, is answered within seconds of its finish, not when the wait runs out."""
    data = tmp_path / "data"
    first, second = LiveServer(data, "--workers", "1"), LiveServer(data, "--workers", "1")
    try:
        first.start()
        second.start()
        started = requests.post(
            first.url + "/api/exec",
            json={"code": "const t = Date.now(); while (Date.now() - t < 3000) {} 'done'", "snapshot": False},
            timeout=60,
        )
        assert started.status_code == 202, started.text
        execution_id = started.json()["execution_id"]
        asked = time.time()
        answer = requests.get(
            f"{second.url}/api/executions/{execution_id}", params={"wait_ms": 20000}, timeout=60
        )
        answered = time.time()
        info = answer.json()
        assert (info["status"], info["result"]) == ("completed", '"done"'), info
        finished = datetime.fromisoformat(info["completed_at"].replace("Z", "+00:00")).timestamp()
        assert asked < finished  # the long-poll was in place before the execution ended
        assert answered - finished < 5.0  # well before the 20 s wait ran out
    finally:
        second.stop()
        first.stop()


def test_a_cancel_in_a_sibling_process_stops_the_script(tmp_path: Path) -> None:
    """The cancel of an execution running in the other process on the data directory stops its
    script there (its worker is free for the next one), not only its record."""
    data = tmp_path / "data"
    first, second = LiveServer(data, "--workers", "1"), LiveServer(data, "--workers", "1")
    try:
        first.start()
        second.start()
        looping = {"code": "while (true) {}", "snapshot": False, "execution_timeout_secs": 300}
        started = requests.post(first.url + "/api/exec", json=looping, timeout=60)
        assert started.status_code == 202, started.text
        execution_id = started.json()["execution_id"]
        deadline = time.monotonic() + 60
        while requests.get(first.url + "/api/stats", timeout=60).json()["workers_busy"] != 1:
            assert time.monotonic() < deadline, "the loop never started"
            time.sleep(0.05)
        cancel = requests.post(f"{second.url}/api/executions/{execution_id}/cancel", timeout=60)
        assert cancel.json() == {"ok": True, "error": None}
        # The first process's only worker takes the next execution: the loop was stopped there.
        after = requests.post(first.url + "/api/exec", json={"code": "6 * 7", "wait_ms": 30000}, timeout=90)
        assert (after.status_code, after.json()["result"]) == (200, "42"), after.text
        assert (
            requests.get(f"{first.url}/api/executions/{execution_id}", timeout=60).json()["status"]
            == "cancelled"
        )
    finally:
        second.stop()
        first.stop()
