"""benches/results/throughput.png: the service's exec/s against clients for its three modes, with the
raw-V8 ceilings at all threads as dashed lines. matplotlib (Agg backend) is installed into this
interpreter's environment with pip when missing, as benches/peers.py installs peers; a failure
comes back as ``{"error": ...}`` for the report, never as an exception."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from targets import (
    CEILING_MIN_CPU_SHARE,
    CEILING_NAMES,
    MODE_NAMES,
    RATE_CHAIN,
    RATE_NO_SNAPSHOT,
    all_threads,
    ceiling_cpu_share,
    ceilings,
)

FILE = "throughput.png"
# mode -> (marker, colour); each ceiling has the colour of the mode it bounds, and its target line
STYLES = {
    "stateless-no-snapshot": ("o", "tab:blue"),
    "stateless": ("s", "tab:orange"),
    "stateful": ("^", "tab:green"),
}
CEILING_STYLES = {
    "fresh-isolate": ("tab:blue", RATE_NO_SNAPSHOT),
    "snapshot-chain": ("tab:green", RATE_CHAIN),
}
_install: dict[str, str] = {}  # one pip attempt per run


def _series(results: dict[str, Any]) -> dict[str, list[tuple[int, float]]]:
    """(clients, exec/s) of every load row without cancels on the default HTTP threads, by mode."""
    runs = results.get("service", {}).get("runs", [])
    threads = min((r.get("http_threads", 0) for r in runs), default=0)
    out: dict[str, list[tuple[int, float]]] = {}
    for r in runs:
        if r["cancel_fraction"] or r.get("http_threads", 0) != threads:
            continue
        out.setdefault(r["mode"], []).append((int(r["concurrency"]), float(r["throughput_per_s"])))
    return {mode: sorted(points) for mode, points in out.items()}


def has_rows(results: dict[str, Any]) -> bool:
    return bool(_series(results))


def _matplotlib() -> str | None:
    """None when matplotlib can be imported (installing it if needed), else why not."""
    if "status" not in _install:
        from peers import ensure_installed

        _install["status"] = ensure_installed(["matplotlib"])["matplotlib"]
    status = _install["status"]
    return status if status.startswith("not installed") else None


def write_plot(results: dict[str, Any], directory: Path) -> dict[str, Any]:
    """Draws the plot into ``directory``/throughput.png; {"file": name} or {"error": why}."""
    try:
        problem = _matplotlib()
        if problem:
            return {"error": f"matplotlib {problem}"}
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        series = _series(results)
        fig, ax = plt.subplots(figsize=(8, 6), dpi=120)
        try:
            clients: set[int] = set()
            for mode, (marker, color) in STYLES.items():
                points = series.get(mode)
                if not points:
                    continue
                xs, ys = zip(*points)
                clients.update(xs)
                ax.plot(xs, ys, marker + "-", color=color, label=f"service, {MODE_NAMES[mode]} ({mode})")
            n = all_threads(results)
            ceil = ceilings(results)
            for kind, (color, target) in CEILING_STYLES.items():
                rate = ceil[kind]
                if not rate:
                    continue
                ax.axhline(
                    rate, linestyle="--", color=color, label=f"raw V8, {CEILING_NAMES[kind]}, {n} threads"
                )
                ax.axhline(
                    rate * target,
                    linestyle=":",
                    color=color,
                    alpha=0.6,
                    label=f"target, {target:g}× the {CEILING_NAMES[kind]}",
                )
            ax.set_xscale("log", base=2)
            ticks = sorted(clients | {1, 4, 16, 64})
            ax.set_xticks(ticks)
            ax.set_xticklabels([str(t) for t in ticks])
            ax.set_xlim(min(ticks) / 1.3, max(ticks) * 1.3)
            ax.set_ylim(bottom=0)
            ax.set_xlabel("closed-loop clients")
            ax.set_ylabel("executions / s")
            meta = results.get("meta", {})
            commit = results.get("machine", {}).get("git_commit", "?")
            fig.suptitle(
                f"mcp-v8 service throughput vs raw V8 ({results.get('machine', {}).get('cpus', '?')} CPUs, "
                f"commit {commit}, {'quick' if meta.get('quick') else 'full'} run)",
                fontsize=10,
            )
            share = ceiling_cpu_share(results)
            starved = [k for k, v in share.items() if v is not None and v < CEILING_MIN_CPU_SHARE]
            if starved:
                used = ", ".join(f"{CEILING_NAMES[k]} {100 * (share[k] or 0):.0f} %" for k in starved)
                ax.set_title(
                    f"raw-V8 ceiling starved of CPU in this run (used {used} of {n} CPUs): its lines are too low",
                    fontsize=8,
                    color="tab:red",
                )
            ax.grid(True, which="major", alpha=0.3)
            ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
            fig.tight_layout()
            directory.mkdir(parents=True, exist_ok=True)
            fig.savefig(directory / FILE)
        finally:
            plt.close(fig)
        return {"file": FILE}
    except Exception as e:  # the report says why; the run goes on
        return {"error": f"{type(e).__name__}: {e}"}
