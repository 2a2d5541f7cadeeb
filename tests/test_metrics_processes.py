"""``GET /metrics`` of ``mcp-v8 serve --processes 2`` (one port, SO_REUSEPORT, PostgreSQL): every
scrape, whichever process answers it, adds up both processes' counters (prometheus-client's
multiprocess mode), and the cluster's queue is one series. With ``--log-format json`` every line on
standard error is a JSON object, and the line of a worker crash carries its execution id and node."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import requests
from prometheus_client.parser import text_string_to_metric_families

from mcp_v8.client import Client

from .live_server import free_port
from .pg_server import PostgresServer
from .service_helpers import SIGNING_KEY

HANG = 120.0
TOKEN = "processes-metrics-token"


def _families(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    # A new connection each time: the kernel hands it to either process.
    resp = requests.get(
        f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}", "Connection": "close"}, timeout=30
    )
    assert resp.status_code == 200, resp.text
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            found.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return found


def _total(found: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str) -> float:
    return sum(found.get(name, {}).values())


def test_a_scrape_of_two_processes_adds_up_both(tmp_path: Path, postgres_server: PostgresServer) -> None:
    database = postgres_server.create_database("metrics_" + uuid.uuid4().hex[:12])
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_V8_", "PROMETHEUS_MULTIPROC"))}
    env["MCP_V8_HEAP_SIGNING_KEY"] = SIGNING_KEY
    stderr_path = tmp_path / "stderr.log"
    with open(stderr_path, "wb") as stderr:
        parent = subprocess.Popen(
            [sys.executable, "-m", "mcp_v8", "serve", "--processes", "2", "--database-url", database,
             "--port", str(port), "--workers", "1", "--data-dir", str(tmp_path / "data"),
             "--api-token", TOKEN, "--log-format", "json"],
            env=env, stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + HANG
        nodes: list[tuple[str]] = []
        while time.monotonic() < deadline and len(nodes) < 2:
            with psycopg.connect(database, autocommit=True) as conn:
                try:
                    nodes = conn.execute("SELECT id FROM nodes").fetchall()
                except psycopg.errors.UndefinedTable:  # not migrated yet
                    nodes = []
            time.sleep(0.2)
        assert len(nodes) == 2
        while time.monotonic() < deadline:  # a process records its lease before it listens
            try:
                if _total(_families(url), "mcp_v8_workers") == 2:  # both are up (their gauges count)
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        with Client(url, TOKEN) as client:
            # Four at once on two single-worker nodes: each node runs some (a worker is busy for
            # a while with each), then a worker crash.
            with ThreadPoolExecutor(4) as pool:
                runs = list(
                    pool.map(
                        lambda i: client.execute(
                            f"const end = Date.now() + 300; while (Date.now() < end) {{}}; {i}",
                            snapshot=False,
                        ),
                        range(4),
                    )
                )
            assert [r.value for r in runs] == [0, 1, 2, 3]
            crashed = client.execute("new Array(1e9).fill(0)", heap_memory_max_mb=64, timeout=HANG)
            assert crashed.status == "failed" and "worker crashed" in (crashed.error or "")
        # An end is counted just after its record is written, which a client may read first.
        while time.monotonic() < deadline and _total(_families(url), "mcp_v8_executions_ended_total") < 5:
            time.sleep(0.1)
        # Every scrape has both processes' counts, whichever answers: each has one worker.
        for _ in range(8):
            found = _families(url)
            assert _total(found, "mcp_v8_workers") == 2
            assert _total(found, "mcp_v8_executions_started_total") == 5
            assert (
                found["mcp_v8_executions_ended_total"][(("mode", "no_snapshot"), ("status", "completed"))]
                == 4
            )
            assert found["mcp_v8_executions_ended_total"][(("mode", "snapshot"), ("status", "failed"))] == 1
            assert _total(found, "mcp_v8_worker_crashes_total") == 1
            assert _total(found, "mcp_v8_run_seconds_count") == 5
            assert list(found["mcp_v8_cluster_queued"].values()) == [0]  # one series, not one a process
    finally:
        parent.send_signal(signal.SIGTERM)
        parent.wait(HANG)
    assert parent.returncode == 0
    lines = stderr_path.read_text(encoding="utf-8").splitlines()
    assert lines
    logged = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in logged)
    crash = [e for e in logged if e["level"] == "WARNING" and "crashed while running" in e["message"]]
    assert len(crash) == 1
    assert crash[0]["execution_id"] == crashed.execution_id
    assert crash[0]["node"] in {node for (node,) in nodes}
