"""The mcp-v8-cli client against a real server, and its embedding."""

from __future__ import annotations

import json
import os
import platform
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from mcp_v8.resources.meta import cli_binary

from .live_server import LiveServer

PLATFORM = {"x86_64": "linux-x86_64", "aarch64": "linux-aarch64"}.get(platform.machine(), "unknown")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("cli"), "--workers", "2").start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def cli(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The binary as a user gets it: downloaded from the server."""
    resp = requests.get(f"{server.url}/api/cli/{PLATFORM}", timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert f'filename="mcp-v8-cli-0.1.0-{PLATFORM}"' in resp.headers["Content-Disposition"]
    path = tmp_path_factory.mktemp("download") / "cli"
    path.write_bytes(resp.content)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def run(
    cli: Path, server: LiveServer, *args: str, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MCP_V8_")}
    environ.update({"MCP_V8_URL": server.url, **env})
    return subprocess.run(
        [str(cli), *args], input=stdin, capture_output=True, text=True, timeout=120, env=environ
    )


def test_index_reports_the_embedded_binary(server: LiveServer) -> None:
    assert cli_binary(PLATFORM) is not None
    index = requests.get(f"{server.url}/api/cli", timeout=10).json()
    by_platform = {a["platform"]: a for a in index["assets"]}
    assert by_platform[PLATFORM]["available"] is True
    assert by_platform[PLATFORM]["url"] == f"{server.url}/api/cli/{PLATFORM}"


def test_exec_wait_prints_console_then_result(cli: Path, server: LiveServer) -> None:
    proc = run(cli, server, "exec", "--wait", "console.log(1+1); 40+2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "2\n42\n"


def test_exec_wait_exit_codes(cli: Path, server: LiveServer) -> None:
    failed = run(cli, server, "exec", "--wait", "throw new Error('cli boom')")
    assert failed.returncode == 1 and "Error: cli boom" in failed.stderr
    timed_out = run(cli, server, "exec", "--wait", "--execution-timeout-secs", "1", "while (true) {}")
    assert timed_out.returncode == 4 and "timed out" in timed_out.stderr


def test_exec_from_file_and_stdin_with_heap_session_tags(
    cli: Path, server: LiveServer, tmp_path: Path
) -> None:
    script = tmp_path / "state.ts"
    script.write_text("var total: number = 5;\ntotal")
    first = run(
        cli, server, "--json", "exec", "--wait", "--file", str(script), "--session", "s", "--tag", "k=v"
    )
    assert first.returncode == 0, first.stderr
    info = json.loads(first.stdout)
    assert info["result"] == "5" and info["session"] == "s" and info["tags"] == {"k": "v"}
    second = run(cli, server, "exec", "--wait", "--heap", info["heap"], "-", stdin="total * 2")
    assert second.stdout == "10\n"


def test_exec_no_snapshot(cli: Path, server: LiveServer) -> None:
    base = json.loads(run(cli, server, "--json", "exec", "--wait", "var w = 20; w").stdout)
    assert base["status"] == "completed" and len(base["heap"]) == 64  # the server default: a snapshot
    proc = run(cli, server, "exec", "--no-snapshot", "--json", "--wait", "--heap", base["heap"],
               "[w + 1, typeof WebAssembly]")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["status"] == "completed" and info["heap"] is None
    assert json.loads(info["result"]) == [21, "object"]


def test_exec_without_wait_then_get_output_list(cli: Path, server: LiveServer) -> None:
    submitted = run(cli, server, "exec", "console.log('line one'); console.warn('careful'); 7")
    eid = submitted.stdout.strip()
    assert submitted.returncode == 0 and len(eid) == 36
    follow = run(cli, server, "executions", "output", eid, "--follow")
    assert follow.returncode == 0 and follow.stdout == "line one\n[warn] careful\n"
    got = run(cli, server, "--json", "executions", "get", eid)
    assert json.loads(got.stdout)["result"] == "7"
    listed = run(cli, server, "executions", "list", "--limit", "5")
    assert eid in listed.stdout and "completed" in listed.stdout


def test_cancel(cli: Path, server: LiveServer) -> None:
    eid = run(cli, server, "exec", "--execution-timeout-secs", "60", "while (true) {}").stdout.strip()
    cancelled = run(cli, server, "executions", "cancel", eid)
    assert cancelled.returncode == 0, cancelled.stderr
    again = run(cli, server, "executions", "cancel", eid)
    assert again.returncode == 1 and "already finished" in again.stderr
    follow = run(cli, server, "executions", "output", eid, "--follow")
    assert follow.returncode == 5


def test_clear_errors(cli: Path, server: LiveServer) -> None:
    unreachable = run(cli, server, "--url", "http://127.0.0.1:9", "version")
    assert unreachable.returncode == 3 and "cannot reach the mcp-v8 server" in unreachable.stderr
    missing = run(cli, server, "exec", "--heap", "0" * 64, "1")
    assert missing.returncode == 3 and "HTTP 404" in missing.stderr and "not found" in missing.stderr
    usage = run(cli, server, "exec")
    assert usage.returncode == 2
    version = run(cli, server, "version")
    assert version.returncode == 0 and "server 0.1.0" in version.stdout


def test_token(cli: Path, tmp_path: Path) -> None:
    secured = LiveServer(tmp_path, "--workers", "1", "--api-token", "t0ken").start()
    try:
        denied = run(cli, secured, "executions", "list")
        assert denied.returncode == 3 and "HTTP 401" in denied.stderr
        ok = run(cli, secured, "exec", "--wait", "1 + 1", MCP_V8_API_TOKEN="t0ken")
        assert ok.returncode == 0 and ok.stdout == "2\n"
    finally:
        secured.stop()
