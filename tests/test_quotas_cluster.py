"""Each tenant's quotas on the nodes of one PostgreSQL, through real execution managers and a real
PostgreSQL without workers or V8: submits racing on two nodes never pass a tenant's concurrency or
queue quota, claims and ends give the places back, the per-minute quota holds for every node, and
what a node reads of a tenant's use.

Every wait has a generous bound that only turns a hang into a failure."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from mcp_v8.executions import CancelOutcome, ExecutionManager, ExecutionSpec, Limits, SharedQueue
from mcp_v8.executions.waiters import QueueEvents
from mcp_v8.quotas import UNLIMITED, QuotaReached, TenantQuotas
from mcp_v8.storage import FileHeapStore, HeapSigner
from mcp_v8.storage import execution_store as store_module
from mcp_v8.storage.heap_catalogue import Catalogue
from mcp_v8.storage.shared_heaps import LocalHeaps

from .pg_server import PostgresServer, schema_for

psycopg = pytest.importorskip("psycopg")
postgres = pytest.importorskip("mcp_v8.storage.postgres")
pg_queue = pytest.importorskip("mcp_v8.storage.postgres.queue")

HANG = 30.0  # seconds; only ever reached when the code under test is broken
ACME, OTHER = "acme", "other-co"
SUBMITTERS = 20  # threads released together per round, half on each node
ROUNDS = 5
LIMITS = Limits(heap_limit_mb=8, timeout_secs=60, max_result_bytes=1 << 20, max_output_bytes=1 << 20)


def spec(tenant: str = ACME) -> ExecutionSpec:
    return ExecutionSpec(code="1", limits=LIMITS, tenant=tenant)


def no_worker(*args: Any) -> Any:
    raise AssertionError("these managers are never started: no worker runs")


@dataclass
class Node:
    name: str
    db: Any
    queue: Any
    executions: Any
    manager: ExecutionManager

    def running(self, tenant: str = ACME) -> int:
        return int(self.executions.tenant_usage(tenant).running)

    def unclaimed(self, tenant: str = ACME) -> int:
        return int(self.queue.waiting_of(tenant))


@pytest.fixture
def make_node(postgres_server: PostgresServer, tmp_path: Path) -> Iterator[Callable[..., Node]]:
    made: list[Node] = []
    outputs: list[Any] = []
    schema = postgres_server.create_schema(schema_for(tmp_path))

    def make(name: str, quotas: dict[str, TenantQuotas]) -> Node:
        def source(tenant: str) -> TenantQuotas:
            return quotas.get(tenant, UNLIMITED)

        db = postgres.open_postgres(postgres_server.url, schema=schema)
        work = pg_queue.PostgresQueue(db, postgres_server.url)
        executions = postgres.PostgresExecutionStore(db)
        output = postgres.PostgresOutputLog(db, max_output_bytes=1 << 20)
        outputs.append(output)
        root = tmp_path / name
        signer = HeapSigner([b"the key of this test cluster"], trust_unsigned=False)
        catalogue = Catalogue(
            postgres.PostgresHeapIndex(db),
            postgres.PostgresHeapTags(db),
            LocalHeaps(FileHeapStore(root, durable=False)),
            signer,
        )
        manager = ExecutionManager(
            executions=executions,
            output=output,
            data_dir=root,
            workers=1,
            queue_limit=1000,
            spawn_worker=no_worker,
            admission=SharedQueue(work, catalogue, 1000, source),
            events=QueueEvents(work),
            owner=name,
            catalogue=catalogue,
            quotas=source,
            live_workers=0,
        )
        node = Node(name, db, work, executions, manager)
        made.append(node)
        return node

    yield make
    for node in made:
        node.manager.close()
    for output in outputs:
        output.close()  # its flusher thread stops with it
    for node in made:
        node.db.close()


def submit_together(
    nodes: list[Node], threads: int, tenant: str = ACME
) -> tuple[list[str], list[QuotaReached]]:
    """``threads`` submits released at once, alternating between ``nodes``: the ids accepted and
    the quotas' refusals (any other error fails the test)."""
    start = threading.Barrier(threads)
    accepted: list[str] = []
    refused: list[QuotaReached] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def submit(i: int) -> None:
        start.wait(HANG)
        try:
            execution_id = nodes[i % len(nodes)].manager.submit(spec(tenant))
        except QuotaReached as e:
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
    assert len(accepted) + len(refused) == threads
    return accepted, refused


def test_submits_racing_on_two_nodes_never_pass_the_concurrency_quota(make_node: Callable[..., Node]) -> None:
    quotas = {ACME: TenantQuotas(concurrent_executions=4)}
    a, b = make_node("a", quotas), make_node("b", quotas)
    for _ in range(ROUNDS):
        accepted, refused = submit_together([a, b], SUBMITTERS)
        assert len(accepted) == 4 and a.running() == 4
        assert {(e.quota, e.limit, e.retry_after) for e in refused} == {("concurrent_executions", 4, 1)}
        other, _ = submit_together([a, b], 6, OTHER)  # another tenant: unlimited, unaffected
        assert len(other) == 6
        for i, execution_id in enumerate(accepted + other):  # a cancel through either node ends it
            assert (a, b)[i % 2].manager.cancel(execution_id) is CancelOutcome.ACCEPTED
        assert a.running() == b.running(OTHER) == 0 and a.unclaimed() == 0


def test_submits_racing_on_two_nodes_never_pass_the_queue_quota_and_claims_free_it(
    make_node: Callable[..., Node],
) -> None:
    quotas = {ACME: TenantQuotas(queued_executions=3, concurrent_executions=5)}
    a, b = make_node("a", quotas), make_node("b", quotas)
    accepted, refused = submit_together([a, b], SUBMITTERS)
    assert len(accepted) == 3 and a.unclaimed() == 3
    assert {e.quota for e in refused} == {"queued_executions"}
    assert a.manager.queued_of(ACME) == b.manager.queued_of(ACME) == 3  # the nodes' queue, for every node
    claimed = [a.queue.claim("a"), b.queue.claim("b")]  # two go to workers: their places come back
    assert all(c is not None for c in claimed) and a.unclaimed() == 1
    more, refused = submit_together([a, b], SUBMITTERS)
    # Two places of the queue came back, but five running is the other quota.
    assert len(more) == 2 and a.unclaimed() == 3 and a.running() == 5
    assert {e.quota for e in refused} == {"concurrent_executions"}
    for execution_id in accepted + more:
        a.manager.cancel(execution_id)
    assert a.unclaimed() == 0 and a.running() == 0
    assert len(submit_together([a, b], SUBMITTERS)[0]) == 3


def test_executions_per_minute_hold_for_every_node(
    make_node: Callable[..., Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [datetime(2026, 1, 1, 12, 0, 5, tzinfo=timezone.utc)]
    monkeypatch.setattr(store_module, "_now", lambda: now[0])
    quotas = {ACME: TenantQuotas(executions_per_minute=7)}
    a, b = make_node("a", quotas), make_node("b", quotas)
    accepted, refused = submit_together([a, b], SUBMITTERS)
    assert len(accepted) == 7
    assert {(e.quota, e.retry_after) for e in refused} == {("executions_per_minute", 55)}
    for execution_id in accepted:
        a.manager.cancel(execution_id)  # ended ones still started this minute
    assert len(submit_together([a, b], 4)[0]) == 0
    now[0] = datetime(2026, 1, 1, 12, 1, 0, tzinfo=timezone.utc)
    assert len(submit_together([a, b], SUBMITTERS)[0]) == 7
    assert a.executions.tenant_usage(ACME).started_this_minute == 7
