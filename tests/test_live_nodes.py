"""A live session among the nodes of a cluster (real ``mcp-v8 serve`` processes on a real
PostgreSQL): it lives on the node that ran its first step, steps sent to another node run there,
in order, and when its node dies the next node to run a step takes it over, that step saying what
was lost and where the session resumes.

Bounds are generous (two shared cores): they say how long a test waits, never how fast."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from .cluster_nodes import Node, sql, until
from .pg_server import PostgresServer


@pytest.fixture
def database(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database("live_nodes_" + uuid.uuid4().hex[:12])


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Callable[..., Node]]:
    made: list[Node] = []

    def make(name: str, database_url: str, *extra: str) -> Node:
        node = Node(tmp_path / name, database_url, "--live-workers", "1", *extra)
        made.append(node)
        return node

    yield make
    for node in made:
        node.stop()


def sessions(node: Node) -> dict[str, object]:
    r = requests.get(node.url + "/api/sessions", timeout=60)
    assert r.status_code == 200, r.text
    return {s["session"]: s["live"] for s in r.json()["sessions"]}


def test_a_live_session_runs_on_its_node_and_moves_when_that_node_is_lost(
    database: str, cluster: Callable[..., Node]
) -> None:
    a, b = cluster("a", database).start(), cluster("b", database).start()
    first = a.run("var n = 1; const seen = ['a']; n", session="s", live=True)
    assert (first["status"], first["result"]) == ("completed", "1"), first
    ((holder,),) = sql(database, "SELECT node FROM live_sessions WHERE session = 's'")
    # Steps sent to b run in the context a holds, in the order they were sent.
    ids = [b.submit(f"n += 1; seen.push('b{i}'); n", session="s", live=True) for i in range(4)]
    results = [b.wait(eid) for eid in ids]
    assert [(r["status"], r["result"]) for r in results] == [("completed", str(i)) for i in range(2, 6)], (
        results
    )
    assert a.run("seen.join()", session="s", live=True)["result"] == '"a,b0,b1,b2,b3"'
    live = sessions(b)["s"]
    assert isinstance(live, dict) and live["node"] == holder and str(live["since"]).endswith("Z"), live
    here = sessions(a)["s"]
    assert isinstance(here, dict) and here["worker"] == 0 and "node" not in here, here
    # A step's output reaches the node it was sent to.
    eid = b.submit("console.log('from', seen.length); n", session="s", live=True)
    assert b.wait(eid)["result"] == "5" and "from 5" in b.output(eid)
    # A snapshot, then more work the snapshot does not have; then a dies.
    made = b.run("n", session="s", live=True, snapshot=True)
    assert made["result"] == "5" and made["heap"] is not None, made
    assert b.run("n += 10; n", session="s", live=True)["result"] == "15"
    a.kill()
    # b takes the session over (a's lease runs out first): that step says what was lost and
    # where the session resumes, and runs nothing; the next one resumes from the snapshot.
    lost = b.run("n", session="s", live=True)
    assert lost["status"] == "failed" and "was lost" in lost["error"], lost
    assert made["heap"] in lost["error"], lost
    assert b.run("n", session="s", live=True)["result"] == "5"
    until(
        lambda: sql(database, "SELECT node FROM live_sessions WHERE session = 's'") != [(holder,)],
        60,
        "b holds the session",
    )
    now = sessions(b)["s"]
    assert isinstance(now, dict) and now["worker"] == 0, now


def test_a_node_that_stops_hands_its_live_sessions_on_with_their_state(
    database: str, cluster: Callable[..., Node]
) -> None:
    a, b = cluster("a", database).start(), cluster("b", database).start()
    assert a.run("var kept = [1, 2]; kept.length", session="t", live=True)["result"] == "2"
    assert b.run("kept.push(3); kept.length", session="t", live=True)["result"] == "3"  # on a
    a.stop()  # graceful: a snapshots the session, records it as its latest heap and lets go
    assert sql(database, "SELECT count(*) FROM live_sessions")[0][0] == 0
    after = b.run("kept.push(4); kept.join()", session="t", live=True)
    assert (after["status"], after["result"]) == ("completed", '"1,2,3,4"'), after


def test_a_thousand_step_session_keeps_its_state_through_eviction_a_restart_and_another_node(
    database: str, cluster: Callable[..., Node]
) -> None:
    """The issue's whole path: 1,000 steps of one session, sent to two nodes, with an idle
    eviction and a graceful restart of the node holding it on the way; two heaps in all."""
    extra = ("--live-idle-secs", "2", "--live-snapshot-secs", "3600")
    a, b = cluster("a", database, *extra).start(), cluster("b", database, *extra).start()
    assert a.run("var total = 0, steps = 0; total", session="long", live=True)["result"] == "0"
    expected = 0
    for i in range(1, 1000):
        node = b if i % 10 == 0 else a
        info = node.run(f"total += {i}; steps += 1; total", session="long", live=True)
        expected += i
        assert (info["status"], info["result"]) == ("completed", str(expected)), (i, info)
        if i == 300:  # idle: snapshotted and ended, then resumed by the next step
            until(
                lambda: bool(sql(database, "SELECT 1 FROM executions WHERE tags->>'live_snapshot' = 'idle'")),
                60,
                "idle",
            )
            assert sql(database, "SELECT count(*) FROM live_sessions")[0][0] == 0
        if i == 600:  # a graceful restart of the node holding it
            a.stop()
            a.start()
    final = b.run("[steps, total]", session="long", live=True)
    assert final["result"] == f"[999,{expected}]", final
    reasons = sorted(
        r[0]
        for r in sql(database, "SELECT tags->>'live_snapshot' FROM executions WHERE tags ? 'live_snapshot'")
    )
    assert reasons == ["idle", "shutdown"], reasons
    assert sql(database, "SELECT count(*) FROM heaps")[0][0] <= 3
