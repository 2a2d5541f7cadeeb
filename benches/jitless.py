"""What V8 without its JIT compilers (``--jitless``, ``mcp_v8.set_jitless``) costs.

The setting is process-wide, so each mode runs in a child interpreter of its own; the two
children take turns, round after round, so that both see the same machine. Each round runs
every workload a few times in each child; the report gives the medians per mode and their
ratio (jitless / JIT: above 1 is slower).

    .venv/bin/python benches/jitless.py [--rounds N]

Writes ``benches/results/jitless.json`` and ``jitless.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

# Each workload is a script and what it must answer: a bench that computes the wrong thing fast
# measures nothing.
WORKLOADS: dict[str, tuple[str, str]] = {
    "trivial": ("JSON.stringify([1,2].map(x => x * 2))", '"[2,4]"'),
    "loop 1e6": (
        "(() => { let s = 0; for (let i = 0; i < 1e6; i++) s += i; return s; })()",
        "499999500000",
    ),
    "objects + JSON 2k": (
        "(() => { const a = []; for (let i = 0; i < 2000; i++) a.push({id: i, name: 'n' + i, tags: [i % 3, i % 5]});"
        " return JSON.parse(JSON.stringify(a)).filter(o => o.tags[0] === 0).length; })()",
        "667",
    ),
    "string building 50k": (
        "(() => { let s = ''; for (let i = 0; i < 50000; i++) s += String.fromCharCode(97 + i % 26); return s.length; })()",
        "50000",
    ),
    "sort 100k numbers": (
        "(() => { const a = []; let x = 7; for (let i = 0; i < 1e5; i++) { x = (x * 48271) % 2147483647; a.push(x); }"
        " a.sort((p, q) => p - q); return a[0] <= a[1] && a[99998] <= a[99999]; })()",
        "true",
    ),
}

CHILD = r"""
import json, sys, time
import mcp_v8
mcp_v8.set_jitless(sys.argv[1] == "jitless")
engine = mcp_v8.Engine()
engine.execute("1")
workloads = json.loads(sys.argv[2])
print("ready", flush=True)
for line in sys.stdin:
    repeat = int(line)
    times = {}
    for name, (code, expected) in workloads.items():
        samples = []
        for _ in range(repeat):
            start = time.perf_counter()
            out = engine.execute(code, snapshot=False)
            samples.append(time.perf_counter() - start)
            if out.result != expected:
                raise SystemExit(f"{name}: {out.result!r} (expected {expected!r}): {out.error}")
        times[name] = samples
    # A snapshot round trip: the state of the loop workload kept and resumed.
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        made = engine.execute("var kept = Array.from({length: 1000}, (_, i) => ({i})); kept.length", snapshot=True)
        again = engine.execute("kept.length", heap=made.snapshot, snapshot=True)
        samples.append(time.perf_counter() - start)
        assert again.result == "1000", again.error
    times["snapshot + restore"] = samples
    print(json.dumps(times), flush=True)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each workload per round and mode")
    args = parser.parse_args()
    modes = ("jit", "jitless")
    children = {
        mode: subprocess.Popen(
            [sys.executable, "-c", CHILD, mode, json.dumps(WORKLOADS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for mode in modes
    }
    samples: dict[str, dict[str, list[float]]] = {mode: {} for mode in modes}
    try:
        for mode, child in children.items():
            assert child.stdout is not None and child.stdout.readline().strip() == "ready", mode
        for round_ in range(args.rounds):
            order = modes if round_ % 2 == 0 else modes[::-1]
            for mode in order:
                child = children[mode]
                assert child.stdin is not None and child.stdout is not None
                child.stdin.write(f"{args.repeat}\n")
                child.stdin.flush()
                line = child.stdout.readline()
                if not line:
                    raise SystemExit(f"the {mode} child ended")
                for name, times in json.loads(line).items():
                    samples[mode].setdefault(name, []).extend(times)
    finally:
        for child in children.values():
            child.kill()
    rows = []
    for name in samples["jit"]:
        jit = statistics.median(samples["jit"][name]) * 1e3
        jitless = statistics.median(samples["jitless"][name]) * 1e3
        rows.append({"workload": name, "jit_ms": jit, "jitless_ms": jitless, "ratio": jitless / jit})
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "jitless.json").write_text(
        json.dumps({"rounds": args.rounds, "repeat": args.repeat, "rows": rows, "samples": samples}, indent=1)
    )
    lines = [
        "# --jitless: cost per execution (in-process engine, medians)",
        "",
        f"{args.rounds} rounds x {args.repeat} runs per workload and mode, the two modes in turns.",
        "",
        "| workload | JIT ms | jitless ms | jitless / JIT |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['workload']} | {r['jit_ms']:.3f} | {r['jitless_ms']:.3f} | {r['ratio']:.2f}x |" for r in rows
    ]
    (RESULTS / "jitless.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
