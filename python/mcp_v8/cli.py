"""``mcp-v8``: ``serve`` the HTTP API on Waitress, or ``run`` one snippet locally.

Every ``serve`` flag is also read from an ``MCP_V8_*`` environment variable (the flag
wins); ``mcp-v8 serve --help`` prints the defaults in force.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any

from . import config


def _serve_parser(sub: Any) -> argparse.ArgumentParser:
    try:
        defaults = config.from_env()
    except ValueError as e:
        raise SystemExit(f"mcp-v8: {e}") from None
    serve: argparse.ArgumentParser = sub.add_parser(
        "serve",
        help="serve the HTTP API (Waitress)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Serve the mcp-v8 HTTP API. Each flag can also be set with the MCP_V8_<NAME> variable.",
    )
    for f in config.FIELDS:
        default = getattr(defaults, f.name)
        shown = ",".join(default) if isinstance(default, tuple) else default
        if f.name == "api_token" and default:
            shown = "(set)"
        serve.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=config.parser_for(f.name),
            default=None,
            metavar=f.name.upper(),
            help=f"{f.metadata.get('help', '')} [env {config.env_name(f.name)}; default: {shown}]",
        )
    serve.set_defaults(base=defaults)
    return serve


def serve(args: argparse.Namespace) -> int:
    import waitress

    from .app import DataDirError, Service, create_app

    values = {f.name: getattr(args, f.name) for f in config.FIELDS}
    settings = args.base.with_overrides(**values)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        service = Service(settings).start()
    except DataDirError as e:
        print(f"mcp-v8: {e}", file=sys.stderr)
        return 2
    app = create_app(service=service)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    print(
        f"mcp-v8 serving on http://{settings.host}:{settings.port} "
        f"(data in {settings.data_dir}, {settings.workers} workers)",
        flush=True,
    )
    try:
        waitress.serve(app, host=settings.host, port=settings.port, threads=settings.threads, ident="mcp-v8")
    except KeyboardInterrupt:
        pass
    finally:
        service.close()
    return 0


def run(args: argparse.Namespace) -> int:
    from .engine import Engine

    code = sys.stdin.read() if args.code == "-" else args.code

    def on_console(level: str, text: str) -> None:
        stream = sys.stderr if level in ("warn", "error") else sys.stdout
        print(text if level == "log" else f"[{level}] {text}", file=stream, flush=True)

    outcome = Engine().execute(
        code,
        timeout=args.timeout,
        heap_limit_mb=args.heap_limit_mb,
        language="typescript" if args.typescript else "auto",
        on_console=on_console,
    )
    if outcome.completed:
        print(outcome.result)
        return 0
    print(outcome.error, file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mcp-v8", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    r = sub.add_parser("run", help="run JavaScript (or TypeScript) locally and print the result")
    r.add_argument("code", help="the code, or - to read it from standard input")
    r.add_argument(
        "--typescript", action="store_true", help="treat the code as TypeScript (default: detected)"
    )
    r.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    r.add_argument("--heap-limit-mb", type=int, default=256, help="heap cap in MB (default 256)")
    args = parser.parse_args(argv)
    return serve(args) if args.command == "serve" else run(args)


if __name__ == "__main__":
    sys.exit(main())
