"""``mcp-v8 serve --processes N``: N serve processes on one port (SO_REUSEPORT), each a node of
the same PostgreSQL registry, started and stopped as one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import requests

from mcp_v8.client import Client

from .live_server import free_port
from .pg_server import PostgresServer

HANG = 60.0


def test_processes_share_a_port_and_answer_for_each_other(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    database = postgres_server.create_database("procs_" + uuid.uuid4().hex[:12])
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_V8_")}
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
