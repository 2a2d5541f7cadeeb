"""Markdown report of a benchmark run (benches/results/bench.md) from its results dict."""

from __future__ import annotations

import math
from typing import Any

import targets
from engine_level import ceiling_cpu_ms, ceiling_rate


def num(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, (int, float)) and abs(value) >= 1000 and digits <= 1:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def times(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}×"


def share(part: float | None, whole: float | None) -> str:
    if part is None or not whole:
        return "n/a"
    return f"{100 * part / whole:.0f} %"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out + [""]


def _lat(d: dict[str, Any]) -> list[str]:
    return [num(d.get("median_ms"), 2), num(d.get("p95_ms"), 2), num(d.get("p99_ms"), 2)]


# -- sections ---------------------------------------------------------------------------------


def machine_section(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    meta = results["meta"]
    return [
        "## Machine",
        "",
        f"- {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, {m['os']}, Linux {m['kernel']}",
        f"- Python {m['python']}; mcp-v8's V8 {m['mcp_v8_v8']} (libnode108); node {m['node'] or 'absent'}",
        f"- commit {m['git_commit']}{' + uncommitted changes' if m['git_dirty'] else ''}; "
        f"{'quick' if meta['quick'] else 'full'} run of {num(meta['duration_s'], 0)} s, "
        f"started {meta['started_at']}",
        f"- load average at start {m['load_average_at_start']}, at end {meta.get('load_average_at_end')} "
        "(the machine is shared: compare ratios within this run, not absolute numbers across runs)",
        "",
    ]


def _met(row: dict[str, Any]) -> str:
    if row["measured"] is None:
        return "—"
    if row.get("ceiling_starved"):
        return "n/a (ceiling starved)"
    if row["met"] is None:
        return "n/a"
    if row["met"]:
        return "yes"
    checks = row.get("checks", {})
    misses = [k for k, ok in checks.items() if ok is False]
    return "**no**" + (f" ({', '.join(misses)})" if len(checks) > 1 else "")


def _headline_cells(row: dict[str, Any]) -> list[str]:
    kind = row["kind"]
    ref = row["reference"]
    if kind == "rate":
        measured = "not measured" if row["measured"] is None else f"{num(row['measured'])} exec/s"
        reference = f"{num(ref)} exec/s" if ref is not None else "not measured"
        ratio = times(row["ratio"])
    elif kind == "latency":
        measured = "not measured" if row["measured"] is None else f"{num(row['measured'], 2)} ms"
        reference = f"{num(ref, 2)} ms" if ref is not None else "not measured"
        ratio = times(row["ratio"])
    else:
        split = row.get("split")
        measured = (
            "not measured"
            if not split
            else f"{num(split['server'], 2)} / {num(split['workers'], 2)} / {num(split['loadgen'], 2)} ms"
        )
        reference = f"{num(ref, 2)} ms" if ref is not None else "not measured"
        ratio = f"workers {times(row['ratio'])}" if row["ratio"] is not None else "n/a"
    if ref is not None:
        reference += f" ({row['reference_label']})"
    return [row["figure"], measured, reference, ratio, row["target"], _met(row)]


def headline_section(results: dict[str, Any]) -> list[str]:
    """The headline table (benches/targets.py) and the throughput plot."""
    head = results.get("ratios", {}).get("headline") or targets.compute(results)
    out = ["## Headline", ""]
    out.append(
        "The service against the raw-V8 ceiling (`benches/ceiling.cc`) or the in-process engine, all "
        "measured in this run. Rates: closed-loop exec/s over the ceiling's rate at all "
        f"{head['threads']} threads. Latencies: medians; the reference column holds the in-process "
        "engine's median at 1 thread (cancel: its in-process cancel latency), the ratio is over it. CPU: "
        "CPU ms per finished execution of the server process / its workers / the load generator, against "
        "the ceiling's CPU per run at all threads (measured by the program, or estimated as threads × "
        "1000 / rate); the ratio is the workers' over it."
    )
    out.append("")
    out += table(
        ["figure", "measured", "raw V8 ceiling", "ratio", "target", "met?"],
        [_headline_cells(r) for r in head["rows"]],
    )
    shares = head.get("ceiling_cpu_share", {})
    starved = {k: v for k, v in shares.items() if v is not None and v < targets.CEILING_MIN_CPU_SHARE}
    if starved:
        text = ", ".join(f"{targets.CEILING_NAMES[k]} {100 * v:.0f} %" for k, v in starved.items())
        out += [
            f"**The raw-V8 ceiling was starved in this run**: at {head['threads']} threads it used only "
            f"{text} of its {head['threads']} CPUs (rate × its CPU per run; ~100 % on an idle machine), so "
            "other processes had the CPU while it ran. Its rates, and the exec/s ratios above, say "
            "nothing here; its CPU per run (the CPU rows) still holds.",
            "",
        ]
    plot = results.get("plot")
    if plot and plot.get("file"):
        out += [
            f"![exec/s against clients, service modes and raw-V8 ceilings]({plot['file']})",
            "",
            f"`{plot['file']}`: exec/s against clients (log 2) for the three service modes (no cancels, "
            "default HTTP threads); the raw-V8 ceilings at all threads dashed, their targets dotted.",
            "",
        ]
    elif plot:
        out += [f"Throughput plot not written: {plot.get('error', 'unknown error')}", ""]
    return out


def summary_section(results: dict[str, Any]) -> list[str]:
    r = results.get("ratios", {})
    out = ["## Summary", ""]
    for line in r.get("headlines", []):
        out.append(f"- {line}")
    return out + [""]


def engine_section(engine: dict[str, Any]) -> list[str]:
    if "error" in engine:
        return ["## 1. Engine level (in-process)", "", f"Failed: {engine['error']}", ""]
    out = ["## 1. Engine level (in-process, no HTTP)", ""]
    out.append(
        f"Closed loop, {engine['seconds']:g} s per row, trivial script `JSON.stringify([1,2].map(x => x * 2))`; "
        "the snapshot chain restores the previous heap, runs `n += 1` and snapshots again. "
        '"vs raw V8" is the rate over the C++ ceiling\'s (same libnode, same run, same thread count).'
    )
    out.append("")
    rows = []
    for kind, label, ceil in (
        ("stateless", "stateless (fresh isolate)", "fresh-isolate"),
        ("stateless_snapshot", "stateless + snapshot (what a service worker does)", "fresh-isolate"),
        ("snapshot_chain", "snapshot chain (restore + run + snapshot)", "snapshot-chain"),
    ):
        for row in engine.get(kind, []):
            ref = ceiling_rate(engine, row["threads"], ceil)
            vs = times(row["rate_per_s"] / ref) if ref else "n/a"
            rows.append([label, str(row["threads"]), num(row["rate_per_s"]), *_lat(row), vs])
    out += table(["measure", "threads", "exec/s", "median ms", "p95 ms", "p99 ms", "vs raw V8"], rows)

    ceil = engine.get("ceiling", {})
    if "by_threads" in ceil:
        rows = []
        for n, v in ceil["by_threads"].items():
            cpu = [ceiling_cpu_ms(engine, int(n), kind) for kind in ("fresh-isolate", "snapshot-chain")]
            rows.append(
                [n, num(v.get("fresh-isolate")), num(v.get("snapshot-chain"))]
                + [f"{num(ms, 2)}{'' if how == 'measured' else ' (est.)'}" for ms, how in cpu]
            )
        out.append(
            "Raw-V8 ceiling (`benches/ceiling.cc`, C++ against the same libnode, same run; CPU per run is "
            "the process's CPU time over its runs, or estimated as threads × 1000 / rate when the "
            "program did not report it):"
        )
        out.append("")
        out += table(
            [
                "threads",
                "fresh isolates/s",
                "snapshot chain/s",
                "fresh isolate CPU ms/run",
                "chain CPU ms/run",
            ],
            rows,
        )
    else:
        out += [f"Raw-V8 ceiling: {ceil.get('error', 'not measured')}", ""]

    rows = []
    for name, s in engine.get("snapshots", {}).items():
        rows.append(
            [
                name,
                f"{s['raw_bytes']:,}",
                f"{s['stored_bytes']:,}",
                num(s["stored_ratio"], 3),
                num(s["restore_median_ms"], 2),
                num(s["restore_create_median_ms"], 2),
                num(s["restore_overhead_ms"], 2),
                num(s["restore_create_overhead_ms"], 2),
            ]
        )
    out.append("Snapshots (medians; overheads are over a stateless execution of the same script, `1`):")
    out.append("")
    out += table(
        [
            "heap",
            "raw bytes",
            "stored bytes",
            "stored/raw",
            "restore + run ms",
            "restore + run + snapshot ms",
            "restore overhead ms",
            "restore + create overhead ms",
        ],
        rows,
    )
    rows = []
    for key, label in (("cancel_busy_loop", "busy loop"), ("cancel_pending_promise", "parked on a promise")):
        if key in engine:
            rows.append([label, str(engine[key]["rounds"]), *_lat(engine[key])])
    out.append("Cancel latency (`control.cancel()` to `execute()` returning):")
    out.append("")
    out += table(["script", "rounds", "median ms", "p95 ms", "p99 ms"], rows)
    rows = [
        [str(r["cap_mb"]), num(r["heap_used_mb_at_stop"]), num(r["ratio"], 2)]
        for r in engine.get("heap_overshoot", [])
    ]
    out.append("Heap cap overshoot (V8 heap in use when the cap stopped a runaway allocation):")
    out.append("")
    out += table(["cap MB", "heap in use MB", "ratio"], rows)
    return out


def run_key(r: dict[str, Any]) -> str:
    return f"{r['mode']}/{r['concurrency']}/t{r.get('http_threads')}"


# The loadgen modes as the report names them.
MODE_LABELS = {
    "stateless": "stateless",
    "stateless-no-snapshot": "stateless, no snapshot",
    "stateful": "stateful",
}


def snapshot_vs_none(service: dict[str, Any]) -> list[dict[str, Any]]:
    """Stateless rows with the default snapshot against the same rows with ``"snapshot": false``
    (no cancels, same server, same client count), by client count."""
    rows: dict[int, dict[str, dict[str, Any]]] = {}
    threads = min((r.get("http_threads", 0) for r in service.get("runs", [])), default=0)
    for r in service.get("runs", []):
        if r["cancel_fraction"] or r.get("http_threads", 0) != threads:
            continue
        if r["mode"] in ("stateless", "stateless-no-snapshot"):
            rows.setdefault(r["concurrency"], {})[r["mode"]] = r
    out = []
    for c, pair in sorted(rows.items()):
        snap, plain = pair.get("stateless"), pair.get("stateless-no-snapshot")
        if snap is None or plain is None:
            continue
        out.append(
            {
                "concurrency": c,
                "snapshot_per_s": snap["throughput_per_s"],
                "no_snapshot_per_s": plain["throughput_per_s"],
                "throughput_ratio": plain["throughput_per_s"] / snap["throughput_per_s"]
                if snap["throughput_per_s"]
                else None,
                "snapshot_median_ms": snap["latency"]["median_ms"],
                "no_snapshot_median_ms": plain["latency"]["median_ms"],
                "snapshot_workers_cpu_ms": snap["workers_cpu_ms_per_exec"],
                "no_snapshot_workers_cpu_ms": plain["workers_cpu_ms_per_exec"],
            }
        )
    return out


def _probe(r: dict[str, Any]) -> str:
    p = r.get("probe_version", {})
    return f"{num(p.get('median_ms'), 2)} / {num(p.get('p95_ms'), 2)}"


def service_section(service: dict[str, Any], ratios: dict[str, Any]) -> list[str]:
    if "error" in service:
        return ["## 2. Service level (HTTP)", "", f"Failed: {service['error']}", ""]
    out = ["## 2. Service level (HTTP, `mcp-v8 serve`)", ""]
    out.append(
        f"`mcp-v8 serve {' '.join('TMP' if a.startswith('/') else a for a in service['server_args'])}` "
        f"on 127.0.0.1, driven by `benches/loadgen.py` in its own process: closed-loop clients, each "
        "`POST /api/exec` then `GET /api/executions/{id}?wait_ms=30000` until terminal, keep-alive "
        f"connections, {service['seconds']:g} s per row. Stateless: the trivial script, each execution "
        "snapshotted (the server default); stateless, no snapshot: the same script with "
        '`"snapshot": false` (a plain isolate, nothing stored, `heap` checked to be null); stateful: '
        "each client chains its heap (`heap` = the previous result's), and the counter it returns is checked. "
        "Errors count every non-2xx (429 included), wrong result, failed execution and cancel that "
        'did not stick. "vs engine" divides by the in-process rate at all cores measured in this run '
        '(both stateless modes vs stateless, stateful vs snapshot chain); "vs engine+snap" divides '
        "stateless by the in-process stateless + snapshot rate, since the service snapshots those executions. "
        "CPU columns are CPU time per finished execution of the server process, of its workers and of "
        "the load generator (which shares the 2 cores). The probe is a `GET /api/version` every 50 ms on "
        "a side connection during the row: how long a request that needs no work waits for an HTTP "
        "thread. The last rows rerun the busiest load on a server with more HTTP threads (`--threads`) "
        "than clients, since each long-poll holds one."
    )
    out.append("")
    rows = []
    runs = service["runs"]
    for r in runs:
        if r["cancel_fraction"]:
            continue
        rr = ratios.get("service", {}).get(run_key(r), {})
        rows.append(
            [
                MODE_LABELS.get(r["mode"], r["mode"]),
                str(r["concurrency"]),
                str(r.get("http_threads", "")),
                num(r["throughput_per_s"]),
                *_lat(r["latency"]),
                str(r["errors"]) + (f" ({_kinds(r)})" if r["errors"] else ""),
                times(rr.get("vs_engine")),
                times(rr.get("vs_engine_snapshot")) if r["mode"] == "stateless" else "",
                times(rr.get("vs_ceiling")),
                num(r["server_cpu_ms_per_exec"], 2),
                num(r["workers_cpu_ms_per_exec"], 2),
                num(r["loadgen_cpu_s"] / max(1, r["finished"]) * 1e3, 2),
                _probe(r),
            ]
        )
    out += table(
        [
            "mode",
            "clients",
            "HTTP threads",
            "exec/s",
            "median ms",
            "p95 ms",
            "p99 ms",
            "errors",
            "vs engine",
            "vs engine+snap",
            "vs raw V8",
            "server CPU ms/exec",
            "workers CPU ms/exec",
            "loadgen CPU ms/exec",
            "probe median / p95 ms",
        ],
        rows,
    )
    one_request = service.get("submit_wait_runs", [])
    if one_request:
        two = {(r["mode"], r["concurrency"]): r for r in runs if not r["cancel_fraction"]}
        out.append(
            'One request per execution: the same loads with `"wait_ms": 30000` in the submit, which answers '
            "with the execution once it has ended (no separate long-poll). Same server."
        )
        out.append("")
        wait_rows = []
        for r in one_request:
            base = two.get((r["mode"], r["concurrency"]))
            wait_rows.append(
                [
                    MODE_LABELS.get(r["mode"], r["mode"]),
                    str(r["concurrency"]),
                    num(r["throughput_per_s"]),
                    *_lat(r["latency"]),
                    str(r["errors"]) + (f" ({_kinds(r)})" if r["errors"] else ""),
                    num(r["server_cpu_ms_per_exec"], 2),
                    num(base["server_cpu_ms_per_exec"], 2) if base else "n/a",
                    num(r["workers_cpu_ms_per_exec"], 2),
                    num(base["latency"]["median_ms"], 2) if base else "n/a",
                ]
            )
        out += table(
            [
                "mode",
                "clients",
                "exec/s",
                "median ms",
                "p95 ms",
                "p99 ms",
                "errors",
                "server CPU ms/exec",
                "server CPU ms/exec, submit + long-poll",
                "workers CPU ms/exec",
                "median ms, submit + long-poll",
            ],
            wait_rows,
        )
    tagged = service.get("session_tags_runs", [])
    if tagged:
        plain = {
            (r["concurrency"], r.get("http_threads")): r
            for r in runs
            if r["mode"] == "stateless" and not r["cancel_fraction"]
        }
        out.append(
            "What sessions and heap tags cost: the stateless loads again with a session (one per client) "
            "and two tags on every execution (`loadgen.py --session --tags`). Same server."
        )
        out.append("")
        tag_rows = []
        for r in tagged:
            base = plain.get((r["concurrency"], r.get("http_threads")))
            tag_rows.append(
                [
                    str(r["concurrency"]),
                    num(r["throughput_per_s"]),
                    num(r["latency"]["median_ms"], 2),
                    str(r["errors"]) + (f" ({_kinds(r)})" if r["errors"] else ""),
                    num(r["server_cpu_ms_per_exec"], 2),
                    num(base["server_cpu_ms_per_exec"], 2) if base else "n/a",
                    num(r["workers_cpu_ms_per_exec"], 2),
                    num(base["workers_cpu_ms_per_exec"], 2) if base else "n/a",
                ]
            )
        out += table(
            [
                "clients",
                "exec/s",
                "median ms",
                "errors",
                "server CPU ms/exec",
                "server CPU ms/exec, no session or tags",
                "workers CPU ms/exec",
                "workers CPU ms/exec, no session or tags",
            ],
            tag_rows,
        )
    pairs = snapshot_vs_none(service)
    if pairs:
        out.append(
            'The snapshot\'s cost: stateless rows with the default snapshot against `"snapshot": false`, '
            "same server, same client count."
        )
        out.append("")
        out += table(
            [
                "clients",
                "exec/s, snapshot",
                "exec/s, no snapshot",
                "no snapshot / snapshot",
                "median ms, snapshot",
                "median ms, no snapshot",
                "workers CPU ms/exec, snapshot",
                "workers CPU ms/exec, no snapshot",
            ],
            [
                [
                    str(p["concurrency"]),
                    num(p["snapshot_per_s"]),
                    num(p["no_snapshot_per_s"]),
                    times(p["throughput_ratio"]),
                    num(p["snapshot_median_ms"], 2),
                    num(p["no_snapshot_median_ms"], 2),
                    num(p["snapshot_workers_cpu_ms"], 2),
                    num(p["no_snapshot_workers_cpu_ms"], 2),
                ]
                for p in pairs
            ],
        )
    out.append(
        "With 10 % of executions cancelled (`POST /api/executions/{id}/cancel`, half right after the "
        "submit, half after a random 0–20 ms): exec/s counts every terminal execution; latencies are "
        "those of the completed ones; a late cancel (400, already finished) is not an error; "
        '"cancel → terminal" is from sending the cancel to the long-poll answering `cancelled`.'
    )
    out.append("")
    rows = []
    base_of = {run_key(r): r for r in runs if not r["cancel_fraction"]}
    for r in runs:
        if not r["cancel_fraction"]:
            continue
        base = base_of.get(run_key(r))
        rows.append(
            [
                MODE_LABELS.get(r["mode"], r["mode"]),
                str(r["concurrency"]),
                str(r.get("http_threads", "")),
                num(r["throughput_per_s"]),
                times(r["throughput_per_s"] / base["throughput_per_s"]) if base else "n/a",
                *_lat(r["latency"]),
                f"{r['cancels_sent']} / {r['cancels_accepted']} / {r['cancels_late']}",
                f"{num(r['cancel_to_terminal']['median_ms'], 2)} / {num(r['cancel_to_terminal']['p95_ms'], 2)}",
                str(r["errors"]) + (f" ({_kinds(r)})" if r["errors"] else ""),
                _probe(r),
            ]
        )
    out += table(
        [
            "mode",
            "clients",
            "HTTP threads",
            "exec/s",
            "vs no cancels",
            "median ms",
            "p95 ms",
            "p99 ms",
            "cancels sent / accepted / late",
            "cancel → terminal median / p95 ms",
            "errors",
            "probe median / p95 ms",
        ],
        rows,
    )
    out += _cancel_http(service.get("cancel_http"))
    disk = service.get("data_dir_bytes", {})
    if disk:
        parts = ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in sorted(disk.items()))
        out += [f"Data dir after the load runs on the first server: {parts}.", ""]
    samples = [s for r in runs for s in r.get("error_samples", [])]
    if samples:
        out += ["Error samples:", ""] + [f"- `{s}`" for s in samples[:10]] + [""]
    return out


