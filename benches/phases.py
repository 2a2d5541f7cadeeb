"""benches/results/phases.png: where the time of executions goes under load, from their traces.

Starts a service in this process with traces on (``--otlp-endpoint`` to an OTLP/HTTP receiver on
loopback, decoded with ``opentelemetry-proto``), drives it with closed-loop clients (each submits
an execution with a snapshot and long-polls it, ``POST /api/exec`` with ``wait_ms``), then draws:

- the latency histogram the clients saw (submit to answer), with its p50, p95 and p99;
- a timeline of a sample of executions by phase, from their spans: submit, queue wait, the
  worker's run (the engine's call, ``execute``, and within it the engine's own phases:
  ``transpile``, ``restore``, ``evaluate``, ``run``, ``snapshot``; the snapshot handed back),
  the heap stored, the long-poll; one row per execution, times from its submit, a phase drawn
  over the phase it happens within (what shows of the engine's call around its phases is the
  binding's own work).

Next to the picture, ``phases.json`` holds the latencies' percentiles and each phase's median.
matplotlib (Agg backend) is installed with pip when missing, as benches/plot.py does. Needs the
``otel`` extra (requirements-dev.txt has it).

usage: .venv/bin/python benches/phases.py [--clients 4] [--executions 400] [--workers 2] [--sample 40]
"""

from __future__ import annotations

import argparse
import http.server
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchlib import RESULTS, log
from falcon import testing
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from mcp_v8.app import Service, create_app
from mcp_v8.config import Settings

FILE = "phases.png"
HOST = {"Host": "127.0.0.1:3000"}
CODE = "globalThis.n = (globalThis.n || 0) + 1; const a = []; for (let i = 0; i < 2000; i++) a.push(i * n); a.length"
# phase span -> (label, colour, bar height), in the order they happen; a taller bar is drawn first,
# under the phases that happen within it (``mcp_v8.worker.run`` is the engine's run, under the
# engine's call, itself under the worker's run ``mcp_v8.worker``)
PHASES = {
    "mcp_v8.submit": ("submit", "tab:gray", 0.5),
    "mcp_v8.queue": ("queue wait", "tab:red", 0.5),
    "mcp_v8.long_poll": ("long-poll", "wheat", 0.9),
    "mcp_v8.worker": ("worker run (relay)", "lightsteelblue", 0.8),
    "mcp_v8.worker.execute": ("engine call", "slategray", 0.65),
    "mcp_v8.worker.transpile": ("engine: transpile", "tab:olive", 0.5),
    "mcp_v8.worker.restore": ("engine: restore", "tab:orange", 0.5),
    "mcp_v8.worker.evaluate": ("engine: evaluate", "tab:cyan", 0.5),
    "mcp_v8.worker.run": ("engine: run", "tab:pink", 0.5),
    "mcp_v8.worker.snapshot": ("engine: snapshot", "tab:blue", 0.5),
    "mcp_v8.worker.heap_write": ("snapshot handed back", "tab:purple", 0.5),
    "mcp_v8.store": ("heap stored", "tab:green", 0.5),
}


