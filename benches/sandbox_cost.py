"""What the worker sandbox costs: worker start time and per-execution cost, sandbox on
(``require``) against off, in the same run.

Two worker slots, one per mode, started and driven as the server does (``WorkerSlot``,
``spawn_worker_process``). Start: ``--starts`` rounds, each starting an ``on`` and an ``off``
worker in turn (spawn to ``ready``: the interpreter, the walls, V8's initialisation). Executions:
``--rounds`` rounds, each a slice of ``--runs`` executions on one slot then on the other (the order
alternates), so both modes see the same machine load; per execution, the wall time of
``WorkerSlot.run`` and the worker process's CPU (user + system, every thread, from /proc). Rows:
a trivial stateless execution without a snapshot, the same with a snapshot, and a console
flood (10,000 lines: the system calls of the channel). Medians; the ratio on / off of each.

usage: .venv/bin/python benches/sandbox_cost.py [--starts 15] [--rounds 15] [--runs 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

PYTHON = str(Path(__file__).resolve().parent.parent / "python")
sys.path.insert(0, PYTHON)
# The workers import the same package (PYTHONPATH is in the workers' environment allow-list).
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (PYTHON, os.environ.get("PYTHONPATH")) if p)

from mcp_v8.executions.pool import WorkerOptions, WorkerSlot  # noqa: E402
from mcp_v8.executions.protocol import Job  # noqa: E402
from mcp_v8.executions.spec import ExecutionSpec, Limits  # noqa: E402

MODES = ("require", "off")
LIMITS = Limits(heap_limit_mb=64, timeout_secs=30, max_result_bytes=1 << 20, max_output_bytes=16 << 20)
ROWS = {
    "stateless": ExecutionSpec(code="1 + 1", limits=LIMITS, snapshot=False),
    "stateless_snapshot": ExecutionSpec(code="globalThis.n = (globalThis.n || 0) + 1", limits=LIMITS),
    "console_flood": ExecutionSpec(
        code="for (let i = 0; i < 10000; i++) console.log('line', i); 1", limits=LIMITS, snapshot=False
    ),
}
TICK = os.sysconf("SC_CLK_TCK")


def cpu_secs(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def slot_for(mode: str, root: Path, index: int) -> WorkerSlot:
    options = WorkerOptions(sandbox=mode, max_data_mb=3 * 1024 + 1024)
    return WorkerSlot(index, root, options)


def worker_pid(slot: WorkerSlot) -> int:
    process = slot._process  # the bench reads the process it measures
    assert process is not None
    return int(process.pid)


def measure_starts(root: Path, starts: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {m: [] for m in MODES}
    for round_ in range(starts):
        for mode in MODES if round_ % 2 == 0 else MODES[::-1]:
            slot = slot_for(mode, root, 10 + MODES.index(mode))
            began = time.perf_counter()
            slot.start()
            times[mode].append(time.perf_counter() - began)
            slot.stop()
    return times


def measure_runs(root: Path, rounds: int, runs: int) -> dict[str, dict[str, dict[str, list[float]]]]:
    slots = {mode: slot_for(mode, root, i) for i, mode in enumerate(MODES)}
    for slot in slots.values():
        slot.start()
    result: dict[str, dict[str, dict[str, list[float]]]] = {
        row: {m: {"wall": [], "cpu": []} for m in MODES} for row in ROWS
    }
    try:
        for row, spec in ROWS.items():
            for round_ in range(rounds):
                for mode in MODES if round_ % 2 == 0 else MODES[::-1]:
                    slot = slots[mode]
                    pid = worker_pid(slot)
                    cpu0, wall0 = cpu_secs(pid), time.perf_counter()
                    for i in range(runs):
                        outcome = slot.run(Job(f"{row}-{mode}-{round_}-{i}", spec), lambda text: None)
                        assert outcome.status == "completed", outcome.error
                    wall, cpu = time.perf_counter() - wall0, cpu_secs(pid) - cpu0
                    result[row][mode]["wall"].append(wall / runs)
                    result[row][mode]["cpu"].append(cpu / runs)
    finally:
        for slot in slots.values():
            slot.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--starts", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print the raw numbers as JSON too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mcp-v8-sandbox-bench-") as tmp:
        root = Path(tmp)
        starts = measure_starts(root, args.starts)
        runs = measure_runs(root, args.rounds, args.runs)
    med = statistics.median
    lines = [
        "| row | sandbox on (require) | sandbox off | on / off |",
        "|---|---|---|---|",
        f"| worker start, spawn to ready (ms) | {med(starts['require']) * 1e3:.1f} | "
        f"{med(starts['off']) * 1e3:.1f} | {med(starts['require']) / med(starts['off']):.2f} |",
    ]
    for row in ROWS:
        for what, unit in (("wall", "wall"), ("cpu", "worker CPU")):
            on, off = med(runs[row]["require"][what]), med(runs[row]["off"][what])
            lines.append(
                f"| {row}, {unit} per execution (ms) | {on * 1e3:.3f} | {off * 1e3:.3f} | {on / off:.2f} |"
            )
    print("\n".join(lines))
    if args.json:
        print(json.dumps({"starts": starts, "runs": runs}))


if __name__ == "__main__":
    main()