def _cancel_http(cancel: dict[str, Any] | None) -> list[str]:
    if not cancel:
        return []
    if "error" in cancel:
        return [f"Cancel over HTTP: {cancel['error']}", ""]
    out = [
        f"Cancel over HTTP, on the same server after the load rows, one execution at a time "
        f"({cancel['rounds']} rounds per script): submit, poll the output until the worker has printed "
        f"the script's first line, wait {num(cancel['margin_ms'], 0)} ms, then from sending "
        "`POST /api/executions/{id}/cancel` to the long-poll answering `cancelled`.",
        "",
    ]
    rows = []
    for key, label in (("busy_loop", "busy loop"), ("parked_promise", "parked on a promise")):
        c = cancel.get(key)
        if not c:
            continue
        rows.append(
            [
                label,
                f"`{cancel['scripts'][key]}`".replace("\n", " "),
                f"{c['cancelled']} / {cancel['rounds']}",
                *_lat(c),
                num(c["cancel_post_ms"].get("median_ms"), 2),
                num(c["submit_to_started_ms"].get("median_ms"), 2),
            ]
        )
    out += table(
        ["script", "code", "cancelled / rounds", "median ms", "p95 ms", "p99 ms",
         "cancel POST round trip median ms", "submit → first line seen median ms"],
        rows,
    )  # fmt: skip
    errors = [e for key in ("busy_loop", "parked_promise") for e in cancel.get(key, {}).get("errors", [])]
    if errors:
        out += ["Cancel errors:", ""] + [f"- `{e}`" for e in errors[:10]] + [""]
    return out


