"""``python -m mcp_v8 run CODE``: run one snippet and print its console output and result."""

from __future__ import annotations

import argparse
import sys

from .engine import Engine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mcp_v8", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run JavaScript (or TypeScript) and print the result")
    run.add_argument("code", help="the code, or - to read it from standard input")
    run.add_argument("--typescript", action="store_true", help="treat the code as TypeScript (default: detected)")
    run.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    run.add_argument("--heap-limit-mb", type=int, default=256, help="heap cap in MB (default 256)")
    args = parser.parse_args(argv)

    code = sys.stdin.read() if args.code == "-" else args.code
    outcome = Engine().execute(
        code,
        timeout=args.timeout,
        heap_limit_mb=args.heap_limit_mb,
        language="typescript" if args.typescript else "auto",
        on_console=lambda level, text: print(
            text if level == "log" else f"[{level}] {text}",
            file=sys.stderr if level in ("warn", "error") else sys.stdout,
            flush=True,
        ),
    )
    if outcome.completed:
        print(outcome.result)
        return 0
    print(outcome.error, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
