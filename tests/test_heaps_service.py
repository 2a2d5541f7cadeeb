"""The heap endpoints through falcon.testing, against real worker processes: metadata,
tag patches, the tag query, deletion (refused while an execution resumes the heap) and
the retention of tagged heaps."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from falcon import testing

from mcp_v8.app import Service, create_app
from mcp_v8.config import Settings
from mcp_v8.storage.schema import database_path

from .service_helpers import HOST, submit, wait, wait_for_output

PATCH = {**HOST, "Content-Type": "application/merge-patch+json"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = Service(Settings(data_dir=tmp_path_factory.mktemp("heaps"), workers=2, queue_limit=50)).start()
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def client(service: Service) -> testing.TestClient:
    return testing.TestClient(create_app(service=service))


def make_heap(client: testing.TestClient, code: str, **fields: Any) -> str:
    info = wait(client, submit(client, code, **fields))
    assert info["status"] == "completed", info
    return str(info["heap"])


def get(client: testing.TestClient, key: str) -> Any:
    return client.simulate_get(f"/api/heaps/{key}", headers=HOST)


def query(client: testing.TestClient, body: Any) -> Any:
    return client.simulate_post("/api/heaps/query", json=body, headers=HOST)


def test_metadata_of_a_heap(client: testing.TestClient) -> None:
    heap = make_heap(client, "var meta = 1; meta", session="heap-meta", tags={"owner": "meta-test"})
    resp = get(client, heap)
    assert resp.status_code == 200, resp.text
    info = resp.json
    assert set(info) == {"heap", "size_bytes", "created_at", "last_used_at", "session", "tags"}
    assert (info["heap"], info["session"], info["tags"]) == (heap, "heap-meta", {"owner": "meta-test"})
    assert info["size_bytes"] > 0 and info["created_at"].endswith("Z")
    assert info["last_used_at"] >= info["created_at"]
    plain = make_heap(client, "var plain = 1")
    assert (get(client, plain).json["session"], get(client, plain).json["tags"]) == (None, None)


@pytest.mark.parametrize("bad", ["abc", "A" * 64, "a" * 63, "a" * 65, "g" * 64, "query"])
def test_a_malformed_key_is_400(client: testing.TestClient, bad: str) -> None:
    assert get(client, bad).status_code == 400 if bad != "query" else 405
    assert client.simulate_delete(f"/api/heaps/{bad}", headers=HOST).status_code in (400, 405)
    resp = client.simulate_patch(f"/api/heaps/{bad}/tags", json={"a": "b"}, headers=PATCH)
    assert resp.status_code == 400 and "64 lowercase hex" in resp.json["error"]


def test_an_unknown_heap_is_404(client: testing.TestClient) -> None:
    unknown = "0" * 64
    for resp in (
        get(client, unknown),
        client.simulate_delete(f"/api/heaps/{unknown}", headers=HOST),
        client.simulate_patch(f"/api/heaps/{unknown}/tags", json={"a": "b"}, headers=PATCH),
    ):
        assert resp.status_code == 404 and "not found" in resp.json["error"]


def test_tags_are_merge_patched(client: testing.TestClient) -> None:
    heap = make_heap(client, "var patched = 1", tags={"keep": "1", "drop": "2"})
    resp = client.simulate_patch(f"/api/heaps/{heap}/tags", json={"drop": None, "new": "3"}, headers=PATCH)
    assert resp.status_code == 200, resp.text
    assert resp.json["tags"] == {"keep": "1", "new": "3"} and resp.json["heap"] == heap
    assert get(client, heap).json["tags"] == {"keep": "1", "new": "3"}
    # An empty patch changes nothing; plain application/json is accepted too.
    same = client.simulate_patch(f"/api/heaps/{heap}/tags", json={}, headers=HOST)
    assert same.json["tags"] == {"keep": "1", "new": "3"}
    # A heap stored without tags gets its first ones.
    bare = make_heap(client, "var bare = 1")
    first = client.simulate_patch(f"/api/heaps/{bare}/tags", json={"now": "tagged"}, headers=PATCH)
    assert first.json["tags"] == {"now": "tagged"}


@pytest.mark.parametrize(
    "patch, fragment",
    [
        ({f"k{i}": "v" for i in range(65)}, "at most 64 tags"),
        ({"k": "v" * 257}, "at most 256 characters"),
        ({"k" * 257: "v"}, "at most 256 characters"),
        ({"k": 1}, "must be a string"),
        ({"k": {"nested": "x"}}, "must be a string"),
        (["k"], "must be a JSON object"),
        ("k", "must be a JSON object"),
    ],
)
def test_a_bad_patch_is_400_and_changes_nothing(
    client: testing.TestClient, patch: Any, fragment: str
) -> None:
    heap = make_heap(client, "var limits = 1", tags={"t": "1"})
    resp = client.simulate_patch(f"/api/heaps/{heap}/tags", json=patch, headers=PATCH)
    assert resp.status_code == 400, resp.text
    assert fragment in resp.json["error"]
    assert get(client, heap).json["tags"] == {"t": "1"}


def test_a_patch_over_the_limit_counts_what_it_removes(client: testing.TestClient) -> None:
    heap = make_heap(client, "var full = 1", tags={f"k{i}": "v" for i in range(64)})
    over = client.simulate_patch(f"/api/heaps/{heap}/tags", json={"one-more": "v"}, headers=PATCH)
    assert over.status_code == 400 and "at most 64 tags" in over.json["error"]
    swap = client.simulate_patch(f"/api/heaps/{heap}/tags", json={"k0": None, "one-more": "v"}, headers=PATCH)
    assert swap.status_code == 200 and len(swap.json["tags"]) == 64


def test_query_by_tags_newest_first_by_pages(client: testing.TestClient) -> None:
    heaps = [make_heap(client, f"var q{i} = {i}", tags={"suite": "query", "i": str(i)}) for i in range(5)]
    make_heap(client, "var other = 1", tags={"suite": "other"})
    resp = query(client, {"tags": {"suite": "query"}})
    assert resp.status_code == 200, resp.text
    assert [h["heap"] for h in resp.json["heaps"]] == heaps[::-1] and resp.json["next_cursor"] is None
    assert resp.json["heaps"][0]["tags"] == {"suite": "query", "i": "4"}
    assert [h["heap"] for h in query(client, {"tags": {"suite": "query", "i": "2"}}).json["heaps"]] == [
        heaps[2]
    ]
    paged: list[str] = []
    body: dict[str, Any] = {"tags": {"suite": "query"}, "limit": 2}
    while True:
        page = query(client, body).json
        assert len(page["heaps"]) <= 2
        paged += [h["heap"] for h in page["heaps"]]
        if page["next_cursor"] is None:
            break
        body["cursor"] = page["next_cursor"]
    assert paged == heaps[::-1]
    # Patched tags are what the query searches.
    client.simulate_patch(f"/api/heaps/{heaps[0]}/tags", json={"suite": None, "moved": "yes"}, headers=PATCH)
    assert [h["heap"] for h in query(client, {"tags": {"moved": "yes"}}).json["heaps"]] == [heaps[0]]
    assert heaps[0] not in [h["heap"] for h in query(client, {"tags": {"suite": "query"}}).json["heaps"]]


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({}, "tags is required"),
        ({"tags": {}}, "tags must have at least 1 entry"),
        ({"tags": {"k": None}}, "must be a string"),
        ({"tags": {"k": "v"}, "limit": 0}, "limit must be between 1 and 1000"),
        ({"tags": {"k": "v"}, "limit": 1001}, "limit must be between 1 and 1000"),
        ({"tags": {"k": "v"}, "cursor": "not a cursor"}, "cursor"),
        ({"tags": {"k": "v"}, "cursor": "bm90LWEtY3Vyc29y"}, "invalid cursor"),
        ({"tags": {"k": "v"}, "extra": 1}, "unknown field"),
        ({"tags": {f"k{i}": "v" for i in range(65)}}, "at most 64 entries"),
    ],
)
def test_a_bad_query_is_400(client: testing.TestClient, body: Any, fragment: str) -> None:
    resp = query(client, body)
    assert resp.status_code == 400, resp.text
    assert fragment in resp.json["error"]


def test_delete_removes_the_heap_and_its_tags(client: testing.TestClient) -> None:
    heap = make_heap(client, "var doomed = 1", tags={"suite": "delete"})
    assert [h["heap"] for h in query(client, {"tags": {"suite": "delete"}}).json["heaps"]] == [heap]
    resp = client.simulate_delete(f"/api/heaps/{heap}", headers=HOST)
    assert (resp.status_code, resp.json) == (200, {"ok": True})
    assert get(client, heap).status_code == 404
    assert query(client, {"tags": {"suite": "delete"}}).json["heaps"] == []
    assert client.simulate_delete(f"/api/heaps/{heap}", headers=HOST).status_code == 404
    gone = client.simulate_post("/api/exec", json={"code": "doomed", "heap": heap}, headers=HOST)
    assert gone.status_code == 404


def test_delete_is_409_while_an_execution_resuming_the_heap_waits(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, workers=1, queue_limit=4))
    c = testing.TestClient(app)
    try:
        heap = make_heap(c, "var needed = 1")
        busy = submit(c, "console.log('busy'); while (true) {}", execution_timeout_secs=60)
        wait_for_output(c, busy, "busy")  # the only worker is taken
        queued = submit(c, "needed + 1", heap=heap)
        conflict = c.simulate_delete(f"/api/heaps/{heap}", headers=HOST)
        assert conflict.status_code == 409 and "queued or running" in conflict.json["error"]
        assert get(c, heap).status_code == 200  # still there
        assert c.simulate_post(f"/api/executions/{queued}/cancel", headers=HOST).json["ok"] is True
        assert c.simulate_delete(f"/api/heaps/{heap}", headers=HOST).status_code == 200
        c.simulate_post(f"/api/executions/{busy}/cancel", headers=HOST)
        # Running, not only queued.
        mine = make_heap(c, "var mine = 1")
        running = submit(c, "console.log('running'); while (true) {}", heap=mine, execution_timeout_secs=60)
        wait_for_output(c, running, "running")
        assert c.simulate_delete(f"/api/heaps/{mine}", headers=HOST).status_code == 409
        c.simulate_post(f"/api/executions/{running}/cancel", headers=HOST)
        assert c.simulate_delete(f"/api/heaps/{mine}", headers=HOST).status_code == 200
    finally:
        app.service.close()


def _age(service: Service, key: str, seconds: float) -> None:
    """Makes the heap look neither stored nor resumed for ``seconds``: its file's times and the
    last use its index row records."""
    path = Path(service.heaps.heaps_dir) / key[:2] / key[2:]
    old = time.time() - seconds
    os.utime(path, (old, old))
    at = datetime.fromtimestamp(old, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    conn = sqlite3.connect(database_path(service.settings.data_dir))
    try:
        with conn:
            conn.execute("UPDATE heaps SET last_used_at = ? WHERE key = ?", (at, key))
    finally:
        conn.close()


def test_retention_keeps_tagged_heaps(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, workers=1, retention_max_age_secs=3600))
    c = testing.TestClient(app)
    svc = app.service
    try:
        tagged = make_heap(c, "var tagged = 1", tags={"keep": "me"})
        untagged = make_heap(c, "var untagged = 1", session="no-tags")
        patched = make_heap(c, "var patched = 1")
        emptied = make_heap(c, "var emptied = 1", tags={"soon": "gone"})
        c.simulate_patch(f"/api/heaps/{patched}/tags", json={"pinned": "yes"}, headers=PATCH)
        c.simulate_patch(f"/api/heaps/{emptied}/tags", json={"soon": None}, headers=PATCH)
        for key in (tagged, untagged, patched, emptied):
            _age(svc, key, 7200)
        svc.prune()
        assert get(c, tagged).status_code == 200
        assert get(c, patched).status_code == 200
        assert get(c, untagged).status_code == 404
        assert get(c, emptied).status_code == 404
    finally:
        svc.close()
