"""Engine-level benchmark alone (part 1 of benches/run.py), for a quick look at the engine.

Prints the engine section of the report and writes benches/results/engine.json and engine.md.
The full harness (service, leak check, profile, peers) is benches/run.py.

usage: python benches/engine_bench.py [--seconds S] [--threads N] [--no-ceiling] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os

from benchlib import RESULTS, machine_info
from engine_level import run
from report import engine_section


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--no-ceiling", action="store_true")
    ap.add_argument("--quick", action="store_true", help="fewer rounds for sizes, cancels and caps")
    args = ap.parse_args()
    results = {
        "machine": machine_info(),
        **run(args.seconds, args.threads, quick=args.quick, with_ceiling=not args.no_ceiling),
    }
    text = "\n".join(engine_section(results))
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "engine.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "engine.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
