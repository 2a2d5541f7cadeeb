"""The contract of the heap catalogue, run against every backend: SQLite and the data directory's
files (processes sharing one directory), PostgreSQL with ``bytea`` heaps, PostgreSQL with S3
(SeaweedFS) heaps (nodes, each with its own cache directory). Real databases and servers.

A "node" here is one set of handles on the deployment's shared parts, as a server process opens
them: its own database connections, its own execution store, its own heap directory (the same one
for the SQLite processes). What one node stored, another answers for; what one node's execution
resumes, another cannot delete. A deletion racing a submit is forced into each interleaving: the
index's ``_handoff`` points park the deletion with the heap's row held, and the submit is released
only once the database shows it waiting for that row."""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mcp_v8.principal import DEFAULT_TENANT
from mcp_v8.storage import (
    Catalogue,
    ExecutionStore,
    FileHeapStore,
    HeapCatalogue,
    HeapInUse,
    HeapNotFound,
    HeapNotSigned,
    HeapSigner,
    HeapTagLimit,
    InvalidCursor,
    InvalidHeapKey,
    LocalHeaps,
    SharedHeaps,
    SQLiteExecutionStore,
    SQLiteHeapIndex,
    SQLiteHeapTags,
    open_database,
)

from .pg_server import PostgresServer, schema_for
from .s3_server import S3Server

HANG = 30.0  # seconds; only reached when something is broken
KEY = b"the key of this test deployment"


