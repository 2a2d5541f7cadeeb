"""Faults. Workers and the server killed with SIGKILL mid-execution, heap
files corrupted on disk, unusable data directories at start."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from mcp_v8.client import Client

from .live_server import LiveServer, children


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def submit(url: str, code: str, **fields: Any) -> str:
    with Client(url) as client:
        return client.execute(code, wait=False, **fields).execution_id


def wait(url: str, eid: str) -> dict[str, object]:
    with Client(url) as client:
        info = client.wait(eid, timeout=60)
    assert info.done, f"{eid} still running"
    return dataclasses.asdict(info)


def wait_output(url: str, eid: str, needle: str) -> None:
    deadline = time.monotonic() + 30
    while needle not in requests.get(f"{url}/api/executions/{eid}/output", timeout=10).json()["data"]:
        assert time.monotonic() < deadline, f"{needle!r} never printed"
        time.sleep(0.05)


def test_worker_killed_mid_execution(tmp_path: Path) -> None:
    live = LiveServer(tmp_path, "--workers", "1", "--live-workers", "0").start()  # one worker process
    try:
        assert live.process is not None
        before = children(live.process.pid)
        assert len(before) == 1
        eid = submit(live.url, "console.log('running'); while (true) {}", execution_timeout_secs=60)
        wait_output(live.url, eid, "running")
        os.kill(before[0], signal.SIGKILL)
        info = wait(live.url, eid)
        assert info["status"] == "failed"
        assert info["error"] == "worker crashed: killed by signal SIGKILL"
        after = wait(live.url, submit(live.url, "'replaced'"))
        assert after["result"] == '"replaced"'
        assert children(live.process.pid) != before  # a new worker process
    finally:
        live.stop()


def test_server_killed_mid_execution_and_restarted(tmp_path: Path) -> None:
    live = LiveServer(tmp_path, "--workers", "2").start()
    assert live.process is not None
    workers = children(live.process.pid)
    done = submit(live.url, "for (let i = 0; i < 3; i++) console.log('out ' + i); 'finished'")
    assert wait(live.url, done)["status"] == "completed"
    heap = wait(live.url, submit(live.url, "var kept = 'state'"))["heap"]
    running = submit(live.url, "console.log('mid'); while (true) {}", execution_timeout_secs=60)
    wait_output(live.url, running, "mid")
    live.stop(signal.SIGKILL)
    # workers notice the server is gone and exit on their own
    deadline = time.monotonic() + 20
    while any(alive(w) for w in workers):
        assert time.monotonic() < deadline, "orphaned worker processes"
        time.sleep(0.1)

    again = LiveServer(tmp_path, "--workers", "2", port=live.port).start()
    try:
        info = wait(again.url, done)
        assert info["status"] == "completed" and info["result"] == '"finished"'
        out = requests.get(f"{again.url}/api/executions/{done}/output", timeout=10).json()
        assert out["data"] == "out 0\nout 1\nout 2\n"
        lost = wait(again.url, running)
        assert lost["status"] == "failed"
        assert "server stopped while this execution was running" in str(lost["error"])
        resumed = wait(again.url, submit(again.url, "kept", heap=heap))
        assert resumed["result"] == '"state"'
    finally:
        again.stop()


def heap_path(data_dir: Path, key: str) -> Path:
    return data_dir / "heaps" / key[:2] / key[2:]


def test_corrupted_and_truncated_heap_files(tmp_path: Path) -> None:
    live = LiveServer(tmp_path, "--workers", "1").start()
    try:
        good = str(wait(live.url, submit(live.url, "var a = 1"))["heap"])
        flipped = str(wait(live.url, submit(live.url, "var b = 2"))["heap"])
        cut = str(wait(live.url, submit(live.url, "var c = 3"))["heap"])
        path = heap_path(tmp_path, flipped)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        heap_path(tmp_path, cut).write_bytes(heap_path(tmp_path, cut).read_bytes()[:100])

        for key in (flipped, cut):
            info = wait(live.url, submit(live.url, "1", heap=key))
            assert info["status"] == "failed"
            assert str(info["error"]).startswith("cannot restore heap: heap snapshot is"), info["error"]
        # nothing else is affected
        assert wait(live.url, submit(live.url, "a", heap=good))["result"] == "1"
        assert wait(live.url, submit(live.url, "'fresh'"))["result"] == '"fresh"'
    finally:
        live.stop()


def serve_in_namespace(setup: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    """Runs ``mcp-v8 serve`` after ``setup`` in a private mount namespace."""
    command = f'{setup} && exec "$@"'
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", command, "sh",
         sys.executable, "-m", "mcp_v8", "serve", "--data-dir", str(data_dir), "--port", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_read_only_data_dir_fails_at_start(tmp_path: Path) -> None:
    data = tmp_path / "ro"
    data.mkdir()
    proc = serve_in_namespace(f"mount --bind {data} {data} && mount -o remount,bind,ro {data}", data)
    assert proc.returncode == 2, proc.stderr
    assert "not usable" in proc.stderr and "Read-only file system" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_full_disk_fails_at_start(tmp_path: Path) -> None:
    data = tmp_path / "full"
    data.mkdir()
    fill = f"mount -t tmpfs -o size=64k tmpfs {data} && (dd if=/dev/zero of={data}/filler bs=4k 2>/dev/null || true)"
    proc = serve_in_namespace(fill, data)
    assert proc.returncode == 2, proc.stderr
    assert "not usable" in proc.stderr and "No space left on device" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_worker_stuck_in_an_uninterruptible_builtin_is_killed(tmp_path: Path) -> None:
    """Array.prototype.fill on a huge array never checks for termination; with a large
    heap cap it outlives its deadline, and the backstop kills the worker."""
    live = LiveServer(tmp_path, "--workers", "1").start()
    try:
        eid = submit(live.url, "new Array(1e9).fill(0)", execution_timeout_secs=1, heap_memory_max_mb=1024)
        info = wait(live.url, eid)
        assert info["status"] == "timed_out", info
        assert info["error"] == "worker did not stop after its 1 s timeout and was killed"
        assert wait(live.url, submit(live.url, "'next'"))["result"] == '"next"'
    finally:
        live.stop()
