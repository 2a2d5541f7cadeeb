"""Part 3, peers on the same scripts in the same run: PyMiniRacer (fresh and reused), jsrun (fresh and
reused), a Node.js process per execution, a Deno process per execution, against mcp-v8's in-process
stateless rate. Every measurement runs in its own child process (``peers.py --child KIND``), so two
V8 builds never share a process and a peer that hangs or crashes costs only its row.

Peers are installed into this interpreter's environment with pip when missing (idempotent; a
failure is recorded and the row says why).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

from benchlib import (
    BENCHES,
    CPU,
    CPU_RESULT,
    TRIVIAL,
    TRIVIAL_RESULT,
    VENV_BIN,
    log,
    run_json_child,
    summary_ms,
)

SCRIPTS = {"trivial": (TRIVIAL, TRIVIAL_RESULT), "cpu": (CPU, CPU_RESULT)}

# kind -> (label, pip package it needs or None)
PEERS: dict[str, tuple[str, str | None]] = {
    "mcp_v8": ("mcp-v8 Engine, fresh isolate per execution (in-process)", None),
    "miniracer_fresh": ("PyMiniRacer, new MiniRacer per execution", "mini-racer"),
    "miniracer_reused": ("PyMiniRacer, one MiniRacer reused", "mini-racer"),
    "jsrun_fresh": ("jsrun, new Runtime per execution", "jsrun"),
    "jsrun_reused": ("jsrun, one Runtime reused", "jsrun"),
    "node": ("Node.js, `node -e` process per execution", None),
    "deno": ("Deno, `deno eval` process per execution", "deno"),
}

# pip package -> how to tell it is there without importing it
PACKAGES: dict[str, Callable[[], bool]] = {
    "mini-racer": lambda: importlib.util.find_spec("py_mini_racer") is not None,
    "jsrun": lambda: importlib.util.find_spec("jsrun") is not None,
    "deno": lambda: _deno_bin() is not None,
    "py-spy": lambda: (VENV_BIN / "py-spy").exists(),
    "matplotlib": lambda: importlib.util.find_spec("matplotlib") is not None,  # benches/plot.py
}


def _deno_bin() -> str | None:
    exe = VENV_BIN / "deno"
    if exe.exists():
        return str(exe)
    return None


def _pip() -> list[str]:
    pip = VENV_BIN / "pip"
    return [str(pip)] if pip.exists() else [sys.executable, "-m", "pip"]


def ensure_installed(packages: list[str]) -> dict[str, str]:
    """Installs the missing ``packages`` with pip; returns a status per package."""
    status: dict[str, str] = {}
    for name in packages:
        if PACKAGES[name]():
            status[name] = f"present ({_dist_version(name)})"
            continue
        log(f"pip install {name}")
        try:
            done = subprocess.run(
                [*_pip(), "install", "--quiet", "--disable-pip-version-check", name],
                capture_output=True,
                text=True,
                timeout=600,
            )
        except (OSError, subprocess.SubprocessError) as e:
            status[name] = f"not installed: {e}"
            continue
        importlib.invalidate_caches()
        if done.returncode == 0 and PACKAGES[name]():
            status[name] = f"installed now ({_dist_version(name)})"
        else:
            lines = (done.stderr or done.stdout).strip().splitlines()
            status[name] = "not installed: " + (lines[-1] if lines else f"pip exit {done.returncode}")
    return status


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


# -- child side -------------------------------------------------------------------------------


def _json_of(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value, separators=(",", ":"))


def _wrapped(code: str) -> str:
    """A program printing the JSON of ``code``'s completion value, for the process-per-run peers."""
    return f"console.log(JSON.stringify(JSON.stringify((0, eval)({json.dumps(code)}))))"