@dataclass
class Node:
    catalogue: Catalogue
    executions: ExecutionStore
    heaps: FileHeapStore  # where this node keeps heaps (its cache of a shared store)
    traced: list[str] = field(default_factory=list)  # SQLite: statements begun on this node's connections
    closers: list[Callable[[], None]] = field(default_factory=list)

    def produce(
        self,
        data: bytes,
        *,
        session: str | None = None,
        tags: dict[str, str] | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> str:
        """A heap as a worker of this node stores it for ``tenant``, then made known as the manager does."""
        key = hashlib.sha256(data).hexdigest()
        self.catalogue.add(key, data, session=session, tags=tags, tenant=tenant)
        return key

    def resume(self, key: str, tenant: str = DEFAULT_TENANT) -> str:
        """Accepts an execution of ``tenant`` resuming ``key`` as a submit does; returns its id."""
        execution_id = str(uuid.uuid4())
        self.catalogue.use(key, tenant=tenant)
        self.executions.create(execution_id, heap_in=key, require_heap=True, tenant=tenant)
        return execution_id


class Deployment:
    """Nodes sharing one registry and one heap store (see the module docstring)."""

    def __init__(self, kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        self.tmp_path = tmp_path
        self.nodes: list[Node] = []
        self.pg: PostgresServer | None = None
        self.s3: S3Server | None = None
        self.schema = ""
        self.prefix = f"t-{uuid.uuid4().hex}"
        if kind != "sqlite":
            self.pg = request.getfixturevalue("postgres_server")
            self.schema = self.pg.create_schema(schema_for(tmp_path))
        if kind == "postgres+s3":
            self.s3 = request.getfixturevalue("s3_server")

    def node(self, keys: list[bytes] | None = None, *, trust_unsigned: bool = False) -> Node:
        """A node; ``keys``: its signing keys (default: the deployment's), ``trust_unsigned``: whether
        a node of a shared store signs unsigned heaps on use (a single node always does)."""
        keys = keys or [KEY]
        signer = HeapSigner(keys, trust_unsigned=trust_unsigned or self.kind == "sqlite")
        node = self._sqlite(signer) if self.kind == "sqlite" else self._postgres(signer)
        self.nodes.append(node)
        return node

    def _sqlite(self, signer: HeapSigner) -> Node:
        root = self.tmp_path / "data"
        db = open_database(root)
        traced: list[str] = []
        connect = db._connect

        def traced_connect() -> Any:  # every connection of this node reports what it begins
            conn = connect()
            conn.set_trace_callback(traced.append)
            return conn

        db._connect = traced_connect  # type: ignore[method-assign]
        for conn in db._idle:
            conn.set_trace_callback(traced.append)
        files = FileHeapStore(root, durable=False)
        catalogue = Catalogue(SQLiteHeapIndex(db), SQLiteHeapTags(db), LocalHeaps(files), signer)
        return Node(catalogue, SQLiteExecutionStore(db), files, traced, [db.close])

    def _postgres(self, signer: HeapSigner) -> Node:
        from mcp_v8.storage.blobs_postgres import PostgresBlobStore
        from mcp_v8.storage.postgres import (
            PostgresExecutionStore,
            PostgresHeapIndex,
            PostgresHeapTags,
            open_postgres,
        )

        assert self.pg is not None
        db = open_postgres(self.pg.url, schema=self.schema)
        remote: Any
        if self.s3 is None:
            remote = PostgresBlobStore(self.pg.url, schema=self.schema)
        else:
            from mcp_v8.storage.blobs_s3 import S3BlobStore

            remote = S3BlobStore(
                f"{self.s3.url}/{self.prefix}",
                endpoint_url=self.s3.endpoint,
                access_key_id=self.s3.access_key,
                secret_access_key=self.s3.secret_key,
            )
        files = FileHeapStore(self.tmp_path / f"node-{len(self.nodes)}", durable=False)
        catalogue = Catalogue(PostgresHeapIndex(db), PostgresHeapTags(db), SharedHeaps(files, remote), signer)
        return Node(catalogue, PostgresExecutionStore(db), files, closers=[remote.close, db.close])

    def waits(self, node: Node, statement: str) -> bool:
        """Whether ``node`` has begun ``statement`` (its start) and, on PostgreSQL, waits for a lock
        in it. (SQLite reports a statement as it begins, before it waits for the write lock.)"""
        if self.pg is None:
            return any(s.startswith(statement) for s in node.traced)
        import psycopg

        with psycopg.connect(self.pg.url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
                (statement + "%",),
            ).fetchone()
        return row is not None and row[0] > 0

    @contextlib.contextmanager
    def submit_in_flight(self, key: str, execution_id: str) -> Iterator[None]:
        """A submit of an execution resuming ``key`` between its check of the heap and its commit,
        as the execution store's insert is inside its one statement: the tenant's ownership row
        held (PostgreSQL's ``FOR KEY SHARE``, SQLite's write lock), the record written, not yet
        committed."""
        if self.pg is None:
            import sqlite3

            from mcp_v8.storage.schema import database_path

            conn = sqlite3.connect(database_path(self.tmp_path / "data"), isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                assert conn.execute(
                    "SELECT 1 FROM heap_owners WHERE key = ? AND tenant = 'default'", (key,)
                ).fetchone()
                conn.execute(
                    "INSERT INTO executions (execution_id, status, started_at, heap_in)"
                    " VALUES (?, 'running', '2030-01-01T00:00:00.000Z', ?)",
                    (execution_id, key),
                )
                yield
                conn.execute("COMMIT")
            finally:
                conn.close()
            return
        import psycopg

        options = f"-c search_path={self.schema}"
        with psycopg.connect(self.pg.url, autocommit=True, options=options) as conn, conn.transaction():
            assert conn.execute(
                "SELECT 1 FROM heap_owners WHERE key = %s AND tenant = 'default' FOR KEY SHARE", (key,)
            ).fetchone()
            conn.execute(
                "INSERT INTO executions (execution_id, status, started_at, heap_in)"
                " VALUES (%s, 'running', now(), %s)",
                (execution_id, key),
            )
            yield

    def close(self) -> None:
        for node in self.nodes:
            for close in reversed(node.closers):
                with contextlib.suppress(Exception):
                    close()


@pytest.fixture(params=["sqlite", "postgres", "postgres+s3"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    d = Deployment(request.param, tmp_path, request)
    yield d
    d.close()


class Background:
    """Runs ``fn`` in a thread; :meth:`result` waits for it (bounded) and returns or raises."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None

        def main() -> None:
            try:
                self._value = fn()
            except BaseException as e:
                self._error = e
            finally:
                self.done.set()

        threading.Thread(target=main, daemon=True).start()

    def result(self) -> Any:
        assert self.done.wait(HANG), "the call never returned"
        if self._error is not None:
            raise self._error
        return self._value


class Park:
    """Parks the thread that reaches ``point`` of an index's ``_handoff`` until released."""

    def __init__(self, node: Node, point: str) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()

        def handoff(at: str) -> None:
            if at == point:
                self.reached.set()
                assert self.release.wait(HANG)

        node.catalogue.index._handoff = handoff  # type: ignore[attr-defined]


def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + HANG
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.01)


# -- what every node knows --------------------------------------------------------------------------


def test_is_a_heap_catalogue(deployment: Deployment) -> None:
    assert isinstance(deployment.node().catalogue, HeapCatalogue)


def test_a_heap_stored_by_one_node_is_known_to_every_node(deployment: Deployment) -> None:
    a, b = deployment.node(), deployment.node()
    key = a.produce(b"a heap of node a", session="s", tags={"stage": "one"})
    meta = b.catalogue.meta(key)
    assert meta is not None
    assert (meta.key, meta.size, meta.session, meta.tags) == (key, 16, "s", {"stage": "one"})
    assert meta.created_at.endswith("Z") and meta.last_used_at is not None
    assert meta.last_used_at >= meta.created_at
    other = hashlib.sha256(b"never stored").hexdigest()
    assert b.catalogue.meta(other) is None
    assert b.catalogue.stored([key, None, other, key]) == {key}
    assert [m.key for m in b.catalogue.query({"stage": "one"}, 10).items] == [key]
    b.catalogue.use(key)
    b.catalogue.fetch(key)  # its bytes where b's workers read them
    assert b.heaps.get(key) == b"a heap of node a"
    with pytest.raises(HeapNotFound):
        b.catalogue.use(other)
    with pytest.raises(InvalidHeapKey):
        b.catalogue.meta("../../etc/passwd")


def test_the_first_meta_wins_and_every_store_or_resume_is_a_use(deployment: Deployment) -> None:
    a, b = deployment.node(), deployment.node()
    key = a.produce(b"the same bytes", session="first", tags={"who": "a"})
    first = a.catalogue.meta(key)
    time.sleep(0.01)  # a later millisecond
    assert b.produce(b"the same bytes", session="second", tags={"who": "b"}) == key
    again = b.catalogue.meta(key)
    assert first is not None and again is not None
    assert (again.session, again.tags, again.created_at) == ("first", {"who": "a"}, first.created_at)
    assert first.last_used_at is not None and again.last_used_at is not None
    assert again.last_used_at > first.last_used_at
    time.sleep(0.01)
    a.catalogue.use(key)
    used = b.catalogue.meta(key)
    assert used is not None and used.last_used_at is not None and used.last_used_at > again.last_used_at


def test_tags_patched_on_one_node_are_queried_on_another(deployment: Deployment) -> None:
    a, b = deployment.node(), deployment.node()
    keys = [a.produce(f"heap {i}".encode(), tags={"suite": "q", "i": str(i)}) for i in range(5)]
    untagged = a.produce(b"untagged")
    assert b.catalogue.meta(untagged) is not None and b.catalogue.meta(untagged).tags is None  # type: ignore[union-attr]
    patched = b.catalogue.patch_tags(untagged, {"suite": "q", "i": "new"})
    assert patched.tags == {"suite": "q", "i": "new"} and patched.size == len(b"untagged")
    assert b.catalogue.patch_tags(keys[0], {"i": None, "x": "y"}).tags == {"suite": "q", "x": "y"}
    assert b.catalogue.patch_tags(keys[1], {"only": "this"}, replace=True).tags == {"only": "this"}
    with pytest.raises(HeapTagLimit):
        b.catalogue.patch_tags(keys[2], {"k": "v" * 300})
    with pytest.raises(HeapNotFound):
        b.catalogue.patch_tags(hashlib.sha256(b"nothing").hexdigest(), {"a": "b"})
    pages, cursor = [], None
    while True:
        page = a.catalogue.query({"suite": "q"}, 2, cursor=cursor)
        pages.append([m.key for m in page.items])
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    found = [k for p in pages for k in p]
    assert set(found) == {keys[0], keys[2], keys[3], keys[4], untagged}
    assert all(len(p) <= 2 for p in pages)
    assert a.catalogue.meta(keys[1]).tags == {"only": "this"}  # type: ignore[union-attr]
    with pytest.raises(InvalidCursor):
        a.catalogue.query({"suite": "q"}, 2, cursor="not a cursor")


# -- owners -----------------------------------------------------------------------------------------


def test_two_tenants_producing_the_same_bytes_each_own_the_one_blob(deployment: Deployment) -> None:
    """Ownership rows, one blob: each tenant has its own session, tags, query; a third none."""
    a, b = deployment.node(), deployment.node()
    key = a.produce(b"the same state", session="main", tags={"k": "a"}, tenant="acme")
    assert b.produce(b"the same state", session="other", tags={"k": "b"}, tenant="beta") == key
    assert a.catalogue.index.owners(key) == ["acme", "beta"]
    acme, beta = b.catalogue.meta(key, tenant="acme"), a.catalogue.meta(key, tenant="beta")
    assert acme is not None and (acme.session, acme.tags) == ("main", {"k": "a"})
    assert beta is not None and (beta.session, beta.tags) == ("other", {"k": "b"})
    for stranger in ("gamma", DEFAULT_TENANT):
        assert a.catalogue.meta(key, tenant=stranger) is None
        assert a.catalogue.stored([key], tenant=stranger) == set()
        with pytest.raises(HeapNotFound):
            a.catalogue.patch_tags(key, {"x": "y"}, tenant=stranger)
        with pytest.raises(HeapNotFound):
            a.resume(key, stranger)
        assert a.catalogue.delete(key, tenant=stranger) is False
    assert a.catalogue.stored([key]) == {key} and a.catalogue.stored([key], tenant="beta") == {key}
    # Tags are each tenant's: a patch of one is not the other's, and the query finds its own only.
    assert a.catalogue.patch_tags(key, {"k": "patched"}, tenant="acme").tags == {"k": "patched"}
    assert b.catalogue.meta(key, tenant="beta").tags == {"k": "b"}  # type: ignore[union-attr]
    assert [m.key for m in b.catalogue.query({"k": "patched"}, 10, tenant="acme").items] == [key]
    assert b.catalogue.query({"k": "patched"}, 10, tenant="beta").items == []
    assert b.catalogue.query({"k": "b"}, 10, tenant="acme").items == []
    assert [m.tags for m in a.catalogue.query({}, 10, tenant="beta").items] == [{"k": "b"}]


def test_a_deletion_removes_one_ownership_and_the_blob_with_the_last(deployment: Deployment) -> None:
    a, b = deployment.node(), deployment.node()
    key = a.produce(b"shared bytes", tags={"t": "1"}, tenant="acme")
    b.produce(b"shared bytes", tags={"t": "1"}, tenant="beta")
    running = b.resume(key, "beta")  # beta's execution resumes it: acme's ownership may go all the same
    assert a.catalogue.delete(key, tenant="acme") is True
    assert a.catalogue.delete(key, tenant="acme") is False
    assert (
        a.catalogue.meta(key, tenant="acme") is None
        and a.catalogue.query({"t": "1"}, 5, tenant="acme").items == []
    )
    with pytest.raises(HeapNotFound):
        a.resume(key, "acme")  # not its heap any more, even with the key
    assert a.catalogue.index.owners(key) == ["beta"] and a.heaps.exists(key)
    assert [m.key for m in b.catalogue.query({"t": "1"}, 5, tenant="beta").items] == [key]
    with pytest.raises(HeapInUse):  # its own execution resumes it, and it is the last owner
        b.catalogue.delete(key, tenant="beta")
    assert b.executions.finish(running, "completed") is not None
    assert b.catalogue.delete(key, tenant="beta") is True
    assert a.catalogue.stored([key]) == set() and a.catalogue.index.owners(key) == []
    assert not b.heaps.exists(key)  # the blob went with the last owner
    assert b.catalogue.query({"t": "1"}, 5, tenant="beta").items == []


def test_a_tenants_heap_bytes_are_those_of_the_heaps_it_owns(deployment: Deployment) -> None:
    """What the heap_bytes quota counts: a heap a tenant deleted no longer counts for it, though
    another tenant keeps the bytes."""
    a = deployment.node()
    shared = a.produce(b"the bytes both tenants made", tenant="acme")
    a.produce(b"the bytes both tenants made", tenant="beta")
    own = a.produce(b"acme's alone", tenant="acme")
    sizes = {key: a.catalogue.meta(key, tenant="acme").size for key in (shared, own)}  # type: ignore[union-attr]
    assert a.executions.tenant_usage("acme").heap_bytes == sizes[shared] + sizes[own]
    assert a.executions.tenant_usage("beta").heap_bytes == sizes[shared]
    assert a.catalogue.delete(shared, tenant="acme") is True
    assert a.executions.tenant_usage("acme").heap_bytes == sizes[own]
    assert a.executions.tenant_usage("beta").heap_bytes == sizes[shared]
    assert a.executions.tenant_usage("gamma").heap_bytes == 0


def test_an_owner_s_running_execution_keeps_its_ownership_while_others_own_the_heap(
    deployment: Deployment,
) -> None:
    a, b = deployment.node(), deployment.node()
    key = a.produce(b"kept by its use", tenant="acme")
    b.produce(b"kept by its use", tenant="beta")
    running = a.resume(key, "acme")
    with pytest.raises(HeapInUse):
        b.catalogue.delete(key, tenant="acme")
    assert b.catalogue.delete(key, tenant="beta") is True  # beta's goes: acme's execution needs acme's
    assert a.executions.finish(running, "completed") is not None
    assert a.catalogue.delete(key, tenant="acme") is True and not a.heaps.exists(key)


# -- in use, everywhere ------------------------------------------------------------------------------


def test_the_heap_a_waiting_execution_paused_in_is_in_use_until_its_resume_is_over(
    deployment: Deployment,
) -> None:
    a, b = deployment.node(), deployment.node()
    key = a.produce(b"paused")
    a.executions.create("w")
    assert a.executions.pause(
        "w", pending=[], heap=key, tool_calls_made=1, resume_spec={}, approval_timeout_secs=60
    )
    assert b.catalogue.in_use(key) and b.catalogue.in_use_all() == {key}
    with pytest.raises(HeapInUse):
        b.catalogue.delete(key)
    assert a.executions.resume("w", owner=None) is not None  # running again: its resume restores it
    assert b.catalogue.in_use(key)
    assert a.executions.finish("w", "completed") is not None
    assert not b.catalogue.in_use(key) and b.catalogue.delete(key) is True


def test_a_heap_resumed_on_one_node_cannot_be_deleted_on_another(deployment: Deployment) -> None:
    a, b = deployment.node(), deployment.node()
    key = a.produce(b"resumed", tags={"t": "1"})
    assert not b.catalogue.in_use(key)
    running = a.resume(key)
    assert b.catalogue.in_use(key) and b.catalogue.in_use_all() == {key}
    with pytest.raises(HeapInUse):
        b.catalogue.delete(key)
    assert b.catalogue.meta(key) is not None and b.catalogue.query({"t": "1"}, 5).items  # nothing changed
    assert a.executions.finish(running, "completed") is not None
    assert not b.catalogue.in_use(key)
    assert b.catalogue.delete(key) is True
    assert b.catalogue.delete(key) is False
    for node in (a, b):
        assert node.catalogue.meta(key) is None and node.catalogue.stored([key]) == set()
        assert node.catalogue.query({"t": "1"}, 5).items == []
        with pytest.raises(HeapNotFound):
            node.resume(key)
    assert not b.heaps.exists(key)  # and a cached copy elsewhere is never used (its row is gone)


def test_an_execution_resuming_an_unknown_heap_is_not_recorded(deployment: Deployment) -> None:
    a = deployment.node()
    unknown = hashlib.sha256(b"unknown").hexdigest()
    with pytest.raises(HeapNotFound):
        a.executions.create("e-unknown", heap_in=unknown, require_heap=True)
    assert a.executions.get("e-unknown") is None
    a.executions.create("e-legacy", heap_in=unknown)  # without require_heap: recorded as given
    assert a.catalogue.in_use(unknown)


@pytest.mark.parametrize("point", ["remove:locked", "remove:checked"])
def test_a_submit_during_a_deletion_waits_for_it_and_is_refused(deployment: Deployment, point: str) -> None:
    """The deletion holds the heap's row, found it not in use (or is about to look); a submit on
    another node starts its insert then and waits; the heap goes and the submit is refused."""
    a, b = deployment.node(), deployment.node()
    key = a.produce(b"contested")
    park = Park(b, point)
    deleting = Background(lambda: b.catalogue.delete(key))
    assert park.reached.wait(HANG)
    execution_id = str(uuid.uuid4())
    submitting = Background(lambda: a.executions.create(execution_id, heap_in=key, require_heap=True))
    until(lambda: submitting.done.is_set() or deployment.waits(a, "INSERT INTO executions"))
    park.release.set()
    assert deleting.result() is True
    with pytest.raises(HeapNotFound):
        submitting.result()
    assert a.executions.get(execution_id) is None
    assert not a.catalogue.in_use(key) and a.catalogue.meta(key) is None


@pytest.mark.parametrize("point", ["remove:locked", "remove:checked"])
def test_a_submit_during_a_deletion_of_one_ownership_waits_and_is_refused(
    deployment: Deployment, point: str
) -> None:
    """As above, with another tenant owning the heap too: the deletion removes acme's ownership
    only, and acme's submit, waiting for it, is refused; beta's ownership and the bytes stay."""
    a, b = deployment.node(), deployment.node()
    key = a.produce(b"contested by one of two", tenant="acme")
    a.produce(b"contested by one of two", tenant="beta")
    park = Park(b, point)
    deleting = Background(lambda: b.catalogue.delete(key, tenant="acme"))
    assert park.reached.wait(HANG)
    execution_id = str(uuid.uuid4())
    submitting = Background(
        lambda: a.executions.create(execution_id, heap_in=key, require_heap=True, tenant="acme")
    )
    until(lambda: submitting.done.is_set() or deployment.waits(a, "INSERT INTO executions"))
    park.release.set()
    assert deleting.result() is True
    with pytest.raises(HeapNotFound):
        submitting.result()
    assert a.executions.get(execution_id) is None
    assert a.catalogue.index.owners(key) == ["beta"] and a.catalogue.meta(key, tenant="beta") is not None
    a.resume(key, "beta")  # the bytes are there for beta


def test_a_deletion_during_a_submit_waits_for_it_and_finds_the_heap_in_use(deployment: Deployment) -> None:
    """A submit holds the heap's row with its execution written, not yet committed; a deletion on
    another node waits for it, then sees the execution (not the snapshot from before it waited)."""
    a, b = deployment.node(), deployment.node()
    key = a.produce(b"contested the other way")
    execution_id = str(uuid.uuid4())
    with deployment.submit_in_flight(key, execution_id):
        deleting = Background(lambda: b.catalogue.delete(key))
        first = "BEGIN IMMEDIATE" if deployment.pg is None else "SELECT tenant FROM heap_owners"
        until(lambda: deleting.done.is_set() or deployment.waits(b, first))
    with pytest.raises(HeapInUse):
        deleting.result()
    assert b.catalogue.in_use(key) and b.catalogue.meta(key) is not None
    assert a.executions.finish(execution_id, "completed") is not None
    assert b.catalogue.delete(key) is True


def test_deletions_racing_submits_on_two_nodes_keep_every_accepted_execution_s_heap(
    deployment: Deployment,
) -> None:
    """Free-running for some rounds, then each round leaves the deleter a whole attempt while no
    execution runs, so the race ends: every submit is refused (the heap is gone) or accepted with
    the heap kept until its execution finished, which it checks then."""
    a, b = deployment.node(), deployment.node()
    key = a.produce(b"raced")
    accepted: list[str] = []
    refused, deleted = threading.Event(), threading.Event()
    attempts = threading.Condition()
    made = [0]  # the deleter's finished attempts, under ``attempts``

    def submitter() -> None:
        for round in range(10**6):
            try:
                execution_id = a.resume(key)
            except HeapNotFound:
                refused.set()
                return
            accepted.append(execution_id)
            a.catalogue.fetch(key)  # the worker finds its heap
            assert a.catalogue.meta(key) is not None
            a.executions.finish(execution_id, "completed")
            if round >= 20:
                with attempts:
                    seen = made[0]
                    assert attempts.wait_for(lambda seen=seen: made[0] >= seen + 2 or deleted.is_set(), HANG)

    def deleter() -> None:
        while True:
            try:
                if b.catalogue.delete(key):
                    deleted.set()
                    return
            except HeapInUse:
                pass
            finally:
                with attempts:
                    made[0] += 1
                    attempts.notify_all()

    threads = [Background(submitter), Background(deleter)]
    for t in threads:
        t.result()
    assert refused.is_set() and a.catalogue.meta(key) is None
    assert all(r is not None and r.status == "completed" for r in (a.executions.get(e) for e in accepted))


# -- retention and heaps stored before the index -----------------------------------------------------


def test_prune_removes_heaps_neither_stored_nor_resumed_within_the_age(deployment: Deployment) -> None:
    a, b = deployment.node(), deployment.node()
    old = a.produce(b"old")
    tagged = a.produce(b"tagged", tags={"keep": "me"})
    used = a.produce(b"used")
    busy = a.produce(b"busy")
    a.resume(busy)
    time.sleep(2.2)  # all four are older than the age now (S3 and files keep whole seconds)
    b.catalogue.use(used)
    assert b.catalogue.prune(2.0) == 1
    assert b.catalogue.meta(old) is None and not a.catalogue.stored([old])
    assert b.catalogue.stored([tagged, used, busy]) == {tagged, used, busy}
    for key in (tagged, used, busy):
        b.catalogue.fetch(key)  # every kept heap still has its bytes


@pytest.fixture(params=["postgres", "postgres+s3"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    """Only the deployments whose heaps are in a shared store (a data directory's files were all
    indexed by the migration that created the index: see test_migrations)."""
    d = Deployment(request.param, tmp_path, request)
    yield d
    d.close()


def test_a_blob_the_shared_store_had_before_the_index_is_indexed_when_named(shared: Deployment) -> None:
    deployment = shared
    a = deployment.node()
    assert isinstance(a.catalogue.blobs, SharedHeaps)
    data = b"stored by an earlier release"
    key = hashlib.sha256(data).hexdigest()
    a.catalogue.blobs.remote.put(key, data)
    assert a.catalogue.stored([key]) == set()  # a page's question does not go to the blob store
    meta = a.catalogue.meta(key)
    assert meta is not None and (meta.size, meta.session, meta.tags) == (len(data), None, None)
    assert deployment.node().catalogue.stored([key]) == {key}


# -- signed heaps ---------------------------------------------------------------------------------

FIXTURES = Path(__file__).parent / "fixtures" / "heaps"


def envelope() -> tuple[str, bytes]:
    """A real snapshot envelope of an earlier release (a header, then the payload) and its key."""
    data = (FIXTURES / "format2-8fc0805.snap").read_bytes()
    return hashlib.sha256(data[data.index(b"\x28\xb5\x2f\xfd") :]).hexdigest(), data


def copy_in(node: Node, key: str, data: bytes, signature: str | None) -> None:
    """What someone who can write the store and the registry does: the blob and an index row."""
    node.catalogue.blobs.publish(key, data)
    node.catalogue.index.add(key, size=len(data), session=None, tags=None, signature=signature)


def test_a_heap_this_deployment_published_opens_on_every_node(deployment: Deployment) -> None:
    a, b = deployment.node(), deployment.node()
    key, data = envelope()
    a.catalogue.add(key, data, session=None, tags=None)
    assert a.catalogue.open(key) == data and b.catalogue.open(key) == data
    found, signature = b.catalogue.index.signature(key)
    assert found and signature is not None and signature.startswith("hs1:")
    assert a.catalogue.refusals() == b.catalogue.refusals() == 0


def test_a_heap_copied_from_another_deployment_is_refused(deployment: Deployment) -> None:
    """Blob and index row, signed with another deployment's key: refused before any worker could
    receive it, and counted."""
    node = deployment.node()
    key, data = envelope()
    elsewhere = HeapSigner([b"another deployment's signing key"], trust_unsigned=False)
    copy_in(node, key, data, elsewhere.sign(key, data[: data.index(bytes.fromhex(key))]))
    with pytest.raises(HeapNotSigned, match=f"^heap {key} is not signed by this deployment$"):
        node.catalogue.open(key)
    with pytest.raises(HeapNotSigned):
        node.catalogue.fetch(key)  # what a submit asks
    assert node.catalogue.refusals() == 2


def test_the_signature_covers_the_engine_build_in_the_header(deployment: Deployment) -> None:
    """A header changed under the same payload (another V8 version: the key still matches) no
    longer verifies."""
    node = deployment.node()
    key, data = envelope()
    signature = HeapSigner([KEY], trust_unsigned=False).sign(key, data[: data.index(bytes.fromhex(key))])
    version = data.index(b"10.2.")
    forged = data[:version] + b"11.9." + data[version + 5 :]
    copy_in(node, key, forged, signature)
    with pytest.raises(HeapNotSigned):
        node.catalogue.open(key)


def test_rotation_the_first_key_signs_every_key_verifies(deployment: Deployment) -> None:
    """The new key first, the old one after: heaps the old key signed keep opening, and each is
    signed again with the new key when it is next resumed; once the old key is dropped, only
    those never resumed meanwhile are refused."""
    new = b"the new key of this deployment"
    old = deployment.node([KEY])
    resumed = old.produce(b"signed with the old key, resumed during the rotation")
    forgotten = old.produce(b"signed with the old key, never resumed")
    rotated = deployment.node([new, KEY])
    assert rotated.catalogue.open(resumed) == b"signed with the old key, resumed during the rotation"
    produced = rotated.produce(b"signed with the new key")
    retired = deployment.node([new])
    assert retired.catalogue.open(produced) == b"signed with the new key"
    assert retired.catalogue.open(resumed) == b"signed with the old key, resumed during the rotation"
    with pytest.raises(HeapNotSigned):
        retired.catalogue.open(forgotten)
    assert retired.catalogue.refusals() == 1


def test_heaps_of_an_earlier_release_are_signed_by_a_single_node_refused_by_a_shared_store(
    deployment: Deployment,
) -> None:
    """The fixtures of earlier releases, indexed without a signature: a single node trusts its own
    data directory and signs them on first use; a shared store refuses them, saying how to re-admit
    them, until a node that trusts unsigned heaps signs them."""
    node = deployment.node()
    for fixture in sorted(FIXTURES.glob("*.snap")):
        data = fixture.read_bytes()
        key = envelope_key(data)
        copy_in(node, key, data, None)
        if deployment.kind == "sqlite":
            assert node.catalogue.open(key) == data
            assert node.catalogue.index.signature(key)[1] is not None  # signed now
            continue
        with pytest.raises(HeapNotSigned, match="start a node once with --trust-unsigned-heaps"):
            node.catalogue.open(key)
        assert node.catalogue.index.signature(key) == (True, None)
        admitting = deployment.node(trust_unsigned=True)
        assert admitting.catalogue.open(key) == data
        assert node.catalogue.open(key) == data  # signed with the deployment's key now


def envelope_key(data: bytes) -> str:
    from mcp_v8 import _engine

    return _engine.snapshot_key(data)
