"""The headline table of a benchmark run: the service's figures against the raw-V8 ceiling (or the
in-process engine) measured in the same run, and the performance targets they are held to.

``compute(results)`` returns ``{"threads": N, "rows": [...]}`` (stored in bench.json under
``ratios.headline``); each row has ``figure``, ``kind`` (rate, latency, cpu), ``measured``,
``reference`` and ``reference_label``, ``ratio``, ``target`` (text), ``met`` (True, False or None
when a figure is missing) and ``misses`` (which part missed). A figure whose part did not run is
None: the report says "not measured".
"""

from __future__ import annotations

import math
from typing import Any

from engine_level import ceiling_cpu_ms, ceiling_rate

# The performance targets the headline table holds each figure to.
RATE_NO_SNAPSHOT = 0.5  # service, no snapshot, 4 clients: >= 0.5x the fresh-isolate ceiling
RATE_CHAIN = 0.7  # service, heap chains: >= 0.7x the snapshot-chain ceiling
LATENCY_SLACK_MS = 3.0  # 1 client, submit -> completed: <= the engine's median + 3 ms
CANCEL_MS = 5.0  # cancel -> cancelled over HTTP
SERVER_CPU_MS = 1.5  # server process CPU per execution
WORKERS_CPU_VS_CHAIN = 1.25  # workers' CPU per chained execution over the raw chain's
# Below this share of its CPUs, the ceiling was starved by other processes: its rates say nothing.
CEILING_MIN_CPU_SHARE = 0.7

# The loadgen modes of the headline rows and how the table names them.
MODE_NAMES = {
    "stateless-no-snapshot": "no snapshot",
    "stateless": "stateless with snapshot",
    "stateful": "heap chains",
}
CEILING_NAMES = {"fresh-isolate": "fresh isolate", "snapshot-chain": "snapshot chain"}


def _value(x: Any) -> float | None:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return float(x)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def service_row(
    results: dict[str, Any], mode: str, clients: int, submit_wait: bool = False
) -> dict[str, Any] | None:
    """The load row of ``mode`` at ``clients`` without cancels, on the default HTTP threads;
    with ``submit_wait``, the row whose clients submit with wait_ms (one request per execution)."""
    service = results.get("service", {})
    runs = service.get("submit_wait_runs" if submit_wait else "runs", [])
    threads = min((r.get("http_threads", 0) for r in runs), default=0)
    for r in runs:
        if (
            r["mode"] == mode
            and r["concurrency"] == clients
            and not r["cancel_fraction"]
            and r.get("http_threads", 0) == threads
        ):
            return dict(r)
    return None


def all_threads(results: dict[str, Any]) -> int:
    engine = results.get("engine", {})
    threads = engine.get("threads") or [1]
    return int(max(threads))


def ceilings(results: dict[str, Any]) -> dict[str, float | None]:
    """The raw-V8 ceiling's rates at all threads, by kind."""
    engine, n = results.get("engine", {}), all_threads(results)
    return {kind: ceiling_rate(engine, n, kind) for kind in CEILING_NAMES}


def ceiling_cpu_share(results: dict[str, Any]) -> dict[str, float | None]:
    """How much of its threads' CPUs the ceiling got at all threads, by kind: rate × CPU per run
    (as the program measured it) / 1000 / threads; about 1 on an otherwise idle machine. None when
    the program did not report its CPU."""
    engine, n = results.get("engine", {}), all_threads(results)
    out: dict[str, float | None] = {}
    for kind in CEILING_NAMES:
        rate = ceiling_rate(engine, n, kind)
        cpu, source = ceiling_cpu_ms(engine, n, kind)
        out[kind] = rate * cpu / 1000 / n if rate and cpu is not None and source == "measured" else None
    return out


def _engine_median(results: dict[str, Any], kind: str, threads: int = 1) -> float | None:
    for row in results.get("engine", {}).get(kind, []):
        if row["threads"] == threads:
            return _value(row.get("median_ms"))
    return None


def _row(
    figure: str,
    kind: str,
    measured: float | None,
    reference: float | None,
    reference_label: str,
    target: str,
    met: bool | None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "figure": figure,
        "kind": kind,
        "measured": measured,
        "reference": reference,
        "reference_label": reference_label,
        "ratio": _ratio(measured, reference),
        "target": target,
        "met": met,
        **extra,
    }


def _rate_rows(results: dict[str, Any], n: int) -> list[dict[str, Any]]:
    rows = []
    ceil = ceilings(results)
    share = ceiling_cpu_share(results)
    for mode, clients, kind, floor in (
        ("stateless-no-snapshot", 4, "fresh-isolate", RATE_NO_SNAPSHOT),
        ("stateful", 4, "snapshot-chain", RATE_CHAIN),
        ("stateful", 16, "snapshot-chain", RATE_CHAIN),
    ):
        run = service_row(results, mode, clients)
        measured = _value(run["throughput_per_s"]) if run else None
        ratio = _ratio(measured, ceil[kind])
        starved = share[kind] is not None and share[kind] < CEILING_MIN_CPU_SHARE
        rows.append(
            _row(
                f"exec/s, service {MODE_NAMES[mode]} (`{mode}`), {clients} clients",
                "rate",
                measured,
                ceil[kind],
                f"{CEILING_NAMES[kind]}, {n} threads",
                f"≥ {floor:.2f}×",
                None if ratio is None or starved else ratio >= floor,
                mode=mode,
                clients=clients,
                ceiling_cpu_share=share[kind],
                ceiling_starved=starved,
            )
        )
    return rows


