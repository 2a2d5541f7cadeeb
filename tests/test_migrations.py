"""Schema versions of the service database: a data directory of every released schema opens and
reads back, migrations run once, in order, each whole or not at all, and a newer file is refused.

``fixtures/datadir-v1`` is a data directory written by schema version 1, with what that code read
back from it (``expected.json``); its README says how it was made.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from falcon import testing

from mcp_v8.app import DataDirError, Service, create_app
from mcp_v8.config import Settings
from mcp_v8.storage import (
    SCHEMA_VERSION,
    FileHeapStore,
    OutputTotals,
    SchemaVersionError,
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


def test_a_version_1_data_dir_reads_back(datadir: Path) -> None:
    db = open_database(datadir)
    executions, output = SQLiteExecutionStore(db), SQLiteOutputLog(db, flush_interval=None)
    try:
        assert db.schema_version == SCHEMA_VERSION
        assert [r.execution_id for r in executions.list()] == EXPECTED["list"]
        for name, execution_id in IDS.items():
            expected = dict(EXPECTED["records"][name])
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
    assert meta is not None and dataclasses.asdict(meta) == EXPECTED["heap"]["meta"]


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


def query_write(root: Path, sql: str) -> None:
    conn = sqlite3.connect(database_path(root))
    try:
        with conn:
            conn.execute(sql)
    finally:
        conn.close()


@pytest.mark.parametrize("start", ["version-1", "empty"])
def test_opening_again_changes_nothing(tmp_path: Path, start: str) -> None:
    root = tmp_path / "data"
    if start == "version-1":
        shutil.copytree(FIXTURE / "data", root)
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
