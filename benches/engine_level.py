"""Part 1, engine level (in-process, no HTTP): execution rates and latencies, snapshot sizes and
overheads, cancel latency, heap-cap overshoot, and the raw-V8 ceiling measured in the same run."""

from __future__ import annotations

import json
import statistics
import subprocess
import threading
import time
from typing import Any, Callable

from benchlib import ROOT, TRIVIAL, log, run_threads, summary_ms

from mcp_v8 import Control, Engine

CHAIN_FIRST = "var n = 0; n"
CHAIN_STEP = "n += 1; JSON.stringify(n)"

StepFactory = Callable[[], Callable[[], None]]


def stateless(engine: Engine, *, snapshot: bool = False) -> StepFactory:
    """A fresh isolate per execution; with ``snapshot`` it also serialises the heap, as the service's
    workers do for every execution."""

    def factory() -> Callable[[], None]:
        def step() -> None:
            o = engine.execute(TRIVIAL, snapshot=snapshot)
            assert o.completed, o.error

        return step

    return factory


def chained(engine: Engine) -> StepFactory:
    """Each thread keeps a heap chain: restore the previous snapshot, run, snapshot again."""

    def factory() -> Callable[[], None]:
        first = engine.execute(CHAIN_FIRST, snapshot=True)
        assert first.completed, first.error
        state: dict[str, Any] = {"heap": first.snapshot, "n": 0}

        def step() -> None:
            o = engine.execute(CHAIN_STEP, heap=state["heap"], snapshot=True)
            assert o.completed, o.error
            state["n"] += 1
            assert o.result == f'"{state["n"]}"', (o.result, state["n"])
            state["heap"] = o.snapshot

        return step

    return factory


