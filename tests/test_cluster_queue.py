"""The queue nodes share on one PostgreSQL, driven through real execution managers and a real
PostgreSQL without workers or V8: the queue limit under submits racing on two nodes, the places
it gives back (claims, cancels, failures, reaps, a node lost), the notification channels of two
deployments in two schemas of one database, and a claimed job that cannot be started here.

Every wait has a generous bound that only turns a hang into a failure."""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mcp_v8.executions import CancelOutcome, ExecutionManager, ExecutionSpec, Limits, QueueFull, SharedQueue
from mcp_v8.executions.cluster import LEFT_NODE, Cluster
from mcp_v8.executions.spec import spec_to_wire
from mcp_v8.executions.waiters import QueueEvents
from mcp_v8.storage import FileHeapStore, HeapSigner
from mcp_v8.storage.heap_catalogue import Catalogue
from mcp_v8.storage.shared_heaps import LocalHeaps, SharedHeaps

from .pg_server import PostgresServer, schema_for

psycopg = pytest.importorskip("psycopg")
postgres = pytest.importorskip("mcp_v8.storage.postgres")
pg_queue = pytest.importorskip("mcp_v8.storage.postgres.queue")

HANG = 30.0  # seconds; only ever reached when the code under test is broken
LIMIT = 5
SUBMITTERS = 24  # threads released together per round, half on each node
ROUNDS = 10


def request(**fields: Any) -> ExecutionSpec:
    limits = Limits(heap_limit_mb=8, timeout_secs=60, max_result_bytes=1 << 20, max_output_bytes=1 << 20)
    return ExecutionSpec(**{"code": "1", "limits": limits, **fields})


def no_worker(*args: Any) -> Any:
    raise AssertionError("these managers are never started: no worker runs")


