"""The mcp-v8-cli client against a real server, and its embedding."""

from __future__ import annotations

import json
import os
import platform
import re
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


# "/" and a space, as the brief of the sessions endpoints says, and what a query string must escape
SESSION = "team/alpha beta+&=%?#,"
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def exec_json(cli: Path, server: LiveServer, *args: str) -> dict[str, Any]:
    proc = run(cli, server, "--json", "exec", "--wait", *args)
    assert proc.returncode == 0, proc.stderr
    info: dict[str, Any] = json.loads(proc.stdout)
    return info


def test_sessions_list_and_show(cli: Path, server: LiveServer) -> None:
    first = exec_json(cli, server, "--session", SESSION, "--tag", "step=1", "--tag", "by=cli", "var n = 1; n")
    second = exec_json(cli, server, "--session", SESSION, "--heap", first["heap"], "--tag", "step=2", "n + 1")
    assert second["result"] == "2" and second["session"] == SESSION

    listed = run(cli, server, "sessions", "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    ours = [line for line in lines if line.startswith(SESSION + " ")]
    assert len(ours) == 1
    count, last_activity, latest_heap = ours[0][len(SESSION) :].split()
    assert count == "2" and TIMESTAMP.fullmatch(last_activity) and latest_heap == second["heap"]
    # aligned: the last-activity column starts at the same offset on every line
    assert len(lines) >= 2 and len({TIMESTAMP.search(line).start() for line in lines}) == 1  # type: ignore[union-attr]

    as_json = json.loads(run(cli, server, "--json", "sessions", "list").stdout)
    assert isinstance(as_json, list)
    (summary,) = [s for s in as_json if s["session"] == SESSION]
    assert summary["executions"] == 2 and summary["latest_heap"] == second["heap"]
    assert summary["last_activity_at"] == last_activity

    shown = run(cli, server, "sessions", "show", SESSION)
    assert shown.returncode == 0, shown.stderr
    one, two = shown.stdout.splitlines()
    assert one.split() == [first["execution_id"], "completed", "-", "->", first["heap"],
                           first["started_at"], "by=cli", "step=1"]  # fmt: skip
    assert two.split() == [second["execution_id"], "completed", first["heap"], "->", second["heap"],
                           second["started_at"], "step=2"]  # fmt: skip

    log = json.loads(run(cli, server, "--json", "sessions", "show", SESSION).stdout)
    assert [e["execution_id"] for e in log] == [first["execution_id"], second["execution_id"]]
    assert log[1]["heap_in"] == log[0]["heap"] == first["heap"] and log[0]["heap_in"] is None
    assert log[0]["tags"] == {"step": "1", "by": "cli"}

    filtered = json.loads(run(cli, server, "--json", "executions", "list", "--session", SESSION).stdout)
    assert [e["execution_id"] for e in filtered["executions"]] == [
        second["execution_id"],
        first["execution_id"],
    ]
    assert filtered["next_cursor"] is None

    # Once the session's latest heap is deleted, both listings say so beside its key.
    assert run(cli, server, "heaps", "delete", second["heap"]).returncode == 0
    ours = [
        line
        for line in run(cli, server, "sessions", "list").stdout.splitlines()
        if line.startswith(SESSION + " ")
    ]
    assert ours[0].split()[-2:] == [second["heap"], "(gone)"]
    one, two = run(cli, server, "sessions", "show", SESSION).stdout.splitlines()
    assert one.split()[4] == first["heap"] and two.split()[4:6] == [second["heap"], "(gone)"]


def test_sessions_paging(cli: Path, server: LiveServer) -> None:
    session = "paged/session one"
    ids = [exec_json(cli, server, "--session", session, f"{i}")["execution_id"] for i in range(5)]
    exec_json(cli, server, "--session", "paged/session two", "1")

    shown = run(cli, server, "sessions", "show", session, "--page-size", "2")
    assert shown.returncode == 0, shown.stderr
    assert [line.split()[0] for line in shown.stdout.splitlines()] == ids
    log = json.loads(run(cli, server, "--json", "sessions", "show", session, "--page-size", "2").stdout)
    assert [e["execution_id"] for e in log] == ids
    capped = run(cli, server, "sessions", "show", session, "--page-size", "2", "--limit", "3")
    assert [line.split()[0] for line in capped.stdout.splitlines()] == ids[:3]

    every = json.loads(run(cli, server, "--json", "sessions", "list").stdout)
    names = [s["session"] for s in every]
    assert len(names) >= 3 and {session, "paged/session two"} <= set(names)
    paged = json.loads(run(cli, server, "--json", "sessions", "list", "--page-size", "1").stdout)
    assert paged == every
    limited = json.loads(
        run(cli, server, "--json", "sessions", "list", "--page-size", "1", "--limit", "2").stdout
    )
    assert limited == every[:2]
    human = run(cli, server, "sessions", "list", "--page-size", "2", "--limit", "3")
    assert human.returncode == 0 and len(human.stdout.splitlines()) == 3

    # executions list: --limit is the total, read in pages of --page-size; next_cursor continues
    newest = json.loads(run(cli, server, "--json", "executions", "list", "--session", session,
                            "--limit", "4", "--page-size", "3").stdout)  # fmt: skip
    assert [e["execution_id"] for e in newest["executions"]] == ids[::-1][:4]
    assert newest["next_cursor"] is not None
    rest = requests.get(f"{server.url}/api/executions",
                        params={"session": session, "cursor": newest["next_cursor"]}, timeout=10).json()  # fmt: skip
    assert [e["execution_id"] for e in rest["executions"]] == ids[:1]
    listed = run(cli, server, "executions", "list", "--session", session, "--page-size", "2")
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ids[::-1]


def test_sessions_errors(cli: Path, server: LiveServer) -> None:
    missing = run(cli, server, "sessions", "show", "no such/session")
    assert missing.returncode == 3 and missing.stdout == ""
    assert "HTTP 404" in missing.stderr and "session 'no such/session' not found" in missing.stderr
    assert run(cli, server, "sessions", "list", "--page-size", "0").returncode == 2
    assert run(cli, server, "sessions", "list", "--page-size", "1001").returncode == 2
    assert run(cli, server, "sessions", "show").returncode == 2


def test_heaps_tag_show_query_delete(cli: Path, server: LiveServer) -> None:
    info = exec_json(cli, server, "--session", "heaps/cli", "--tag", "draft=yes", "var h = 1; h")
    key = info["heap"]
    assert len(key) == 64

    tagged = run(cli, server, "heaps", "tag", key, "purpose=cli-test", "stage=ready", "draft=")
    assert tagged.returncode == 0, tagged.stderr
    assert "  purpose=cli-test\n  stage=ready\n" in tagged.stdout and "draft" not in tagged.stdout
    as_json = json.loads(run(cli, server, "--json", "heaps", "tag", key, "stage=ready").stdout)
    assert as_json["heap"] == key and as_json["tags"] == {"purpose": "cli-test", "stage": "ready"}

    shown = run(cli, server, "heaps", "show", key)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"key: {key}"
    assert re.fullmatch(r"size: \d+ bytes", lines[1])
    assert lines[2] == f"created: {as_json['created_at']}"
    assert lines[3].startswith("last used: ") and TIMESTAMP.fullmatch(lines[3][len("last used: ") :])
    assert lines[4] == "session: heaps/cli"
    assert lines[5:] == ["tags:", "  purpose=cli-test", "  stage=ready"]
    shown_json = json.loads(run(cli, server, "--json", "heaps", "show", key).stdout)
    assert shown_json["tags"] == {"purpose": "cli-test", "stage": "ready"}
    assert shown_json["session"] == "heaps/cli" and shown_json["size_bytes"] > 0

    found = run(cli, server, "heaps", "query", "purpose=cli-test", "stage=ready")
    assert found.returncode == 0, found.stderr
    assert [line.split() for line in found.stdout.splitlines()] == [
        [key, str(shown_json["size_bytes"]), shown_json["created_at"], "purpose=cli-test", "stage=ready"]
    ]
    found_json = json.loads(run(cli, server, "--json", "heaps", "query", "purpose=cli-test").stdout)
    assert [h["heap"] for h in found_json] == [key]
    assert run(cli, server, "heaps", "query", "draft=yes").stdout == ""

    deleted = run(cli, server, "heaps", "delete", key)
    assert deleted.returncode == 0 and deleted.stdout == "ok\n", deleted.stderr
    gone = run(cli, server, "heaps", "show", key)
    assert gone.returncode == 3 and gone.stdout == ""
    assert "HTTP 404" in gone.stderr and "not found" in gone.stderr
    again = run(cli, server, "heaps", "delete", key)
    assert again.returncode == 3 and "not found" in again.stderr


def test_heaps_delete_of_a_heap_in_use_prints_the_conflict(cli: Path, server: LiveServer) -> None:
    key = exec_json(cli, server, "var kept = 1; kept")["heap"]
    # An execution that resumes the heap and runs until cancelled keeps it in use.
    resumed = run(cli, server, "exec", "--heap", key, "--execution-timeout-secs", "60", "while (true) {}")
    assert resumed.returncode == 0, resumed.stderr
    eid = resumed.stdout.strip()
    try:
        busy = run(cli, server, "heaps", "delete", key)
        assert busy.returncode == 3 and busy.stdout == ""
        assert "HTTP 409" in busy.stderr
        assert f"heap {key} is resumed by a queued or running execution" in busy.stderr
    finally:
        cancelled = run(cli, server, "executions", "cancel", eid)
    assert cancelled.returncode == 0, cancelled.stderr
    assert run(cli, server, "executions", "output", eid, "--follow").returncode == 5  # cancelled
    assert json.loads(run(cli, server, "--json", "heaps", "show", key).stdout)["heap"] == key  # kept
    deleted = run(cli, server, "heaps", "delete", key)
    assert deleted.returncode == 0 and deleted.stdout == "ok\n", deleted.stderr


def test_heaps_query_follows_pages(cli: Path, server: LiveServer) -> None:
    keys = [
        exec_json(cli, server, "--tag", "batch=paged-heaps", f"var p{i} = {i}; p{i}")["heap"]
        for i in range(3)
    ]
    found = json.loads(
        run(cli, server, "--json", "heaps", "query", "batch=paged-heaps", "--page-size", "1").stdout
    )
    assert sorted(h["heap"] for h in found) == sorted(set(keys))
    capped = run(cli, server, "heaps", "query", "batch=paged-heaps", "--page-size", "1", "--limit", "2")
    assert capped.returncode == 0 and len(capped.stdout.splitlines()) == 2


def test_heaps_usage_errors(cli: Path, server: LiveServer) -> None:
    assert run(cli, server, "heaps", "tag", "0" * 64, "novalue").returncode == 2
    assert run(cli, server, "heaps", "tag", "0" * 64).returncode == 2
    assert run(cli, server, "heaps", "query").returncode == 2
    assert run(cli, server, "heaps", "query", "=v").returncode == 2
    assert run(cli, server, "heaps", "show").returncode == 2
    bad_key = run(cli, server, "heaps", "show", "not-a-key")
    assert bad_key.returncode == 3 and "HTTP 400" in bad_key.stderr
