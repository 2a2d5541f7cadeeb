"""Schema versions of the service database: a data directory of every released schema opens and
reads back, migrations run once, in order, each whole or not at all, and a newer file is refused.

``fixtures/datadir-v1`` and ``fixtures/datadir-v2`` are data directories written by schema versions
1 and 2, each with what that code read back from it (``expected.json``); their READMEs say how they
were made.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import pytest
from falcon import testing

from mcp_v8.app import DataDirError, Service, create_app
from mcp_v8.config import Settings
from mcp_v8.storage import (
    SCHEMA_VERSION,
    ExecutionRecord,
    FileHeapStore,
    HeapMeta,
    OutputTotals,
    Page,
    SchemaVersionError,
    SessionSummary,
    SQLiteDatabase,
    SQLiteExecutionStore,
    SQLiteOutputLog,
    open_database,
)
from mcp_v8.storage.schema import database_path
from mcp_v8.storage.sqlite import Migration, statements

from .service_helpers import HOST

FIXTURE = Path(__file__).parent / "fixtures" / "datadir-v1"
EXPECTED: dict[str, Any] = json.loads((FIXTURE / "expected.json").read_text(encoding="utf-8"))
IDS: dict[str, str] = EXPECTED["ids"]
HEAP_KEY: str = EXPECTED["heap"]["key"]
OUTPUT_FIELDS = ("total_bytes", "total_lines", "truncated")  # on the record in version 1


@pytest.fixture
def datadir(tmp_path: Path) -> Path:
    """A copy of the version-1 data directory (the fixture itself is never opened for writing)."""
    return Path(shutil.copytree(FIXTURE / "data", tmp_path / "data"))


def query(root: Path, sql: str) -> list[Any]:
    conn = sqlite3.connect(database_path(root))
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def dump(root: Path) -> list[str]:
    """Schema and rows of the whole database, as SQL."""
    conn = sqlite3.connect(database_path(root))
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def test_the_fixture_is_schema_version_1(datadir: Path) -> None:
    assert query(datadir, "PRAGMA user_version") == [(1,)]
    columns = {row[1] for row in query(datadir, "PRAGMA table_info(executions)")}
    assert set(OUTPUT_FIELDS) <= columns
    assert query(datadir, "SELECT count(*) FROM output_chunks")[0][0] > 40  # many chunks per log


# Version 9's fields (what a wait for a decision keeps): none in earlier versions.
WAIT_FIELDS = dict.fromkeys(
    (
        "pending_tool_calls",
        "waiting_heap",
        "tool_calls_made",
        "resume_spec",
        "waiting_since",
        "approval_deadline",
        "trace_id",  # version 11's: the execution's trace
    )
)


def test_a_version_1_data_dir_reads_back(datadir: Path) -> None:
    db = open_database(datadir)
    executions, output = SQLiteExecutionStore(db), SQLiteOutputLog(db, flush_interval=None)
    try:
        assert db.schema_version == SCHEMA_VERSION
        assert [r.execution_id for r in executions.list()] == EXPECTED["list"]
        for name, execution_id in IDS.items():
            # Later fields: none then; executions from before tenants are the default tenant's.
            expected = dict(EXPECTED["records"][name], js_error=None, **WAIT_FIELDS, tenant="default")
            totals = OutputTotals(*(expected.pop(f) for f in OUTPUT_FIELDS))
            record = executions.get(execution_id)
            assert record is not None and dataclasses.asdict(record) == expected, name
            assert output.totals(execution_id) == totals, name
            for case in EXPECTED["pages"][name]:
                read = output.read_lines if case["kind"] == "lines" else output.read_bytes
                page = read(execution_id, case["offset"], case["limit"])
                assert dataclasses.asdict(page) == case["page"], (name, case["kind"], case["offset"])
    finally:
        output.close()
        db.close()
    heaps = FileHeapStore(datadir)
    assert hashlib.sha256(heaps.get(HEAP_KEY)).hexdigest() == HEAP_KEY
    meta = heaps.meta(HEAP_KEY)
    assert meta is not None and meta.last_used_at is not None  # the blob's times: not in the fixture
    assert dataclasses.replace(meta, last_used_at=None) == HeapMeta(**EXPECTED["heap"]["meta"])


def test_a_version_1_data_dir_serves_through_the_service(datadir: Path) -> None:
    service = Service(Settings(data_dir=datadir, workers=1))  # no worker started: reads only
    try:
        client = testing.TestClient(create_app(service=service))
        listed = client.simulate_get("/api/executions", headers=HOST).json["executions"]
        assert [e["execution_id"] for e in listed] == EXPECTED["list"]
        done = client.simulate_get(f"/api/executions/{IDS['completed']}", headers=HOST).json
        assert (done["status"], done["result"], done["heap"]) == ("completed", "41", HEAP_KEY)
        assert (done["session"], done["tags"]) == ("fixture-session", {"project": "fixture", "step": "1"})
        # It was running when that server stopped.
        lost = client.simulate_get(f"/api/executions/{IDS['running']}", headers=HOST).json
        assert lost["status"] == "failed" and "server stopped" in lost["error"]
        page = client.simulate_get(
            f"/api/executions/{IDS['cancelled']}/output",
            params={"line_offset": "3", "line_limit": "7"},
            headers=HOST,
        ).json
        expected = next(
            c["page"] for c in EXPECTED["pages"]["cancelled"] if (c["kind"], c["offset"]) == ("lines", 3)
        )
        assert {k: page[k] for k in expected} == expected
        assert page["status"] == "cancelled"
        # Its heap was indexed by the migration that created the index, with the first meta.
        heap = client.simulate_get(f"/api/heaps/{HEAP_KEY}", headers=HOST).json
        meta = EXPECTED["heap"]["meta"]
        assert {k: heap[k] for k in ("heap", "size_bytes", "created_at", "session", "tags")} == {
            "heap": HEAP_KEY,
            "size_bytes": meta["size"],
            "created_at": meta["created_at"],
            "session": meta["session"],
            "tags": meta["tags"],
        }
        assert heap["last_used_at"] >= heap["created_at"]
    finally:
        service.close()


# -- version 2 -----------------------------------------------------------------------------------

FIXTURE_V2 = Path(__file__).parent / "fixtures" / "datadir-v2"
EXPECTED_V2: dict[str, Any] = json.loads((FIXTURE_V2 / "expected.json").read_text(encoding="utf-8"))
IDS_V2: dict[str, str] = EXPECTED_V2["ids"]
SLASHED = "team/a b:ü 🎉"
T = TypeVar("T")


@pytest.fixture
def datadir_v2(tmp_path: Path) -> Path:
    """A copy of the version-2 data directory."""
    return Path(shutil.copytree(FIXTURE_V2 / "data", tmp_path / "data"))


def retained_v2() -> list[ExecutionRecord]:
    """The records of the fixture, in the order they were created (the order of their ids)."""
    records = [ExecutionRecord(**r) for r in EXPECTED_V2["records"].values() if r is not None]
    return sorted(records, key=lambda r: r.execution_id)


def log_v2(session: str) -> list[ExecutionRecord]:
    """A session's log worked out from the records: oldest first, ties in order of creation."""
    return sorted((r for r in retained_v2() if r.session == session), key=lambda r: r.started_at)