def snapshot_sizes(engine: Engine, rounds_small: int, rounds_big: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cases = {
        "near-empty": ("var n = 0", rounds_small),
        "10MB": ("var big = Array.from({length: 200000}, (_, i) => ({i, s: 'item ' + i}))", rounds_big),
    }
    for name, (code, rounds) in cases.items():
        first = engine.execute(code, snapshot=True)
        assert first.completed, first.error
        assert first.snapshot is not None and first.snapshot_raw_bytes is not None
        restore_create, restore_only, plain = [], [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            o = engine.execute("1", heap=first.snapshot, snapshot=True)
            restore_create.append(time.perf_counter() - t0)
            assert o.completed, o.error
            t0 = time.perf_counter()
            o = engine.execute("1", heap=first.snapshot)
            restore_only.append(time.perf_counter() - t0)
            assert o.completed, o.error
            t0 = time.perf_counter()
            engine.execute("1")
            plain.append(time.perf_counter() - t0)
        base = statistics.median(plain)
        out[name] = {
            "raw_bytes": first.snapshot_raw_bytes,
            "stored_bytes": len(first.snapshot),
            "stored_ratio": len(first.snapshot) / first.snapshot_raw_bytes,
            "rounds": rounds,
            "stateless_median_ms": base * 1e3,
            "restore_median_ms": statistics.median(restore_only) * 1e3,
            "restore_create_median_ms": statistics.median(restore_create) * 1e3,
            "restore_overhead_ms": (statistics.median(restore_only) - base) * 1e3,
            "restore_create_overhead_ms": (statistics.median(restore_create) - base) * 1e3,
        }
    return out


def cancel_latency(engine: Engine, code: str, rounds: int) -> dict[str, Any]:
    """Time from ``control.cancel()`` to ``execute()`` returning, for a script that is running
    ``code`` (it printed a line first, so it is past compilation when the cancel comes)."""
    samples = []
    for _ in range(rounds):
        control = Control()
        started = threading.Event()
        done: dict[str, Any] = {}

        def run(
            control: Control = control, started: threading.Event = started, done: dict[str, Any] = done
        ) -> None:
            o = engine.execute(
                "console.log(1);\n" + code, control=control, on_console=lambda *_: started.set()
            )
            done["t"] = time.perf_counter()
            done["status"] = o.status

        t = threading.Thread(target=run)
        t.start()
        started.wait(10)
        time.sleep(0.005)
        t0 = time.perf_counter()
        control.cancel()
        t.join()
        assert done["status"] == "cancelled", done
        samples.append(done["t"] - t0)
    return {"rounds": rounds, **summary_ms(samples)}


def heap_overshoot(engine: Engine, caps: tuple[int, ...]) -> list[dict[str, Any]]:
    rows = []
    for cap in caps:
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


def ceiling_program() -> str:
    """Builds the raw-V8 yardstick, benches/ceiling.cc, against the libnode the extension
    links (scripts/build-ceiling.sh, which the bootstrap also runs) and returns its path;
    raises RuntimeError with the reason when it cannot."""
    script = ROOT / "scripts" / "build-ceiling.sh"
    try:
        done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=600)
    except (subprocess.SubprocessError, OSError) as e:
        raise RuntimeError(f"build failed: {e}") from e
    if done.returncode != 0:
        raise RuntimeError(f"build failed: {done.stderr.strip()[-300:]}")
    return done.stdout.strip().splitlines()[-1]


def ceiling(program: str, threads: int, seconds: float) -> tuple[dict[str, float], dict[str, float]]:
    """Raw V8 (C++ against the same libnode): fresh isolates and snapshot chains per second, and the
    CPU milliseconds per run the program measured for each (every thread of the process)."""
    out = subprocess.run(
        [program, str(threads), str(seconds)], check=True, capture_output=True, text=True, timeout=300
    ).stdout
    rates, cpu = {}, {}
    for line in out.splitlines():
        figure = json.loads(line)
        if "error" in figure:
            raise RuntimeError(f"{figure['kind']}: {figure['error']}")
        rates[figure["kind"]] = float(figure["rate_per_s"])
        if figure.get("cpu_ms_per_run") is not None:
            cpu[figure["kind"]] = float(figure["cpu_ms_per_run"])
    return rates, cpu


def run(seconds: float, threads: int, *, quick: bool, with_ceiling: bool = True) -> dict[str, Any]:
    engine = Engine()
    engine.execute("1")  # V8 initialisation and the base snapshot, outside the timings
    counts = (1, threads) if threads > 1 else (1,)
    results: dict[str, Any] = {"seconds": seconds, "threads": list(counts)}
    log("engine: stateless")
    results["stateless"] = [run_threads(n, seconds, stateless(engine)) for n in counts]
    log("engine: stateless + snapshot (what a service worker does)")
    results["stateless_snapshot"] = [
        run_threads(n, seconds, stateless(engine, snapshot=True)) for n in counts
    ]
    log("engine: snapshot chain")
    results["snapshot_chain"] = [run_threads(n, seconds, chained(engine)) for n in counts]
    log("engine: snapshot sizes")
    results["snapshots"] = snapshot_sizes(engine, 10 if quick else 30, 3 if quick else 8)
    log("engine: cancel latency")
    rounds = 10 if quick else 40
    results["cancel_busy_loop"] = cancel_latency(engine, "while (true) {}", rounds)
    results["cancel_pending_promise"] = cancel_latency(engine, "new Promise(() => {})", rounds)
    log("engine: heap-cap overshoot")
    results["heap_overshoot"] = heap_overshoot(engine, (16, 64) if quick else (16, 32, 64, 128))
    if with_ceiling:
        results["ceiling"] = measure_ceiling(counts, seconds)
    return results


def measure_ceiling(counts: tuple[int, ...], seconds: float) -> dict[str, Any]:
    log("raw V8 ceiling")
    try:
        program = ceiling_program()
        figures = {str(n): ceiling(program, n, seconds) for n in counts}
        return {
            "program": program,
            "by_threads": {n: rates for n, (rates, _) in figures.items()},
            "cpu_ms_per_run_by_threads": {n: cpu for n, (_, cpu) in figures.items()},
        }
    except (RuntimeError, subprocess.SubprocessError, OSError, ValueError, IndexError) as e:
        return {"error": f"not available: {e}"}


def ceiling_rate(results: dict[str, Any], threads: int, kind: str) -> float | None:
    """The ceiling's ``kind`` ('fresh-isolate' or 'snapshot-chain') rate at ``threads``, if measured."""
    by = results.get("ceiling", {}).get("by_threads", {})
    value = by.get(str(threads), {}).get(kind)
    return float(value) if value is not None else None


def ceiling_cpu_ms(results: dict[str, Any], threads: int, kind: str) -> tuple[float | None, str]:
    """The ceiling's CPU milliseconds per ``kind`` run at ``threads`` and where it comes from: as the
    program measured it ('measured'), else ``threads`` × 1000 / rate, which assumes its threads were
    busy all the time ('estimated'); (None, 'not measured') without a ceiling."""
    by = results.get("ceiling", {}).get("cpu_ms_per_run_by_threads", {})
    value = by.get(str(threads), {}).get(kind)
    if value is not None:
        return float(value), "measured"
    rate = ceiling_rate(results, threads, kind)
    if rate:
        return threads * 1000.0 / rate, "estimated"
    return None, "not measured"


def rate_at(rows: list[dict[str, Any]], threads: int) -> float | None:
    for row in rows:
        if row["threads"] == threads:
            return float(row["rate_per_s"])
    return None
