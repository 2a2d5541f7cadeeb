"""Processes sharing a data directory: leases, and what a start fails (no V8 in the first tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_v8.app import Service
from mcp_v8.config import Settings
from mcp_v8.executions import spec_from_request
from mcp_v8.storage import Lease, SQLiteExecutionStore, open_database

HANG = 60.0


@pytest.fixture
def lease(tmp_path: Path) -> Iterator[Lease]:
    held = Lease(tmp_path)
    yield held
    held.close()


def lease_in_child(root: Path) -> tuple[subprocess.Popen[str], str]:
    """A process holding a lease on ``root``, and the lease's id."""
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from mcp_v8.storage import Lease;"
         "lease = Lease(Path(sys.argv[1])); lease.worker_log_dir; print(lease.id, flush=True); time.sleep(600)",
         str(root)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout is not None
    return child, child.stdout.readline().strip()


def test_a_live_process_is_not_gone_and_a_killed_one_is(tmp_path: Path, lease: Lease) -> None:
    child, other = lease_in_child(tmp_path)
    try:
        assert len(other) == 32 and other != lease.id
        assert lease.gone({other, lease.id}) == set()  # both alive: the lock is held
        assert lease.remove_stale() == 0 and (tmp_path / "leases" / f"{other}.lock").exists()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(HANG)
    # The kernel released its lock with the process: gone, although its file is still there.
    assert lease.gone({other, lease.id, None}) == {other, None}
    assert (tmp_path / "workers" / other).is_dir()
    assert lease.remove_stale() == 1
    assert not (tmp_path / "leases" / f"{other}.lock").exists()
    assert not (tmp_path / "workers" / other).exists()
    assert (tmp_path / "leases" / f"{lease.id}.lock").exists()  # never its own


def test_an_owner_without_a_lease_file_is_gone(tmp_path: Path, lease: Lease) -> None:
    closed = Lease(tmp_path)
    closed.close()  # its file goes at close
    assert lease.gone({closed.id, "not-a-lease-id"}) == {closed.id, "not-a-lease-id"}
    assert not (tmp_path / "leases" / f"{closed.id}.lock").exists()
    closed.close()  # idempotent


def test_start_fails_only_the_running_executions_of_gone_processes(tmp_path: Path, lease: Lease) -> None:
    child, alive = lease_in_child(tmp_path)
    dead = Lease(tmp_path)
    dead_id = dead.id
    database = open_database(tmp_path)
    try:
        store = SQLiteExecutionStore(database)
        store.create("a", owner=alive)
        store.create("d", owner=dead_id)
        store.create("legacy")  # recorded before owners existed
        store.create("mine", owner=lease.id)
        dead.close()
        assert store.running_owners() == {alive, dead_id, None, lease.id}
        gone = lease.gone(store.running_owners())
        assert gone == {dead_id, None}
        assert store.fail_running_of(gone, "stopped") == 2
        statuses = {e: store.get(e).status for e in ("a", "d", "legacy", "mine")}  # type: ignore[union-attr]
        assert statuses == {"a": "running", "d": "failed", "legacy": "failed", "mine": "running"}
        assert store.fail_running_of(set(), "nothing") == 0
    finally:
        database.close()
        child.kill()
        child.wait(HANG)


def test_two_services_on_one_data_directory(tmp_path: Path) -> None:
    """A second server process starting on the directory leaves the first one's running
    execution alone, and each server's workers write their logs in their own directory."""
    settings = Settings(data_dir=tmp_path, workers=1)
    first = Service(settings).start()
    try:
        busy = first.manager.submit(
            spec_from_request({"code": "while (true) {}", "execution_timeout_secs": 120}, settings)
        )
        second = Service(Settings(data_dir=tmp_path, workers=1)).start()
        try:
            record = second.executions.get(busy)
            assert record is not None and record.status == "running"
            assert second.lease.worker_log_dir != first.lease.worker_log_dir
            assert second.lease.gone({first.lease.id}) == set()
        finally:
            second.close()
        assert first.manager.cancel(busy).name == "ACCEPTED"
        done = first.manager.wait(busy, HANG)
        assert done is not None and done.status == "cancelled"  # finished by its own process
    finally:
        first.close()
    assert not (tmp_path / "leases" / f"{first.lease.id}.lock").exists()
    assert os.listdir(tmp_path / "leases") == []


def test_a_start_fails_what_a_killed_server_was_running(tmp_path: Path) -> None:
    script = (
        "import sys, time; from pathlib import Path; from mcp_v8.app import Service;"
        "from mcp_v8.config import Settings; from mcp_v8.executions import spec_from_request;"
        "settings = Settings(data_dir=Path(sys.argv[1]), workers=1); s = Service(settings).start();"
        "print(s.manager.submit(spec_from_request({'code': 'while (true) {}', 'execution_timeout_secs': 120},"
        " settings)), flush=True); time.sleep(600)"
    )
    child = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    orphan = child.stdout.readline().strip()
    deadline = time.monotonic() + HANG
    service = None
    try:
        service = Service(Settings(data_dir=tmp_path, workers=1))
        record = service.executions.get(orphan)
        assert record is not None and record.status == "running"  # its server is alive
        service.close()
        child.kill()  # its workers see their pipe close and exit
        child.wait(HANG)
        assert time.monotonic() < deadline
        service = Service(Settings(data_dir=tmp_path, workers=1))
        record = service.executions.get(orphan)
        assert record is not None and record.status == "failed"
        assert record.error == "the server stopped while this execution was running"
    finally:
        if service is not None:
            service.close()
        if child.poll() is None:
            child.kill()
            child.wait(HANG)


def test_others_lists_the_directory_again_only_when_it_changed(
    tmp_path: Path, lease: Lease, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = Lease(tmp_path)
    settled = time.time_ns() - 10 * 10**9
    os.utime(tmp_path / "leases", ns=(settled, settled))  # unchanged for ten seconds
    listings: list[object] = []
    listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda path: listings.append(path) or listdir(path))
    assert lease.others() == [other.id]
    assert lease.others() == [other.id]
    assert len(listings) == 1  # the second answered from the first: every finish asks
    third = Lease(tmp_path)  # the directory changes: listed again, and while its change is recent
    assert sorted(lease.others()) == sorted([other.id, third.id])
    other.close()
    assert lease.others() == [third.id]
    third.close()
    assert lease.others() == []
