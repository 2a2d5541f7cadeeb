"""What warm isolates bring: a stateless ``"snapshot": false`` execution over HTTP, 1 client,
with each worker preparing its next isolate while idle (``--warm-isolates true``, the default)
against without (``false``), in the same run.

Two ``mcp-v8 serve`` of this tree side by side, one worker each. ``--rounds`` rounds, each a
``--seconds`` slice of ``loadgen.py`` (1 client, ``stateless-no-snapshot``, the trivial script,
one submit with ``wait_ms`` per execution) on one server then on the other (the order
alternates), so both see the same machine load. Per server: the median of the slices' p50s and
p95s; the ratio warm / cold. Then the memory a prepared isolate costs: the worker's VmRSS on
each server, idle after the same load (the warm one holds a prepared isolate then, the cold one
none), and the difference (it carries each worker's allocator history too); and, in a child
interpreter, the RSS a prepared isolate adds to a warmed-up engine (``Engine.prepare``). The
issue's target: p50 <= 3 ms with warm isolates.

usage: .venv/bin/python benches/warm_isolates.py [--rounds 8] [--seconds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

from benchlib import log, rss_kb
from server import Server, run_loadgen

TARGET_P50_MS = 3.0
MODES = {"warm": "true", "cold": "false"}

# Prints the VmRSS (kB) a prepared isolate adds, median of 10, in an engine that ran executions
# of both kinds first and keeps freed memory as a worker does.
IN_PROCESS = """
import statistics
from mcp_v8 import Engine
from mcp_v8.executions.worker import _keep_freed_memory
_keep_freed_memory()
def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
engine = Engine()
for snapshot in (False, True):
    for _ in range(200):
        engine.execute("1", heap_limit_mb=64, snapshot=snapshot)
deltas = []
for _ in range(10):
    before = rss()
    engine.prepare(heap_limit_mb=64)
    deltas.append(rss() - before)
    engine.execute("1", heap_limit_mb=64)
print(statistics.median(deltas))
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--json", action="store_true", help="print the raw numbers as JSON too")
    args = parser.parse_args()
    servers = {mode: Server(workers=1, warm_isolates=flag) for mode, flag in MODES.items()}
    slices: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    rss: dict[str, int | None] = {}
    try:
        for server in servers.values():
            server.start()
        for r in range(args.rounds):
            order = list(MODES) if r % 2 == 0 else list(reversed(MODES))
            for mode in order:
                report = run_loadgen(
                    servers[mode].url,
                    timeout=args.seconds + 120,
                    concurrency=1,
                    seconds=args.seconds,
                    mode="stateless-no-snapshot",
                    submit_wait=True,
                )
                if report["errors"]:
                    raise RuntimeError(f"{mode}: {report['error_samples']}")
                slices[mode].append(report)
                log(
                    f"round {r} {mode}: p50 {report['latency']['median_ms']:.2f} ms, {report['completed']} runs"
                )
        time.sleep(1.0)  # idle: the warm worker holds its next isolate
        for mode, server in servers.items():
            (pid,) = server.worker_pids()
            rss[mode] = rss_kb(pid)
    finally:
        for server in servers.values():
            server.stop()
    in_process_kb = float(
        subprocess.run([sys.executable, "-c", IN_PROCESS], capture_output=True, text=True, check=True).stdout
    )
    rows = {
        mode: {
            "p50_ms": statistics.median(s["latency"]["median_ms"] for s in runs),
            "p95_ms": statistics.median(s["latency"]["p95_ms"] for s in runs),
            "executions": sum(s["completed"] for s in runs),
            "worker_rss_kb": rss.get(mode),
        }
        for mode, runs in slices.items()
    }
    warm, cold = rows["warm"], rows["cold"]
    ratio = warm["p50_ms"] / cold["p50_ms"]
    print("| stateless snapshot:false, 1 client, HTTP | p50 ms | p95 ms | executions | worker RSS (idle) |")
    print("|---|---|---|---|---|")
    for mode, row in rows.items():
        rss_text = f"{row['worker_rss_kb'] / 1024:.1f} MiB" if row["worker_rss_kb"] else "?"
        print(f"| {mode} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} | {row['executions']} | {rss_text} |")
    verdict = "met" if warm["p50_ms"] <= TARGET_P50_MS else "not met"
    print(f"\nwarm / cold p50: {ratio:.2f}; target p50 <= {TARGET_P50_MS} ms with warm isolates: {verdict}")
    if warm["worker_rss_kb"] and cold["worker_rss_kb"]:
        print(
            f"idle worker, warm - cold: {(warm['worker_rss_kb'] - cold['worker_rss_kb']) / 1024:+.1f} MiB of RSS"
        )
    print(f"a prepared isolate in a warmed-up engine: +{in_process_kb / 1024:.1f} MiB of RSS")
    if args.json:
        print(
            json.dumps({"rows": rows, "ratio_p50": ratio, "in_process_kb": in_process_kb, "slices": slices})
        )


if __name__ == "__main__":
    main()
