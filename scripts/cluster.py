"""Three mcp-v8 nodes on one machine: PostgreSQL + SeaweedFS S3 + three ``mcp-v8 serve``, a short mixed
load across them, a summary per node, then everything stopped by its pid. Run by scripts/cluster.sh
(``make cluster``), which gives it a temp directory and removes it.

    .venv/bin/python scripts/cluster.py [--dir DIR]

The load, in parallel threads: session chains that submit on node 1, long-poll on node 2 and resume the
heap on node 3 (then round again); stateless executions (``"snapshot": false``) submitted on node 1 and
long-polled on node 2; busy loops submitted on node 1, cancelled on node 2 and read back on node 3.
Which node ran an execution is the ``owner`` column of ``executions`` (a node's lease id, the name of
``<data dir>/leases/<id>.lock``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mcp_v8.client import Client  # noqa: E402
from tests.pg_server import PostgresServer  # noqa: E402
from tests.s3_server import S3Server, start_s3_server  # noqa: E402

WORKERS = (2, 1, 1)
SESSIONS = 4
CHAIN_STEPS = 6  # per session: 2 rounds of node 1 -> node 2 -> node 3
STATELESS = 24
CANCELS = 4


def log(message: str) -> None:
    print(f"[cluster {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    def __init__(self, index: int, root: Path, workers: int) -> None:
        self.index = index
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = root / f"node{index}"
        self.log_path = root / f"node{index}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, database_url: str, s3: S3Server | None) -> None:
        exe = Path(sys.executable).parent / "mcp-v8"
        command = [str(exe), "serve"] if exe.exists() else [sys.executable, "-m", "mcp_v8", "serve"]
        command += ["--port", str(self.port), "--data-dir", str(self.data_dir)]
        command += ["--workers", str(self.workers), "--database-url", database_url, "--node-lease-secs", "5"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_V8_")}
        if s3 is not None:
            command += ["--heap-store", f"{s3.url}/cluster", "--s3-endpoint-url", s3.endpoint]
            env.update(s3.env())
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )

    def wait_ready(self, timeout: float = 60.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"node {self.index} exited: {self.log_tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(self.url + "/api/version", timeout=2):
                return
            time.sleep(0.1)
        raise RuntimeError(f"node {self.index} did not answer: {self.log_tail()}")

    @property
    def lease_ids(self) -> list[str]:
        return sorted(p.stem for p in (self.data_dir / "leases").glob("*.lock"))

    def log_tail(self, limit: int = 1500) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-limit:]
        return ""

    def stop(self) -> None:
        """SIGTERM by pid (the node stops its workers), SIGKILL after 20 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def load(nodes: list[Node]) -> Counter[str]:
    """The mixed load; returns counts of what each step saw (all checked)."""
    c1, c2, c3 = (Client(n.url, timeout=60) for n in nodes)
    seen: Counter[str] = Counter()
    lock = threading.Lock()
    errors: list[str] = []

    def note(key: str) -> None:
        with lock:
            seen[key] += 1

    def chain(s: int) -> None:
        name = f"demo-{s}"
        job = c1.execute(f"var n = {s * 100}; console.log('start', n); n", session=name, wait=False)
        first = c2.wait(job.execution_id).check()  # long-poll on node 2
        heap, expected = first.heap, s * 100
        for step in range(1, CHAIN_STEPS):
            client = (c1, c2, c3)[(step + 2) % 3]  # node 3 first, then 1, 2, 3, ...
            done = client.execute("n += 1; n", heap=heap, session=name).check()
            expected += 1
            if done.value != expected:
                raise AssertionError(f"session {name}: {done.value} != {expected}")
            heap = done.heap
        log_entries = list(c3.session_log(name))
        if len(log_entries) != CHAIN_STEPS:
            raise AssertionError(f"session {name}: log has {len(log_entries)} entries")
        note(f"sessions of {CHAIN_STEPS} steps on nodes 1-2-3")

    def stateless(i: int) -> None:
        job = c1.execute(f"console.log('line', {i}); {i} * 2", snapshot=False, wait=False)
        done = c2.wait(job.execution_id).check()
        if done.value != i * 2 or done.heap is not None:
            raise AssertionError(f"stateless {i}: {done}")
        if list(c3.output(job.execution_id, follow=False)) != [f"line {i}\n"]:
            raise AssertionError(f"stateless {i}: output")
        note("stateless submitted on 1, long-polled on 2, output read on 3")

    def cancel(i: int) -> None:
        job = c1.execute("console.log('spinning'); while (true) {}", execution_timeout_secs=60, wait=False)
        deadline = time.monotonic() + 30
        while not list(c3.output(job.execution_id, follow=False)):  # until a worker runs it
            if time.monotonic() > deadline:
                raise AssertionError(f"cancel {i}: never started")
            time.sleep(0.02)
        if not c2.cancel(job.execution_id):  # on node 2, whichever node runs it
            raise AssertionError(f"cancel {i}: refused")
        done = c3.wait(job.execution_id)
        if done.status != "cancelled":
            raise AssertionError(f"cancel {i}: {done.status}")
        note("running executions cancelled from node 2")

    def guarded(fn, *args) -> None:  # type: ignore[no-untyped-def]
        try:
            fn(*args)
        except Exception as e:
            errors.append(f"{fn.__name__}{args}: {type(e).__name__}: {e}")

    jobs = [(chain, s) for s in range(SESSIONS)] + [(cancel, i) for i in range(CANCELS)]
    threads = [threading.Thread(target=guarded, args=job) for job in jobs]
    threads.append(
        threading.Thread(target=lambda: [guarded(stateless, i) for i in range(STATELESS)], name="stateless")
    )
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for client in (c1, c2, c3):
        client.close()
    if errors:
        raise RuntimeError("load failed:\n  " + "\n  ".join(errors))
    return seen


