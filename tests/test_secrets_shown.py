"""A real ``mcp-v8 serve`` on the test PostgreSQL never shows the password of its database URL,
given in either form (``user:password@`` and ``?password=``): not in its output and log records
while it starts, runs an execution and stops, nor in the error that ends a refused start."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import requests

from .live_server import LiveServer, free_port
from .pg_server import USER, PostgresServer
from .service_helpers import SIGNING_KEY

IN_USER_INFO = "Us3r-inf0-Pa55"
IN_QUERY = "qu3ry-Pa55"


def secret_url(postgres_server: PostgresServer, prefix: str) -> tuple[str, str]:
    """A fresh database's URL as created, and with passwords in both forms (the test server
    trusts its loopback clients: the passwords are accepted and unused)."""
    plain = postgres_server.create_database(prefix + uuid.uuid4().hex[:12])
    name = plain.rsplit("/", 1)[1]
    return (
        plain,
        f"postgresql://{USER}:{IN_USER_INFO}@127.0.0.1:{postgres_server.port}/{name}?password={IN_QUERY}",
    )


def test_a_real_startup_shows_no_password(tmp_path: Path, postgres_server: PostgresServer) -> None:
    _, url = secret_url(postgres_server, "secrets_")
    server = LiveServer(
        tmp_path / "data", "--database-url", url, "--workers", "1", "--heap-signing-key", SIGNING_KEY
    ).start()
    try:
        done = requests.post(
            server.url + "/api/exec", json={"code": "console.log('hi'); 6 * 7", "wait_ms": 30000}, timeout=60
        ).json()
        assert (done["status"], done["result"]) == ("completed", "42")
    finally:
        server.stop()
    log = server.log.read_text()
    assert "mcp-v8 serving on" in log and "migrating PostgreSQL" in log  # the records are there
    assert IN_USER_INFO not in log and IN_QUERY not in log


def test_a_refused_database_shows_no_password(tmp_path: Path, postgres_server: PostgresServer) -> None:
    plain, url = secret_url(postgres_server, "refused_")
    with psycopg.connect(plain, autocommit=True) as conn:  # a schema written by a newer release
        conn.execute("CREATE TABLE schema_version (version integer NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (999)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_V8_")}
    env["MCP_V8_HEAP_SIGNING_KEY"] = SIGNING_KEY
    proc = subprocess.run(
        [sys.executable, "-m", "mcp_v8", "serve", "--database-url", url, "--workers", "1",
         "--port", str(free_port()), "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    shown = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "has schema version 999" in shown, shown
    assert f"postgresql://{USER}:***@127.0.0.1:{postgres_server.port}/" in shown and "?password=***" in shown
    assert IN_USER_INFO not in shown and IN_QUERY not in shown