def _runner(kind: str, code: str) -> tuple[Callable[[], str], Callable[[], None], str]:
    """(run once -> JSON text of the result, close, version) for ``kind``."""
    if kind == "mcp_v8":
        from mcp_v8 import Engine, v8_version

        engine = Engine()

        def run_mcp() -> str:
            o = engine.execute(code)
            assert o.completed and o.result is not None, o.error
            return o.result

        return run_mcp, lambda: None, f"mcp-v8, V8 {v8_version()}"
    if kind.startswith("miniracer"):
        from py_mini_racer import MiniRacer

        probe = MiniRacer()
        version = f"mini-racer {_dist_version('mini-racer')}, V8 {probe.v8_version}"
        probe.close()
        if kind == "miniracer_reused":
            shared = MiniRacer()
            return lambda: _json_of(shared.eval(code)), shared.close, version

        def fresh_mr() -> str:
            with MiniRacer() as mr:
                return _json_of(mr.eval(code))

        return fresh_mr, lambda: None, version
    if kind.startswith("jsrun"):
        import jsrun

        version = f"jsrun {_dist_version('jsrun')}"
        if kind == "jsrun_reused":
            runtime = jsrun.Runtime()
            return lambda: _json_of(runtime.eval(code)), runtime.close, version

        def fresh_js() -> str:
            rt = jsrun.Runtime()
            try:
                return _json_of(rt.eval(code))
            finally:
                rt.close()

        return fresh_js, lambda: None, version
    if kind in ("node", "deno"):
        program = _wrapped(code)
        if kind == "node":
            node = shutil.which("node")
            if node is None:
                raise RuntimeError("node is not on PATH")
            argv = [node, "-e", program]
        else:
            deno = _deno_bin()
            if deno is None:
                raise RuntimeError("deno is not installed")
            argv = [deno, "eval", "--no-config", program]
        workdir = tempfile.mkdtemp(prefix="bench-peer-")
        env = {**os.environ, "DENO_DIR": os.path.join(workdir, "deno"), "DENO_NO_UPDATE_CHECK": "1"}
        version = _process_peer_version(kind, argv[0])

        def spawn() -> str:
            done = subprocess.run(argv, capture_output=True, text=True, cwd=workdir, env=env, timeout=60)
            if done.returncode != 0:
                raise RuntimeError(done.stderr.strip()[-300:])
            return str(json.loads(done.stdout))

        return spawn, lambda: shutil.rmtree(workdir, ignore_errors=True), version
    raise ValueError(kind)


def _process_peer_version(kind: str, exe: str) -> str:
    if kind == "node":
        v8 = subprocess.run([exe, "-p", "process.versions.v8"], capture_output=True, text=True).stdout
        node = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
        return f"node {node.strip()}, V8 {v8.strip()}"
    lines = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.splitlines()
    deno = lines[0].split()[1] if lines else "?"
    v8 = next((line.split()[1] for line in lines if line.startswith("v8 ")), "?")
    return f"deno {deno}, V8 {v8}"


def child(kind: str, script: str, seconds: float) -> dict[str, Any]:
    code, expected = SCRIPTS[script]
    run, close, version = _runner(kind, code)
    try:
        first = run()  # warm-up (and correctness), outside the timings
        if first != expected:
            raise RuntimeError(f"wrong result {first!r}, expected {expected!r}")
        latencies: list[float] = []
        start = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            run()
            latencies.append(time.perf_counter() - t0)
            if t0 - start >= seconds and len(latencies) >= 3:
                break
        elapsed = time.perf_counter() - start
    finally:
        close()
    return {"version": version, "count": len(latencies), "rate_per_s": len(latencies) / elapsed,
            **summary_ms(latencies)}  # fmt: skip


# -- parent side ------------------------------------------------------------------------------


def measure(kind: str, script: str, seconds: float) -> dict[str, Any]:
    command = [sys.executable, str(BENCHES / "peers.py"), "--child", kind, "--script", script]
    command += ["--seconds", str(seconds)]
    return run_json_child(command, timeout=seconds * 3 + 120)


def run(*, quick: bool) -> dict[str, Any]:
    seconds = 0.7 if quick else 3.0
    installs = ensure_installed(["mini-racer", "jsrun", "deno", "py-spy"])
    rows: dict[str, dict[str, Any]] = {}
    for script in SCRIPTS:
        log(f"peers: {script} script")
        ref_before = measure("mcp_v8", script, seconds)
        for kind, (_, package) in PEERS.items():
            if kind == "mcp_v8":
                continue
            if package is not None and not installs[package].startswith(("present", "installed")):
                rows.setdefault(kind, {})[script] = {"error": f"{package} {installs[package]}"}
                continue
            rows.setdefault(kind, {})[script] = measure(kind, script, seconds)
        ref_after = measure("mcp_v8", script, seconds)
        refs = [r["rate_per_s"] for r in (ref_before, ref_after) if "rate_per_s" in r]
        ref_rate = sum(refs) / len(refs) if refs else None
        rows.setdefault("mcp_v8", {})[script] = {
            **(ref_before if "rate_per_s" in ref_before else ref_after),
            "rate_per_s": ref_rate,
            "reference_rates": refs,
        }
        for kind in PEERS:
            row = rows[kind][script]
            if ref_rate and "rate_per_s" in row:
                row["vs_mcp_v8"] = row["rate_per_s"] / ref_rate
    return {"seconds": seconds, "installs": installs, "labels": {k: v[0] for k, v in PEERS.items()},
            "rows": rows}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", choices=sorted(PEERS), help="measure one peer (internal)")
    ap.add_argument("--script", choices=sorted(SCRIPTS), default="trivial")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.script, args.seconds)))
    else:
        print(json.dumps(run(quick=args.quick), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
