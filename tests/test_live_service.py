"""Live sessions through the HTTP API, against real worker processes: POST /api/exec with
``live``, the session's state kept in a live worker, GET /api/sessions, POST and DELETE
/api/sessions/snapshot, eviction (idle, room, shutdown) and a killed live worker."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from falcon import testing

from mcp_v8.app import Service, create_app
from mcp_v8.config import Settings

from .interleavings import HANG
from .service_helpers import HOST, submit, wait, wait_for_output


def make(data_dir: Path, **settings: Any) -> Service:
    values: dict[str, Any] = {"workers": 1, "live_workers": 1, "queue_limit": 200, **settings}
    return Service(Settings(data_dir=data_dir, **values)).start()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = make(tmp_path)
    yield svc
    svc.close()


@pytest.fixture
def client(service: Service) -> testing.TestClient:
    return testing.TestClient(create_app(service=service))


def step(client: testing.TestClient, session: str, code: str, **fields: Any) -> dict[str, Any]:
    return wait(client, submit(client, code, session=session, live=True, **fields))


def live_of(client: testing.TestClient, session: str) -> Any:
    resp = client.simulate_get("/api/sessions", headers=HOST)
    assert resp.status_code == 200, resp.text
    return next(s for s in resp.json["sessions"] if s["session"] == session)["live"]


def log_of(client: testing.TestClient, session: str) -> list[dict[str, Any]]:
    resp = client.simulate_get("/api/sessions/log", params={"session": session}, headers=HOST)
    assert resp.status_code == 200, resp.text
    return list(resp.json["executions"])


def test_a_live_sessions_steps_keep_its_globals_without_heaps(client: testing.TestClient) -> None:
    first = step(client, "s", "let n = 1; const seen = [n]; n")
    assert (first["status"], first["result"], first["heap"]) == ("completed", "1", None), first
    for i in range(2, 6):
        info = step(client, "s", "n += 1; seen.push(n); n")
        assert (info["result"], info["heap"]) == (str(i), None), info
    assert step(client, "s", "let n = 'again'; [n, seen.length, typeof WebAssembly]")["result"] == (
        '["again",5,"undefined"]'
    )
    live = live_of(client, "s")
    assert live["worker"] == 0 and live["since"].endswith("Z")
    # A step that asks for a snapshot returns its heap, and the context goes on from it.
    made = step(client, "s", "seen.length", snapshot=True)
    assert made["result"] == "5" and made["heap"] is not None
    assert step(client, "s", "seen.push(0); seen.length")["result"] == "6"
    # The heap is a heap like any: a one-off execution resumes it.
    assert wait(client, submit(client, "seen.length", heap=made["heap"]))["result"] == "5"


def test_snapshot_and_end_record_the_heap_and_the_next_step_resumes_from_it(
    client: testing.TestClient,
) -> None:
    step(client, "s", "var items = ['a']")
    resp = client.simulate_post("/api/sessions/snapshot", params={"session": "s"}, headers=HOST)
    assert resp.status_code == 200, resp.text
    heap = resp.json["heap"]
    assert resp.json == {"session": "s", "heap": heap} and heap
    again = client.simulate_post("/api/sessions/snapshot", params={"session": "s"}, headers=HOST)
    assert again.json["heap"] == heap  # nothing changed: no new heap
    step(client, "s", "items.push('b')")
    ended = client.simulate_delete("/api/sessions/snapshot", params={"session": "s"}, headers=HOST)
    assert ended.status_code == 200 and ended.json["heap"] not in (None, heap), ended.text
    assert live_of(client, "s") is None
    log = log_of(client, "s")
    assert [e["tags"] for e in log if e["heap"] is not None] == [
        {"live_snapshot": "requested"},
        {"live_snapshot": "closed"},
    ]
    # Transparently resumed: the next step starts from the heap the end made.
    assert json.loads(step(client, "s", "items")["result"]) == ["a", "b"]
    assert live_of(client, "s") is not None
    # Ended without a snapshot: what it did since is gone, and said so by the answer's null heap.
    step(client, "s", "items.push('dropped')")
    dropped = client.simulate_delete(
        "/api/sessions/snapshot", params={"session": "s", "snapshot": "false"}, headers=HOST
    )
    assert dropped.status_code == 200 and dropped.json["heap"] is None, dropped.text
    assert json.loads(step(client, "s", "items")["result"]) == ["a", "b"]


def test_live_requests_that_contradict_the_session_are_refused(client: testing.TestClient) -> None:
    base = wait(client, submit(client, "var from_heap = true"))["heap"]
    first = step(client, "s", "typeof from_heap", heap=base)
    assert first["result"] == '"boolean"'  # the first step starts from the heap it gives
    resp = client.simulate_post(
        "/api/exec", json={"code": "1", "session": "s", "live": True, "heap": base}, headers=HOST
    )
    assert resp.status_code == 409 and "'s' is already live" in resp.json["error"], resp.text
    resp = client.simulate_post("/api/exec", json={"code": "1", "live": True}, headers=HOST)
    assert resp.status_code == 400 and "live needs a session" in resp.json["error"]
    for method in (client.simulate_post, client.simulate_delete):
        resp = method("/api/sessions/snapshot", params={"session": "nobody"}, headers=HOST)
        assert resp.status_code == 404 and "not live" in resp.json["error"], resp.text
    resp = client.simulate_post(
        "/api/sessions/snapshot", params={"session": "s", "snapshot": "false"}, headers=HOST
    )
    assert resp.status_code == 400
    resp = client.simulate_delete(
        "/api/sessions/snapshot", params={"session": "s", "snapshot": "no"}, headers=HOST
    )
    assert resp.status_code == 400 and "snapshot must be true or false" in resp.json["error"]


def test_steps_of_one_session_run_in_submission_order(client: testing.TestClient) -> None:
    step(client, "s", "var order = []")
    ids = [submit(client, f"order.push({i}); {i}", session="s", live=True) for i in range(30)]
    assert [wait(client, i)["result"] for i in ids] == [str(i) for i in range(30)]
    assert json.loads(step(client, "s", "order")["result"]) == list(range(30))


def test_a_cancelled_or_timed_out_step_leaves_the_context_usable(client: testing.TestClient) -> None:
    step(client, "s", "var kept = 'yes'")
    assert step(client, "s", "while (true) {}", execution_timeout_secs=1)["status"] == "timed_out"
    eid = submit(client, "console.log('started'); while (true) {}", session="s", live=True)
    queued = submit(client, "kept + '!'", session="s", live=True)
    wait_for_output(client, eid, "started")
    cancelled = client.simulate_post(f"/api/executions/{queued}/cancel", headers=HOST)
    assert cancelled.json["ok"] is True
    assert wait(client, queued)["status"] == "cancelled"  # cancelled in its session's queue
    assert client.simulate_post(f"/api/executions/{eid}/cancel", headers=HOST).json["ok"] is True
    assert wait(client, eid)["status"] == "cancelled"  # cancelled in the live worker
    assert step(client, "s", "kept")["result"] == '"yes"'


def test_a_killed_live_worker_makes_the_next_step_say_what_was_lost(
    service: Service, client: testing.TestClient
) -> None:
    made = step(client, "s", "var count = 1; count", snapshot=True)
    step(client, "s", "count += 10")  # after the snapshot: lost with the worker
    slot = service.manager.live.slots[0]
    process = slot._process
    assert process is not None
    os.kill(process.pid, signal.SIGKILL)
    process.wait(HANG)
    lost = step(client, "s", "count")
    assert lost["status"] == "failed", lost
    assert "was lost" in lost["error"] and f"resumes from heap {made['heap']}" in lost["error"], lost
    assert step(client, "s", "count")["result"] == "1"  # resumed from that heap, as it said


def test_a_step_over_its_heap_cap_ends_the_context_and_says_where_the_next_resumes(
    client: testing.TestClient,
) -> None:
    first = step(client, "s", "var small = 1", heap_memory_max_mb=16)
    assert first["status"] == "completed"
    grown = step(client, "s", "const a = []; while (true) a.push(new Array(1e5).fill(1))")
    assert grown["status"] == "failed" and "resumes from the base context" in grown["error"], grown
    assert step(client, "s", "typeof small")["result"] == '"undefined"'


def test_an_idle_session_is_snapshotted_and_ended_then_resumed(tmp_path: Path) -> None:
    service = make(tmp_path, live_idle_secs=1)
    try:
        client = testing.TestClient(create_app(service=service))
        step(client, "s", "var kept = [1, 2]")
        deadline = time.monotonic() + HANG
        while live_of(client, "s") is not None:
            assert time.monotonic() < deadline, "the idle session was never ended"
            time.sleep(0.1)
        assert [e["tags"] for e in log_of(client, "s") if e["heap"]] == [{"live_snapshot": "idle"}]
        assert step(client, "s", "kept.length")["result"] == "2"
    finally:
        service.close()


def test_a_changing_session_is_snapshotted_while_it_changes(tmp_path: Path) -> None:
    service = make(tmp_path, live_snapshot_secs=1)
    try:
        client = testing.TestClient(create_app(service=service))
        step(client, "s", "var n = 0")
        deadline = time.monotonic() + HANG
        while not any(e["heap"] for e in log_of(client, "s")):
            assert time.monotonic() < deadline, "the changed session was never snapshotted"
            time.sleep(0.1)
        assert live_of(client, "s") is not None  # snapshotted, still live
        assert [e["tags"] for e in log_of(client, "s") if e["heap"]] == [{"live_snapshot": "periodic"}]
    finally:
        service.close()


def test_a_session_needing_room_evicts_the_least_recently_used(client: testing.TestClient) -> None:
    step(client, "a", "var mine = 'a'")
    step(client, "b", "var mine = 'b'")  # one live worker, one session each: a makes room
    assert live_of(client, "a") is None and live_of(client, "b") is not None
    assert [e["tags"] for e in log_of(client, "a") if e["heap"]] == [{"live_snapshot": "room"}]
    assert step(client, "a", "mine")["result"] == '"a"'
    assert step(client, "b", "mine")["result"] == '"b"'


def test_a_graceful_restart_keeps_the_session(tmp_path: Path) -> None:
    service = make(tmp_path)
    client = testing.TestClient(create_app(service=service))
    step(client, "s", "var survived = 'the restart'")
    service.close()
    service = make(tmp_path)
    try:
        client = testing.TestClient(create_app(service=service))
        assert step(client, "s", "survived")["result"] == '"the restart"'
        assert [e["tags"] for e in log_of(client, "s") if e["heap"]] == [{"live_snapshot": "shutdown"}]
    finally:
        service.close()


def test_a_session_live_in_another_process_on_the_data_directory_is_a_conflict_naming_it(
    tmp_path: Path,
) -> None:
    first, second = make(tmp_path), make(tmp_path)
    try:
        a, b = (testing.TestClient(create_app(service=s)) for s in (first, second))
        step(a, "s", "var here = 'first'")
        resp = b.simulate_post("/api/exec", json={"code": "1", "session": "s", "live": True}, headers=HOST)
        assert resp.status_code == 409, resp.text
        assert (
            f"live elsewhere: another process on this data directory: process {os.getpid()}"
            in resp.json["error"]
        )
        assert step(b, "t", "'another session'")["status"] == "completed"
        ended = a.simulate_delete("/api/sessions/snapshot", params={"session": "s"}, headers=HOST)
        assert ended.status_code == 200
        assert step(b, "s", "here")["result"] == '"first"'  # released, and resumed from its heap
    finally:
        first.close()
        second.close()


def test_sessions_run_in_parallel_across_live_workers(tmp_path: Path) -> None:
    service = make(tmp_path, live_workers=2)
    try:
        client = testing.TestClient(create_app(service=service))
        busy = submit(client, "console.log('busy'); while (true) {}", session="a", live=True)
        wait_for_output(client, busy, "busy")
        assert step(client, "b", "'beside it'")["result"] == '"beside it"'  # on the other live worker
        assert {live_of(client, s)["worker"] for s in ("a", "b")} == {0, 1}
        client.simulate_post(f"/api/executions/{busy}/cancel", headers=HOST)
        assert wait(client, busy)["status"] == "cancelled"
    finally:
        service.close()
