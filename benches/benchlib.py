"""Helpers shared by the benchmark parts: percentiles, timing loops, machine facts, /proc readers."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
BENCHES = ROOT / "benches"
RESULTS = BENCHES / "results"
VENV_BIN = Path(sys.executable).parent

TRIVIAL = "JSON.stringify([1,2].map(x => x * 2))"
TRIVIAL_RESULT = '"[2,4]"'
CPU = "(() => { let s = 0; for (let i = 0; i < 1e6; i++) s += i; return s; })()"
CPU_RESULT = "499999500000"


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary_ms(latencies_s: list[float]) -> dict[str, float]:
    """Median, p95, p99 and mean in milliseconds of latencies given in seconds."""
    if not latencies_s:
        return {"median_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan")}
    return {
        "median_ms": statistics.median(latencies_s) * 1e3,
        "p95_ms": pct(latencies_s, 0.95) * 1e3,
        "p99_ms": pct(latencies_s, 0.99) * 1e3,
    }


def run_threads(
    threads: int, seconds: float, step_factory: Callable[[], Callable[[], None]]
) -> dict[str, Any]:
    """Runs ``step`` in a closed loop on ``threads`` threads for ``seconds``; each thread builds its
    own step (and any state it needs) before the clock starts. Rate and latency percentiles."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            step = step_factory()
        except BaseException as e:
            errors.append(e)
            barrier.abort()
            return
        barrier.wait()
        end = time.perf_counter() + seconds
        try:
            while True:
                t0 = time.perf_counter()
                if t0 >= end:
                    break
                step()
                latencies[i].append(time.perf_counter() - t0)
        except BaseException as e:
            errors.append(e)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait()
    start = time.perf_counter()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    flat = [x for lst in latencies for x in lst]
    return {"threads": threads, "count": len(flat), "rate_per_s": len(flat) / elapsed, **summary_ms(flat)}


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def rss_kb(pid: int) -> int | None:
    """VmRSS of ``pid`` in kB, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc/<pid>/task/*/children)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out.extend(int(x) for x in (task / "children").read_text().split())
        except OSError:
            continue
    return sorted(set(out))


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` so far (from /proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _version_of(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None and not Path(argv[0]).exists():
        return None
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0] if out else None


def machine_info() -> dict[str, Any]:
    from mcp_v8 import v8_version

    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _mem_total_gib(),
        "kernel": platform.release(),
        "os": _os_name(),
        "python": platform.python_version(),
        "mcp_v8_v8": v8_version(),
        "node": _version_of(["node", "--version"]),
        "git_commit": _version_of(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "git_dirty": bool(
            _version_of(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])
        ),
        "load_average_at_start": load_average(),
    }


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_json_child(command: list[str], timeout: float) -> dict[str, Any]:
    """Runs a measuring child process whose last stdout line is a JSON object; a failure
    becomes ``{"error": ...}`` (the last stderr line) so the report keeps the row."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": "timed out"}
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit code {done.returncode}"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