@dataclass
class Node:
    """One node: its own connection pool on the shared schema, its stores, queue and manager
    (never started: nothing runs, jobs stay where the test puts them)."""

    name: str
    db: Any
    queue: Any
    executions: Any
    output: Any
    manager: ExecutionManager
    catalogue: Catalogue

    def sql(self, query: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self.db.run(query, params or {})
        return rows

    def places(self) -> int:
        """The places of the queue taken, as counted."""
        return int(self.queue.waiting())

    def unclaimed(self) -> int:
        """The jobs no node has claimed: what the places must always equal."""
        return int(self.sql("SELECT count(*) FROM queue WHERE claimed_by IS NULL")[0][0])

    def status(self, execution_id: str) -> tuple[str, str | None]:
        record = self.executions.get(execution_id)
        assert record is not None, execution_id
        return record.status, record.error


@pytest.fixture
def make_node(postgres_server: PostgresServer, tmp_path: Path) -> Iterator[Callable[..., Node]]:
    made: list[Node] = []
    default_schema = postgres_server.create_schema(schema_for(tmp_path))

    def make(
        name: str, *, schema: str | None = None, limit: int = LIMIT, remote: Any = None, **manager: Any
    ) -> Node:
        """``remote``: a shared blob store the node's heaps are in (else its data directory)."""
        db = postgres.open_postgres(postgres_server.url, schema=schema or default_schema)
        work = pg_queue.PostgresQueue(db, postgres_server.url)
        executions = postgres.PostgresExecutionStore(db)
        output = postgres.PostgresOutputLog(db, max_output_bytes=1 << 20)
        root = tmp_path / name
        heaps = FileHeapStore(root, durable=False)
        blobs = LocalHeaps(heaps) if remote is None else SharedHeaps(heaps, remote)
        signer = HeapSigner([b"the key of this test cluster"], trust_unsigned=False)
        catalogue = Catalogue(postgres.PostgresHeapIndex(db), postgres.PostgresHeapTags(db), blobs, signer)
        node = Node(
            name,
            db,
            work,
            executions,
            output,
            ExecutionManager(
                executions=executions,
                output=output,
                data_dir=root,
                workers=1,
                queue_limit=limit,
                spawn_worker=no_worker,
                admission=SharedQueue(work, catalogue, limit),
                events=QueueEvents(work),
                owner=name,
                catalogue=catalogue,
                **manager,
            ),
            catalogue,
        )
        made.append(node)
        return node

    yield make
    for node in made:
        node.manager.close()
        node.output.close()  # its flusher thread stops with it
    for node in made:
        node.db.close()


def submit_together(nodes: list[Node], threads: int) -> tuple[list[str], int]:
    """``threads`` submits released at once, alternating between ``nodes``: the ids accepted and
    how many were refused with QueueFull."""
    start = threading.Barrier(threads)
    accepted: list[str] = []
    refused: list[QueueFull] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def submit(i: int) -> None:
        start.wait(HANG)
        try:
            execution_id = nodes[i % len(nodes)].manager.submit(request(code=f"{i}"))
        except QueueFull as e:
            with lock:
                refused.append(e)
        except BaseException as e:
            with lock:
                errors.append(e)
        else:
            with lock:
                accepted.append(execution_id)

    workers = [threading.Thread(target=submit, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(HANG)
    assert not errors, errors
    assert all("the queue is full" in str(e) for e in refused)
    return accepted, len(refused)


# -- the queue limit --------------------------------------------------------------------------


def drain_by_claims(a: Node, b: Node, ids: list[str]) -> None:
    """Nodes claim every job (their places come back), then end them: ending a claimed job
    gives back nothing more."""
    claimed = []
    for node in (a, b) * len(ids):
        job = node.queue.claim(node.name)
        if job is None:
            break
        claimed.append(job[0])
    assert sorted(claimed) == sorted(ids)
    assert a.places() == a.unclaimed() == 0
    for execution_id in ids:
        a.executions.finish(execution_id, "completed", result="1")
        a.queue.finished(execution_id)


def drain_by_cancels(a: Node, b: Node, ids: list[str]) -> None:
    """Each queued execution cancelled through a node (neither runs it: the other's cancel)."""
    for i, execution_id in enumerate(ids):
        assert (a, b)[i % 2].manager.cancel(execution_id) is CancelOutcome.ACCEPTED
    assert {a.status(i)[0] for i in ids} == {"cancelled"}


def drain_by_failures(a: Node, b: Node, ids: list[str]) -> None:
    """Each one failed while queued, by a node that says so (as an adoption that fails does)."""
    for execution_id in ids:
        assert b.executions.finish(execution_id, "failed", error="failed while queued") is not None
        b.queue.finished(execution_id)


def drain_by_reaps(a: Node, b: Node, ids: list[str]) -> None:
    """Each one ended by a node that lost the database before it could delete the job (the
    announce failed): the places stay taken until a node's reaper sweeps those jobs."""
    for execution_id in ids:
        a.executions.finish(execution_id, "failed", error="ended, never announced")
    assert a.places() == a.unclaimed() == len(ids)
    assert a.queue.reap("lost", by=a.name) == []
    assert a.sql("SELECT count(*) FROM queue") == [(0,)]


def drain_by_a_lost_node(a: Node, b: Node, ids: list[str]) -> None:
    """A node claims every job and dies: its places came back with the claims; the reaper fails
    its executions and deletes their jobs, giving back nothing twice."""
    a.queue.heartbeat("dead", -1.0)  # a lease already expired
    for _ in ids:
        assert a.queue.claim("dead") is not None
    assert a.places() == 0
    assert sorted(a.queue.reap("lost", by=a.name)) == sorted(ids)
    assert {a.status(i)[0] for i in ids} == {"failed"}


DRAINS = [drain_by_claims, drain_by_cancels, drain_by_failures, drain_by_reaps, drain_by_a_lost_node]


def test_submits_racing_on_two_nodes_never_queue_more_than_the_limit(make_node: Callable[..., Node]) -> None:
    a, b = make_node("a"), make_node("b")
    accepted_so_far = 0
    for round in range(ROUNDS):
        accepted, refused = submit_together([a, b], SUBMITTERS)
        # Exactly the limit: never more (the race), never fewer (a place lost or leaked).
        assert (len(accepted), refused) == (LIMIT, SUBMITTERS - LIMIT), round
        assert a.places() == a.unclaimed() == LIMIT
        accepted_so_far += len(accepted)
        # A refused submit leaves nothing behind: no record, no output log, no job.
        assert a.sql("SELECT count(*) FROM executions") == [(accepted_so_far,)]
        assert a.sql("SELECT count(*) FROM output_logs") == [(accepted_so_far,)]
        DRAINS[round % len(DRAINS)](a, b, accepted)
        # Every place came back, by whichever path: the next round gets the limit again.
        assert a.places() == a.unclaimed() == 0, DRAINS[round % len(DRAINS)].__name__
        assert a.sql("SELECT count(*) FROM executions WHERE status = 'running'") == [(0,)]


def test_a_full_queue_refuses_with_the_same_error_and_a_claim_makes_room(
    make_node: Callable[..., Node],
) -> None:
    a, b = make_node("a", limit=2), make_node("b", limit=2)
    first, _ = a.manager.submit(request()), b.manager.submit(request())
    for node in (a, b):
        with pytest.raises(QueueFull, match=r"^the queue is full \(2 executions waiting\); retry later$"):
            node.manager.submit(request())
    claimed = b.queue.claim("b")
    assert claimed is not None and claimed[0] == first  # the oldest
    assert a.manager.submit(request())
    with pytest.raises(QueueFull):
        b.manager.submit(request())


def test_the_reaper_restores_a_count_moved_outside_the_queue(make_node: Callable[..., Node]) -> None:
    """What counts outside the queue's own statements (a node of an earlier release, a hand
    edit) is set right by the next reap, in both directions."""
    a = make_node("a")
    a.manager.submit(request())
    for wrong in (4, 0):
        a.sql("UPDATE usage_counters SET used = :used WHERE resource = 'queued'", {"used": wrong})
        assert a.places() == wrong
        a.queue.reap("lost", by="a")
        assert a.places() == a.unclaimed() == 1


def test_the_migration_counts_the_jobs_already_queued(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """A schema of version 1 with unclaimed and claimed jobs: version 2 starts its count from
    the unclaimed ones."""
    schema = postgres_server.create_schema(schema_for(tmp_path))
    postgres.PostgresDatabase(postgres_server.url, postgres.MIGRATIONS[:1], schema=schema).close()
    with psycopg.connect(postgres_server.url, options=f"-c search_path={schema}", autocommit=True) as conn:
        for n, claimed_by in enumerate([None, None, "x", None]):
            conn.execute(
                "INSERT INTO queue (execution_id, job, claimed_by) VALUES (%s, '\\x7b7d', %s)",
                (f"e{n}", claimed_by),
            )
    db = postgres.open_postgres(postgres_server.url, schema=schema)
    try:
        assert db.schema_version == postgres.SCHEMA_VERSION
        assert pg_queue.PostgresQueue(db, postgres_server.url).waiting() == 3
    finally:
        db.close()


# -- channels of deployments in two schemas of one database ---------------------------------


def test_channel_names_fit_and_differ() -> None:
    assert pg_queue.channel("work", "public") == "mcp_v8_work:public"
    long = "s" * 63  # the longest schema name: hashed, within an identifier's 63 bytes
    odd = 'Tenant "B" ' + "é" * 20  # quotes, spaces, several bytes a character
    names = {
        pg_queue.channel(kind, s) for kind in ("work", "events") for s in ("public", long, odd, long[:-1])
    }
    assert len(names) == 8
    assert all(len(n.encode()) <= 63 for n in names)
    assert (
        pg_queue.channel("events", long) == "mcp_v8_events#" + hashlib.sha256(long.encode()).hexdigest()[:40]
    )


class Listener:
    """The events a deployment's node hears, through the queue's own ``listen``."""

    def __init__(self, work: Any) -> None:
        self.events: queue.Queue[str] = queue.Queue()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=work.listen, args=(self.events.put, self.stop), daemon=True)
        self.thread.start()
        assert self.events.get(timeout=HANG) == "connected"

    def until(self, last: str) -> list[str]:
        """Every event heard until ``last`` (included)."""
        heard = [self.events.get(timeout=HANG)]
        while heard[-1] != last:
            heard.append(self.events.get(timeout=HANG))
        return heard

    def close(self) -> None:
        self.stop.set()
        self.thread.join(HANG)


def test_deployments_in_two_schemas_never_hear_each_other(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """Deployment A in a schema named by ``schema`` (so long that its channels are hashed),
    deployment B in one the URL's ``search_path`` names (quotes, spaces, capitals): each hears
    its own work, cancels and finishes, and none of the other's."""
    from psycopg.conninfo import make_conninfo

    unique = schema_for(tmp_path)
    long = postgres_server.create_schema((unique + "_" + "a" * 63)[:63])
    odd = 'Tenant "B" ' + unique
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE SCHEMA {}").format(psycopg.sql.Identifier(odd)))
    quoted = '\\"' + odd.replace(" ", "\\ ").replace('"', '\\"\\"') + '\\"'
    b_url = make_conninfo(postgres_server.url, options=f"-c search_path={quoted}")
    a_db = postgres.open_postgres(postgres_server.url, schema=long)
    b_db = postgres.open_postgres(b_url)
    assert (a_db.current_schema, b_db.current_schema) == (long, odd)
    a, b = pg_queue.PostgresQueue(a_db, postgres_server.url), pg_queue.PostgresQueue(b_db, b_url)
    heard_a, heard_b = Listener(a), Listener(b)
    try:
        for work, tag in ((a, "a"), (b, "b")):
            assert work.enqueue(f"job-{tag}", {}, limit=LIMIT)
            work.cancelled(f"cancelled-{tag}")
            work.finished(f"finished-{tag}")
        # Last, after both sent everything: one listener hears another's notifications in the
        # order they were committed, so whatever leaked would come before these.
        a.cancelled("end-a")
        b.cancelled("end-b")
        expected = ["work", "cancel:cancelled-{}", "done:finished-{}", "cancel:end-{}"]
        assert heard_a.until("cancel:end-a") == [e.format("a") for e in expected]
        assert heard_b.until("cancel:end-b") == [e.format("b") for e in expected]
        assert heard_a.events.empty() and heard_b.events.empty()
        # The places are per deployment as well.
        assert (a.waiting(), b.waiting()) == (1, 1)
    finally:
        heard_a.close()
        heard_b.close()
        a_db.close()
        b_db.close()


# -- a claimed job that cannot be started here ---------------------------------------------


def take_one(node: Node) -> None:
    """What the node's feeder does with a free worker: claim one job and hand it to the manager."""
    assert Cluster(node.queue, node.manager, node.name)._take_one()


def assert_failed_and_announced(node: Node, heard: Listener, execution_id: str, reason: str) -> None:
    status, error = node.status(execution_id)
    assert status == "failed"
    assert error is not None and error.startswith("the execution could not be started on its node: ")
    assert reason in error
    assert heard.until(f"done:{execution_id}")[-1] == f"done:{execution_id}"  # every node wakes
    assert node.sql("SELECT count(*) FROM queue") == [(0,)]
    assert node.places() == node.unclaimed() == 0  # its place came back with the claim
    assert node.manager.stats()["queued"] == 0 and node.catalogue.in_use_all() == set()


def test_a_job_this_release_cannot_read_fails_when_claimed(make_node: Callable[..., Node]) -> None:
    """A job with a field this release does not know (queued by a newer one): the node that
    claims it fails it instead of leaving it running."""
    a, b = make_node("a"), make_node("b")
    heard = Listener(a.queue)
    try:
        execution_id = "from-a-newer-release"
        b.output.create(execution_id)
        b.executions.create(execution_id)
        job = {**spec_to_wire(request()), "priority": 7}
        assert b.queue.enqueue(execution_id, job, limit=LIMIT)
        take_one(a)
        assert_failed_and_announced(a, heard, execution_id, "priority")
    finally:
        heard.close()


def test_a_heap_that_cannot_be_cached_fails_the_claimed_execution(
    make_node: Callable[..., Node], postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """The claiming node cannot write the heap into its cache (its disk refuses: a file where
    the heap's directory goes); the execution fails, its heap is not held, no place leaks."""
    from mcp_v8.storage.blobs_postgres import PostgresBlobStore

    schema = schema_for(tmp_path)
    blobs = PostgresBlobStore(postgres_server.url, schema=schema)
    try:
        data = b"a heap's bytes"
        key = hashlib.sha256(data).hexdigest()
        assert blobs.put(key, data)
        a = make_node("a", remote=blobs)
        b = make_node("b", remote=blobs)
        (tmp_path / "a" / "heaps" / key[:2]).write_bytes(b"")  # not a directory
        heard = Listener(a.queue)
        try:
            execution_id = b.manager.submit(request(heap=key))  # b can read it
            take_one(a)
            assert_failed_and_announced(a, heard, execution_id, "Not a directory")
        finally:
            heard.close()
    finally:
        blobs.close()


# -- a node that leaves ---------------------------------------------------------------------------


def test_a_node_that_leaves_fails_what_it_could_not_record(make_node: Callable[..., Node]) -> None:
    a, b = make_node("a"), make_node("b")
    a.queue.heartbeat(a.name, 60.0)
    b.queue.heartbeat(b.name, 60.0)
    mine, theirs = a.manager.submit(request()), b.manager.submit(request())
    assert a.queue.claim(a.name)[0] == mine  # the oldest job first
    assert b.queue.claim(b.name)[0] == theirs
    # `a` recorded nothing (its database went away under its execution) and leaves.
    assert a.queue.leave(a.name, LEFT_NODE) == [mine]
    assert a.status(mine) == ("failed", LEFT_NODE)
    assert a.status(theirs)[0] == "running"  # b's own stays b's
    assert a.sql("SELECT id FROM nodes ORDER BY id") == [("b",)]
    assert a.sql("SELECT count(*) FROM queue WHERE execution_id = :id", {"id": mine}) == [(0,)]
