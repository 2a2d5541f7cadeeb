"""Nodes sharing a PostgreSQL registry and a remote heap store (S3 or PostgreSQL bytea), each
with its own data directory and workers: what one node stored, another answers for and resumes.
Real PostgreSQL and SeaweedFS, started by the fixtures."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp_v8.app import Service
from mcp_v8.config import Settings
from mcp_v8.operations import Conflict, NotFound, Operations, Unavailable
from mcp_v8.storage import Catalogue, HeapBlobs, SharedHeaps

from .pg_server import PostgresServer
from .s3_server import S3Server
from .service_helpers import SIGNING_KEY

WAIT_MS = 30_000
HANG = 240.0  # seconds; only reached when something is broken (two busy cores make it slow)
Node = tuple[Service, Operations]


@pytest.fixture
def nodes(
    tmp_path: Path, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Node]]:
    database = postgres_server.create_database("nodes_" + uuid.uuid4().hex[:12])
    started: list[Service] = []

    def start(name: str, **settings: Any) -> Node:
        service = Service(
            Settings(
                data_dir=tmp_path / name,
                workers=1,
                database_url=database,
                heap_signing_key=(SIGNING_KEY,),
                **settings,
            )
        ).start()
        started.append(service)
        return service, service.operations()

    yield start
    for service in started:
        service.close()


def blobs(service: Service) -> HeapBlobs:
    catalogue = service.catalogue
    assert isinstance(catalogue, Catalogue)
    return catalogue.blobs


def owner(service: Service, execution_id: str) -> str:
    """The lease of the node that claimed the execution."""
    rows = service.stores.work._db.run(  # type: ignore[union-attr]
        "SELECT owner FROM executions WHERE execution_id = :id", {"id": execution_id}
    )
    return str(rows[0][0])


def run(ops: Operations, code: str, **body: Any) -> dict[str, Any]:
    """The execution once it ended: long-polls until it did, or a generous deadline passed."""
    execution_id = ops.submit({"code": code, **body})
    deadline = time.monotonic() + HANG
    info = ops.get(execution_id, WAIT_MS)
    while info["status"] == "running" and time.monotonic() < deadline:
        info = ops.get(execution_id, WAIT_MS)
    return info


def test_heaps_in_postgresql_by_default(nodes: Callable[..., Node]) -> None:
    (a, on_a), (b, on_b) = nodes("a"), nodes("b")
    assert a.settings.heap_backend == "postgresql" and isinstance(blobs(a), SharedHeaps)
    first = run(on_a, "console.log('from a'); var n = 41; n", session="s", tags={"step": "one"})
    assert first["status"] == "completed" and first["heap"] is not None
    # Node b answers for node a's execution: its record, its output, its session.
    assert on_b.get(first["execution_id"]) == first
    assert on_b.output(first["execution_id"])["data"] == "from a\n"
    assert on_b.session_log("s")["executions"][0]["execution_id"] == first["execution_id"]
    # Whichever node ran it, the other never had its heap, and knows it all the same.
    (other, on_other) = (a, on_a) if not a.heaps.exists(first["heap"]) else (b, on_b)
    assert not other.heaps.exists(first["heap"])
    assert on_other.session_log("s")["executions"][0]["heap_stored"] is True
    assert on_other.sessions()["sessions"][0]["latest_heap_stored"] is True
    # Submitted there, it runs on whichever node claims it, which fetches the heap if it lacks it.
    second = run(on_other, "n + 1", heap=first["heap"])
    assert (second["status"], second["result"]) == ("completed", "42")
    ran = a if owner(a, second["execution_id"]) == a.lease.id else b
    assert ran.heaps.exists(first["heap"])  # cached there from now on
    info = on_b.heap(second["heap"])
    assert info["heap"] == second["heap"] and info["size_bytes"] > 0
    assert on_a.query_heaps({"step": "one"})["heaps"][0]["heap"] == first["heap"]
    with pytest.raises(NotFound):
        on_b.submit({"code": "1", "heap": "0" * 64})


def test_heaps_in_s3(
    nodes: Callable[..., Node], s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    store = f"{s3_server.url}/t-{uuid.uuid4().hex[:8]}"
    (a, on_a), (b, on_b) = (nodes(n, heap_store=store, s3_endpoint_url=s3_server.endpoint) for n in "ab")
    first = run(on_a, "var words = ['a']; words.length")
    assert first["status"] == "completed"
    second = run(on_b, "words.push('b'); words.join('')", heap=first["heap"])
    assert (second["status"], second["result"]) == ("completed", '"ab"')
    third = run(on_a, "words.length", heap=second["heap"])  # and back: b's heap on a
    assert third["result"] == "2"
    assert on_a.delete_heap(first["heap"]) == {"ok": True}
    with pytest.raises(NotFound):  # gone from the shared store, not only from a's cache
        on_b.submit({"code": "1", "heap": first["heap"]})


def test_an_unreachable_heap_store_fails_what_needs_it_and_nothing_else(
    nodes: Callable[..., Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    _, ops = nodes("down", heap_store="s3://heaps/x", s3_endpoint_url="http://127.0.0.1:9")  # nothing listens
    failed = run(ops, "var kept = 1; kept")
    assert failed["status"] == "failed" and failed["heap"] is None
    assert failed["error"].startswith("the heap snapshot could not be stored: ")
    plain = run(ops, "2 + 2", snapshot=False)  # needs no heap store
    assert (plain["status"], plain["result"]) == ("completed", "4")
    with pytest.raises(Unavailable):  # the submit cannot check the heap exists: 503, not 404
        ops.submit({"code": "1", "heap": "a" * 64})
    with pytest.raises(Unavailable):
        ops.heap("a" * 64)


def test_any_node_answers_for_any_execution(nodes: Callable[..., Node]) -> None:
    """Submit on a, long-poll on b, cancel on c, resume on b: one service."""
    (a, on_a), (b, on_b), (c, on_c) = nodes("a"), nodes("b"), nodes("c")
    first = on_b.get(on_a.submit({"code": "var n = 41; n"}), WAIT_MS)  # long-poll on another node
    assert (first["status"], first["result"]) == ("completed", "41")
    resumed = run(on_b, "n + 1", heap=first["heap"])
    assert resumed["result"] == "42"
    looping = on_a.submit({"code": "console.log('started'); while (true) {}", "execution_timeout_secs": 120})
    started = on_c.get(looping, 0)
    assert started["status"] == "running"
    assert on_c.cancel(looping) == {"ok": True, "error": None}  # whichever node runs it
    done = on_b.get(looping, WAIT_MS)
    assert done["status"] == "cancelled"
    assert on_c.cancel(looping)["ok"] is False  # once
    # the node that ran it stopped its worker: every node's worker is free again
    for ops in (on_a, on_b, on_c):
        assert run(ops, "1 + 1", snapshot=False)["result"] == "2"
    owners = {s.lease.id for s in (a, b, c)}
    assert len(owners) == 3


def test_work_spreads_over_the_nodes(nodes: Callable[..., Node]) -> None:
    (a, on_a), _, _ = nodes("a"), nodes("b"), nodes("c")
    ids = [on_a.submit({"code": "const t = Date.now(); while (Date.now() - t < 300) {} 1", "snapshot": False})
           for _ in range(6)]  # fmt: skip
    results = [on_a.get(i, WAIT_MS) for i in ids]
    assert [r["status"] for r in results] == ["completed"] * 6
    rows = a.stores.work._db.run(  # type: ignore[union-attr]
        "SELECT DISTINCT owner FROM executions WHERE execution_id = ANY(:ids)", {"ids": ids}
    )
    assert len({r[0] for r in rows}) >= 2  # one worker per node: the others claimed some


def test_retention_of_the_shared_heap_store(nodes: Callable[..., Node]) -> None:
    """Heaps older than the age go from the shared store, but those tagged and those an
    execution of any node started from or produced within the age."""
    (a, on_a), (_, on_b) = nodes("a", retention_max_age_secs=2), nodes("b", retention_max_age_secs=2)
    old = run(on_a, "var x = 'old'; x")["heap"]
    tagged = run(on_a, "var x = 'tagged'; x")["heap"]
    resumed = run(on_a, "var x = 'resumed'; x")["heap"]
    on_a.replace_heap_tags(tagged, {"keep": "yes"})
    time.sleep(3)  # all three are older than the age now
    assert run(on_b, "x", heap=resumed)["result"] == '"resumed"'  # used within the age, on b
    shared = blobs(a)
    assert isinstance(shared, SharedHeaps)
    remote = shared.remote
    a.prune()
    assert not remote.exists(old) and not a.heaps.exists(old)
    assert remote.exists(tagged) and remote.exists(resumed)
    with pytest.raises(NotFound):
        on_b.submit({"code": "x", "heap": old})
    assert run(on_b, "x", heap=tagged)["result"] == '"tagged"'


def test_deployments_in_two_schemas_of_one_database(tmp_path: Path, postgres_server: PostgresServer) -> None:
    """Two deployments on one database, each in its own schema (``search_path`` in the URL's
    ``options``): their executions, heaps, queues and events are apart."""
    import psycopg

    database = postgres_server.create_database("schemas_" + uuid.uuid4().hex[:12])
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA one; CREATE SCHEMA two")
    started: list[Service] = []
    try:
        for name in ("one", "two"):
            url = f"{database}?options=-csearch_path%3D{name}"
            started.append(
                Service(
                    Settings(
                        data_dir=tmp_path / name, workers=1, database_url=url, heap_signing_key=(SIGNING_KEY,)
                    )
                ).start()
            )
        on_one, on_two = (s.operations() for s in started)
        first, second = run(on_one, "var n = 1; n"), run(on_two, "var n = 2; n")
        assert (first["result"], second["result"]) == ("1", "2")
        with pytest.raises(NotFound):
            on_one.get(second["execution_id"])
        assert [e["execution_id"] for e in on_two.list_executions()["executions"]] == [second["execution_id"]]
        with pytest.raises(NotFound):  # the heap store is the deployment's too
            on_two.submit({"code": "n", "heap": first["heap"]})
        looping = on_two.submit({"code": "while (true) {}", "snapshot": False, "execution_timeout_secs": 120})
        assert on_two.cancel(looping) == {"ok": True, "error": None}
        assert on_two.get(looping, WAIT_MS)["status"] == "cancelled"
        assert run(on_one, "n + 1", heap=first["heap"])["result"] == "2"
    finally:
        for service in started:
            service.close()


def test_a_heap_copied_from_a_deployment_with_another_key_is_refused_on_postgresql(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """Two deployments in two schemas of one database, with keys of their own: a heap of one,
    copied into the other's tables (its bytes, its index row, signature and all, and its owner) as someone who
    can write them would, is refused there before any worker receives it; an unsigned copy too."""
    import psycopg

    database = postgres_server.create_database("copied_" + uuid.uuid4().hex[:12])
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA ours; CREATE SCHEMA theirs")
    started: list[Service] = []
    try:
        for name in ("ours", "theirs"):
            url = f"{database}?options=-csearch_path%3D{name}"
            key = f"the heap signing key of {name}"
            settings = Settings(
                data_dir=tmp_path / name, workers=1, database_url=url, heap_signing_key=(key,)
            )
            started.append(Service(settings).start())
        ours, theirs = started
        made = run(theirs.operations(), "var secret = 'theirs'; secret")
        heap = made["heap"]
        with psycopg.connect(database, autocommit=True) as conn:
            for table in ("heap_blobs", "heaps", "heap_owners"):  # its bytes, index row and ownership
                conn.execute(f"INSERT INTO ours.{table} SELECT * FROM theirs.{table} WHERE key = %s", (heap,))
        restarts = ours.manager.stats()["worker_restarts"]
        refused = run(ours.operations(), "secret", heap=heap)  # refused as the claiming node queues it
        assert (refused["status"], refused["error"]) == (
            "failed",
            f"its heap could not be read: heap {heap} is not signed by this deployment",
        )
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("UPDATE ours.heaps SET signature = NULL WHERE key = %s", (heap,))
        unsigned = run(ours.operations(), "secret", heap=heap)
        assert unsigned["status"] == "failed" and "--trust-unsigned-heaps" in unsigned["error"]
        stats = ours.manager.stats()
        assert stats["heaps_refused"] == 2 and stats["worker_restarts"] == restarts
    finally:
        for service in started:
            service.close()


def holder(nodes: list[Node], key: str) -> tuple[Node, Node]:
    """The node whose cache holds ``key`` and another one, which never had it."""
    (a, on_a), (b, on_b) = nodes
    return ((a, on_a), (b, on_b)) if a.heaps.exists(key) else ((b, on_b), (a, on_a))


def test_a_tag_query_on_any_node_finds_heaps_another_node_stored(nodes: Callable[..., Node]) -> None:
    both = [nodes("a"), nodes("b")]
    first = run(both[0][1], "var tagged = 1", tags={"suite": "query-anywhere"}, session="tq")
    _, (other, on_other) = holder(both, first["heap"])
    assert not other.heaps.exists(first["heap"])
    found = on_other.query_heaps({"suite": "query-anywhere"})["heaps"]
    assert [(h["heap"], h["session"], h["tags"]) for h in found] == [
        (first["heap"], "tq", {"suite": "query-anywhere"})
    ]
    assert found[0]["size_bytes"] > 0 and found[0] == on_other.heap(first["heap"])
    assert not other.heaps.exists(first["heap"])  # answered from the registry, not fetched


def test_a_heap_resumed_on_one_node_is_not_deleted_on_another(nodes: Callable[..., Node]) -> None:
    """Running on one node, or queued while every worker is busy: any node refuses the delete."""
    both = [nodes("a"), nodes("b")]
    (a, on_a), (b, on_b) = both
    heap = run(on_a, "var kept = 'kept'")["heap"]
    looping = {"code": "console.log('started'); while (true) {}", "execution_timeout_secs": 120}
    running = on_a.submit({**looping, "heap": heap})
    until_output(on_a, running, "started")
    runner = a if owner(a, running) == a.lease.id else b
    (_, on_elsewhere) = (b, on_b) if runner is a else (a, on_a)
    with pytest.raises(Conflict):
        on_elsewhere.delete_heap(heap)  # the node that runs it is the other one
    busy = on_b.submit(looping)  # both workers busy now: the next one stays in the shared queue
    until_output(on_b, busy, "started")
    assert on_a.cancel(running)["ok"]
    assert on_a.get(running, WAIT_MS)["status"] == "cancelled"
    free = on_b.submit(looping)  # takes the worker the cancel freed
    until_output(on_b, free, "started")
    queued = on_a.submit({"code": "kept", "heap": heap})
    assert on_b.get(queued)["status"] == "running"
    for ops in (on_a, on_b):
        with pytest.raises(Conflict):
            ops.delete_heap(heap)  # queued, on no node yet
    assert on_b.cancel(queued)["ok"]
    assert on_b.delete_heap(heap) == {"ok": True}
    for ops in (on_a, on_b):
        with pytest.raises(NotFound):
            ops.heap(heap)
        ops.cancel(busy)
        ops.cancel(free)


def until_output(ops: Operations, execution_id: str, needle: str) -> None:
    deadline = time.monotonic() + HANG
    while needle not in ops.output(execution_id)["data"]:
        assert time.monotonic() < deadline, f"{needle!r} never printed"
        time.sleep(0.05)


class Statements:
    """Counts the SQL statements this thread sends (every psycopg cursor: the registry's and the
    heap blob store's connections alike). The nodes' own threads are not counted."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import psycopg

        self.sent: list[str] = []
        self._thread = threading.get_ident()
        real = psycopg.Cursor.execute

        def execute(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() == self._thread:
                self.sent.append(str(query))
            return real(cursor, query, *args, **kwargs)

        monkeypatch.setattr(psycopg.Cursor, "execute", execute)

    def during(self, fn: Callable[[], Any]) -> int:
        before = len(self.sent)
        fn()
        return len(self.sent) - before


def test_a_session_log_page_costs_the_same_statements_however_many_heaps_it_names(
    nodes: Callable[..., Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    (_, on_a) = nodes("a")
    for i in range(12):
        session = "counted" if i < 8 else f"other-{i}"
        assert run(on_a, f"var step = {i}", session=session)["heap"] is not None
    (_, on_c) = nodes("c")  # a node that never ran any: its cache holds none of their heaps
    statements = Statements(monkeypatch)
    small = statements.during(lambda: on_c.session_log("counted", 2))
    large = statements.during(lambda: on_c.session_log("counted", 8))
    assert large == small
    log = on_c.session_log("counted", 8)["executions"]
    assert len(log) == 8 and all(e["heap_stored"] is True for e in log)
    assert statements.during(lambda: on_c.sessions(5)) == statements.during(lambda: on_c.sessions(1))
    assert all(s["latest_heap_stored"] is True for s in on_c.sessions(5)["sessions"])


class ExecutionStatements:
    """Counts the SQL statements a node sends for its executions: those of this thread (the
    requests), of its feeder (claims) and of its dispatchers (what a worker's execution
    records), as ``pg_stat_statements`` counts them (a transaction's ``BEGIN`` and ``COMMIT``
    included). Its heartbeat (leases, reaping) and retention are not counted: they are the
    node's, whatever it runs."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import psycopg

        self.count = 0
        self._lock = threading.Lock()
        self._thread = threading.get_ident()
        execute, executemany, transaction = (
            psycopg.Cursor.execute,
            psycopg.Cursor.executemany,
            psycopg.Connection.transaction,
        )

        def counted(n: int) -> None:
            current = threading.current_thread()
            if (
                current.ident == self._thread
                or current.name == "mcp-v8-feeder"
                or current.name.startswith("mcp-v8-dispatch")
            ):
                with self._lock:
                    self.count += n

        def counted_execute(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            counted(1)
            return execute(cursor, query, *args, **kwargs)

        def counted_executemany(cursor: Any, query: Any, params: Any, *args: Any, **kwargs: Any) -> Any:
            params = list(params)
            counted(len(params))
            return executemany(cursor, query, params, *args, **kwargs)

        def counted_transaction(conn: Any, *args: Any, **kwargs: Any) -> Any:
            counted(2)  # BEGIN, COMMIT
            return transaction(conn, *args, **kwargs)

        monkeypatch.setattr(psycopg.Cursor, "execute", counted_execute)
        monkeypatch.setattr(psycopg.Cursor, "executemany", counted_executemany)
        monkeypatch.setattr(psycopg.Connection, "transaction", counted_transaction)


def test_what_an_execution_costs_the_database(
    nodes: Callable[..., Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Statements per execution submitted and awaited on a node of its own, which runs it (what
    ``benches/nodes.py`` measures on a loaded cluster). A stateless execution: its record, log
    and job in one statement, the claim, the record of its end, its job gone with the news, and
    perhaps a read of the long-poll (when the claim comes after it). Console output costs one
    write of the whole log at its end, not one per line. A change that adds to these says so
    here."""
    (_, on_a) = nodes("a")
    assert run(on_a, "1", snapshot=False)["result"] == "1"  # connections, the worker
    statements = ExecutionStatements(monkeypatch)
    rounds = 10
    for i in range(rounds):
        assert run(on_a, f"{i} + 1", snapshot=False)["result"] == str(i + 1)
    assert statements.count / rounds <= 5
    statements.count = 0
    # Five lines 30 ms apart: five batches from the worker, buffered here until the end.
    printing = (
        "for (let i = 0; i < 5; i++) { console.log('line', i); const t = Date.now(); while (Date.now() - t < 30) {} }"
        " 'done'"
    )
    done = [run(on_a, printing, snapshot=False) for _ in range(rounds)]
    # The log written at its end (BEGIN, totals, chunk, COMMIT); now and then one more write, by
    # the log's flusher, when a busy machine stretches an execution past its interval.
    assert statements.count / rounds <= 5 + 4 + 2
    for info in done:
        assert info["result"] == '"done"' and on_a.output(info["execution_id"])["total_lines"] == 5
