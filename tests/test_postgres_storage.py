"""What the PostgreSQL stores do beyond the contracts that test_store_contracts.py and
test_heap_tags.py run against every backend: versioned migrations, chunked output read in
O(page), owners of running executions, names PostgreSQL cannot hold, and the query plans that keep
the listings indexed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mcp_v8.storage import OutputTotals, SchemaVersionError

from .pg_server import PostgresServer, schema_for

if TYPE_CHECKING:
    from mcp_v8.storage.postgres import PostgresDatabase

psycopg = pytest.importorskip("psycopg")
postgres = pytest.importorskip("mcp_v8.storage.postgres")


@pytest.fixture
def schema(postgres_server: PostgresServer, tmp_path: Path) -> str:
    return postgres_server.create_schema(schema_for(tmp_path))


@pytest.fixture
def db(postgres_server: PostgresServer, schema: str) -> Iterator[PostgresDatabase]:
    database = postgres.open_postgres(postgres_server.url, schema=schema)
    yield database
    database.close()


def _version(url: str, schema: str) -> list[tuple[int]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(f"SELECT version FROM {schema}.schema_version").fetchall()  # type: ignore[no-any-return]


def test_migrations_are_versioned_and_applied_once(postgres_server: PostgresServer, schema: str) -> None:
    url = postgres_server.url
    first = postgres.open_postgres(url, schema=schema)
    assert first.schema_version == postgres.SCHEMA_VERSION == len(postgres.MIGRATIONS)
    first.close()
    second = postgres.open_postgres(url, schema=schema)  # nothing to apply: no error, same version
    assert second.schema_version == postgres.SCHEMA_VERSION
    second.close()
    assert _version(url, schema) == [(postgres.SCHEMA_VERSION,)]


def test_nodes_opening_at_once_migrate_once(postgres_server: PostgresServer, schema: str) -> None:
    errors: list[BaseException] = []
    opened: list[int] = []
    start = threading.Barrier(6)

    def open_one() -> None:
        start.wait()
        try:
            database = postgres.open_postgres(postgres_server.url, schema=schema)
            opened.append(database.schema_version)
            database.close()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and opened == [postgres.SCHEMA_VERSION] * 6
    assert _version(postgres_server.url, schema) == [(postgres.SCHEMA_VERSION,)]


def test_a_newer_schema_is_refused_and_left_alone(postgres_server: PostgresServer, schema: str) -> None:
    url = postgres_server.url
    postgres.open_postgres(url, schema=schema).close()
    newer = postgres.SCHEMA_VERSION + 1
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"UPDATE {schema}.schema_version SET version = %s", (newer,))
    with pytest.raises(SchemaVersionError, match=f"version {newer}.*newer release"):
        postgres.open_postgres(url, schema=schema)
    assert _version(url, schema) == [(newer,)]


def test_migrations_must_be_numbered_in_order(postgres_server: PostgresServer, schema: str) -> None:
    with pytest.raises(ValueError, match="numbered"):
        postgres.PostgresDatabase(
            postgres_server.url, [postgres.PgMigration(2, "two", "SELECT 1")], schema=schema
        )
    with pytest.raises(ValueError, match="schema name"):
        postgres.PostgresDatabase(postgres_server.url, [], schema="x; DROP TABLE y")


def test_a_version_3_record_migrates_without_a_js_error_and_new_ones_keep_theirs(
    postgres_server: PostgresServer, schema: str
) -> None:
    """Version 4 adds the column of the scripts' structured errors (jsonb): the records of a
    version-3 schema read back without one, and a finish after the migration keeps its own."""
    from mcp_v8.js_error import JsError

    url = postgres_server.url
    postgres.PostgresDatabase(url, postgres.MIGRATIONS[:3], schema=schema).close()
    with psycopg.connect(url, autocommit=True, options=f"-c search_path={schema}") as conn:
        conn.execute(
            "INSERT INTO executions (execution_id, status, started_at, completed_at, error)"
            " VALUES ('old', 'failed', now(), now(), 'TypeError: x')"
        )
    thrown = JsError(
        name="TypeError", message="x", stack="TypeError: x\n    at <input>:1:1", line=1, column=1
    )
    db = postgres.open_postgres(url, schema=schema)
    try:
        executions = postgres.PostgresExecutionStore(db)
        old = executions.get("old")
        assert old is not None and (old.error, old.js_error) == ("TypeError: x", None)
        executions.create("new")
        assert executions.finish("new", "failed", error=thrown.stack, js_error=thrown, duration_ms=1.0)
        new = executions.get("new")
        assert new is not None and new.js_error == thrown
        assert db.schema_version == postgres.SCHEMA_VERSION  # and later ones on the way
    finally:
        db.close()


def test_output_is_chunked_and_a_page_reads_only_its_chunks(db: PostgresDatabase) -> None:
    log = postgres.PostgresOutputLog(db, max_output_bytes=10 << 20, chunk_bytes=1024)
    log.create("big")
    lines = [f"line {i:06d} é\n" for i in range(20_000)]  # ~300 KB in many small appends
    for i in range(0, len(lines), 7):
        log.append("big", "".join(lines[i : i + 7]))
    raw = "".join(lines).encode()
    totals = log.totals("big")
    assert (totals.total_bytes, totals.total_lines) == (len(raw), len(lines))
    chunks = db.run("SELECT count(*), max(length(data)), min(length(data)) FROM output_chunks")[0]
    assert chunks[0] <= len(raw) // 1000 + 1 and chunks[1] <= 1024  # appends fill chunks, not rows
    for offset in (0, 10, 9_990, 19_990):
        before = log.chunk_rows_read
        page = log.read_lines("big", offset, 10)
        assert page.data == "".join(lines[offset : offset + 10])
        assert log.chunk_rows_read - before <= 2  # one lookup and the chunks of the page
    for offset in (0, 1000, len(raw) - 300):
        before = log.chunk_rows_read
        page = log.read_bytes("big", offset, 200)
        assert page.data.encode() == raw[page.start_byte : page.end_byte]
        assert log.chunk_rows_read - before <= 2
    # The page lookups walk the indexes.
    plan = "\n".join(
        str(r[0])
        for r in db.run(
            "EXPLAIN SELECT seq FROM output_chunks WHERE execution_id = 'big' AND start_line <= 500"
            " AND start_byte < 10000000 ORDER BY start_line DESC, seq DESC LIMIT 1"
        )
    )
    assert "output_chunks_by_line" in plan or "Index" in plan
    log.close()


def test_a_log_held_by_a_slow_writer_holds_up_no_other(
    db: PostgresDatabase, postgres_server: PostgresServer, schema: str
) -> None:
    # The log has no lock of its own across processes: a write (a flush, or an append written
    # through once the log is sealed, as here) locks its log's row for its transaction, and
    # reads lock nothing. A transaction holding one log's row (a slow write parked mid-way)
    # holds up only the writes of that log.
    hang = 30.0  # only ever reached when the code under test is broken
    log = postgres.PostgresOutputLog(db, flush_interval=None)
    for eid in ("held", "free"):
        log.create(eid)
        log.append(eid, f"{eid} 1\n")
        log.seal(eid)  # from now on appends are written through
    with psycopg.connect(postgres_server.url, autocommit=True) as holder:
        holder.execute(f"SET search_path = {schema}")
        with holder.transaction():
            holder.execute("SELECT 1 FROM output_logs WHERE execution_id = 'held' FOR UPDATE")
            seen: list[str] = []

            def use_logs() -> None:
                log.append("free", "free 2\n")
                seen.append(log.read_lines("free").data)
                seen.append(log.read_bytes("held").data)  # readers of the held log do not wait

            elsewhere = threading.Thread(target=use_logs)
            elsewhere.start()
            elsewhere.join(hang)
            assert not elsewhere.is_alive(), "other logs waited for a held log"
            assert seen == ["free 1\nfree 2\n", "held 1\n"]
            same = threading.Thread(target=log.append, args=("held", "held 2\n"))
            same.start()
            deadline = time.monotonic() + hang
            while not holder.execute(  # the append to the held log waits for its row
                "SELECT 1 FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'"
            ).fetchall():
                assert time.monotonic() < deadline, "the append to the held log did not wait for it"
                time.sleep(0.01)
        same.join(hang)
    assert not same.is_alive()
    assert log.read_lines("held").data == "held 1\nheld 2\n"
    log.close()


def test_owners_of_running_executions(db: PostgresDatabase) -> None:
    store = postgres.PostgresExecutionStore(db)
    store.create("a", owner="node-1")
    store.create("b", owner="node-2")
    store.create("c")
    store.create("d", owner="node-1")
    store.finish("d", "completed", duration_ms=1.0)
    assert store.running_owners() == {"node-1", "node-2", None}
    assert store.fail_running_of([], "nothing") == 0
    assert store.fail_running_of(["node-1", None], "node gone") == 2
    a = store.get("a")
    assert a is not None and (a.status, a.error) == ("failed", "node gone")
    assert store.running_owners() == {"node-2"}
    b = store.finish("b", "completed", result="1")  # duration defaults to the time since the start
    assert b is not None and b.duration_ms is not None and b.duration_ms >= 0
    store.close()  # shared database: still open
    assert db.run("SELECT 1") == [(1,)]


def test_names_postgresql_cannot_hold_find_nothing(db: PostgresDatabase) -> None:
    store = postgres.PostgresExecutionStore(db)
    store.create("a", session="s")
    assert store.session_log("s\x00x") is None
    assert store.list_page(10, session="s\x00").items == []
    assert store.delete(["a\x00"]) == 0
    store.close()


def test_heap_tag_query_uses_jsonb_containment(db: PostgresDatabase) -> None:
    tags = postgres.PostgresHeapTags(db)
    key = "ab" * 32
    tags.record(key, {"team": "x"}, "2024-01-01T00:00:00.123456Z")  # stored at milliseconds
    page = tags.query({"team": "x"}, 10)
    assert page.items == [(key, {"team": "x"})]
    plan = "\n".join(
        str(r[0]) for r in db.run('EXPLAIN SELECT key FROM heap_tags WHERE tags @> \'{"team": "x"}\'::jsonb')
    )
    assert "heap_tags" in plan
    indexes = {str(r[0]) for r in db.run("SELECT indexname FROM pg_indexes WHERE tablename = 'heap_tags'")}
    assert "heap_tags_by_tags" in indexes


def test_the_heap_index_migration_indexes_the_heap_blobs_with_their_last_use(
    postgres_server: PostgresServer, schema: str
) -> None:
    """A version-1 schema with heaps in ``heap_blobs``: the index gets a row for each, last used
    when the records last started from or produced it."""
    import hashlib
    from datetime import datetime, timedelta, timezone

    from mcp_v8.storage.postgres import PostgresHeapIndex

    url = postgres_server.url
    postgres.PostgresDatabase(url, postgres.MIGRATIONS[:1], schema=schema).close()
    keys = [hashlib.sha256(data).hexdigest() for data in (b"resumed", b"idle")]
    with psycopg.connect(url, autocommit=True, options=f"-c search_path={schema}") as conn:
        conn.execute(HEAP_BLOBS_BEFORE_VERSION_5)  # as the heap store of those releases made it
        for key, data in zip(keys, (b"resumed", b"idle")):
            conn.execute(
                "INSERT INTO heap_blobs (key, data, size) VALUES (%s, %s, %s)", (key, data, len(data))
            )
    resumed_at = datetime.now(timezone.utc) + timedelta(minutes=5)
    with psycopg.connect(url, autocommit=True, options=f"-c search_path={schema}") as conn:
        conn.execute(
            "INSERT INTO executions (execution_id, status, started_at, heap_in) VALUES ('e', 'running', %s, %s)",
            (resumed_at, keys[0]),
        )
    db = postgres.open_postgres(url, schema=schema)
    try:
        index = PostgresHeapIndex(db)
        resumed, idle = (index.entry(k) for k in keys)
        assert resumed is not None and idle is not None
        assert (resumed.size, idle.size) == (len(b"resumed"), len(b"idle"))
        assert resumed.last_used_at == resumed_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert idle.last_used_at == idle.created_at
        assert index.in_use(keys[0]) and not index.in_use(keys[1])
    finally:
        db.close()


# The table the PostgreSQL heap store created itself before the migrations held it (version 5).
HEAP_BLOBS_BEFORE_VERSION_5 = """
CREATE TABLE heap_blobs (
    key        text COLLATE "C" PRIMARY KEY CHECK (key ~ '^[0-9a-f]{64}$'),
    data       bytea NOT NULL,
    size       bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""


def test_the_heap_blobs_of_an_earlier_heap_store_are_kept_and_new_ones_are_made(
    postgres_server: PostgresServer, schema: str, tmp_path: Path
) -> None:
    """The blob table is the migrations' (version 5): made with the registry's tables, or, where
    an earlier release's heap store made it already, kept with its rows."""
    import hashlib

    from mcp_v8.storage.blobs_postgres import PostgresBlobStore

    url = postgres_server.url
    earlier = postgres_server.create_schema(schema_for(tmp_path / "earlier"))
    postgres.PostgresDatabase(url, postgres.MIGRATIONS[:3], schema=earlier).close()
    old = hashlib.sha256(b"old").hexdigest()
    with psycopg.connect(url, autocommit=True, options=f"-c search_path={earlier}") as conn:
        conn.execute(HEAP_BLOBS_BEFORE_VERSION_5)
        conn.execute("INSERT INTO heap_blobs (key, data, size) VALUES (%s, 'old', 3)", (old,))
    for where in (schema, earlier):
        database = postgres.open_postgres(url, schema=where)  # the registry alone makes it
        try:
            assert database.schema_version == postgres.SCHEMA_VERSION
            storage = database.run(
                "SELECT attstorage FROM pg_attribute WHERE attrelid = 'heap_blobs'::regclass AND attname = 'data'"
            )
            assert storage == [("e",)]  # EXTERNAL: no compression of what is compressed already
        finally:
            database.close()
        blobs = PostgresBlobStore(url, schema=where)
        try:
            new = hashlib.sha256(where.encode()).hexdigest()
            assert blobs.put(new, where.encode()) and blobs.get(new) == where.encode()
            assert (where == earlier) == blobs.exists(old)
        finally:
            blobs.close()


def test_an_output_log_of_an_earlier_release_reads_and_grows_after_the_migration(
    postgres_server: PostgresServer, schema: str
) -> None:
    """Version 6 drops the chunk count the earlier log kept (it topped up its last chunk): a log
    written that way reads back whole, and takes appends."""
    url = postgres_server.url
    postgres.PostgresDatabase(url, postgres.MIGRATIONS[:5], schema=schema).close()
    with psycopg.connect(url, autocommit=True, options=f"-c search_path={schema}") as conn:
        conn.execute(
            "INSERT INTO output_logs (execution_id, total_bytes, total_lines, total_newlines, chunks, last_chunk_bytes)"
            " VALUES ('old', 9, 3, 2, 2, 3)"
        )
        conn.execute(
            "INSERT INTO output_chunks (execution_id, seq, start_byte, start_line, n_lines, data)"
            " VALUES ('old', 0, 0, 0, 2, 'one\ntwo\n'::bytea), ('old', 1, 8, 2, 0, 'x'::bytea)"
        )
    db = postgres.open_postgres(url, schema=schema)
    try:
        columns = {
            str(r[0])
            for r in db.run(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = 'output_logs'"
            )
        }
        assert "chunks" not in columns and "last_chunk_bytes" not in columns
        log = postgres.PostgresOutputLog(db, flush_interval=None)
        assert log.read_lines("old").data == "one\ntwo\nx"
        log.append("old", "y\n")  # written through: it is not in this log's memory
        assert log.read_lines("old", 2).data == "xy\n"
        assert log.totals("old") == OutputTotals(11, 3, False)
        log.close()
    finally:
        db.close()


def test_a_statement_runs_as_written_whatever_its_literals_hold(db: PostgresDatabase) -> None:
    rows = db.run("SELECT '5% :x {y}' || :x, 7 % 4, :d::date::text", {"x": "a", "d": "2024-02-03"})
    assert rows == [("5% :x {y}a", 3, "2024-02-03")]


def test_a_version_11_schema_gives_every_heap_and_tag_to_the_default_tenant(
    postgres_server: PostgresServer, schema: str
) -> None:
    """Version 12 makes heaps owned per tenant and their tags per tenant, as SQLite's 13: every
    heap and tags row of an earlier schema is the default tenant's, another tenant sees none."""
    url = postgres_server.url
    postgres.PostgresDatabase(url, postgres.MIGRATIONS[:11], schema=schema).close()
    key = "c" * 64
    with psycopg.connect(url, autocommit=True, options=f"-c search_path={schema}") as conn:
        conn.execute(
            "INSERT INTO heaps (key, size, created_at, last_used_at, session, tags)"
            " VALUES (%s, 10, '2026-01-01Z', '2026-01-02Z', 'main', '{\"k\": \"first\"}')",
            (key,),
        )
        conn.execute(
            "INSERT INTO heap_tags (key, tags, created_at, updated_at)"
            " VALUES (%s, '{\"k\": \"patched\"}', '2026-01-01Z', '2026-01-04Z')",
            (key,),
        )
    db = postgres.open_postgres(url, schema=schema)
    try:
        assert db.schema_version == postgres.SCHEMA_VERSION
        index, tags = postgres.PostgresHeapIndex(db), postgres.PostgresHeapTags(db)
        meta = index.entry(key, tenant="default")
        assert meta is not None and (meta.session, meta.tags, meta.size) == ("main", {"k": "patched"}, 10)
        assert (meta.created_at, meta.last_used_at) == (
            "2026-01-01T00:00:00.000Z",
            "2026-01-02T00:00:00.000Z",
        )
        assert index.owners(key) == ["default"] and index.entry(key, tenant="acme") is None
        assert [k for k, _ in tags.query({"k": "patched"}, 10, tenant="default").items] == [key]
        assert tags.query({}, 10, tenant="acme").items == []
        tags.patch(
            key, {"k": "theirs"}, base=None, created_at=meta.created_at, tenant="acme"
        )  # a row of its own
        assert tags.get(key, tenant="default") == {"k": "patched"} and tags.get(key, tenant="acme") == {
            "k": "theirs"
        }
    finally:
        db.close()
