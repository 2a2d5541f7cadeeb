"""Every endpoint and error case through falcon.testing, against real
worker processes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from falcon import testing

import mcp_v8
from mcp_v8.app import Service, create_app
from mcp_v8.config import Settings
from mcp_v8.storage import ToolCallRow

from .service_helpers import HOST, submit, wait, wait_for_output


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("data"),
        workers=2,
        live_workers=0,  # the live sessions' are tests/test_live_service.py's
        queue_limit=50,
        max_code_bytes=10000,
    )
    svc = Service(settings).start()
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def client(service: Service) -> testing.TestClient:
    return testing.TestClient(create_app(service=service))


def test_exec_poll_result(client: testing.TestClient) -> None:
    eid = submit(client, "console.log('hi'); [1, 2].map(x => x * 2)")
    info = wait(client, eid)
    assert info["status"] == "completed"
    assert json.loads(info["result"]) == [2, 4]
    assert info["error"] is None
    assert len(info["heap"]) == 64
    assert info["started_at"].endswith("Z") and info["completed_at"] >= info["started_at"]


def test_resume_from_heap(client: testing.TestClient) -> None:
    heap = wait(client, submit(client, "var counter = 10; counter"))["heap"]
    for expected in (11, 12, 13):
        info = wait(client, submit(client, "counter += 1", heap=heap))
        assert info["status"] == "completed", info
        assert info["result"] == str(expected)
        heap = info["heap"]


def test_submit_with_wait_answers_with_the_execution(client: testing.TestClient) -> None:
    resp = client.simulate_post(
        "/api/exec", json={"code": "var w = 40; w + 1", "wait_ms": 20000}, headers=HOST
    )
    assert resp.status_code == 200, resp.text
    done = resp.json
    assert (done["status"], done["result"], len(done["heap"])) == ("completed", "41", 64)
    # The same answer a long-poll gives, and the heap resumes like any other.
    assert wait(client, done["execution_id"]) == done
    again = client.simulate_post(
        "/api/exec", json={"code": "w += 1", "heap": done["heap"], "wait_ms": 20000}, headers=HOST
    )
    assert (again.status_code, again.json["result"]) == (200, "41")
    failed = client.simulate_post(
        "/api/exec", json={"code": "throw new Error('no')", "wait_ms": 20000}, headers=HOST
    )
    assert (failed.status_code, failed.json["status"]) == (200, "failed")
    assert "no" in failed.json["error"]


def test_the_scripts_error_is_an_object_beside_its_text(client: testing.TestClient, service: Service) -> None:
    # The message names another position: the object comes from the engine, not from the text.
    thrown = wait(client, submit(client, "let a = 1;\nthrow new RangeError('see <input>:9:9')"))
    assert thrown["status"] == "failed" and thrown["error"].startswith("RangeError: see <input>:9:9\n")
    assert thrown["js_error"] == {
        "name": "RangeError",
        "message": "see <input>:9:9",
        "stack": thrown["error"],
        "line": 2,
        "column": 7,
    }
    plain = wait(client, submit(client, "throw 5"))
    assert plain["js_error"] == {
        "name": None,
        "message": "Uncaught 5",
        "stack": "Uncaught 5",
        "line": None,
        "column": None,
    }
    timed_out = wait(client, submit(client, "while (true) {}", execution_timeout_secs=1))
    assert (
        timed_out["status"] == "timed_out"
        and timed_out["js_error"]["message"] == "execution timed out after 1 s"
    )
    done = wait(client, submit(client, "1"))
    assert done["status"] == "completed" and done["js_error"] is None
    # A failure that is not the script's has none: a heap the engine refuses to restore.
    key = done["heap"]
    path = Path(service.heaps.heaps_dir) / key[:2] / key[2:]
    path.write_bytes(b"not a heap envelope")
    refused = wait(client, submit(client, "1", heap=key))
    assert refused["status"] == "failed" and refused["error"].startswith("cannot restore heap")
    assert refused["js_error"] is None


def test_submit_with_wait_that_elapses_answers_202_running(client: testing.TestClient) -> None:
    resp = client.simulate_post(
        "/api/exec",
        json={"code": "while (true) {}", "execution_timeout_secs": 60, "wait_ms": 50},
        headers=HOST,
    )
    assert resp.status_code == 202, resp.text
    running = resp.json
    assert running["status"] == "running" and running["result"] is None and running["completed_at"] is None
    eid = running["execution_id"]
    assert client.simulate_post(f"/api/executions/{eid}/cancel", headers=HOST).json["ok"] is True
    assert wait(client, eid)["status"] == "cancelled"
    # Without wait_ms (or with 0) the answer is the id alone, as the contract has it.
    for fields in ({}, {"wait_ms": 0}, {"wait_ms": None}):
        quick = client.simulate_post("/api/exec", json={"code": "1", **fields}, headers=HOST)
        assert (quick.status_code, set(quick.json)) == (202, {"execution_id"})


# The smallest WebAssembly module (magic and version): compiling it needs WebAssembly.
WASM_PROBE = (
    "[typeof WebAssembly, typeof WebAssembly === 'object' && "
    "new WebAssembly.Module(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0])) instanceof WebAssembly.Module]"
)


def test_no_snapshot_runs_with_webassembly_and_gives_no_heap(client: testing.TestClient) -> None:
    plain = wait(client, submit(client, WASM_PROBE, snapshot=False))
    assert plain["status"] == "completed", plain
    assert json.loads(plain["result"]) == ["object", True]
    assert plain["heap"] is None
    # The server default (true here) and an explicit true or null all take a snapshot,
    # in V8's SnapshotCreator, where WebAssembly does not exist.
    for fields in ({}, {"snapshot": True}, {"snapshot": None}):
        snapped = wait(client, submit(client, WASM_PROBE, **fields))
        assert snapped["status"] == "completed", (fields, snapped)
        assert json.loads(snapped["result"]) == ["undefined", False], fields
        assert len(snapped["heap"]) == 64, fields


def test_jitless_workers_run_without_the_jit_and_share_heaps_with_jit_workers(
    service: Service, client: testing.TestClient
) -> None:
    """``--jitless`` is the workers' setting: their V8 interprets bytecode only (no
    WebAssembly even in a plain isolate) and the server says so. A process with jitless
    workers beside this one, on the same data directory, resumes the heaps JIT workers made
    and the other way round."""
    made = wait(client, submit(client, "var n = 20; function f(x) { return x * 2 } f(n)"))
    assert made["status"] == "completed" and made["heap"] is not None, made
    settings = Settings(data_dir=service.settings.data_dir, workers=1, live_workers=0, jitless=True)
    app = create_app(settings)
    c = testing.TestClient(app)
    try:
        assert c.simulate_get("/api/version", headers=HOST).json["jitless"] is True
        plain = wait(c, submit(c, WASM_PROBE, snapshot=False))
        assert plain["status"] == "completed", plain
        assert json.loads(plain["result"]) == ["undefined", False]
        resumed = wait(c, submit(c, "n += 1; f(n)", heap=made["heap"]))
        assert (resumed["status"], resumed["result"]) == ("completed", "42"), resumed
        back = wait(
            client, submit(client, "n += 1; [f(n), typeof WebAssembly]", heap=resumed["heap"], snapshot=False)
        )
        assert (back["status"], json.loads(back["result"])) == ("completed", [44, "object"]), back
        workers = []  # the worker processes of this test process's services
        for proc in Path("/proc").iterdir():
            try:
                parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                command = (proc / "cmdline").read_bytes().split(b"\0")
            except (OSError, ValueError, IndexError):
                continue
            if parent == os.getpid() and b"mcp_v8.executions.worker" in command:
                workers.append(command)
        assert sum(b"--jitless" in c for c in workers) == 1 and len(workers) == 3  # 2 + 1
    finally:
        app.service.close()


def test_no_snapshot_resumes_a_heap_and_leaves_it_resumable(client: testing.TestClient) -> None:
    base = wait(client, submit(client, "var g = 1; const kept = 'from the heap'; g"))["heap"]
    plain = wait(client, submit(client, "g += 10; [g, kept, typeof WebAssembly]", heap=base, snapshot=False))
    assert plain["status"] == "completed", plain
    assert json.loads(plain["result"]) == [11, "from the heap", "object"]
    assert plain["heap"] is None
    # What the plain execution changed is gone with it: the heap it started from is
    # still there, as it was, for executions with or without a snapshot.
    later = wait(client, submit(client, "g += 1; [g, kept]", heap=base))
    assert later["status"] == "completed", later
    assert json.loads(later["result"]) == [2, "from the heap"]
    assert len(later["heap"]) == 64 and later["heap"] != base
    again = wait(client, submit(client, "g", heap=base, snapshot=False))
    assert (again["status"], again["result"], again["heap"]) == ("completed", "1", None)
    # and the snapshot the later execution took resumes from where it left off
    assert wait(client, submit(client, "g", heap=later["heap"], snapshot=False))["result"] == "2"


def test_typescript_and_errors(client: testing.TestClient) -> None:
    ts = wait(client, submit(client, "const n: number = 41;\nn + 1"))
    assert ts["result"] == "42"
    failed = wait(client, submit(client, "let a = 1;\nthrow new TypeError('nope')"))
    assert failed["status"] == "failed"
    assert failed["error"].startswith("TypeError: nope\n    at <input>:2:")
    assert failed["heap"] is None


def test_timeout_and_heap_cap(client: testing.TestClient) -> None:
    info = wait(client, submit(client, "while (true) {}", execution_timeout_secs=1))
    assert info["status"] == "timed_out"
    capped = wait(client, submit(client, "const a = []; while (true) a.push({a})", heap_memory_max_mb=16))
    assert capped["status"] == "failed"
    assert "heap limit exceeded" in capped["error"]


def test_worker_crash_fails_only_that_execution(client: testing.TestClient) -> None:
    crashed = wait(client, submit(client, "new Array(1e9).fill(0)", heap_memory_max_mb=64), timeout=120)
    assert crashed["status"] == "failed"
    assert crashed["error"].startswith("worker crashed:")
    assert wait(client, submit(client, "'after the crash'"))["result"] == '"after the crash"'


def test_cancel_running_execution(client: testing.TestClient) -> None:
    eid = submit(client, "console.log('started'); while (true) {}", execution_timeout_secs=60)
    wait_for_output(client, eid, "started")
    resp = client.simulate_post(f"/api/executions/{eid}/cancel", headers=HOST)
    assert resp.status_code == 200 and resp.json == {"ok": True, "error": None}
    info = wait(client, eid)
    assert info["status"] == "cancelled"
    again = client.simulate_post(f"/api/executions/{eid}/cancel", headers=HOST)
    assert again.status_code == 400
    assert again.json["ok"] is False and "already finished" in again.json["error"]
    assert wait(client, eid)["status"] == "cancelled"  # never overwritten


def test_cancel_queued_execution(client: testing.TestClient) -> None:
    blockers = [
        submit(client, "console.log('busy'); while (true) {}", execution_timeout_secs=60) for _ in range(2)
    ]
    for b in blockers:
        wait_for_output(client, b, "busy")
    queued = submit(client, "'never runs'")
    info = client.simulate_get(f"/api/executions/{queued}", headers=HOST).json
    assert info["status"] == "running"  # waiting in the queue counts as running
    assert client.simulate_post(f"/api/executions/{queued}/cancel", headers=HOST).json["ok"] is True
    for b in blockers:
        client.simulate_post(f"/api/executions/{b}/cancel", headers=HOST)
    assert wait(client, queued)["status"] == "cancelled"
    assert wait(client, queued)["result"] is None


def test_cancel_unknown_is_a_cancel_result(client: testing.TestClient) -> None:
    # The contract's cancel answers are CancelResults (200, or 400 with ok false), so a
    # generated client can decode an unknown id's answer too.
    for eid in ("00000000-0000-0000-0000-000000000000", "not-an-id"):
        resp = client.simulate_post(f"/api/executions/{eid}/cancel", headers=HOST)
        assert resp.status_code == 400, resp.text
        assert resp.json == {"ok": False, "error": f"execution {eid!r} not found"}


def test_output_line_and_byte_paging(client: testing.TestClient) -> None:
    eid = submit(client, "for (let i = 0; i < 25; i++) console.log('line ' + i + ' é€😀');")
    assert wait(client, eid)["status"] == "completed"
    page = client.simulate_get(
        f"/api/executions/{eid}/output", params={"line_offset": "10", "line_limit": "5"}, headers=HOST
    ).json
    assert page["data"].splitlines() == [f"line {i} é€😀" for i in range(10, 15)]
    assert (page["start_line"], page["end_line"], page["next_line_offset"]) == (10, 15, 15)
    assert page["has_more"] is True and page["total_lines"] == 25 and page["status"] == "completed"
    full = "".join(f"line {i} é€😀\n" for i in range(25)).encode()
    assert page["total_bytes"] == len(full)
    assert full[page["start_byte"] : page["end_byte"]].decode() == page["data"]
    # byte mode: every page is whole UTF-8, and the pages add up to the whole output
    collected, offset = b"", 0
    while True:
        p = client.simulate_get(
            f"/api/executions/{eid}/output",
            params={"byte_offset": str(offset), "byte_limit": "7"},
            headers=HOST,
        ).json
        collected += p["data"].encode()
        assert p["start_byte"] == offset
        offset = p["next_byte_offset"]
        if not p["has_more"]:
            break
    assert collected == full


def test_output_readable_while_running(client: testing.TestClient) -> None:
    eid = submit(client, "console.log('early'); while (true) {}", execution_timeout_secs=60)
    data = wait_for_output(client, eid, "early")
    page = client.simulate_get(f"/api/executions/{eid}/output", headers=HOST).json
    assert page["status"] == "running" and data == "early\n"
    client.simulate_post(f"/api/executions/{eid}/cancel", headers=HOST)


def test_output_errors(client: testing.TestClient) -> None:
    eid = submit(client, "1")
    wait(client, eid)
    both = client.simulate_get(
        f"/api/executions/{eid}/output", params={"line_offset": "0", "byte_offset": "0"}, headers=HOST
    )
    assert both.status_code == 400
    negative = client.simulate_get(f"/api/executions/{eid}/output", params={"line_limit": "-1"}, headers=HOST)
    assert negative.status_code == 400
    unknown = client.simulate_get("/api/executions/not-an-id/output", headers=HOST)
    assert unknown.status_code == 404


def test_list_newest_first(client: testing.TestClient) -> None:
    ids = [submit(client, str(i)) for i in range(3)]
    for i in ids:
        wait(client, i)
    listed = client.simulate_get("/api/executions", headers=HOST).json["executions"]
    positions = [next(n for n, e in enumerate(listed) if e["execution_id"] == i) for i in ids]
    assert positions == sorted(positions, reverse=True)
    assert set(listed[0]) == {"execution_id", "status", "started_at", "completed_at"}
    assert client.simulate_get("/api/executions", params={"status": "bogus"}, headers=HOST).status_code == 400


def every_page(client: testing.TestClient, path: str, items: str, **params: str) -> list[list[Any]]:
    """The pages of a listing, following next_cursor from the first."""
    pages: list[list[Any]] = []
    cursor: str | None = None
    while True:
        resp = client.simulate_get(
            path, params={**params, **({"cursor": cursor} if cursor else {})}, headers=HOST
        )
        assert resp.status_code == 200, resp.text
        pages.append(resp.json[items])
        cursor = resp.json["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 1000


def test_executions_page_by_cursor(client: testing.TestClient) -> None:
    for i in range(5):
        wait(client, submit(client, str(i)))
    whole = client.simulate_get("/api/executions", params={"limit": "1000"}, headers=HOST).json
    assert whole["next_cursor"] is None and len(whole["executions"]) >= 5
    pages = every_page(client, "/api/executions", "executions", limit="2")
    assert all(len(p) == 2 for p in pages[:-1]) and 1 <= len(pages[-1]) <= 2
    assert [e for p in pages for e in p] == whole["executions"]
    completed = every_page(client, "/api/executions", "executions", limit="3", status="completed")
    assert [e for p in completed for e in p] == [e for e in whole["executions"] if e["status"] == "completed"]


# Any character may be in a session name, URL-encoded in a query: "/" too, and "+&=?#%".
SESSION = "svc demo/ü 🎉 +&=?#%"


def log_entry(info: dict[str, Any], heap_in: str | None) -> dict[str, Any]:
    keys = ("execution_id", "status", "heap", "tags", "started_at", "completed_at")
    stored = None if info["heap"] is None else True
    return {"heap_in": heap_in, "heap_stored": stored, **{k: info[k] for k in keys}}


def test_sessions_and_a_session_log(client: testing.TestClient) -> None:
    first = wait(client, submit(client, "var n = 1; n", session=SESSION, tags={"step": "1"}))
    second = wait(client, submit(client, "n += 1", session=SESSION, heap=first["heap"], tags={"step": "2"}))
    third = wait(client, submit(client, "n", session=SESSION, heap=second["heap"], snapshot=False))
    assert (third["result"], third["heap"], third["tags"]) == ("2", None, None)
    wait(client, submit(client, "'no session'"))  # belongs to none

    listed = client.simulate_get("/api/sessions", params={"limit": "1000"}, headers=HOST)
    assert listed.status_code == 200 and listed.json["next_cursor"] is None
    sessions = listed.json["sessions"]
    assert None not in [s["session"] for s in sessions]
    for a, b in zip(sessions, sessions[1:]):  # latest activity first, ties by name
        assert (a["last_activity_at"], b["session"]) > (b["last_activity_at"], a["session"]), (a, b)
    times = [t for info in (first, second, third) for t in (info["started_at"], info["completed_at"])]
    mine = {
        "session": SESSION,
        "executions": 3,
        "first_activity_at": first["started_at"],
        "last_activity_at": max(times),
        "latest_heap": second["heap"],  # the third produced none
        "latest_heap_stored": True,
        "live": None,  # not a live session
    }
    assert [s for s in sessions if s["session"] == SESSION] == [mine]
    assert [s for p in every_page(client, "/api/sessions", "sessions", limit="1") for s in p] == sessions

    log = client.simulate_get("/api/sessions/log", params={"session": SESSION}, headers=HOST)
    entries = [log_entry(first, None), log_entry(second, first["heap"]), log_entry(third, second["heap"])]
    assert log.status_code == 200
    assert log.json == {"session": SESSION, "executions": entries, "next_cursor": None}
    pages = every_page(client, "/api/sessions/log", "executions", session=SESSION, limit="1")
    assert pages == [[e] for e in entries]

    by_session = client.simulate_get("/api/executions", params={"session": SESSION}, headers=HOST).json
    expected_ids = [third["execution_id"], second["execution_id"], first["execution_id"]]
    assert [e["execution_id"] for e in by_session["executions"]] == expected_ids
    pages = every_page(client, "/api/executions", "executions", session=SESSION, limit="2")
    assert [[e["execution_id"] for e in p] for p in pages] == [expected_ids[:2], expected_ids[2:]]
    failed = client.simulate_get(
        "/api/executions", params={"session": SESSION, "status": "failed"}, headers=HOST
    )
    assert failed.json == {"executions": [], "next_cursor": None}

    # A deleted (or pruned) heap stays named where it was produced, and is said to be gone.
    assert client.simulate_delete(f"/api/heaps/{second['heap']}", headers=HOST).status_code == 200
    listed = client.simulate_get("/api/sessions", params={"limit": "1000"}, headers=HOST).json
    assert [s for s in listed["sessions"] if s["session"] == SESSION] == [
        {**mine, "latest_heap_stored": False}
    ]
    log = client.simulate_get("/api/sessions/log", params={"session": SESSION}, headers=HOST).json
    assert [(e["heap"], e["heap_stored"]) for e in log["executions"]] == [
        (first["heap"], True),
        (second["heap"], False),
        (None, None),
    ]


def test_session_and_paging_errors(client: testing.TestClient) -> None:
    def get(path: str, **params: Any) -> Any:
        return client.simulate_get(path, params=params, headers=HOST)

    missing = get("/api/sessions/log")
    assert (missing.status_code, missing.json) == (400, {"error": "session is required"})
    unknown = get("/api/sessions/log", session="nobody/here")
    assert unknown.status_code == 404
    assert unknown.json == {"error": "session 'nobody/here' not found: no retained execution belongs to it"}
    assert get("/api/sessions/log", session="").status_code == 404  # a name like any other
    assert get("/api/sessions/log", session="s" * 257).status_code == 400
    twice = client.simulate_get("/api/sessions/log", query_string="session=a&session=b", headers=HOST)
    assert (twice.status_code, twice.json) == (400, {"error": "session must be given once"})
    assert get("/api/sessions", session="a").status_code == 400  # not a parameter of the listing
    assert get("/api/sessions/log", session="a", status="completed").status_code == 400

    wait(client, submit(client, "1", session="errors"))
    wait(client, submit(client, "2", session="errors"))
    sessions_cursor = get("/api/sessions", limit="1").json["next_cursor"]
    log_cursor = get("/api/sessions/log", session="errors", limit="1").json["next_cursor"]
    executions_cursor = get("/api/executions", limit="1").json["next_cursor"]
    assert None not in (sessions_cursor, log_cursor, executions_cursor)
    listings: list[tuple[str, dict[str, str], str]] = [
        ("/api/executions", {}, executions_cursor),
        ("/api/sessions", {}, sessions_cursor),
        ("/api/sessions/log", {"session": "errors"}, log_cursor),
    ]
    for path, params, own in listings:
        assert get(path, **params, cursor=own).status_code == 200
        for limit in ("0", "1001", "-1", "x", "", "1.0"):
            resp = get(path, **params, limit=limit)
            assert resp.status_code == 400 and "limit" in resp.json["error"], (path, limit)
        assert get(path, **params, limit="1000").status_code == 200
        for cursor in ("", "!!!", "a=", "e30", "e31", own + "A", own[:-2], "x" * 4097):
            resp = get(path, **params, cursor=cursor)
            assert resp.status_code == 400, (path, cursor, resp.text)
            assert "cursor" in resp.json["error"], resp.json
        for other in {executions_cursor, sessions_cursor, log_cursor} - {own}:
            resp = get(path, **params, cursor=other)
            assert resp.status_code == 400 and "belongs to another listing" in resp.json["error"], path


def test_the_contract_is_served_byte_for_byte(client: testing.TestClient) -> None:
    resp = client.simulate_get("/api/openapi.json", headers=HOST)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    repository_file = Path(__file__).resolve().parents[1] / "openapi.json"
    assert resp.content == repository_file.read_bytes()
    assert resp.content == Path(mcp_v8.__file__).with_name("openapi.json").read_bytes()
    assert resp.json["paths"]["/api/openapi.json"]["get"]["operationId"] == "getOpenApi"
    assert client.simulate_get("/api/openapi.json", params={"x": "1"}, headers=HOST).status_code == 400


def test_get_unknown_execution(client: testing.TestClient) -> None:
    assert (
        client.simulate_get("/api/executions/00000000-0000-0000-0000-000000000000", headers=HOST).status_code
        == 404
    )
    assert client.simulate_get("/api/executions/..%2F..%2Fetc", headers=HOST).status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({}, 400, "code"),
        ({"code": ""}, 400, "code"),
        ({"code": "   "}, 400, "code"),
        ({"code": 5}, 400, "code"),
        ({"code": "1", "execution_timeout_secs": 0}, 400, "execution_timeout_secs"),
        ({"code": "1", "execution_timeout_secs": 10**12}, 400, "execution_timeout_secs"),
        ({"code": "1", "execution_timeout_secs": "5"}, 400, "execution_timeout_secs"),
        ({"code": "1", "execution_timeout_secs": True}, 400, "execution_timeout_secs"),
        ({"code": "1", "heap_memory_max_mb": 1}, 400, "heap_memory_max_mb"),
        ({"code": "1", "heap_memory_max_mb": 1.5}, 400, "heap_memory_max_mb"),
        ({"code": "1", "max_tool_calls": -1}, 400, "max_tool_calls must be between 0 and 1000"),
        ({"code": "1", "max_tool_calls": 1001}, 400, "max_tool_calls must be between 0 and 1000"),
        ({"code": "1", "max_tool_calls": 2.5}, 400, "max_tool_calls"),
        ({"code": "1", "max_tool_calls": "2"}, 400, "max_tool_calls"),
        ({"code": "1", "wall_timeout_secs": 0}, 400, "wall_timeout_secs"),
        ({"code": "1", "wall_timeout_secs": 901}, 400, "wall_timeout_secs must be"),
        (
            {"code": "1", "wall_timeout_secs": 5},
            400,
            "wall_timeout_secs (5) must be at least execution_timeout_secs (30)",
        ),
        (
            {"code": "1", "wall_timeout_secs": 50, "execution_timeout_secs": 60},
            400,
            "must be at least execution_timeout_secs (60)",
        ),
        ({"code": "1", "heap": "../../etc/passwd"}, 400, "heap"),
        ({"code": "1", "heap": "A" * 64}, 400, "heap"),
        ({"code": "1", "heap": "0" * 64}, 404, "not found"),
        ({"code": "1", "tags": {"a": 1}}, 400, "tags"),
        ({"code": "1", "tags": ["a"]}, 400, "tags"),
        ({"code": "1", "session": 7}, 400, "session"),
        ({"code": "1", "snapshot": "yes"}, 400, "snapshot must be true or false"),
        ({"code": "1", "snapshot": 0}, 400, "snapshot must be true or false"),
        ({"code": "1", "wait_ms": -1}, 400, "wait_ms"),
        ({"code": "1", "wait_ms": 30001}, 400, "wait_ms"),
        ({"code": "1", "wait_ms": 1.5}, 400, "wait_ms"),
        ({"code": "1", "wait_ms": "100"}, 400, "wait_ms"),
        ({"code": "1", "surprise": True}, 400, "unknown field"),
        ({"code": "x" * 10001}, 413, "limit"),
        ([1, 2], 400, "JSON object"),
    ],
)
def test_exec_validation(client: testing.TestClient, body: object, status: int, fragment: str) -> None:
    before = len(
        client.simulate_get("/api/executions", params={"limit": "1000"}, headers=HOST).json["executions"]
    )
    resp = client.simulate_post("/api/exec", json=body, headers=HOST)
    assert resp.status_code == status, resp.text
    assert fragment in resp.json["error"]
    after = len(
        client.simulate_get("/api/executions", params={"limit": "1000"}, headers=HOST).json["executions"]
    )
    assert after == before, "a refused request must not create an execution"


def test_exec_bad_bodies(client: testing.TestClient) -> None:
    assert client.simulate_post("/api/exec", body="{not json", headers=HOST).status_code == 400
    assert client.simulate_post("/api/exec", body="", headers=HOST).status_code == 400
    assert client.simulate_post("/api/exec", body=b"\xff\xfe", headers=HOST).status_code == 400
    form = client.simulate_post(
        "/api/exec",
        body='{"code": "1"}',
        headers={**HOST, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 202  # curl -d sends a form type; the body is JSON all the same
    huge = client.simulate_post("/api/exec", body="[" + "1," * (2 << 20) + "1]", headers=HOST)
    assert huge.status_code == 413


def test_tags_and_session_recorded(client: testing.TestClient, service: Service) -> None:
    info = wait(client, submit(client, "var t = 1", tags={"owner": "me"}, session="s-1"))
    assert info["tags"] == {"owner": "me"} and info["session"] == "s-1"
    # The heap is indexed with the request's session and tags (the worker returns only its bytes).
    meta = service.catalogue.meta(info["heap"])
    assert meta is not None and meta.session == "s-1" and meta.tags == {"owner": "me"}
    heap = client.simulate_get(f"/api/heaps/{info['heap']}", headers=HOST).json
    assert (heap["session"], heap["tags"]) == ("s-1", {"owner": "me"})


def test_server_default_without_snapshots(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, workers=1, snapshot_default=False))
    c = testing.TestClient(app)
    try:
        for fields in ({}, {"snapshot": None}):
            plain = wait(c, submit(c, WASM_PROBE, **fields))
            assert plain["status"] == "completed", (fields, plain)
            assert json.loads(plain["result"]) == ["object", True], fields
            assert plain["heap"] is None, fields
        assert list(app.service.heaps.keys()) == []  # nothing was stored either
        snapped = wait(c, submit(c, "var v = 'kept'; " + WASM_PROBE, snapshot=True))
        assert snapped["status"] == "completed", snapped
        assert json.loads(snapped["result"]) == ["undefined", False]
        assert list(app.service.heaps.keys()) == [snapped["heap"]]
        resumed = wait(c, submit(c, "v", heap=snapped["heap"]))
        assert (resumed["result"], resumed["heap"]) == ('"kept"', None)
    finally:
        app.service.close()


def test_version_and_cli(client: testing.TestClient) -> None:
    version = client.simulate_get("/api/version", headers=HOST).json
    assert version["version"] == "0.1.0" and version["v8"].startswith("10.2.")
    assert version["jitless"] is False  # the default: V8 with its JIT compilers
    index = client.simulate_get("/api/cli", headers={"Host": "example.test:8080"}).status_code
    assert index == 400  # not in the Host allowlist
    index = client.simulate_get("/api/cli", headers=HOST).json
    assert {a["platform"] for a in index["assets"]} == {"linux-x86_64", "linux-aarch64", "macos-aarch64"}
    for asset in index["assets"]:
        assert asset["url"] == f"http://127.0.0.1:3000/api/cli/{asset['platform']}"
        if not asset["available"]:
            assert client.simulate_get(f"/api/cli/{asset['platform']}", headers=HOST).status_code == 404
    assert client.simulate_get("/api/cli/windows-x86", headers=HOST).status_code == 404


def test_token_required_when_configured(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, workers=1, api_token="s3cret")
    app = create_app(settings)
    try:
        c = testing.TestClient(app)
        assert c.simulate_get("/api/version", headers=HOST).status_code == 200
        # The contract is public too: it is in the package, and tells a client a token may be needed.
        assert c.simulate_get("/api/openapi.json", headers=HOST).status_code == 200
        for path in ("/api/sessions", "/api/sessions/log?session=s"):
            assert c.simulate_get(path, headers=HOST).status_code == 401
        denied = c.simulate_get("/api/executions", headers=HOST)
        assert denied.status_code == 401 and denied.json == {"error": "a valid bearer token is required"}
        wrong = c.simulate_get("/api/executions", headers={**HOST, "Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = c.simulate_get("/api/executions", headers={**HOST, "Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
    finally:
        app.service.close()


def test_queue_full_is_429(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, workers=1, queue_limit=1))
    c = testing.TestClient(app)
    try:
        first = submit(c, "console.log('busy'); while (true) {}", execution_timeout_secs=60)
        wait_for_output(c, first, "busy")
        submit(c, "1")  # waits in the queue
        full = c.simulate_post("/api/exec", json={"code": "2"}, headers=HOST)
        assert full.status_code == 429
        assert full.headers["Retry-After"] == "1" and "queue is full" in full.json["error"]
        c.simulate_post(f"/api/executions/{first}/cancel", headers=HOST)
    finally:
        app.service.close()


def test_restart_keeps_records_and_fails_interrupted(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, workers=1)
    app = create_app(settings)
    c = testing.TestClient(app)
    done = submit(c, "console.log('kept'); 'done'")
    wait(c, done)
    app.service.output.create("11111111-1111-1111-1111-111111111111")
    app.service.executions.create(
        "11111111-1111-1111-1111-111111111111", session=None, tags=None, heap_in=None, code_bytes=1
    )
    app.service.close()

    app2 = create_app(settings)
    c2 = testing.TestClient(app2)
    try:
        info = c2.simulate_get(f"/api/executions/{done}", headers=HOST).json
        assert info["status"] == "completed" and info["result"] == '"done"'
        assert c2.simulate_get(f"/api/executions/{done}/output", headers=HOST).json["data"] == "kept\n"
        lost = c2.simulate_get("/api/executions/11111111-1111-1111-1111-111111111111", headers=HOST).json
        assert lost["status"] == "failed" and "server stopped" in lost["error"]
    finally:
        app2.service.close()


def test_submit_after_close_is_503(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, workers=1))
    c = testing.TestClient(app)
    app.service.manager.close()
    resp = c.simulate_post("/api/exec", json={"code": "1"}, headers=HOST)
    assert resp.status_code == 503 and "shutting down" in resp.json["error"]
    assert resp.headers["Retry-After"] == "5"
    app.service.close()


def test_retention_prunes_finished_executions(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, workers=1, retention_max_count=3))
    c = testing.TestClient(app)
    try:
        # Sessions come from the retained executions: pruning takes the executions out of their
        # session's log and count, and a session whose executions are all pruned is gone.
        fields: list[dict[str, Any]] = [
            {"session": "gone"},
            {"session": "gone"},
            {"session": "kept"},
            {"session": "kept"},
            {"session": "kept", "snapshot": False},
        ]
        ids = [submit(c, f"console.log({i}); {i}", **f) for i, f in enumerate(fields)]
        infos = [wait(c, i) for i in ids]
        # Tool call records go with their execution (written here as a run's would be).
        calls = app.service.stores.tool_calls
        for i in (ids[0], ids[4]):
            calls.add(i, [ToolCallRow(1, "calc", "add", 13, "ok", None, "2026-01-01T00:00:00.000Z", 1.0)])
        assert app.service.prune() == 2
        assert calls.list(ids[0]) == [] and len(calls.list(ids[4])) == 1
        listed = [
            e["execution_id"] for e in c.simulate_get("/api/executions", headers=HOST).json["executions"]
        ]
        assert listed == ids[:1:-1]  # the three newest, newest first
        assert c.simulate_get(f"/api/executions/{ids[0]}/output", headers=HOST).status_code == 404
        sessions = c.simulate_get("/api/sessions", headers=HOST).json["sessions"]
        assert [(s["session"], s["executions"], s["latest_heap"]) for s in sessions] == [
            ("kept", 3, infos[3]["heap"])  # the last one produced no heap
        ]
        assert (
            c.simulate_get("/api/sessions/log", params={"session": "gone"}, headers=HOST).status_code == 404
        )
        log = c.simulate_get("/api/sessions/log", params={"session": "kept"}, headers=HOST).json
        assert [e["execution_id"] for e in log["executions"]] == ids[2:]
    finally:
        app.service.close()


def test_create_app_refuses_settings_that_contradict_its_service(service: Service) -> None:
    with pytest.raises(ValueError, match="settings differ"):
        create_app(service.settings.with_overrides(max_heap_mb=9), service=service)
    # The same settings, or none, are fine.
    assert create_app(service.settings, service=service).service is service
