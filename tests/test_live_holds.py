"""Who holds a live session, on both kinds of holder: lock files of the processes on one data
directory (a holder that dies is known to have lost its sessions) and rows of the nodes of one
PostgreSQL database (a session held by a live node is refused with that node; one of a lost node is
taken over, once; tenants' sessions of one name are apart)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp_v8.executions.live_locks import SessionLocks
from mcp_v8.storage.live_holds import LiveHolds

from .pg_server import PostgresServer, schema_for


def test_lock_files_hold_a_session_for_one_process_and_know_one_that_died(tmp_path: Path) -> None:
    here = SessionLocks(tmp_path, "lease here")
    assert isinstance(here, LiveHolds)
    assert here.acquire("s") is None and here.acquire("s") is None  # taken, then already ours
    assert here.lost("s") is None and here.where(["s"]) == {}
    # Another process that takes a session is refused while it is held here, and names us.
    probe = textwrap.dedent(
        f"""
        import os, sys
        from mcp_v8.executions.live_locks import SessionLocks
        locks = SessionLocks(__import__('pathlib').Path({str(tmp_path)!r}), "lease there")
        held = locks.acquire(sys.argv[1], sys.argv[2])
        print("held by", held.said if held else None, flush=True)
        if sys.argv[3] == "die":
            os._exit(0)  # dies holding what it took
        locks.release_all()
        """
    )

    def other(session: str, tenant: str, end: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", probe, session, tenant, end], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert f"process {__import__('os').getpid()} (lease here)" in other("s", "default", "release")
    assert other("s", "acme", "release") == "held by None"  # another tenant's "s" is another session
    here.release("s")
    assert other("s", "default", "release") == "held by None"
    assert here.acquire("s") is None and here.lost("s") is None  # released cleanly: nothing lost
    here.release("s")
    assert other("s", "default", "die") == "held by None"
    assert here.acquire("s") is None
    lost = here.lost("s")
    assert lost is not None and "stopped without ending it" in lost and "lease there" in lost, lost
    assert here.lost("s") is None  # said once


pg_queue = pytest.importorskip("mcp_v8.storage.postgres.queue")
postgres = pytest.importorskip("mcp_v8.storage.postgres")
holds_module = pytest.importorskip("mcp_v8.storage.postgres.live_holds")


@pytest.fixture
def database(postgres_server: PostgresServer, tmp_path: Path) -> Iterator[Any]:
    db = postgres.open_postgres(
        postgres_server.url, schema=postgres_server.create_schema(schema_for(tmp_path))
    )
    yield db
    db.close()


def test_node_rows_hold_a_session_for_one_node_and_hand_over_a_lost_ones(
    database: Any, postgres_server: PostgresServer
) -> None:
    queue = pg_queue.PostgresQueue(database, postgres_server.url)
    a, b = (holds_module.PostgresLiveHolds(database, node) for node in ("a", "b"))
    assert isinstance(a, LiveHolds)
    queue.heartbeat("a", 60.0)
    queue.heartbeat("b", 60.0)
    assert a.acquire("s") is None and a.acquire("s") is None
    held = b.acquire("s")
    assert held is not None and held.node == "a" and "node a" in held.said, held
    assert b.acquire("s", "acme") is None  # the tenant acme's "s" is another session
    where = b.where(["s", "t"])
    assert list(where) == ["s"] and where["s"][0] == "a" and where["s"][1].endswith("Z"), where
    assert a.where(["s"]) == {}  # its own is not elsewhere
    a.release("s")
    assert b.acquire("s") is None and b.lost("s") is None  # released: nothing was lost
    # b's lease runs out: a takes the session over, once, and knows what was lost.
    database.run("UPDATE nodes SET lease_until = now() - interval '1 second' WHERE id = 'b'")
    assert a.where(["s"]) == {}  # a lost node holds nothing anyone can send steps to
    assert a.acquire("s") is None
    lost = a.lost("s")
    assert lost is not None and "node b was lost" in lost, lost
    assert a.lost("s") is None
    assert database.run("SELECT node FROM live_sessions WHERE session = 's' AND tenant = 'default'") == [
        ("a",)
    ]
    a.release_all()
    assert database.run("SELECT tenant, session, node FROM live_sessions") == [("acme", "s", "b")]
