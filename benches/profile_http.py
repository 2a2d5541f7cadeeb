"""Where the time of one HTTP execution goes, between ``POST /api/exec`` and its terminal status.

Two views of the same server (``--workers 1``, one client, executions one after another):

* From outside, unperturbed: client timestamps around the POST and the long-poll, the record's
  ``started_at`` / ``completed_at`` (stamped when the execution is recorded and when its terminal
  status is) and ``duration_ms`` (the engine call inside the worker, snapshot included), plus the
  same script through the in-process ``Engine`` to split that engine time into running the script
  and making the snapshot.
* A sampling profile (py-spy, all threads including idle ones, the worker process included) of the
  server while it runs the same sequence: each thread's samples are sorted into stages by the frames
  they contain, and a stage's time per execution is its share of that thread's samples times the
  wall time over the executions done. The profiler slows the server down, so these are reported as
  shares and as milliseconds under the profiler.
"""

from __future__ import annotations

import http.client
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

from benchlib import BENCHES, TRIVIAL, VENV_BIN, log, run_json_child
from server import Server, run_loadgen

from mcp_v8 import Engine

# (thread group, stage, frames that must all appear); first match wins, in order.
RULES: list[tuple[str, str, tuple[str, ...]]] = [
    ("dispatcher", "idle (waiting for a job)", ("ExecutionManager._next",)),
    ("dispatcher", "job to worker (encode + send)", ("WorkerSlot.run", "Channel.send")),
    ("dispatcher", "result from worker (recv + decode)", ("WorkerSlot.run", "Channel.recv")),
    ("dispatcher", "waiting for the worker", ("WorkerSlot.run",)),
    ("dispatcher", "output log: write buffered output", ("SQLiteOutputLog.seal",)),
    ("dispatcher", "execution store: record terminal status + notify", ("ExecutionManager._finish",)),
    ("dispatcher", "other", ()),
    ("worker", "heap store: write snapshot", ("FileHeapStore.put",)),
    ("worker", "heap store: read snapshot", ("FileHeapStore.get",)),
    ("worker", "engine (V8 run + snapshot)", ("Engine.execute",)),
    ("worker", "send result (encode + write)", ("Channel.send",)),
    ("worker", "flush console output", ("ConsoleOutput.flush",)),
    ("worker", "idle", ()),
    ("http", "POST: output log insert", ("ExecResource.on_post", "SQLiteOutputLog.create")),
    ("http", "POST: record insert", ("ExecResource.on_post", "SQLiteExecutionStore.create")),
    ("http", "POST: heap key check", ("ExecResource.on_post", "FileHeapStore.exists")),
    ("http", "POST: parse + validate + queue", ("ExecResource.on_post",)),
    ("http", "GET: long-poll waiting", ("ExecutionManager.wait", "Condition.wait")),
    ("http", "GET: long-poll wake-up checks", ("ExecutionManager.wait",)),
    ("http", "idle", ("handler_thread", "Condition.wait")),
    ("http", "GET: read record + JSON", ("ExecutionResource.on_get",)),
    ("http", "waitress + Falcon request/response", ()),
    ("io", "idle (select)", ("poll",)),
    ("io", "idle (select)", ("select",)),
    ("io", "socket read/write", ()),
]


def _thread_group(process_frames: list[str], thread_name: str) -> str | None:
    if len(process_frames) > 1:  # a child of the server: the worker
        return "worker" if thread_name == "MainThread" else None
    if thread_name.startswith("mcp-v8-dispatch"):
        return "dispatcher"
    if thread_name.startswith("waitress"):
        return "http"
    if thread_name == "MainThread":
        return "io"
    return None


def classify(raw: str) -> dict[str, Counter[str]]:
    """Samples per (thread group, stage) from py-spy's raw (collapsed) output."""
    out: dict[str, Counter[str]] = defaultdict(Counter)
    threads: dict[str, set[str]] = defaultdict(set)
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        processes = [f for f in frames if f.startswith("process ")]
        thread = next((f for f in frames if f.startswith("thread (")), "")
        name = thread.split(": ", 1)[1] if ": " in thread else ""
        group = _thread_group(processes, name)
        if group is None:
            continue
        threads[group].add(thread)
        names = [f.split(" (", 1)[0] for f in frames]
        for rule_group, stage, needles in RULES:
            if rule_group == group and all(any(n in name for name in names) for n in needles):
                out[group][stage] += int(count_text)
                break
    for group, ids in threads.items():
        out[group]["__threads__"] = len(ids)
    return out


def _py_spy() -> str | None:
    exe = VENV_BIN / "py-spy"
    return str(exe) if exe.exists() else shutil.which("py-spy")


class Sequential:
    """One keep-alive client submitting executions one after another and long-polling each."""

    def __init__(self, server: Server) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        self.conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        return resp.status, json.loads(resp.read())

    def one(self, code: str, heap: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"code": code} if heap is None else {"code": code, "heap": heap}
        t0 = time.time()
        status, doc = self.call("POST", "/api/exec", body)
        t1 = time.time()
        assert status == 202, doc
        while True:
            status, info = self.call("GET", f"/api/executions/{doc['execution_id']}?wait_ms=30000")
            assert status == 200, info
            if info["status"] != "running":
                break
        t2 = time.time()
        assert info["status"] == "completed", info
        return {"t0": t0, "t1": t1, "t2": t2, "info": info}

    def close(self) -> None:
        self.conn.close()


