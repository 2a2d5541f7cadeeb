"""CPU per execution of a service worker's path, against the raw-V8 ceiling measured beside it.

The lean-worker yardstick: worker CPU per snapshot execution <= 1.25x the raw chain's
(benches/ceiling.cc: restore a blob + run ``n += 1`` + create a new blob, C++ against the same
libnode). Everything here is process CPU time (user + system, every thread: V8's platform threads
included), never wall time, on one thread.

Rows:

* ``engine.*``: ``Engine.execute`` in a plain process (a library user's): stateless without a
  snapshot, stateless + snapshot, snapshot chain;
* ``worker.*``: what a worker process does per job, end to end: ``mcp_v8.executions.worker._run``
  (the heap read from its descriptor, execute, the ``JobResult``), the new heap written into the
  memfd it returns, and the output flush, in a process set up as the worker's ``main`` sets up its
  own, with the service's default job limits (64 MB heap, 30 s). The memfd of the heap it restores
  is made here too (the server's part: one copy of the envelope);
* the ceiling's fresh isolate (the yardstick of the ``.stateless`` rows) and chain (of the others);
* ``ceiling.console-chain``: the ceiling's chain with the engine's console and timer globals in its
  context (``v8-ceiling serve CONSOLE_JS``), i.e. the raw cost of what every snapshot the engine
  makes carries, so the table also says how much of a row's ratio is that and how much the engine's
  own (the ``/ console-chain`` column).

The machine is shared and its load drifts, so rows are never compared across minutes: each row and
the ceiling run in long-lived processes (``v8-ceiling serve``), and every sample of a row is a
slice of ``--runs`` executions with a slice of the ceiling just before and just after it. A row's
ratio is the median over ``--rounds`` of (row slice / mean of its two ceiling slices); its CPU the
median of its slices.

usage: .venv/bin/python benches/worker_cpu.py [--runs 30] [--rounds 15] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO, Any, Callable

from benchlib import ROOT, TRIVIAL
from engine_level import CHAIN_FIRST, CHAIN_STEP, ceiling_program

Steps = dict[str, Callable[[], None]]
ROWS = ("stateless", "stateless_snapshot", "snapshot_chain")


def engine_steps() -> Steps:
    from mcp_v8 import Engine

    engine = Engine()
    engine.execute("1")

    def stateless() -> None:
        assert engine.execute(TRIVIAL).completed

    def stateless_snapshot() -> None:
        o = engine.execute(TRIVIAL, snapshot=True)
        assert o.completed and o.snapshot is not None

    first = engine.execute(CHAIN_FIRST, snapshot=True)
    assert first.completed, first.error
    chain_state: dict[str, Any] = {"heap": first.snapshot}

    def chain() -> None:
        o = engine.execute(CHAIN_STEP, heap=chain_state["heap"], snapshot=True)
        assert o.completed, o.error
        chain_state["heap"] = o.snapshot

    return dict(zip(ROWS, (stateless, stateless_snapshot, chain)))


def worker_steps(root: str) -> Steps:
    import os

    from mcp_v8.engine import Engine
    from mcp_v8.executions import worker, worker_common
    from mcp_v8.executions.heap_fds import heap_memfd
    from mcp_v8.executions.protocol import Job
    from mcp_v8.executions.spec import ExecutionSpec, Limits

    tune = getattr(worker, "_keep_freed_memory", None)  # what the worker's main() does first
    if tune is not None:
        tune()
    engine = Engine(keep_console=False)  # as serve() makes it
    engine.execute("1")
    sent: list[Any] = []
    output = worker_common.ConsoleOutput(sent.append, 1 << 20)

    def run(code: str, heap: tuple[str, bytes] | None, snapshot: bool = True) -> tuple[str, bytes] | None:
        limits = Limits(
            heap_limit_mb=64, timeout_secs=30.0, max_result_bytes=8 << 20, max_output_bytes=1 << 20
        )
        spec = ExecutionSpec(code=code, limits=limits, heap=heap and heap[0], snapshot=snapshot)
        job = Job(uuid.uuid4().hex, spec, heap_fd=heap and heap_memfd(heap[1]))
        output.start(job.execution_id)
        result, envelope = worker._run(engine, job, None, output)
        if envelope is not None:  # what the worker sends back with its done
            os.close(heap_memfd(envelope))
        output.flush()
        sent.clear()
        assert result.status == "completed", result
        return None if result.heap is None or envelope is None else (result.heap, envelope)

    def stateless() -> None:
        run(TRIVIAL, None, snapshot=False)

    def stateless_snapshot() -> None:
        assert run(TRIVIAL, None) is not None

    chain_state: dict[str, Any] = {"heap": run(CHAIN_FIRST, None)}

    def chain() -> None:
        chain_state["heap"] = run(CHAIN_STEP, chain_state["heap"])

    return dict(zip(ROWS, (stateless, stateless_snapshot, chain)))


def serve_child(group: str) -> None:
    """Answers lines "ROW RUNS" on stdin with the CPU ms per run of that many executions."""
    with tempfile.TemporaryDirectory(prefix="mcp-v8-worker-cpu-") as root:
        steps = engine_steps() if group == "engine" else worker_steps(root)
        for step in steps.values():  # warm: thread-local buffers, first-use allocations
            for _ in range(3):
                step()
        print("ready", flush=True)
        for line in sys.stdin:
            row, runs = line.split()
            step = steps[row]
            started = time.process_time()
            for _ in range(int(runs)):
                step()
            print(
                json.dumps({"cpu_ms_per_run": (time.process_time() - started) * 1e3 / int(runs)}), flush=True
            )


class Server:
    """A long-lived measuring process that answers one JSON line per request line."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.name = " ".join(argv)
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def _io(self) -> tuple[IO[str], IO[str]]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        return self.proc.stdin, self.proc.stdout

    def wait_ready(self) -> None:
        line = self._io()[1].readline()
        if line.strip() != "ready":
            raise RuntimeError(f"{self.name}: {line!r}")

    def measure(self, what: str, runs: int) -> float:
        stdin, stdout = self._io()
        stdin.write(f"{what} {runs}\n")
        stdin.flush()
        answer = json.loads(stdout.readline())
        if "error" in answer:
            raise RuntimeError(f"{what}: {answer['error']}")
        return float(answer["cpu_ms_per_run"])

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="executions per slice")
    parser.add_argument("--rounds", type=int, default=15, help="slices per row (medians are quoted)")
    parser.add_argument("--groups", default="engine,worker", help="comma-separated: engine, worker")
    parser.add_argument("--json", action="store_true", help="print every sample as JSON too")
    parser.add_argument("--child", choices=("engine", "worker"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        serve_child(args.child)
        return

    console_js = ROOT / "rust" / "engine" / "cpp" / "js" / "console.js"
    ceiling = Server([ceiling_program(), "serve", str(console_js)])
    groups = {
        g: Server([sys.executable, str(Path(__file__).resolve()), "--child", g])
        for g in args.groups.split(",")
    }
    for server in groups.values():
        server.wait_ready()
    yardstick = {"stateless": "fresh-isolate"}
    cpu: dict[str, list[float]] = {}
    ratio: dict[str, list[float]] = {}
    try:
        for _ in range(args.rounds):
            for group, server in groups.items():
                for row in ROWS:
                    kind = yardstick.get(row, "snapshot-chain")
                    # The ceiling's fresh isolate is ~4x cheaper than its chain: as many runs of it
                    # as take about as long.
                    ceiling_runs = args.runs * (4 if kind == "fresh-isolate" else 1)
                    before = ceiling.measure(kind, ceiling_runs)
                    ms = server.measure(row, args.runs)
                    after = ceiling.measure(kind, ceiling_runs)
                    name = f"{group}.{row}"
                    cpu.setdefault(name, []).append(ms)
                    ratio.setdefault(name, []).append(ms / ((before + after) / 2))
                    cpu.setdefault(f"ceiling.{kind}", []).extend((before, after))
            before = ceiling.measure("snapshot-chain", args.runs)
            console = ceiling.measure("console-chain", args.runs)
            after = ceiling.measure("snapshot-chain", args.runs)
            cpu.setdefault("ceiling.console-chain", []).append(console)
            ratio.setdefault("ceiling.console-chain", []).append(console / ((before + after) / 2))
    finally:
        for server in (ceiling, *groups.values()):
            server.close()

    console_ratio = statistics.median(ratio["ceiling.console-chain"])
    print(f"{'row':<28} {'CPU ms/exec':>11} {'/ ceiling':>10} {'ratio p25..p75':>16} {'/ console-chain':>16}")
    for name, values in sorted(cpu.items(), key=lambda item: item[0].startswith("ceiling.")):
        line = f"{name:<28} {statistics.median(values):11.2f}"
        if name in ratio:
            median = statistics.median(ratio[name])
            q = statistics.quantiles(ratio[name], n=4)
            line += f" {median:9.2f}x {q[0]:7.2f}..{q[2]:.2f}"
            if not name.endswith(".stateless") and name != "ceiling.console-chain":
                line += f" {median / console_ratio:15.2f}x"
        else:
            line += f" {'1.00x':>10}"
        print(line)
    print(
        "'.stateless' rows against the ceiling's fresh isolate, the others against its chain; medians of"
        f" {args.rounds} slices of {args.runs} executions, each between two ceiling slices. '/ console-chain':"
        " against the same chain with the engine's console installed"
    )
    if args.json:
        print(json.dumps({"runs": args.runs, "rounds": args.rounds, "cpu_ms": cpu, "ratio": ratio}))


if __name__ == "__main__":
    main()