def s3_objects(s3: S3Server) -> int:
    import obstore
    from obstore.store import S3Store

    store = S3Store(
        s3.bucket,
        endpoint=s3.endpoint,
        access_key_id=s3.access_key,
        secret_access_key=s3.secret_key,
        region="us-east-1",
        client_options={"allow_http": True},
    )
    return sum(len(batch) for batch in obstore.list(store, prefix="cluster"))


def summary(nodes: list[Node], database_url: str, s3: S3Server) -> None:
    import psycopg

    owner_of = {lease: f"node {n.index}" for n in nodes for lease in n.lease_ids}
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT owner, status, count(*) FROM executions GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
        heaps = conn.execute("SELECT count(DISTINCT heap_out) FROM executions").fetchone()
    by_node: dict[str, Counter[str]] = {}
    for owner, status, count in rows:
        by_node.setdefault(owner_of.get(owner, f"owner {owner}"), Counter())[status] += count
    print()
    print("| node | port | workers | lease id | ran (owner in PostgreSQL) | /api/stats |")
    print("|---|---|---|---|---|---|")
    for n in nodes:
        ran = by_node.pop(f"node {n.index}", Counter())
        stats = Client(n.url).stats()
        shown = ", ".join(f"{k} {v}" for k, v in sorted(ran.items())) or "nothing"
        lease = ",".join(x[:8] for x in n.lease_ids)
        counters = (
            f"workers_busy {stats['workers_busy']}, queued {stats['queued']}, "
            f"crashes {stats['worker_crashes']}, uptime {stats['uptime_secs']:.1f} s"
        )
        print(f"| {n.index} | {n.port} | {n.workers} | {lease} | {sum(ran.values())}: {shown} | {counters} |")
    for other, ran in by_node.items():  # None: cancelled while queued, before any node claimed it
        name = "never claimed" if other == "owner None" else other
        print(f"| {name} | | | | {sum(ran.values())}: {dict(ran)} | |")
    total = sum(c for _, _, c in rows)
    print(
        f"\n{total} executions in PostgreSQL, {heaps[0] if heaps else 0} heaps produced; "
        f"{s3_objects(s3)} objects in S3 under s3://{s3.bucket}/cluster"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", help="working directory (default: a new temp directory, removed at the end)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: the finally below stops everything
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="mcp-v8-cluster-"))
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    pg = PostgresServer()
    s3: S3Server | None = None
    nodes = [Node(i + 1, root, w) for i, w in enumerate(WORKERS)]
    try:
        pg.start()
        log(f"PostgreSQL {pg.url} (pid {pg.pid})")
        s3 = start_s3_server(root / "s3")
        log(f"SeaweedFS S3 {s3.endpoint} bucket {s3.bucket} (pid {s3.pid})")
        for node in nodes:
            node.start(pg.url, s3)
        for node in nodes:
            node.wait_ready()
            assert node.process is not None
            log(f"node {node.index}: {node.url} pid {node.process.pid}, {node.workers} worker(s)")
        t0 = time.monotonic()
        seen = load(nodes)
        log(
            f"load done in {time.monotonic() - t0:.1f} s: "
            + ", ".join(f"{v} {k}" for k, v in sorted(seen.items()))
        )
        summary(nodes, pg.url, s3)
        return 0
    except Exception as e:
        log(f"FAILED: {e}")
        for node in nodes:
            log(f"node {node.index} log tail:\n{node.log_tail()}")
        return 1
    finally:
        for node in nodes:
            node.stop()
        if s3 is not None:
            s3.stop()
        pg.stop()
        if not args.dir:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
        log(f"stopped everything; {time.monotonic() - started:.1f} s in all")


if __name__ == "__main__":
    sys.exit(main())