def _kinds(r: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in r["errors_by_kind"].items())


def leak_section(leak: dict[str, Any]) -> list[str]:
    out = ["## Leak check (one worker process)", ""]
    if "error" in leak:
        return out + [f"Failed: {leak['error']}", ""]
    s, e = leak["start"], leak["end"]
    out.append(
        f"`mcp-v8 serve --workers 1`, {leak['executions']:,} executions of "
        "`console.log('leak check', 42); JSON.stringify([1,2].map(x => x * 2))` from 4 closed-loop clients "
        f"({num(leak['throughput_per_s'])}/s, {leak['errors']} errors; worker replaced during the run: "
        f"{'yes' if leak['worker_pid_replaced'] else 'no'}). VmRSS from /proc/<pid>/status, the worker "
        "found as the server's child process."
    )
    out.append("")
    rows = []
    for key, label in (("worker_kb", "worker"), ("server_kb", "server")):
        if s.get(key) and e.get(key):
            half = [x[key] for x in leak["samples"] if x["t"] >= e["t"] / 2 and x.get(key)]
            rows.append(
                [
                    label,
                    num(s[key] / 1024),
                    num(e[key] / 1024),
                    num((e[key] - s[key]) / 1024),
                    num((half[-1] - half[0]) / 1024) if len(half) >= 2 else "n/a",
                ]
            )
    out += table(["process", "RSS start MiB", "RSS end MiB", "growth MiB", "growth over 2nd half MiB"], rows)
    if leak.get("worker_kb_per_1000_second_half") is not None:
        out += [
            f"Worker growth over the second half: {num(leak['worker_kb_per_1000_second_half'])} kB per 1000 "
            "executions.",
            "",
        ]
    disk = leak.get("data_dir_bytes", {})
    if disk:
        parts = ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in sorted(disk.items()))
        out += [f"Data dir after the leak check: {parts}.", ""]
    return out


