"""What handing heaps to workers as descriptors and signing them costs per execution: this tree
against a baseline commit (default: where this branch left ``main``), measured in the same run.

Each side is a service of one worker in a child process of its own (``Service`` with its
``Operations``, no HTTP: what is measured is the server's and the worker's part), on a fresh data
directory with the defaults (SQLite, heaps as files, not fsynced). The baseline is the commit's
``python/`` tree (``git archive``) with this tree's compiled engine, so the engine is the same and
only the Python around it differs. Rows:

* ``chain``: a heap chain, each execution resuming the previous one's heap and snapshotting (the
  path this change touches twice: the heap handed over, the new heap taken back, checked,
  signed, indexed);
* ``stateless``: ``"snapshot": false`` and no heap (no heap moves: the control row).

The machine is shared and its load drifts, so the sides alternate: every round runs a slice of
``--runs`` executions on one side, then on the other (the order flips each round). Per slice: the
median submit -> completed latency, and CPU per execution of the server process (every thread) and
of its worker (``/proc``). A row's figures are the medians over ``--rounds``; the ratio is the
median of the per-round ratios (this tree / baseline), so each pair shares its minute.

usage: .venv/bin/python benches/heap_handoff.py [--base COMMIT] [--runs 40] [--rounds 9] [--json]
Writes ``benches/results/heap_handoff.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from benchlib import ROOT, cpu_seconds, log
from engine_level import CHAIN_FIRST, CHAIN_STEP

ROWS = ("chain", "stateless")


def child() -> None:
    """Runs a service of this interpreter's ``mcp_v8``; answers lines "ROW RUNS" on stdin."""
    from mcp_v8.app import Service
    from mcp_v8.config import Settings

    with tempfile.TemporaryDirectory(prefix="mcp-v8-heap-handoff-") as root:
        service = Service(Settings(data_dir=Path(root), workers=1, queue_limit=8)).start()
        ops = service.operations()
        worker_pid = service.manager._slots[0]._process.pid  # type: ignore[attr-defined, union-attr]
        state: dict[str, Any] = {"heap": None}

        def run(row: str) -> float:
            body: dict[str, Any] = {"code": "1", "snapshot": False}
            if row == "chain":
                body = {"code": CHAIN_STEP, "heap": state["heap"]} if state["heap"] else {"code": CHAIN_FIRST}
            started = time.perf_counter()
            info = ops.get(ops.submit(body), wait_ms=30_000)
            elapsed = time.perf_counter() - started
            assert info["status"] == "completed", info
            if row == "chain":
                state["heap"] = info["heap"]
            return elapsed

        for row in ROWS:  # warm: the worker's first executions, the database's first pages
            for _ in range(5):
                run(row)
        print("ready", flush=True)
        try:
            for line in sys.stdin:
                row, runs = line.split()
                n = int(runs)
                server0, worker0 = time.process_time(), cpu_seconds(worker_pid) or 0.0
                latencies = [run(row) for _ in range(n)]
                server1, worker1 = time.process_time(), cpu_seconds(worker_pid) or 0.0
                print(
                    json.dumps(
                        {
                            "latency_ms": statistics.median(latencies) * 1e3,
                            "server_cpu_ms": (server1 - server0) * 1e3 / n,
                            "worker_cpu_ms": (worker1 - worker0) * 1e3 / n,
                        }
                    ),
                    flush=True,
                )
        finally:
            service.close()


def export(base: str, into: Path) -> Path:
    """The ``python/`` tree of commit ``base`` in ``into``, with this tree's compiled engine."""
    archive = subprocess.run(["git", "archive", base, "python"], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    engine = ROOT / "python" / "mcp_v8" / "_engine.abi3.so"
    shutil.copy2(engine, into / "python" / "mcp_v8" / engine.name)
    return into / "python"


class Side:
    def __init__(self, name: str, python_path: Path) -> None:
        self.name = name
        env = {**os.environ, "PYTHONPATH": f"{python_path}{os.pathsep}{Path(__file__).parent}"}
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=Path(__file__).parent,
        )
        assert self._line() == "ready", f"{name} did not start"

    def _line(self) -> str:
        out: IO[str] | None = self.process.stdout
        assert out is not None
        return out.readline().strip()

    def slice(self, row: str, runs: int) -> dict[str, float]:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{row} {runs}\n")
        self.process.stdin.flush()
        result: dict[str, float] = json.loads(self._line())
        return result

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(60)


def measure(base: str, runs: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mcp-v8-heap-handoff-base-") as tmp:
        sides = {"base": Side("base", export(base, Path(tmp))), "this": Side("this", ROOT / "python")}
        try:
            slices: dict[str, dict[str, list[dict[str, float]]]] = {
                row: {"base": [], "this": []} for row in ROWS
            }
            for r in range(rounds):
                order = ("base", "this") if r % 2 == 0 else ("this", "base")
                for row in ROWS:
                    for name in order:
                        slices[row][name].append(sides[name].slice(row, runs))
                log(f"round {r + 1}/{rounds} done")
        finally:
            for side in sides.values():
                side.close()
    out: dict[str, Any] = {"base": base, "runs": runs, "rounds": rounds, "rows": {}}
    for row in ROWS:
        figures: dict[str, Any] = {}
        for metric in ("latency_ms", "server_cpu_ms", "worker_cpu_ms"):
            base_values = [s[metric] for s in slices[row]["base"]]
            this_values = [s[metric] for s in slices[row]["this"]]
            figures[metric] = {
                "base": statistics.median(base_values),
                "this": statistics.median(this_values),
                "ratio": statistics.median(t / b for t, b in zip(this_values, base_values) if b > 0),
            }
        out["rows"][row] = figures
    return out


def table(result: dict[str, Any]) -> str:
    lines = [
        f"Heap hand-off, this tree vs `{result['base']}` (medians of {result['rounds']} paired rounds "
        f"of {result['runs']} executions, one worker)",
        "",
        "| row | metric | baseline | this tree | ratio |",
        "|---|---|---:|---:|---:|",
    ]
    for row, figures in result["rows"].items():
        for metric, f in figures.items():
            lines.append(f"| {row} | {metric} | {f['base']:.2f} | {f['this']:.2f} | {f['ratio']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--base", default=None, help="the commit to compare with (default: the merge base of main and HEAD)"
    )
    parser.add_argument("--runs", type=int, default=40, help="executions per slice")
    parser.add_argument("--rounds", type=int, default=9, help="paired rounds")
    parser.add_argument("--json", action="store_true", help="print the JSON instead of the table")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child()
        return
    base = (
        args.base
        or subprocess.run(
            ["git", "merge-base", "main", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()[:12]
    )
    result = measure(base, args.runs, args.rounds)
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "heap_handoff.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2) if args.json else table(result))


if __name__ == "__main__":
    main()
