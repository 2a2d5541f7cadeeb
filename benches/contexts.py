"""Part 4, live contexts beside PyMiniRacer's reused context, in the same run: trivial evals and
function calls in one reused context, exposed Python functions awaited from JavaScript, and what
a context costs to create (and, for mcp-v8, to snapshot).

Every cell runs in its own child process (``contexts.py --child KIND``), so the two V8 builds never
share a process. The cells are measured in rounds that alternate the two engines, and each rate
is the median of its rounds: a machine that gets busier during the run slows both sides alike.

usage: .venv/bin/python benches/contexts.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any, Callable

from benchlib import BENCHES, log, run_json_child, summary_ms

TRIVIAL = "1 + 1"
FUNCTION = "function add(a, b) { return a + b; }"

# cell -> (label, engine)
CELLS: dict[str, tuple[str, str]] = {
    "mcp_eval": ("mcp-v8 Context.eval('1 + 1')", "mcp"),
    "mr_eval": ("PyMiniRacer MiniRacer.eval('1 + 1')", "miniracer"),
    "mcp_call": ("mcp-v8 Context.call('add', 1, 2)", "mcp"),
    "mr_call": ("PyMiniRacer MiniRacer.call('add', 1, 2)", "miniracer"),
    "mcp_callback": ("mcp-v8 JS awaits an exposed Python function", "mcp"),
    "mr_callback": ("PyMiniRacer JS awaits a wrap_py_function", "miniracer"),
    "mcp_create": ("mcp-v8 engine.context() + close()", "mcp"),
    "mr_create": ("PyMiniRacer MiniRacer() + close()", "miniracer"),
    "mcp_snapshot": ("mcp-v8 Context.snapshot() (snapshot=True context)", "mcp"),
}
PAIRS = (("eval", "mcp_eval", "mr_eval"), ("call", "mcp_call", "mr_call"),
         ("callback", "mcp_callback", "mr_callback"), ("create", "mcp_create", "mr_create"))  # fmt: skip


# -- child side -------------------------------------------------------------------------------


def _loop(op: Callable[[], object], seconds: float) -> dict[str, Any]:
    op()  # warm-up, outside the timings
    latencies: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        op()
        latencies.append(time.perf_counter() - t0)
        if t0 - start >= seconds and len(latencies) >= 3:
            break
    return {"count": len(latencies), "rate_per_s": len(latencies) / (time.perf_counter() - start),
            **summary_ms(latencies)}  # fmt: skip


def _mcp_cell(cell: str, seconds: float) -> dict[str, Any]:
    from mcp_v8 import Engine, v8_version

    engine = Engine()
    version = f"mcp-v8, V8 {v8_version()}"
    if cell == "mcp_create":

        def create() -> None:
            engine.context().close()

        return {"version": version, **_loop(create, seconds)}
    with engine.context(snapshot=cell == "mcp_snapshot") as ctx:
        ctx.eval(FUNCTION)
        if cell == "mcp_eval":
            assert ctx.eval(TRIVIAL) == 2
            return {"version": version, **_loop(lambda: ctx.eval(TRIVIAL), seconds)}
        if cell == "mcp_call":
            assert ctx.call("add", 1, 2) == 3
            return {"version": version, **_loop(lambda: ctx.call("add", 1, 2), seconds)}
        if cell == "mcp_snapshot":
            ctx.eval("var state = Array.from({length: 1000}, (_, i) => ({i}))")
            size = len(ctx.snapshot())
            return {"version": version, "envelope_bytes": size, **_loop(ctx.snapshot, seconds)}

        async def double(x: int) -> int:
            return 2 * x

        ctx.expose("double", double)

        async def main() -> dict[str, Any]:
            assert await ctx.eval_async("double(21)") == 42
            # The asyncio loop stays the caller's, as in PyMiniRacer's eval_cancelable.
            latencies: list[float] = []
            start = time.perf_counter()
            while True:
                t0 = time.perf_counter()
                await ctx.eval_async("double(21)")
                latencies.append(time.perf_counter() - t0)
                if t0 - start >= seconds and len(latencies) >= 3:
                    break
            return {"count": len(latencies), "rate_per_s": len(latencies) / (time.perf_counter() - start),
                    **summary_ms(latencies)}  # fmt: skip

        return {"version": version, **asyncio.run(main())}


def _miniracer_cell(cell: str, seconds: float) -> dict[str, Any]:
    import importlib.metadata

    from py_mini_racer import MiniRacer

    probe = MiniRacer()
    version = f"mini-racer {importlib.metadata.version('mini-racer')}, V8 {probe.v8_version}"
    probe.close()
    if cell == "mr_create":

        def create() -> None:
            MiniRacer().close()

        return {"version": version, **_loop(create, seconds)}
    if cell == "mr_callback":
        return {"version": version, **asyncio.run(_miniracer_callback(seconds))}
    with MiniRacer() as mr:
        mr.eval(FUNCTION)
        if cell == "mr_eval":
            assert mr.eval(TRIVIAL) == 2
            return {"version": version, **_loop(lambda: mr.eval(TRIVIAL), seconds)}
        assert mr.call("add", 1, 2) == 3
        return {"version": version, **_loop(lambda: mr.call("add", 1, 2), seconds)}


async def _miniracer_callback(seconds: float) -> dict[str, Any]:
    from py_mini_racer import MiniRacer

    async def double(x: int) -> int:
        return 2 * x

    # Made inside the running loop: wrap_py_function serves calls on the loop MiniRacer saw.
    with MiniRacer() as mr:
        async with mr.wrap_py_function(double) as js_double:
            mr.eval("this")["double"] = js_double
            # The promise comes back as a JSPromise, awaited in Python.
            assert await (await mr.eval_cancelable("double(21)")) == 42
            latencies: list[float] = []
            start = time.perf_counter()
            while True:
                t0 = time.perf_counter()
                await (await mr.eval_cancelable("double(21)"))
                latencies.append(time.perf_counter() - t0)
                if t0 - start >= seconds and len(latencies) >= 3:
                    break
            return {"count": len(latencies), "rate_per_s": len(latencies) / (time.perf_counter() - start),
                    **summary_ms(latencies)}  # fmt: skip


def child(cell: str, seconds: float) -> dict[str, Any]:
    return _mcp_cell(cell, seconds) if CELLS[cell][1] == "mcp" else _miniracer_cell(cell, seconds)


# -- parent side ------------------------------------------------------------------------------


def measure(cell: str, seconds: float) -> dict[str, Any]:
    command = [sys.executable, str(BENCHES / "contexts.py"), "--child", cell, "--seconds", str(seconds)]
    return run_json_child(command, timeout=seconds * 3 + 120)


def run(*, quick: bool) -> dict[str, Any]:
    from peers import ensure_installed

    seconds = 0.5 if quick else 2.0
    rounds = 2 if quick else 3
    installs = ensure_installed(["mini-racer"])
    have_peer = installs["mini-racer"].startswith(("present", "installed"))
    samples: dict[str, list[dict[str, Any]]] = {cell: [] for cell in CELLS}
    for r in range(rounds):
        log(f"contexts: round {r + 1}/{rounds}")
        for cell, (_, engine) in CELLS.items():
            if engine == "miniracer" and not have_peer:
                continue
            samples[cell].append(measure(cell, seconds))
    cells: dict[str, Any] = {}
    for cell, runs in samples.items():
        good = [s for s in runs if "rate_per_s" in s]
        if not good:
            cells[cell] = {"error": runs[0]["error"] if runs else f"mini-racer {installs['mini-racer']}"}
            continue
        rates = [s["rate_per_s"] for s in good]
        median = statistics.median(rates)
        middle = min(good, key=lambda s: abs(s["rate_per_s"] - median))
        cells[cell] = {**middle, "rate_per_s": median, "round_rates": rates}
    ratios = {}
    for name, ours, theirs in PAIRS:
        if "rate_per_s" in cells.get(ours, {}) and "rate_per_s" in cells.get(theirs, {}):
            ratios[name] = cells[ours]["rate_per_s"] / cells[theirs]["rate_per_s"]
    return {"seconds": seconds, "rounds": rounds, "installs": installs,
            "labels": {k: v[0] for k, v in CELLS.items()}, "cells": cells, "ratios": ratios}  # fmt: skip


def render(result: dict[str, Any]) -> list[str]:
    """The report section (benches/report.py)."""
    out = ["## 4. Live contexts beside PyMiniRacer (same run)", ""]
    if "error" in result:
        return out + [f"Failed: {result['error']}", ""]
    out.append(
        f"One thread, closed loop, {result['seconds']:g} s per cell, {result['rounds']} rounds alternating the "
        'engines, each cell in its own child process; rates are the medians of the rounds. "eval" and '
        '"call" reuse one context; "callback" awaits an `async def` exposed to JavaScript from the '
        "caller's asyncio loop (`eval_async` / `eval_cancelable`)."
    )
    out.append("")
    out.append("| cell | version | per s | median ms | p95 ms | rounds (per s) |")
    out.append("|---|---|---|---|---|---|")
    for cell, label in result["labels"].items():
        c = result["cells"].get(cell, {})
        if "rate_per_s" not in c:
            out.append(f"| {label} | not measured: {c.get('error', '?')} | | | | |")
            continue
        rounds = ", ".join(f"{r:,.0f}" for r in c["round_rates"])
        out.append(
            f"| {label} | {c['version']} | {c['rate_per_s']:,.0f} | {c['median_ms']:.3f} | {c['p95_ms']:.3f} "
            f"| {rounds} |"
        )
    out.append("")
    if result["ratios"]:
        parts = [f"{name} {ratio:.2f}×" for name, ratio in result["ratios"].items()]
        out += ["mcp-v8 over PyMiniRacer, rate ratios: " + ", ".join(parts) + ".", ""]
    snap = result["cells"].get("mcp_snapshot", {})
    if "envelope_bytes" in snap:
        out += [
            f"Snapshot of a context holding 1,000 small objects: {snap['envelope_bytes']:,} bytes stored.",
            "",
        ]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", choices=sorted(CELLS), help="measure one cell (internal)")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.seconds)))
        return 0
    result = run(quick=args.quick)
    print("\n".join(render(result)))
    print(json.dumps(result, indent=2), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