class Receiver:
    """An OTLP/HTTP trace receiver on loopback: spans by trace id, as (name, start, end) in ns."""

    def __init__(self) -> None:
        self.traces: dict[str, list[tuple[str, int, int]]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                request = ExportTraceServiceRequest()
                request.ParseFromString(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.lock:
                    for rs in request.resource_spans:
                        for ss in rs.scope_spans:
                            for s in ss.spans:
                                spans = receiver.traces.setdefault(s.trace_id.hex(), [])
                                spans.append((s.name, s.start_time_unix_nano, s.end_time_unix_nano))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


def load(client: testing.TestClient, clients: int, executions: int) -> list[tuple[str, float]]:
    """(trace id, latency in seconds) of each execution, ``clients`` submitting at once."""
    done: list[tuple[str, float]] = []
    lock = threading.Lock()
    left = [executions]

    def loop() -> None:
        while True:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            started = time.perf_counter()
            info = client.simulate_post("/api/exec", json={"code": CODE, "wait_ms": 30000}, headers=HOST).json
            latency = time.perf_counter() - started
            if info.get("status") == "completed" and info.get("trace_id"):
                with lock:
                    done.append((info["trace_id"], latency))

    threads = [threading.Thread(target=loop) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def draw(path: Path, latencies: list[float], sample: list[list[tuple[str, int, int]]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (hist, timeline) = plt.subplots(2, 1, figsize=(10, 10), gridspec_kw={"height_ratios": [1, 2]})
    ms = [x * 1000 for x in latencies]
    hist.hist(ms, bins=50, color="tab:blue", alpha=0.8)
    for q, style in ((0.5, "-"), (0.95, "--"), (0.99, ":")):
        value = percentile(ms, q)
        hist.axvline(value, color="black", linestyle=style, label=f"p{int(q * 100)} {value:.1f} ms")
    hist.set_xlabel("latency, submit to answer (ms)")
    hist.set_ylabel("executions")
    hist.set_title(title)
    hist.legend()

    for row, spans in enumerate(sample):
        origin = min(start for name, start, _ in spans if name == "mcp_v8.execution")
        order = list(PHASES)
        drawn = sorted(
            (s for s in spans if s[0] in PHASES), key=lambda s: (-PHASES[s[0]][2], order.index(s[0]))
        )
        for name, start, end in drawn:
            _, colour, height = PHASES[name]
            timeline.barh(row, (end - start) / 1e6, left=(start - origin) / 1e6, height=height, color=colour)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colour) for _, colour, _ in PHASES.values()]
    labels = [label for label, _, _ in PHASES.values()]
    timeline.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize="small")
    timeline.set_xlabel("time since the submit (ms)")
    timeline.set_ylabel("execution (in order of submit)")
    timeline.invert_yaxis()
    timeline.set_title("executions by phase, from their traces")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--executions", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample", type=int, default=40, help="executions in the timeline")
    parser.add_argument("--out", type=Path, default=RESULTS / FILE)
    args = parser.parse_args(argv)
    from peers import ensure_installed

    status = ensure_installed(["matplotlib"])["matplotlib"]
    if status.startswith("not installed"):
        log(f"matplotlib: {status}")
        return 1
    receiver = Receiver()
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(data_dir=Path(data), workers=args.workers, otlp_endpoint=receiver.url)
        service = Service(settings).start()
        try:
            client = testing.TestClient(create_app(service=service))
            load(client, args.clients, 20)  # warm-up: workers, caches
            log(f"{args.executions} executions, {args.clients} clients, {args.workers} workers")
            started = time.perf_counter()
            done = load(client, args.clients, args.executions)
            elapsed = time.perf_counter() - started
            service.tracing.flush()
        finally:
            service.close()
    receiver.httpd.shutdown()
    wanted = {"mcp_v8.execution", "mcp_v8.store", "mcp_v8.worker.execute", "mcp_v8.worker.snapshot"}
    traced = [(t, lat) for t, lat in done if wanted <= {name for name, _, _ in receiver.traces.get(t, [])}]
    if not traced:
        log("no complete trace arrived")
        return 1
    latencies = [lat for _, lat in done]
    step = max(1, len(traced) // args.sample)
    sample = [receiver.traces[t] for t, _ in traced[::step][: args.sample]]
    sample.sort(key=lambda spans: min(s for n, s, _ in spans if n == "mcp_v8.execution"))
    title = (
        f"{len(done)} executions with a snapshot, {args.clients} clients, {args.workers} workers: "
        f"{len(done) / elapsed:.0f} exec/s"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    draw(args.out, latencies, sample, title)
    durations = {
        label: [(end - start) / 1e6 for t, _ in traced for n, start, end in receiver.traces[t] if n == name]
        for name, (label, _, _) in PHASES.items()
    }
    phases = {label: statistics.median(ms) for label, ms in durations.items() if ms}
    summary = {
        "executions": len(done),
        "clients": args.clients,
        "workers": args.workers,
        "throughput_per_s": round(len(done) / elapsed, 1),
        "latency_ms": {
            f"p{int(q * 100)}": round(percentile(latencies, q) * 1000, 2) for q in (0.5, 0.95, 0.99)
        },
        "phase_median_ms": {k: round(v, 3) for k, v in phases.items()},
    }
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    log(f"wrote {args.out}: {json.dumps(summary)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
