"""mcp-v8 benchmark harness: writes benches/results/bench.md (report) and bench.json (raw numbers).

Parts, all in one run so that every comparison is a ratio of numbers measured together:
  engine   in-process Engine: rates, latencies, snapshots, cancel latency, raw-V8 ceiling
  service  a real `mcp-v8 serve` driven by benches/loadgen.py (closed loop, long-poll), with cancels
  leak     10,000 executions through one worker process, its RSS at the start and at the end
  profile  where the time of one HTTP execution goes
  peers    PyMiniRacer, jsrun, node, deno on the same scripts (installed with pip when missing)
  contexts live contexts (eval, call, exposed functions, creation, snapshot) beside PyMiniRacer's
  nodes    only with --nodes: 1, 2, 3 nodes on one PostgreSQL beside the SQLite node (benches/nodes.py)

usage: .venv/bin/python benches/run.py [--quick] [--parts engine,service,leak,profile,peers,contexts] [--clients 1,4]
       .venv/bin/python benches/run.py --render-only [bench.json]   # re-render, measure nothing
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import plot
import targets
from benchlib import RESULTS, load_average, log, machine_info, ratio
from engine_level import ceiling_rate, rate_at
from report import MODE_LABELS, STAGE_LABELS, profile_stages, render, run_key, snapshot_vs_none

PARTS = ("engine", "service", "leak", "profile", "peers", "contexts")
OPTIONAL_PARTS = ("nodes",)  # run only when asked for (--nodes, or named in --parts)


def compute_ratios(results: dict[str, Any]) -> dict[str, Any]:
    """Every cross-part ratio, the headlines and the observations the numbers support."""
    out: dict[str, Any] = {"service": {}, "headlines": [], "observations": []}
    out["headline"] = targets.compute(results)
    engine = results.get("engine", {})
    cores = os.cpu_count() or 1
    all_threads = max(engine.get("threads", [1]))
    eng_stateless = rate_at(engine.get("stateless", []), all_threads)
    eng_stateless_snap = rate_at(engine.get("stateless_snapshot", []), all_threads)
    eng_chain = rate_at(engine.get("snapshot_chain", []), all_threads)
    ceil_fresh = ceiling_rate(engine, all_threads, "fresh-isolate")
    ceil_chain = ceiling_rate(engine, all_threads, "snapshot-chain")
    out["engine"] = {
        "threads": all_threads,
        "stateless_vs_ceiling": ratio(eng_stateless, ceil_fresh),
        "snapshot_chain_vs_ceiling": ratio(eng_chain, ceil_chain),
        "stateless_snapshot_vs_stateless": ratio(eng_stateless_snap, eng_stateless),
    }
    if eng_stateless:
        out["headlines"].append(
            f"Engine in-process, {all_threads} threads: {eng_stateless:.0f} stateless exec/s "
            f"({_x(out['engine']['stateless_vs_ceiling'])} raw V8), {eng_chain or 0:.0f} snapshot-chain exec/s "
            f"({_x(out['engine']['snapshot_chain_vs_ceiling'])} raw V8)."
        )

    service = results.get("service", {})
    best: dict[str, dict[str, Any]] = {}
    total_errors = 0
    default_threads = min((r.get("http_threads", 0) for r in service.get("runs", [])), default=0)
    for run in service.get("runs", []):
        total_errors += run["errors"]
        if run["cancel_fraction"]:
            continue
        mode, c = run["mode"], run["concurrency"]
        stateless = mode != "stateful"
        eng, ceil = (eng_stateless, ceil_fresh) if stateless else (eng_chain, ceil_chain)
        entry = {
            "throughput_per_s": run["throughput_per_s"],
            "vs_engine": ratio(run["throughput_per_s"], eng),
            "vs_engine_snapshot": ratio(run["throughput_per_s"], eng_stateless_snap)
            if mode == "stateless"
            else None,
            "vs_ceiling": ratio(run["throughput_per_s"], ceil),
        }
        out["service"][run_key(run)] = entry
        if run.get("http_threads", 0) != default_threads:
            continue  # the extra rows with more HTTP threads
        if mode not in best or run["throughput_per_s"] > best[mode]["throughput_per_s"]:
            best[mode] = {**entry, "concurrency": c, "median_ms": run["latency"]["median_ms"]}
    out["service_best"] = best
    out["service_errors"] = total_errors
    for mode, b in best.items():
        if mode == "stateless":
            versus = (
                f"{_x(b['vs_engine'])} the engine's stateless rate, {_x(b['vs_engine_snapshot'])} its "
                "stateless + snapshot rate"
            )
        elif mode == "stateful":
            versus = f"{_x(b['vs_engine'])} the engine's snapshot-chain rate"
        else:
            versus = f"{_x(b['vs_engine'])} the engine's stateless rate"
        out["headlines"].append(
            f"Service {MODE_LABELS.get(mode, mode)}, best at {b['concurrency']} clients: "
            f"{b['throughput_per_s']:.0f} exec/s ({versus}, {_x(b['vs_ceiling'])} raw V8)."
        )
    out["snapshot_vs_none"] = snapshot_vs_none(service)
    if out["snapshot_vs_none"]:
        out["observations"].append(
            'Skipping the snapshot (`"snapshot": false`) against the default stateless execution: '
            + "; ".join(
                f"{r['concurrency']} client(s) {r['snapshot_per_s']:.0f} → {r['no_snapshot_per_s']:.0f} exec/s "
                f"({_x(r['throughput_ratio'])}), median {r['snapshot_median_ms']:.1f} → "
                f"{r['no_snapshot_median_ms']:.1f} ms"
                for r in out["snapshot_vs_none"]
            )
            + "."
        )
    if service.get("runs"):
        out["headlines"].append(f"Service errors over all runs (429 included): {total_errors}.")

    profile = results.get("profile", {})
    if "outside_stateless" in profile:
        st = profile["outside_stateless"]
        stages = profile_stages(st, profile["engine"], False)
        key = max(stages, key=lambda k: stages[k])
        label = dict(STAGE_LABELS)[key]
        text = f"{label}: {stages[key]:.2f} ms of {st['end_to_end']:.2f} ms ({100 * stages[key] / st['end_to_end']:.0f} %)"
        heap_ms = (
            profile.get("sampled", {})
            .get("ms_per_execution", {})
            .get("worker", {})
            .get("heap store: write snapshot")
        )
        if heap_ms is not None:
            text += (
                f"; outside the engine the largest is the heap store's write of the snapshot, "
                f"~{heap_ms:.1f} ms (sampled, part of the {stages['around_engine']:.2f} ms around the engine)"
            )
        out["slowest_stage"] = text
        out["headlines"].append(f"Slowest stage of one HTTP execution (stateless, sequential): {text}.")
        if heap_ms is not None:
            out["observations"].append(
                f"Storing each execution's snapshot (blob + meta, fsynced only with --durable-heaps) takes "
                f"~{heap_ms:.1f} ms per execution in the worker process (sampled), "
                f"{100 * heap_ms / st['end_to_end']:.0f} % of a sequential HTTP execution."
            )

    leak = results.get("leak", {})
    if "start" in leak and leak["start"].get("worker_kb") and leak["end"].get("worker_kb"):
        s, e = leak["start"]["worker_kb"], leak["end"]["worker_kb"]
        out["headlines"].append(
            f"Leak check: worker RSS {s / 1024:.1f} MiB → {e / 1024:.1f} MiB over {leak['executions']:,} "
            f"executions ({leak['errors']} errors)."
        )
        heaps = leak.get("data_dir_bytes", {}).get("heaps")
        if heaps:
            out["observations"].append(
                f"Heap store after the leak check's {leak['executions']:,} stateless executions: "
                f"{heaps / 2**20:.0f} MiB ({heaps / max(1, leak['executions']) / 1024:.0f} KiB per execution). "
                'Every execution stores a snapshot unless its request says `"snapshot": false` (or the '
                "server runs with --snapshot-default false); retention deletes snapshots unused for "
                "--retention-max-age-secs (7 days by default)."
            )

    if eng_stateless and eng_stateless_snap:
        out["observations"].append(
            f"The service snapshots every execution by default: in-process a stateless execution runs at "
            f"{eng_stateless:.0f}/s, with a snapshot at {eng_stateless_snap:.0f}/s "
            f"({eng_stateless / eng_stateless_snap:.1f}× slower); that is the service's stateless ceiling unless "
            'a request says `"snapshot": false`.'
        )
    chain = engine.get("snapshot_chain", [])
    if len(chain) >= 2 and chain[0]["threads"] == 1:
        scale = chain[-1]["rate_per_s"] / chain[0]["rate_per_s"]
        c1 = ceiling_rate(engine, 1, "snapshot-chain")
        cn = ceiling_rate(engine, chain[-1]["threads"], "snapshot-chain")
        raw_scale = f"raw V8 scales {cn / c1:.2f}×" if c1 and cn else "raw V8 not measured"
        fresh = engine.get("stateless", [])
        fresh_scale = fresh[-1]["rate_per_s"] / fresh[0]["rate_per_s"] if len(fresh) >= 2 else None
        out["observations"].append(
            f"In-process snapshot chains scale {scale:.2f}× from 1 to {chain[-1]['threads']} threads "
            f"({raw_scale}; stateless executions scale {_x(fresh_scale)})."
        )
    runs = [
        r
        for r in service.get("runs", [])
        if not r["cancel_fraction"]
        and r["mode"] == "stateless"
        and r.get("http_threads", 0) == default_threads
    ]
    if len(runs) >= 2:
        lo, hi = runs[0], runs[-1]
        out["observations"].append(
            f"Server-process CPU per stateless execution: {lo['server_cpu_ms_per_exec']:.2f} ms at "
            f"{lo['concurrency']} client(s), {hi['server_cpu_ms_per_exec']:.2f} ms at {hi['concurrency']}; "
            f"workers {lo['workers_cpu_ms_per_exec']:.2f} → {hi['workers_cpu_ms_per_exec']:.2f} ms "
            f"({cores} cores in all, shared with the load generator)."
        )
    floor = service.get("http_floor")
    if floor:
        per = floor["server_cpu_ms_per_request"]
        out["observations"].append(
            f"The HTTP floor: the server spends {per:.2f} ms of CPU per `GET /api/version` "
            f"({floor['clients']} keep-alive clients, {floor['per_s']:.0f} requests/s), Waitress and Falcon "
            f"with nothing behind them; an execution's submit + long-poll starts at {2 * per:.2f} ms of "
            f"server CPU, a submit with wait_ms at {per:.2f} ms."
        )
    out["observations"] += _thread_observations(service, default_threads)
    out["observations"] += _herd_observations(profile)
    for r in sorted(runs, key=lambda r: -r["throughput_per_s"])[:1]:
        cpu = r["server_cpu_ms_per_exec"] + r["workers_cpu_ms_per_exec"]
        cpu += r["loadgen_cpu_s"] / max(1, r["finished"]) * 1e3
        out["observations"].append(
            f"CPU budget at {r['concurrency']} stateless clients: {cpu:.1f} ms of CPU per execution (server "
            f"{r['server_cpu_ms_per_exec']:.1f}, workers {r['workers_cpu_ms_per_exec']:.1f}, load generator "
            f"{r['loadgen_cpu_s'] / max(1, r['finished']) * 1e3:.1f}), so {cores} cores allow at most "
            f"~{cores * 1000 / cpu:.0f} exec/s; measured {r['throughput_per_s']:.0f}/s."
        )
    return out


def _thread_observations(service: dict[str, Any], default_threads: int) -> list[str]:
    """The busiest cancel row on the default HTTP threads against the same row with more threads."""
    cancel_runs = [r for r in service.get("runs", []) if r["cancel_fraction"] and r["mode"] == "stateless"]
    if not cancel_runs:
        return []
    top = max(r["concurrency"] for r in cancel_runs)
    by_threads = {r["http_threads"]: r for r in cancel_runs if r["concurrency"] == top}
    more = [t for t in by_threads if t != default_threads]
    if default_threads not in by_threads or not more:
        return []
    a, b = by_threads[default_threads], by_threads[max(more)]
    ca, cb = a["cancel_to_terminal"]["median_ms"], b["cancel_to_terminal"]["median_ms"]
    pa, pb = a["probe_version"]["median_ms"], b["probe_version"]["median_ms"]
    text = (
        f"At {top} clients with the default {default_threads} HTTP threads, a cancel reaches its client as "
        f"`cancelled` in {ca:.1f} ms (median) and a side `GET /api/version` takes {pa:.1f} ms; with "
        f"{max(more)} threads, {cb:.1f} ms and {pb:.1f} ms (throughput {a['throughput_per_s']:.0f} vs "
        f"{b['throughput_per_s']:.0f}/s)."
    )
    if top > default_threads and ca > 3 * cb:
        text += (
            " Each long-poll holds an HTTP thread for the whole wait, so with more waiting clients than "
            "threads every other request (cancel, status, version) queues behind them."
        )
    return [text]


def _herd_observations(profile: dict[str, Any]) -> list[str]:
    one = profile.get("sampled", {})
    many = profile.get("sampled_load", {})
    if "ms_per_execution" not in one or "ms_per_execution" not in many:
        return []
    stage = "execution store: record terminal status + notify"
    d1 = one["ms_per_execution"].get("dispatcher", {}).get(stage)
    dn = many["ms_per_execution"].get("dispatcher", {}).get(stage)
    w1 = one["ms_per_execution"].get("http", {}).get("GET: long-poll wake-up checks", 0.0)
    wn = many["ms_per_execution"].get("http", {}).get("GET: long-poll wake-up checks", 0.0)
    if d1 is None or dn is None:
        return []
    reads = profile.get("record_reads", {}).get("rows", [])
    counted = ", ".join(f"{r['record_gets_per_execution']:.1f} at {r['concurrency']}" for r in reads)
    text = (
        f"Recording a terminal status and waking the long-polls (`ExecutionManager._finish`) costs "
        f"{d1:.2f} ms of dispatcher time per execution with 1 client and {dn:.2f} ms with "
        f"{many['concurrency']} clients (sampled); the long-polls' wake-up re-checks {w1:.2f} → "
        f"{wn:.2f} ms of HTTP-thread time per execution."
    )
    if counted:
        text += f" `SQLiteExecutionStore.get` calls per execution by clients: {counted}."
    if len(reads) >= 2 and reads[-1]["record_gets_per_execution"] > 2 * reads[0]["record_gets_per_execution"]:
        text += (
            " `_finish` calls `notify_all()` on one condition shared by every waiting long-poll, and each "
            "woken waiter re-reads its record from SQLite while holding that condition's lock: the work per "
            "finished execution grows with the number of waiting clients, and the dispatcher (whose worker "
            "sits idle meanwhile) queues for that lock."
        )
    return [text]


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}×"


def write(results: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    results["ratios"] = compute_ratios(results)
    if plot.has_rows(results):
        results["plot"] = plot.write_plot(results, RESULTS)
        if "error" in results["plot"]:
            log(f"throughput plot not written: {results['plot']['error']}")
    (RESULTS / "bench.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    report = render(results)
    if "rows" in results.get("nodes", {}):
        import nodes

        report += "\n## Nodes on one PostgreSQL\n\n" + nodes.render(results["nodes"])
    (RESULTS / "bench.md").write_text(report)


def render_only(path: str) -> int:
    """Recomputes the ratios, the headline table and the plot of a saved run and writes its report
    into benches/results (its raw numbers are kept as they are)."""
    try:
        results = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        log(f"cannot read {path}: {e}")
        return 2
    results.pop("plot", None)
    write(results)
    log(f"re-rendered {RESULTS / 'bench.md'} and {RESULTS / 'bench.json'} from {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short smoke run (under ~2 minutes)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    ap.add_argument(
        "--clients",
        default=None,
        help="comma-separated client counts of the service part (default 1,16 with --quick, else 1,4,16,64)",
    )
    ap.add_argument(
        "--nodes",
        action="store_true",
        help="also run benches/nodes.py (PostgreSQL: 1, 2, 3 nodes; about a minute, half with --quick)",
    )
    ap.add_argument(
        "--render-only",
        nargs="?",
        const=str(RESULTS / "bench.json"),
        metavar="BENCH_JSON",
        help="measure nothing: rewrite bench.md, the ratios in bench.json and the plot from a saved "
        "bench.json (default benches/results/bench.json)",
    )
    args = ap.parse_args(argv)
    if args.render_only:
        return render_only(args.render_only)
    clients = tuple(int(c) for c in args.clients.split(",") if c) if args.clients else None
    if clients is not None and (not clients or min(clients) < 1):
        ap.error("--clients takes positive client counts, e.g. 1,4")
    parts = [p for p in args.parts.split(",") if p]
    if args.nodes and "nodes" not in parts:
        parts.append("nodes")
    unknown = set(parts) - set(PARTS) - set(OPTIONAL_PARTS)
    if unknown:
        ap.error(f"unknown parts: {', '.join(sorted(unknown))}")
    quick = args.quick
    # A SIGTERM unwinds like Ctrl-C, so every server this run started is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cores = os.cpu_count() or 1
    started = time.monotonic()
    results: dict[str, Any] = {
        "meta": {
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "quick": quick,
            "parts": parts,
            "argv": sys.argv,
        },
        "machine": machine_info(),
    }

    import contexts
    import engine_level
    import peers
    import profile_http
    import service_level

    steps: dict[str, Callable[[], dict[str, Any]]] = {
        "engine": lambda: engine_level.run(1.0 if quick else 5.0, cores, quick=quick),
        "service": lambda: service_level.run(workers=cores, quick=quick, concurrencies=clients),
        "leak": lambda: service_level.leak_check(executions=1000 if quick else 10_000, quick=quick),
        "profile": lambda: profile_http.run(quick, cores),
        "peers": lambda: peers.run(quick=quick),
        "contexts": lambda: contexts.run(quick=quick),
        "nodes": lambda: __import__("nodes").run(seconds=2.0 if quick else 4.0),
    }
    failed = []
    for part in PARTS + OPTIONAL_PARTS:
        if part not in parts:
            continue
        t0 = time.monotonic()
        try:
            results[part] = steps[part]()
        except Exception as e:
            traceback.print_exc()
            results[part] = {"error": f"{type(e).__name__}: {e}"}
            failed.append(part)
        results[part]["elapsed_s"] = time.monotonic() - t0
        results["meta"]["duration_s"] = time.monotonic() - started
        results["meta"]["load_average_at_end"] = load_average()
        write(results)  # after every part, so an interrupted run still leaves its numbers
    log(f"wrote {RESULTS / 'bench.md'} and {RESULTS / 'bench.json'} in {time.monotonic() - started:.0f} s")
    if failed:
        log(f"failed parts: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