def _latency_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for (mode, engine_kind, label), submit_wait in (
        (flow, submit_wait)
        for submit_wait in (False, True)
        for flow in (
            ("stateless-no-snapshot", "stateless", "engine in-process stateless, 1 thread"),
            ("stateless", "stateless_snapshot", "engine in-process stateless + snapshot, 1 thread"),
        )
    ):
        run = service_row(results, mode, 1, submit_wait)
        measured = _value(run["latency"]["median_ms"]) if run else None
        reference = _engine_median(results, engine_kind)
        met = None
        if measured is not None and reference is not None:
            met = measured <= reference + LATENCY_SLACK_MS
        rows.append(
            _row(
                f"p50 submit → completed ({'submit with wait_ms' if submit_wait else 'long-poll'}), 1 client, "
                f"{MODE_NAMES[mode]} (`{mode}`)",
                "latency",
                measured,
                reference,
                label,
                f"≤ engine + {LATENCY_SLACK_MS:g} ms"
                + (f" = {reference + LATENCY_SLACK_MS:.2f} ms" if reference is not None else ""),
                met,
                mode=mode,
                clients=1,
                submit_wait=submit_wait,
            )
        )
    return rows


def _cancel_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    http = results.get("service", {}).get("cancel_http", {})
    engine = results.get("engine", {})
    for key, engine_key, label in (
        ("busy_loop", "cancel_busy_loop", "busy loop `while (true) {}`"),
        ("parked_promise", "cancel_pending_promise", "parked promise `await new Promise(() => {})`"),
    ):
        measured = _value(http.get(key, {}).get("median_ms"))
        reference = _value(engine.get(engine_key, {}).get("median_ms"))
        rows.append(
            _row(
                f"p50 cancel → `cancelled` over HTTP, {label}",
                "latency",
                measured,
                reference,
                "engine in-process cancel",
                f"≤ {CANCEL_MS:g} ms",
                None if measured is None else measured <= CANCEL_MS,
                script=key,
            )
        )
    return rows


def _cpu_rows(results: dict[str, Any], n: int) -> list[dict[str, Any]]:
    rows = []
    engine = results.get("engine", {})
    for (mode, kind), submit_wait in (
        (flow, submit_wait)
        for submit_wait in (False, True)
        for flow in (
            ("stateless", "snapshot-chain"),
            ("stateless-no-snapshot", "fresh-isolate"),
            ("stateful", "snapshot-chain"),
        )
    ):
        run = service_row(results, mode, 4, submit_wait)
        split = None
        if run:
            split = {
                "server": _value(run.get("server_cpu_ms_per_exec")),
                "workers": _value(run.get("workers_cpu_ms_per_exec")),
                "loadgen": _value(run.get("loadgen_cpu_s", 0.0) / max(1, run["finished"]) * 1e3),
            }
        reference, source = ceiling_cpu_ms(engine, n, kind)
        server = split["server"] if split else None
        workers = split["workers"] if split else None
        targets = [f"server ≤ {SERVER_CPU_MS:g} ms"]
        checks: dict[str, bool | None] = {"server": None if server is None else server <= SERVER_CPU_MS}
        if mode == "stateful":
            targets.append(f"workers ≤ {WORKERS_CPU_VS_CHAIN:g}× the raw chain")
            workers_ratio = _ratio(workers, reference)
            checks["workers"] = None if workers_ratio is None else workers_ratio <= WORKERS_CPU_VS_CHAIN
        verdicts = list(checks.values())
        met = False if False in verdicts else (None if None in verdicts else True)
        rows.append(
            _row(
                f"CPU ms/exec server / workers / load generator, {MODE_NAMES[mode]} (`{mode}`"
                + (", submit with wait_ms" if submit_wait else "")
                + "), 4 clients",
                "cpu",
                workers,
                reference,
                f"{CEILING_NAMES[kind]}, {n} threads, {source}",
                "; ".join(targets),
                met,
                mode=mode,
                clients=4,
                submit_wait=submit_wait,
                split=split,
                checks=checks,
                reference_source=source,
            )
        )
    return rows


def compute(results: dict[str, Any]) -> dict[str, Any]:
    """The headline rows of ``results`` (a run's dict, or a saved bench.json)."""
    n = all_threads(results)
    rows = _rate_rows(results, n) + _latency_rows(results) + _cancel_rows(results) + _cpu_rows(results, n)
    return {"threads": n, "rows": rows, "ceiling_cpu_share": ceiling_cpu_share(results)}
