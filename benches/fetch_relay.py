"""What a fetch costs through the server (the worker relays it, the server makes it) against the
engine making it in its own process, in the same run.

Each round times one execution of ``N`` sequential fetches and one of none, both ways: the
in-process ``Engine(allow_fetch=...)``, and a real worker process behind a ``WorkerSlot``, whose
calls the slot's ``Fetches`` makes with the engine's ``FetchRun``. The cost per fetch is
(t(N) - t(0)) / N, so the execution's own cost cancels out; rounds alternate the two ways and the
table gives medians. The HTTP server (keep-alive, a fixed body) runs in a process of its own, so
its work is nobody's in the comparison. Standalone: prints a table and writes
``results/fetch_relay.json``::

    .venv/bin/python benches/fetch_relay.py [--rounds 7] [--fetches 40]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SERVER = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
SIZES = {"small": 13, "1mib": 1 << 20}
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body are two writes: no wait for a delayed ACK
    def log_message(self, *a): pass
    def do_GET(self):
        body = b"x" * SIZES[self.path.strip("/")]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


def code(origin: str, size: str, n: int) -> str:
    return f"""
    (async () => {{
        let total = 0;
        for (let i = 0; i < {n}; i++) total += (await (await fetch('{origin}/{size}')).arrayBuffer()).byteLength;
        return total;
    }})()
    """


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--fetches", type=int, default=40)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))
    from mcp_v8 import Engine
    from mcp_v8.executions.pool import WorkerOptions, WorkerSlot
    from mcp_v8.executions.protocol import Job
    from mcp_v8.executions.spec import ExecutionSpec, FetchPolicy, Limits

    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    origin = f"http://127.0.0.1:{server.stdout.readline().strip()}"
    n = args.fetches
    engine = Engine(allow_fetch=[origin], max_fetch_requests=1000, max_fetch_bytes=8 << 20)
    limits = Limits(heap_limit_mb=256, timeout_secs=120, max_result_bytes=1 << 20, max_output_bytes=1 << 20)
    policy = FetchPolicy((origin,), 8 << 20, 1000)
    results: dict[str, Any] = {"fetches_per_execution": n, "rounds": args.rounds, "rows": {}}
    with tempfile.TemporaryDirectory() as root:
        slot = WorkerSlot(0, Path(root), WorkerOptions())
        slot.start()
        jobs = 0

        def in_process(source: str) -> float:
            t = time.perf_counter()
            outcome = engine.execute(source)
            elapsed = time.perf_counter() - t
            assert outcome.completed, outcome.error
            return elapsed

        def through_server(source: str) -> float:
            nonlocal jobs
            jobs += 1
            job = Job(
                f"bench-{jobs}", ExecutionSpec(code=source, limits=limits, snapshot=False, fetch=policy)
            )
            t = time.perf_counter()
            result = slot.run(job, lambda text: None)
            elapsed = time.perf_counter() - t
            assert result.status == "completed", result
            return elapsed

        try:
            for size in ("small", "1mib"):
                many, none = code(origin, size, n), code(origin, size, 0)
                per: dict[str, list[float]] = {"in_process": [], "through_server": []}
                for way in (in_process, through_server):  # warm both
                    way(many)
                for _ in range(args.rounds):
                    for name, way in (("in_process", in_process), ("through_server", through_server)):
                        per[name].append((way(many) - way(none)) / n)
                row = {name: statistics.median(values) * 1e6 for name, values in per.items()}
                row["ratio"] = row["through_server"] / row["in_process"]
                row["added_us"] = row["through_server"] - row["in_process"]
                results["rows"][size] = row
        finally:
            slot.stop()
            server.kill()
    out = Path(__file__).resolve().parent / "results" / "fetch_relay.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"per fetch, median of {args.rounds} rounds of {n} sequential fetches (µs)")
    print(f"{'body':<8} {'in-process':>12} {'through server':>16} {'ratio':>7} {'added':>9}")
    for size, row in results["rows"].items():
        print(
            f"{size:<8} {row['in_process']:>12.0f} {row['through_server']:>16.0f} "
            f"{row['ratio']:>7.2f} {row['added_us']:>9.0f}"
        )


if __name__ == "__main__":
    main()
