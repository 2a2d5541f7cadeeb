"""Engine-level benchmark (in-process, no HTTP).

Prints, and writes to benches/results/engine.json:
  - stateless and snapshot-chained executions per second, 1 thread and N threads,
    with latency median / p95 / p99;
  - snapshot raw and stored sizes for a near-empty and a ~10 MB heap, and the
    restore + create overhead of a chained execution over a stateless one;
  - cancel latency (cancel() to execute() returning) for a busy loop and for a script
    parked on a pending promise;
  - heap-cap overshoot: V8 heap in use when the cap stopped a runaway allocation;
  - the raw-V8 ceiling (../shared/tools/v8-ceiling, C++ against the same libnode) in the
    same run, and this engine's rates as fractions of it.

usage: python benches/engine_bench.py [--seconds S] [--threads N] [--no-ceiling]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

from mcp_v8 import Control, Engine, v8_version

ROOT = Path(__file__).resolve().parent.parent
TRIVIAL = "JSON.stringify([1,2].map(x => x * 2))"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary_ms(latencies: list[float]) -> dict[str, float]:
    return {
        "median_ms": statistics.median(latencies) * 1e3,
        "p95_ms": pct(latencies, 0.95) * 1e3,
        "p99_ms": pct(latencies, 0.99) * 1e3,
    }


def run_threads(
    threads: int, seconds: float, step_factory: Callable[[], Callable[[], None]]
) -> dict[str, Any]:
    latencies: list[list[float]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def worker(i: int) -> None:
        step = step_factory()
        barrier.wait()
        end = time.perf_counter() + seconds
        while True:
            t0 = time.perf_counter()
            if t0 >= end:
                break
            step()
            latencies[i].append(time.perf_counter() - t0)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - start
    flat = [x for lst in latencies for x in lst]
    return {"threads": threads, "count": len(flat), "rate_per_s": len(flat) / elapsed, **summary_ms(flat)}


def stateless(engine: Engine) -> Callable[[], Callable[[], None]]:
    def factory() -> Callable[[], None]:
        def step() -> None:
            o = engine.execute(TRIVIAL)
            assert o.completed, o.error

        return step

    return factory


def chained(engine: Engine) -> Callable[[], Callable[[], None]]:
    def factory() -> Callable[[], None]:
        state: dict[str, bytes | None] = {"heap": engine.execute("var n = 0", snapshot=True).snapshot}

        def step() -> None:
            o = engine.execute("n += 1; JSON.stringify(n)", heap=state["heap"], snapshot=True)
            assert o.completed, o.error
            state["heap"] = o.snapshot

        return step

    return factory


def snapshot_sizes(engine: Engine) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cases = {
        "near-empty": "var n = 0",
        "10MB": "var big = Array.from({length: 200000}, (_, i) => ({i, s: 'item ' + i}))",
    }
    for name, code in cases.items():
        first = engine.execute(code, snapshot=True)
        assert first.completed, first.error
        assert first.snapshot is not None and first.snapshot_raw_bytes is not None
        steps = []
        for _ in range(5 if name == "10MB" else 30):
            t0 = time.perf_counter()
            o = engine.execute("1", heap=first.snapshot, snapshot=True)
            steps.append(time.perf_counter() - t0)
            assert o.completed
        plain = []
        for _ in range(len(steps)):
            t0 = time.perf_counter()
            engine.execute("1")
            plain.append(time.perf_counter() - t0)
        out[name] = {
            "raw_bytes": first.snapshot_raw_bytes,
            "stored_bytes": len(first.snapshot),
            "stored_ratio": len(first.snapshot) / first.snapshot_raw_bytes,
            "restore_create_median_ms": statistics.median(steps) * 1e3,
            "overhead_over_stateless_ms": (statistics.median(steps) - statistics.median(plain)) * 1e3,
        }
    return out


def cancel_latency(engine: Engine, code: str, rounds: int) -> dict[str, float]:
    samples = []
    for _ in range(rounds):
        control = Control()
        started = threading.Event()
        done: dict[str, float] = {}

        def run(
            control: Control = control, started: threading.Event = started, done: dict[str, float] = done
        ) -> None:
            o = engine.execute(
                "console.log(1);\n" + code, control=control, on_console=lambda *_: started.set()
            )
            done["t"] = time.perf_counter()
            assert o.cancelled, o.status

        t = threading.Thread(target=run)
        t.start()
        started.wait(10)
        time.sleep(0.005)
        t0 = time.perf_counter()
        control.cancel()
        t.join()
        samples.append(done["t"] - t0)
    return summary_ms(samples)


def heap_overshoot(engine: Engine) -> list[dict[str, Any]]:
    rows = []
    for cap in (16, 32, 64, 128):
        o = engine.execute(
            "const keep = []; while (true) keep.push({n: keep.length})", heap_limit_mb=cap, timeout=120
        )
        assert o.heap_limit_exceeded, o.status
        rows.append(
            {
                "cap_mb": cap,
                "heap_used_mb_at_stop": o.heap_used_bytes / 2**20,
                "ratio": o.heap_used_bytes / (cap << 20),
            }
        )
    return rows


def ceiling(threads: int, seconds: float) -> dict[str, float] | str:
    script = ROOT.parent / "shared" / "tools" / "v8-ceiling" / "build.sh"
    if not script.exists():
        return f"not available ({script} missing)"
    try:
        program = subprocess.run(
            ["bash", str(script)], check=True, capture_output=True, text=True
        ).stdout.strip()
        out = subprocess.run(
            [program, str(threads), str(seconds)], check=True, capture_output=True, text=True, timeout=120
        ).stdout
    except (subprocess.SubprocessError, OSError) as e:
        return f"not available ({e})"
    rates = {}
    for line in out.splitlines():
        name, _, rest = line.partition(" ")
        rates[name] = float(rest.rsplit("rate=", 1)[1].rstrip("/s"))
    return rates


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--no-ceiling", action="store_true")
    args = ap.parse_args()
    engine = Engine()
    engine.execute("1")  # V8 initialisation and base snapshot, outside the timings

    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "v8": v8_version()},
        "stateless": [run_threads(n, args.seconds, stateless(engine)) for n in (1, args.threads)],
        "snapshot_chain": [run_threads(n, args.seconds, chained(engine)) for n in (1, args.threads)],
        "snapshots": snapshot_sizes(engine),
        "cancel_busy_loop": cancel_latency(engine, "while (true) {}", 40),
        "cancel_pending_promise": cancel_latency(engine, "new Promise(() => {})", 40),
        "heap_overshoot": heap_overshoot(engine),
    }
    if not args.no_ceiling:
        results["ceiling"] = {n: ceiling(n, args.seconds) for n in (1, args.threads)}

    lines = [
        "| measure | threads | rate/s | median ms | p95 ms | p99 ms | vs raw V8 |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, ceiling_name in (("stateless", "fresh-isolate"), ("snapshot_chain", "snapshot-chain")):
        for row in results[kind]:
            ref = results.get("ceiling", {}).get(row["threads"])
            ratio = f"{row['rate_per_s'] / ref[ceiling_name]:.2f}" if isinstance(ref, dict) else "n/a"
            lines.append(
                f"| {kind} | {row['threads']} | {row['rate_per_s']:.0f} | {row['median_ms']:.2f} | "
                f"{row['p95_ms']:.2f} | {row['p99_ms']:.2f} | {ratio} |"
            )
    for name in ("cancel_busy_loop", "cancel_pending_promise"):
        r = results[name]
        lines.append(f"| {name} | 1 | | {r['median_ms']:.2f} | {r['p95_ms']:.2f} | {r['p99_ms']:.2f} | |")
    lines.append("")
    lines.append(
        "| heap | raw bytes | stored bytes | stored/raw | restore+run+create ms | overhead vs stateless ms |"
    )
    lines.append("|---|---|---|---|---|---|")
    for name, s in results["snapshots"].items():
        lines.append(
            f"| {name} | {s['raw_bytes']} | {s['stored_bytes']} | {s['stored_ratio']:.3f} | "
            f"{s['restore_create_median_ms']:.2f} | {s['overhead_over_stateless_ms']:.2f} |"
        )
    lines.append("")
    lines.append("| heap cap MB | V8 heap in use when stopped MB | ratio |")
    lines.append("|---|---|---|")
    for row in results["heap_overshoot"]:
        lines.append(f"| {row['cap_mb']} | {row['heap_used_mb_at_stop']:.1f} | {row['ratio']:.2f} |")
    if "ceiling" in results:
        lines.append("")
        lines.append(f"raw V8 ceiling (same libnode, C++): {json.dumps(results['ceiling'])}")
    table = "\n".join(lines)
    print(table)
    out_dir = ROOT / "benches" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "engine.json").write_text(json.dumps(results, indent=2))
    (out_dir / "engine.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
