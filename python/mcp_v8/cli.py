"""``mcp-v8``: ``serve`` the HTTP API (and MCP at ``/mcp``) on Waitress, serve ``mcp`` on
stdio, ``run`` one snippet locally, ``sandbox-check`` the walls around worker processes, or
``hash-token`` a token for the auth config.

Every ``serve`` and ``mcp`` flag is also read from an ``MCP_V8_*`` environment variable (the
flag wins); ``mcp-v8 serve --help`` prints the defaults in force.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable

from . import config
from .logs import JsonFormatter
from .logs import configure as configure_logs
from .redaction import redact_logs


def user_data_dir() -> Path:
    """Where ``mcp-v8 mcp`` keeps its data unless told: the user's data directory (XDG), not
    the working directory the MCP client happens to start it in."""
    base = os.environ.get("XDG_DATA_HOME") or ""
    return (Path(base) if os.path.isabs(base) else Path.home() / ".local" / "share") / "mcp-v8"


def _flag_parser(name: str) -> Callable[[str], Any]:
    """The setting's parser, with its own error message: argparse's would repeat the value
    whole, a password in a database URL included."""
    parse = config.parser_for(name)

    def parse_flag(raw: str) -> Any:
        try:
            return parse(raw)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse_flag


def _settings_parser(sub: Any, name: str, help: str, description: str) -> argparse.ArgumentParser:
    try:
        defaults = config.from_env()
    except ValueError as e:
        raise SystemExit(f"mcp-v8: {e}") from None
    if name == "mcp" and not os.environ.get(config.env_name("data_dir")):
        defaults = defaults.with_overrides(data_dir=user_data_dir())
    serve: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description=description + " Each flag can also be set with the MCP_V8_<NAME> variable.",
    )
    for f in config.FIELDS:
        shown = config.shown(f.name, getattr(defaults, f.name))
        serve.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=_flag_parser(f.name),
            default=None,
            metavar=f.name.upper(),
            help=f"{f.metadata.get('help', '')} [env {config.env_name(f.name)}; default: {shown}]",
        )
    serve.set_defaults(base=defaults)
    return serve


def _settings(args: argparse.Namespace) -> config.Settings:
    values = {f.name: getattr(args, f.name) for f in config.FIELDS}
    try:
        settings: config.Settings = args.base.with_overrides(**values)
    except ValueError as e:  # settings that contradict each other
        raise SystemExit(f"mcp-v8: {e}") from None
    return settings


REUSE_PORT_ENV = "MCP_V8_SERVE_CHILD"  # set for the processes of --processes: bind with SO_REUSEPORT


def _as_env(settings: config.Settings) -> dict[str, str]:
    """``settings`` as the MCP_V8_* variables that give them back."""
    env = {}
    for f in config.FIELDS:
        value = getattr(settings, f.name)
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, tuple):
            text = ",".join(value)
        else:
            text = str(value)
        env[config.env_name(f.name)] = text
    return env


def _serve_processes(settings: config.Settings) -> int:
    """Runs ``settings.processes`` serve processes on one port; returns when they have ended
    (all of them are stopped when one ends or this process is told to stop). They count their
    metrics in one directory (prometheus-client's multiprocess mode): a scrape, whichever of them
    answers it, adds them up. A fresh one, removed at the end, unless ``PROMETHEUS_MULTIPROC_DIR``
    names one (then emptying it before a start is the operator's to do)."""
    import shutil
    import tempfile

    from .metrics import MULTIPROCESS_ENV

    metrics_dir = os.environ.get(MULTIPROCESS_ENV) or None
    own_dir = None if metrics_dir is not None else tempfile.mkdtemp(prefix="mcp-v8-metrics-")
    env = {
        **os.environ,
        **_as_env(settings),
        config.env_name("processes"): "1",
        REUSE_PORT_ENV: "1",
        MULTIPROCESS_ENV: metrics_dir or str(own_dir),
    }
    try:
        return _run_children(settings.processes, env)
    finally:
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)


def _run_children(count: int, env: dict[str, str]) -> int:
    import subprocess

    children = [subprocess.Popen([sys.executable, "-m", "mcp_v8", "serve"], env=env) for _ in range(count)]
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    while any(child.poll() is None for child in children):
        for child in children:
            try:
                returned = child.wait(0.5)
            except subprocess.TimeoutExpired:
                continue
            if not stopping:  # one ended by itself: the others follow
                code = returned or 1
                stop()
    return code


def _reuse_port_socket(host: str, port: int) -> Any:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(1024)
    return sock


def serve(args: argparse.Namespace) -> int:
    import waitress

    from .app import Service, StartupError, create_app
    from .executions.pool import WorkerStartError

    settings = _settings(args)
    if settings.processes > 1:
        return _serve_processes(settings)
    formatter = configure_logs(settings.log_format, logging.INFO)
    redact_logs(config.secrets(settings))
    try:
        service = Service(settings).start()
    except (StartupError, WorkerStartError) as e:  # e.g. the sandbox required and not available
        print(f"mcp-v8: {e}", file=sys.stderr)
        return 2
    if isinstance(formatter, JsonFormatter):
        formatter.node = service.lease.id
    app = create_app(service=service)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    print(
        f"mcp-v8 serving on http://{settings.host}:{settings.port} "
        f"(data in {settings.data_dir}, {settings.workers} workers)",
        flush=True,
    )
    try:
        if os.environ.get(REUSE_PORT_ENV) == "1":  # one of --processes: the kernel spreads connections
            sock = _reuse_port_socket(settings.host, settings.port)
            waitress.serve(app, sockets=[sock], threads=settings.threads, ident="mcp-v8")
        else:
            waitress.serve(
                app, host=settings.host, port=settings.port, threads=settings.threads, ident="mcp-v8"
            )
    except KeyboardInterrupt:
        pass
    finally:
        service.close()
    return 0


def mcp(args: argparse.Namespace) -> int:
    from .mcp import claim_stdout, serve_stdio

    protocol = claim_stdout()  # before anything can print: stdout is the protocol's alone
    from .app import Service, StartupError
    from .auth import stdio_principal
    from .executions.pool import WorkerStartError

    settings = _settings(args)
    try:  # the local user acts for --tenant (a tenant of the auth config)
        principal = stdio_principal(settings.auth, settings.tenant)
    except ValueError as e:
        print(f"mcp-v8: {e}", file=sys.stderr)
        return 2
    formatter = configure_logs(settings.log_format, logging.WARNING, sys.stderr)
    redact_logs(config.secrets(settings))
    try:
        service = Service(settings).start()
    except (StartupError, WorkerStartError) as e:  # e.g. the sandbox required and not available
        print(f"mcp-v8: {e}", file=sys.stderr)
        return 2
    if isinstance(formatter, JsonFormatter):
        formatter.node = service.lease.id
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    ops = service.operations()
    try:
        serve_stdio(ops if principal is None else ops.for_principal(principal), sys.stdin.buffer, protocol)
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


def hash_token(args: argparse.Namespace) -> int:
    """Prints the SHA-256 of the token on standard input (its first line, without the line
    break), as an auth config's ``sha256`` holds it: the token itself is never written down."""
    import getpass

    from .auth import hash_token as sha256_hex

    # Typed at a terminal: not echoed (getpass asks on the terminal, not on stdout).
    line = getpass.getpass("token: ") if sys.stdin.isatty() else sys.stdin.readline()
    token = line[:-1] if line.endswith("\n") else line
    token = token[:-1] if token.endswith("\r") else token
    if not token.strip():
        print("mcp-v8: hash-token reads a token on standard input; it was empty", file=sys.stderr)
        return 2
    if token != token.strip():
        print(
            "mcp-v8: the token starts or ends with white space, which a bearer header drops", file=sys.stderr
        )
        return 2
    print(sha256_hex(token))
    return 0


def sandbox_check(args: argparse.Namespace) -> int:
    from .executions.probes import check, table

    results = check(args.sandbox)
    print(f"worker sandbox ({args.sandbox}):")
    print(table(results))
    held = sum(r.held for r in results)
    print(f"{held} of {len(results)} walls held")
    return 0 if held == len(results) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mcp-v8", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _settings_parser(
        sub,
        "serve",
        "serve the HTTP API and MCP at /mcp (Waitress)",
        "Serve the mcp-v8 HTTP API and MCP at /mcp.",
    )
    _settings_parser(
        sub,
        "mcp",
        "serve MCP on stdin/stdout (for MCP clients that start their server)",
        "Serve MCP on stdin/stdout; the data directory defaults to $XDG_DATA_HOME/mcp-v8 "
        "(~/.local/share/mcp-v8). host, port and threads do not apply.",
    )
    r = sub.add_parser("run", help="run JavaScript (or TypeScript) locally and print the result")
    r.add_argument("code", help="the code, or - to read it from standard input")
    r.add_argument(
        "--typescript", action="store_true", help="treat the code as TypeScript (default: detected)"
    )
    r.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    r.add_argument("--heap-limit-mb", type=int, default=256, help="heap cap in MB (default 256)")
    try:
        sandbox_default = config.from_env().sandbox
    except ValueError as e:
        raise SystemExit(f"mcp-v8: {e}") from None
    c = sub.add_parser(
        "sandbox-check",
        help="start sandboxed workers that try forbidden things; print which walls held (exit 0: all)",
    )
    c.add_argument(
        "--sandbox",
        type=_flag_parser("sandbox"),
        default=sandbox_default,
        help=f"the mode to check [env {config.env_name('sandbox')}; default: {sandbox_default}]",
    )
    sub.add_parser(
        "hash-token",
        help="read a token on standard input, print its SHA-256 (hex) for the sha256 of an auth config",
        description="Read an API token on standard input (one line) and print its SHA-256 in hex, "
        'as the "sha256" of a token in --auth-config holds it; e.g. '
        "`openssl rand -hex 32 | tee token.txt | mcp-v8 hash-token`.",
    )
    args = parser.parse_args(argv)
    commands = {
        "serve": serve,
        "mcp": mcp,
        "run": run,
        "sandbox-check": sandbox_check,
        "hash-token": hash_token,
    }
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