STAGE_LABELS = [
    ("post_to_recorded", "client sends POST → execution recorded (HTTP parse, Falcon, validation)"),
    (
        "around_engine",
        "queue + dispatch + IPC to/from worker + heap store + execution store + output log (recorded → terminal − engine)",
    ),
    ("engine_script", "engine: isolate + script (in-process stateless time)"),
    ("engine_snapshot", "engine: snapshot creation + seal (rest of `duration_ms`)"),
    ("terminal_to_client", "terminal status recorded → client has the long-poll answer"),
]


def profile_stages(outside: dict[str, float], engine: dict[str, float], stateful: bool) -> dict[str, float]:
    """Sequential stages of one HTTP execution (they add up to end_to_end)."""
    script = engine["stateless_ms"]
    in_worker = outside["engine_in_worker"]
    return {
        "post_to_recorded": outside["post_to_recorded"],
        "around_engine": outside["around_engine"],
        "engine_script": min(script, in_worker),
        "engine_snapshot": max(0.0, in_worker - script),
        "terminal_to_client": outside["terminal_to_client"],
    }


def profile_section(profile: dict[str, Any], ratios: dict[str, Any]) -> list[str]:
    out = ["## Where the time goes (one HTTP execution)", ""]
    if "error" in profile:
        return out + [f"Failed: {profile['error']}", ""]
    eng = profile["engine"]
    out.append(
        "`mcp-v8 serve --workers 1`, one client, executions one after another (medians). From outside: "
        "client timestamps, the record's `started_at` (stamped when the POST is recorded) and "
        "`completed_at` (when the terminal status is), and `duration_ms` (the engine call in the worker). "
        f"In-process, the same trivial script takes {num(eng['stateless_ms'], 2)} ms, "
        f"{num(eng['stateless_snapshot_ms'], 2)} ms with a snapshot, and a chain step (restore + run + "
        f"snapshot) {num(eng['chain_step_ms'], 2)} ms; the engine row is split with the stateless time."
    )
    out.append("")
    st, sf = profile["outside_stateless"], profile["outside_stateful"]
    a = profile_stages(st, eng, False)
    b = profile_stages(sf, eng, True)
    rows = []
    for key, label in STAGE_LABELS:
        rows.append(
            [
                label,
                num(a[key], 2),
                share(a[key], st["end_to_end"]),
                num(b[key], 2),
                share(b[key], sf["end_to_end"]),
            ]
        )
    rows.append(["**end to end** (client: before POST → terminal answer)", num(st["end_to_end"], 2), "100 %",
                 num(sf["end_to_end"], 2), "100 %"])  # fmt: skip
    rows.append(["(POST round trip, overlaps the first rows)", num(st["post_round_trip"], 2), "",
                 num(sf["post_round_trip"], 2), ""])  # fmt: skip
    out += table(["stage", "stateless ms", "share", "stateful ms", "share"], rows)

    runs = [r for r in (profile.get("sampled", {}), profile.get("sampled_load", {})) if r]
    measured = [r for r in runs if "ms_per_execution" in r]
    if measured:
        desc = "; ".join(
            f"{r['concurrency']} client(s) on {r['workers']} worker(s): {r['executions']} executions in "
            f"{r['seconds']:g} s ({num(r['throughput_per_s'])}/s under the profiler)"
            for r in measured
        )
        out.append(
            f"Sampling profile of the server and its workers (py-spy, {measured[0]['rate_hz']} Hz, every "
            f"thread, idle ones included) while benches/loadgen.py runs stateless clients; {desc}. "
            "Each cell is thread time per execution in that stage (summed over the threads of the "
            "group; idle time left out, waits in parentheses). The profiler slows the server: read "
            "shares and the change between columns, not absolute times."
        )
        out.append("")
        header = ["thread", "stage"]
        for r in measured:
            header += [f"ms/exec, {r['concurrency']} client(s)", "share of busy"]
        rows = []
        for group, label in (("http", "HTTP threads (waitress)"), ("dispatcher", "dispatcher threads"),
                             ("worker", "worker processes"), ("io", "waitress I/O thread")):  # fmt: skip
            per_run = [r["ms_per_execution"].get(group, {}) for r in measured]
            names: dict[str, float] = {}
            for stages in per_run:
                for k, v in stages.items():
                    if not k.startswith("idle"):
                        names[k] = max(names.get(k, 0.0), v)
            ordered = sorted(names, key=lambda k: ("waiting" in k, -names[k]))
            for stage in ordered:
                row = [label, f"({stage})" if "waiting" in stage else stage]
                for stages in per_run:
                    busy = sum(
                        v for k, v in stages.items() if not k.startswith("idle") and "waiting" not in k
                    )
                    ms = stages.get(stage)
                    row += [num(ms, 2), "" if "waiting" in stage else share(ms, busy)]
                rows.append(row)
        out += table(header, rows)
    for r in runs:
        if "error" in r:
            out += [f"Sampling profile: {r['error']}", ""]
    reads = profile.get("record_reads", {})
    if "rows" in reads:
        out.append(
            "Record reads per execution (`benches/counted_server.py`: the same service in one process "
            f"with a counter on `SQLiteExecutionStore.get`, {reads['workers']} workers, {reads['http_threads']} HTTP "
            "threads so that no request waits for a thread, stateless closed-loop clients):"
        )
        out.append("")
        rows = [
            [str(r["concurrency"]), num(r["throughput_per_s"]), num(r["record_gets_per_execution"]),
             num(r["http_requests_per_execution"]), str(r["errors"])]
            for r in reads["rows"]
        ]  # fmt: skip
        out += table(["clients", "exec/s", "`SQLiteExecutionStore.get` calls per execution", "HTTP requests per execution",
                      "errors"], rows)  # fmt: skip
    elif reads:
        out += [f"Record reads per execution: {reads.get('error')}", ""]
    slow = ratios.get("slowest_stage")
    if slow:
        out += [f"**Slowest stage**: {slow}", ""]
    return out