def _ts(text: str) -> float:
    """A record timestamp in seconds. They are truncated to the millisecond, so the true instant is
    on average half a millisecond later: that is added, or every stage next to one would be biased."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() + 0.0005


def outside_stages(samples: list[dict[str, Any]]) -> dict[str, float]:
    """Median milliseconds of each stage, from client timestamps and the record's fields."""
    cols: dict[str, list[float]] = defaultdict(list)
    for s in samples:
        info = s["info"]
        started, completed = _ts(info["started_at"]), _ts(info["completed_at"])
        cols["end_to_end"].append(s["t2"] - s["t0"])
        cols["post_round_trip"].append(s["t1"] - s["t0"])
        cols["post_to_recorded"].append(started - s["t0"])
        cols["recorded_to_terminal"].append(completed - started)
        cols["engine_in_worker"].append(info["duration_ms"] / 1e3)
        cols["around_engine"].append(completed - started - info["duration_ms"] / 1e3)
        cols["terminal_to_client"].append(s["t2"] - completed)
    return {k: statistics.median(v) * 1e3 for k, v in cols.items()}


def engine_split(rounds: int) -> dict[str, float]:
    """The trivial script in-process: plain, with a snapshot, and restoring + snapshotting."""
    engine = Engine()
    engine.execute("1")
    plain, snap, chain = [], [], []
    heap = engine.execute("var n = 0; n", snapshot=True).snapshot
    for _ in range(rounds):
        t0 = time.perf_counter()
        engine.execute(TRIVIAL)
        plain.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        engine.execute(TRIVIAL, snapshot=True)
        snap.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        o = engine.execute("n += 1; JSON.stringify(n)", heap=heap, snapshot=True)
        chain.append(time.perf_counter() - t0)
        heap = o.snapshot
    return {
        "stateless_ms": statistics.median(plain) * 1e3,
        "stateless_snapshot_ms": statistics.median(snap) * 1e3,
        "chain_step_ms": statistics.median(chain) * 1e3,
    }


def sampled(server: Server, seconds: float, concurrency: int) -> dict[str, Any]:
    """py-spy on the server and its workers while benches/loadgen.py runs ``concurrency`` stateless
    clients for ``seconds``; thread time per execution in each stage."""
    spy = _py_spy()
    if spy is None:
        return {"error": "py-spy not installed"}
    out_file = server.data_dir.parent / f"py-spy-{concurrency}.txt"
    rate = 200
    window = int(seconds) + 3
    command = [spy, "record", "--pid", str(server.pid), "--subprocesses", "--idle", "--threads"]
    command += ["--nonblocking", "--rate", str(rate), "--format", "raw", "-o", str(out_file)]
    command += ["--duration", str(window)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)  # let py-spy attach to every process
        load = run_loadgen(server.url, timeout=seconds + 120, concurrency=concurrency, seconds=seconds)
        _, err = proc.communicate(timeout=window + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0 or not out_file.exists():
        return {"error": f"py-spy failed ({proc.returncode}): {err.strip()[-300:]}"}
    counts = classify(out_file.read_text())
    # A thread's share of its samples in a stage, times the profile window, is the time it spent
    # there; all executions ran inside the window, so busy time divides by their number (summed
    # over the threads of a group: thread time per execution).
    n = max(1, load["finished"])
    stages: dict[str, dict[str, float]] = {}
    for group, counter in counts.items():
        nthreads = counter.pop("__threads__", 1)
        total = sum(counter.values())
        if not total:
            continue
        per_thread_window = total / nthreads
        stages[group] = {stage: c / per_thread_window * window / n * 1e3 for stage, c in counter.items()}
    return {"concurrency": concurrency, "executions": load["finished"], "seconds": seconds,
            "throughput_per_s": load["throughput_per_s"], "errors": load["errors"], "rate_hz": rate,
            "workers": server.workers, "ms_per_execution": stages,
            "samples": {g: dict(c) for g, c in counts.items()}}  # fmt: skip


def record_reads(levels: tuple[int, ...], seconds: float, workers: int) -> dict[str, Any]:
    """Runs benches/counted_server.py (the service with a counter on ``SQLiteExecutionStore.get``)."""
    command = [sys.executable, str(BENCHES / "counted_server.py"), "--seconds", str(seconds)]
    command += ["--concurrency", ",".join(map(str, levels)), "--workers", str(workers)]
    return run_json_child(command, timeout=len(levels) * (seconds + 60) + 60)


def run(quick: bool, workers: int) -> dict[str, Any]:
    rounds = 40 if quick else 200
    log("profile: engine in-process")
    result: dict[str, Any] = {"engine": engine_split(rounds // 2)}
    with Server(workers=1, threads=4) as server:
        client = Sequential(server)
        for _ in range(20):
            client.one(TRIVIAL)
        log("profile: outside timestamps, stateless")
        result["outside_stateless"] = outside_stages([client.one(TRIVIAL) for _ in range(rounds)])
        log("profile: outside timestamps, stateful")
        heap = client.one("var n = 0; n")["info"]["heap"]
        chain = []
        for _ in range(rounds):
            s = client.one("n += 1; JSON.stringify(n)", heap)
            heap = s["info"]["heap"]
            chain.append(s)
        result["outside_stateful"] = outside_stages(chain)
        client.close()
        log("profile: py-spy sampling, 1 client")
        result["sampled"] = sampled(server, 3.0 if quick else 8.0, 1)
    clients = 16 if quick else 64
    log("profile: record reads per execution")
    result["record_reads"] = record_reads(
        (1, clients) if quick else (1, 4, 16, 64), 2.0 if quick else 5.0, workers
    )
    with Server(workers=workers, queue_limit=2 * clients) as server:
        run_loadgen(server.url, timeout=60, concurrency=workers, seconds=1.0)  # warm-up
        log(f"profile: py-spy sampling, {clients} clients")
        result["sampled_load"] = sampled(server, 3.0 if quick else 8.0, clients)
    return result


if __name__ == "__main__":
    print(json.dumps(run(quick=True, workers=2), indent=2, default=str))