def sessions_v2() -> list[SessionSummary]:
    """The sessions worked out from the records, latest activity first, then by name."""
    summaries = []
    for name in sorted({r.session for r in retained_v2() if r.session is not None}):
        log = log_v2(name)
        heaps = [r.heap for r in log if r.heap is not None]
        times = [t for r in log for t in (r.started_at, r.completed_at) if t is not None]
        summaries.append(
            SessionSummary(name, len(log), log[0].started_at, max(times), heaps[-1] if heaps else None)
        )
    return sorted(summaries, key=lambda s: s.last_activity_at, reverse=True)  # stable: names stay sorted


def every_item(fetch: Callable[[str | None], Page[T] | None]) -> list[T]:
    """The items of every page of a listing, following next_cursor from the first page."""
    items: list[T] = []
    cursor: str | None = None
    while True:
        page = fetch(cursor)
        assert page is not None
        items += page.items
        if page.next_cursor is None:
            return items
        cursor = page.next_cursor


def test_the_fixture_is_schema_version_2(datadir_v2: Path) -> None:
    assert query(datadir_v2, "PRAGMA user_version") == [(2,)]
    tables = {row[0] for row in query(datadir_v2, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"executions", "output_logs", "output_chunks"}
    indexes = {row[0] for row in query(datadir_v2, "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "executions_by_session" not in indexes
    assert query(datadir_v2, "SELECT count(*) FROM output_chunks")[0][0] > 40  # many chunks per log


def test_a_version_2_data_dir_reads_back(datadir_v2: Path) -> None:
    db = open_database(datadir_v2)
    executions, output = SQLiteExecutionStore(db), SQLiteOutputLog(db, flush_interval=None)
    try:
        assert db.schema_version == SCHEMA_VERSION
        assert [r.execution_id for r in executions.list()] == EXPECTED_V2["list"]
        assert [r.execution_id for r in executions.list_page(1000).items] == EXPECTED_V2["list"]
        for name, execution_id in IDS_V2.items():
            expected = EXPECTED_V2["records"][name]
            if expected is not None:
                expected = {**expected, "js_error": None, **WAIT_FIELDS, "tenant": "default"}  # later fields
            record = executions.get(execution_id)
            assert (dataclasses.asdict(record) if record else None) == expected, name
            if expected is None:  # deleted by retention before the upgrade
                continue
            assert dataclasses.asdict(output.totals(execution_id)) == EXPECTED_V2["totals"][name], name
            for case in EXPECTED_V2["pages"][name]:
                read = output.read_lines if case["kind"] == "lines" else output.read_bytes
                page = read(execution_id, case["offset"], case["limit"])
                assert dataclasses.asdict(page) == case["page"], (name, case["kind"], case["offset"])
    finally:
        output.close()
        db.close()
    heaps = FileHeapStore(datadir_v2)
    key = EXPECTED_V2["heap"]["key"]
    assert hashlib.sha256(heaps.get(key)).hexdigest() == key
    meta = heaps.meta(key)
    assert meta is not None and meta.last_used_at is not None  # the blob's times: not in the fixture
    assert dataclasses.replace(meta, last_used_at=None) == HeapMeta(**EXPECTED_V2["heap"]["meta"])
    assert not heaps.exists(EXPECTED_V2["gone_heap"])  # recorded by an execution, not stored


def test_the_sessions_of_a_version_2_data_dir(datadir_v2: Path) -> None:
    """The session queries, which that release did not have, on the executions it recorded."""
    expected = sessions_v2()
    # What the fixture was made to hold (its README), so the oracle above cannot drift with it.
    assert [s.session for s in expected] == [SLASHED, "", "tie-a", "tie-b", "tie-c", "fixture-session"]
    assert expected[-1].latest_heap == EXPECTED_V2["gone_heap"] and expected[-1].executions == 3
    with SQLiteExecutionStore(datadir_v2) as executions:
        assert executions.sessions().items == expected
        for limit in (1, 2, 4):
            assert every_item(lambda cursor, n=limit: executions.sessions(n, cursor=cursor)) == expected
        for summary in expected:
            entries = every_item(
                lambda cursor, name=summary.session: executions.session_log(name, 1, cursor=cursor)
            )
            assert entries == log_v2(summary.session), summary.session
            by_session = executions.list_page(1000, session=summary.session)
            assert by_session.items == log_v2(summary.session)[::-1]
        assert executions.session_log("gone-session") is None  # its only execution was pruned
        assert [r.execution_id for r in log_v2("fixture-session")] == [
            IDS_V2["first"],
            IDS_V2["resumed"],
            IDS_V2["failed"],  # started in the same millisecond as "resumed", after it
        ]
    indexes = {row[0] for row in query(datadir_v2, "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "executions_by_session" in indexes


def test_a_version_2_data_dir_serves_sessions(datadir_v2: Path) -> None:
    service = Service(Settings(data_dir=datadir_v2, workers=1))  # no worker started: reads only
    try:
        client = testing.TestClient(create_app(service=service))
        listed = client.simulate_get("/api/sessions", headers=HOST).json
        # Its running execution failed when this server opened the directory: its session's
        # last activity is now, the others are as recorded.
        assert [s["session"] for s in listed["sessions"]] == [s.session for s in sessions_v2()]
        # A session's latest heap says whether it is still stored: fixture-session's is not.
        stored = {None: None, EXPECTED_V2["heap"]["key"]: True, EXPECTED_V2["gone_heap"]: False}
        assert (
            listed["sessions"][1:]
            == [  # the default tenant's, its own: no tenant named
                {
                    **{k: v for k, v in dataclasses.asdict(s).items() if k != "tenant"},
                    "latest_heap_stored": stored[s.latest_heap],
                    "live": None,
                }
                for s in sessions_v2()[1:]
            ]
        )
        assert stored[None] is None and False in [s["latest_heap_stored"] for s in listed["sessions"]]
        fixture_log = client.simulate_get(
            "/api/sessions/log", params={"session": "fixture-session"}, headers=HOST
        ).json["executions"]
        assert [(e["heap"], e["heap_stored"]) for e in fixture_log] == [
            (EXPECTED_V2["heap"]["key"], True),  # stored
            (EXPECTED_V2["gone_heap"], False),  # recorded, then pruned by its own age rule
            (None, None),  # failed: produced none
        ]
        assert listed["next_cursor"] is None
        log = client.simulate_get(
            "/api/sessions/log", query_string=f"session={quote(SLASHED, safe='')}", headers=HOST
        ).json
        assert [e["execution_id"] for e in log["executions"]] == [r.execution_id for r in log_v2(SLASHED)]
        assert log["executions"][-1]["status"] == "failed"  # it was running when that server stopped
        assert log["session"] == SLASHED and log["next_cursor"] is None
        gone = client.simulate_get("/api/sessions/log", params={"session": "gone-session"}, headers=HOST)
        assert gone.status_code == 404
    finally:
        service.close()


def test_new_executions_after_migration(datadir: Path) -> None:
    with SQLiteExecutionStore(datadir) as executions, SQLiteOutputLog(datadir, flush_interval=None) as out:
        out.create("after-1")
        executions.create("after-1", session="fixture-session", heap_in=HEAP_KEY, code_bytes=3)
        for i in range(200):
            out.append("after-1", f"new line {i}\n")
        out.seal("after-1")
        assert executions.finish("after-1", "completed", result="2", duration_ms=1.0)
        out.append(IDS["failed"], "\nlate\n")  # an old log takes appends too
        with pytest.raises(sqlite3.IntegrityError):  # the record and the log stay one per id
            query_write(datadir, f"INSERT INTO output_logs (execution_id) VALUES ('{IDS['failed']}')")
    with SQLiteExecutionStore(datadir) as executions, SQLiteOutputLog(datadir, flush_interval=None) as out:
        ids = [r.execution_id for r in executions.list()]
        assert ids == ["after-1", *EXPECTED["list"]]
        record = executions.get("after-1")
        assert record is not None and (record.status, record.heap_in) == ("completed", HEAP_KEY)
        assert out.read_lines("after-1", 150, 2).data == "new line 150\nnew line 151\n"
        assert out.totals("after-1").total_lines == 200
        failed = EXPECTED["pages"]["failed"][0]["page"]["data"]
        assert out.read_lines(IDS["failed"], 0, 100).data == failed + "\nlate\n"


def test_a_version_6_record_migrates_without_a_js_error_and_new_ones_keep_theirs(tmp_path: Path) -> None:
    """Version 7 adds the column of the scripts' structured errors: the records of a version-6
    file read back without one, and a finish after the migration keeps its own."""
    from mcp_v8.js_error import JsError
    from mcp_v8.storage.schema import MIGRATIONS

    root = tmp_path / "data"
    root.mkdir()
    SQLiteDatabase(database_path(root), MIGRATIONS[:6]).close()
    query_write(
        root,
        "INSERT INTO executions (execution_id, status, started_at, completed_at, error)"
        " VALUES ('old', 'failed', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:01.000Z', 'TypeError: x')",
    )
    thrown = JsError(
        name="TypeError", message="x", stack="TypeError: x\n    at <input>:1:1", line=1, column=1
    )
    with SQLiteExecutionStore(root) as executions:
        old = executions.get("old")
        assert old is not None and (old.error, old.js_error) == ("TypeError: x", None)
        executions.create("new")
        assert executions.finish("new", "failed", error=thrown.stack, js_error=thrown, duration_ms=1.0)
    with SQLiteExecutionStore(root) as executions:
        new = executions.get("new")
        assert new is not None and new.js_error == thrown
    assert query(root, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def query_write(root: Path, sql: str) -> None:
    conn = sqlite3.connect(database_path(root))
    try:
        with conn:
            conn.execute(sql)
    finally:
        conn.close()


@pytest.mark.parametrize("start", ["version-1", "version-2", "empty"])
def test_opening_again_changes_nothing(tmp_path: Path, start: str) -> None:
    root = tmp_path / "data"
    if start != "empty":
        shutil.copytree({"version-1": FIXTURE, "version-2": FIXTURE_V2}[start] / "data", root)
    open_database(root).close()
    first = dump(root)
    open_database(root).close()
    assert dump(root) == first
    assert query(root, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_concurrent_opens_migrate_once(datadir: Path) -> None:
    # Each step re-reads the version inside its write transaction: a second opener waits for the
    # first and then finds nothing to do (running a step twice would fail: its tables exist).
    n = 6
    start = threading.Barrier(n)
    errors: list[BaseException] = []

    def opener() -> None:
        start.wait()
        try:
            open_database(datadir).close()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=opener) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert query(datadir, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert query(datadir, "SELECT count(*) FROM output_logs") == [(len(IDS),)]


def test_a_newer_schema_is_refused_and_left_untouched(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    conn = sqlite3.connect(database_path(root))
    conn.execute("CREATE TABLE from_the_future (x)")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    before = Path(database_path(root)).read_bytes()
    with pytest.raises(SchemaVersionError, match=rf"schema version {SCHEMA_VERSION + 1}.*newer release"):
        open_database(root)
    assert Path(database_path(root)).read_bytes() == before  # not even switched to WAL
    assert query(root, "PRAGMA journal_mode") == [("delete",)]
    with pytest.raises(DataDirError, match="newer release"):
        Service(Settings(data_dir=root, workers=1))


def test_a_failing_step_leaves_the_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"

    def half_done(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half (x)")
        raise RuntimeError("step failed")

    first = Migration(1, "one table", statements("CREATE TABLE one (x); INSERT INTO one VALUES (1)"))
    with pytest.raises(RuntimeError, match="step failed"):
        SQLiteDatabase(path, [first, Migration(2, "fails half-way", half_done)])
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (1,)
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables == {"one"}
    finally:
        conn.close()
    fixed = Migration(2, "second table", statements("CREATE TABLE two (x)"))
    with SQLiteDatabase(path, [first, fixed]) as db:
        assert db.schema_version == 2
        with db.connection() as c:
            assert c.execute("SELECT x FROM one").fetchall() == [(1,)]  # step 1 ran once


def test_migrations_must_be_numbered_in_order(tmp_path: Path) -> None:
    step = statements("CREATE TABLE t (x)")
    for numbers in ([2], [1, 3], [2, 1], [1, 1]):
        with pytest.raises(ValueError, match="numbered"):
            SQLiteDatabase(tmp_path / "db", [Migration(n, "t", step) for n in numbers])


def test_a_version_12_data_dir_gives_every_heap_and_tag_to_the_default_tenant(tmp_path: Path) -> None:
    """Version 14 makes heaps owned per tenant and their tags per tenant: the heaps and tags of
    an earlier file, and its executions (version 12), are the default tenant's, with the same
    first session, tags and times; another tenant sees none of them."""
    from mcp_v8.storage import Catalogue, HeapSigner, LocalHeaps, SQLiteHeapIndex, SQLiteHeapTags
    from mcp_v8.storage.schema import MIGRATIONS

    root = tmp_path / "data"
    root.mkdir()
    SQLiteDatabase(database_path(root), MIGRATIONS[:12]).close()
    tagged, plain = "a" * 64, "b" * 64
    for sql in (
        "INSERT INTO heaps (key, size, created_at, last_used_at, session, tags) VALUES"
        f" ('{tagged}', 10, '2026-01-01T00:00:00.000Z', '2026-01-02T00:00:00.000Z', 'main', '{{\"k\": \"first\"}}'),"
        f" ('{plain}', 20, '2026-01-03T00:00:00.000Z', '2026-01-03T00:00:00.000Z', NULL, NULL)",
        "INSERT INTO heap_tags (key, tags, created_at, updated_at) VALUES"
        f" ('{tagged}', '{{\"k\": \"patched\"}}', '2026-01-01T00:00:00.000Z', '2026-01-04T00:00:00.000Z')",
        "INSERT INTO executions (execution_id, status, started_at, completed_at, session, heap_out) VALUES"
        f" ('old', 'completed', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:01.000Z', 'main', '{tagged}')",
    ):
        query_write(root, sql)
    db = open_database(root)
    try:
        assert db.schema_version == SCHEMA_VERSION
        catalogue = Catalogue(
            SQLiteHeapIndex(db),
            SQLiteHeapTags(db),
            LocalHeaps(FileHeapStore(root, durable=False)),
            HeapSigner([b"a signing key of this test"], trust_unsigned=True),
        )
        meta = catalogue.meta(tagged, tenant="default")
        assert meta == HeapMeta(
            key=tagged,
            size=10,
            created_at="2026-01-01T00:00:00.000Z",
            session="main",
            tags={"k": "patched"},
            last_used_at="2026-01-02T00:00:00.000Z",
        )
        assert catalogue.meta(plain, tenant="default") is not None
        assert catalogue.index.owners(tagged) == ["default"] and catalogue.index.owners(plain) == ["default"]
        assert [m.key for m in catalogue.query({"k": "patched"}, 10, tenant="default").items] == [tagged]
        for key in (tagged, plain):
            assert catalogue.meta(key, tenant="acme") is None
        assert catalogue.query({}, 10, tenant="acme").items == []
        executions = SQLiteExecutionStore(db)
        assert executions.get("old").tenant == "default"  # type: ignore[union-attr]
        assert [s.session for s in executions.sessions(tenant="default").items] == ["main"]
        assert executions.sessions(tenant="acme").items == []
    finally:
        db.close()