def peers_section(peers: dict[str, Any]) -> list[str]:
    out = ["## 3. Peers (same scripts, same run)", ""]
    if "error" in peers:
        return out + [f"Failed: {peers['error']}", ""]
    out.append(
        f"One thread, closed loop, {peers['seconds']:g} s per cell, each peer in its own child process "
        "(warm-up execution and result check outside the timings). Scripts: trivial "
        "`JSON.stringify([1,2].map(x => x * 2))`; CPU `let s = 0; for (let i = 0; i < 1e6; i++) s += i`. "
        "\"vs mcp-v8\" is the peer's rate over mcp-v8's in-process stateless rate (a fresh isolate per "
        "execution, measured before and after the peers; mean of the two). Each peer embeds its own V8, "
        "so the CPU script also compares V8 versions."
    )
    out.append("")
    rows = []
    for kind, label in peers["labels"].items():
        cells = peers["rows"].get(kind, {})
        version = next((c["version"] for c in cells.values() if "version" in c), "")
        row = [label, version]
        for script in ("trivial", "cpu"):
            c = cells.get(script, {})
            if "rate_per_s" in c and c["rate_per_s"] is not None:
                row += [num(c["rate_per_s"]), *_lat(c), times(c.get("vs_mcp_v8"))]
            else:
                row += [f"not measured: {c.get('error', '?')}", "", "", "", ""]
        rows.append(row)
    out += table(
        ["peer", "version", "trivial exec/s", "median ms", "p95 ms", "p99 ms", "vs mcp-v8",
         "CPU exec/s", "median ms", "p95 ms", "p99 ms", "vs mcp-v8"],
        rows,
    )  # fmt: skip
    refs = {s: c.get("reference_rates") for s, c in peers["rows"].get("mcp_v8", {}).items()}
    out += [f"mcp-v8 reference rates (before, after): {refs}.", ""]
    out += ["Peer installs: " + "; ".join(f"{k}: {v}" for k, v in peers["installs"].items()) + ".", ""]
    return out


def observations_section(results: dict[str, Any]) -> list[str]:
    notes = results.get("ratios", {}).get("observations", [])
    if not notes:
        return []
    return ["## Observations", "", *[f"- {n}" for n in notes], ""]


def render(results: dict[str, Any]) -> str:
    ratios = results.get("ratios", {})
    lines = ["# mcp-v8 benchmarks", ""]
    lines += machine_section(results)
    lines += headline_section(results)
    lines += summary_section(results)
    if "engine" in results:
        lines += engine_section(results["engine"])
    if "service" in results:
        lines += service_section(results["service"], ratios)
    if "leak" in results:
        lines += leak_section(results["leak"])
    if "profile" in results:
        lines += profile_section(results["profile"], ratios)
    if "peers" in results:
        lines += peers_section(results["peers"])
    if "contexts" in results:
        import contexts

        lines += contexts.render(results["contexts"])
    lines += observations_section(results)
    return "\n".join(lines).rstrip() + "\n"
