"""Faults of a cluster, with real ``mcp-v8 serve`` processes sharing a real PostgreSQL (and, for
heaps, a real SeaweedFS S3 server): a node killed with SIGKILL mid-execution, PostgreSQL restarted
under load, the S3 server down and back, and two nodes racing submits against cancels.

Bounds are generous (the machine may have two shared cores and other work): they say how long a
test waits before it calls something lost, never how fast anything must be."""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from .cluster_nodes import TERMINAL, Node, sql, until
from .pg_server import BIN_DIR, PostgresServer, missing
from .s3_server import S3Server, S3ServerCannotStart, _ready, start_s3_server

LOOP = "console.log('started'); while (true) {}"


@pytest.fixture
def database(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database("faults_" + uuid.uuid4().hex[:12])


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Callable[..., Node]]:
    """Makes (not starts) nodes; every one made is stopped at the end."""
    made: list[Node] = []

    def make(name: str, database_url: str, *extra: str, env: dict[str, str] | None = None) -> Node:
        node = Node(tmp_path / name, database_url, *extra, env=env)
        made.append(node)
        return node

    yield make
    for node in made:
        node.stop()


# -- 1. a node killed mid-execution ----------------------------------------------------------------


def test_a_node_killed_mid_execution_fails_its_executions_and_the_others_go_on(
    database: str, cluster: Callable[..., Node]
) -> None:
    a = cluster("a", database).start()
    looping = a.submit(LOOP, execution_timeout_secs=120, snapshot=False)
    a.wait_output(looping, "started")  # running on a: the only node yet
    (owner,) = sql(database, "SELECT owner FROM executions WHERE execution_id = %s", (looping,))[0]
    assert owner is not None
    b = cluster("b", database).start()
    assert b.get(looping)["status"] == "running"
    a.kill()
    info = b.wait(looping, timeout=60)  # a's lease (2 s) expires; b's heartbeat fails its executions
    assert info["status"] == "failed", info
    assert "node" in info["error"] and "lost" in info["error"], info
    assert info["completed_at"] is not None
    assert b.run("6 * 7", snapshot=False)["result"] == "42"  # b goes on
    done = b.run("var after = 'kill'; after")  # with a heap too (in PostgreSQL)
    assert (done["status"], done["result"]) == ("completed", '"kill"')
    until(lambda: b.running() == [], 60, "no execution listed as running")
    assert sql(database, "SELECT count(*) FROM executions WHERE status = 'running'")[0][0] == 0
    assert sql(database, "SELECT count(*) FROM queue")[0][0] == 0
    assert owner not in {r[0] for r in sql(database, "SELECT id FROM nodes")}  # a is forgotten


# -- 2. PostgreSQL restarted under load ------------------------------------------------------------


class RestartablePostgres(PostgresServer):
    """A PostgreSQL of this test alone, that can be stopped (``-m fast``) and started again on the
    same port and directory."""

    def _options(self) -> str:
        return (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=400"
        )

    def pause(self) -> None:
        subprocess.run(
            self._as_server_user(
                [str(BIN_DIR / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )

    def resume(self) -> None:
        assert self.root is not None
        subprocess.run(
            self._as_server_user(
                [str(BIN_DIR / "pg_ctl"), "-D", str(self.data_dir), "-w", "-t", "60"]
                + ["-l", str(self.root / "server.log"), "-o", self._options(), "start"]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        self.pid = self._read_pid()
        self._wait_ready()


@pytest.fixture
def own_postgres() -> Iterator[RestartablePostgres]:
    reason = missing()
    if reason is not None:
        pytest.skip(reason)
    server = RestartablePostgres()
    try:
        server.start()
        yield server
    finally:
        server.stop()


class Load:
    """Submits short executions to ``node`` from a thread until stopped, recording every answer."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.answers: list[
            tuple[float, int, dict[str, Any], str | None]
        ] = []  # (time, status, body, Retry-After)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            code = f"const t = Date.now(); while (Date.now() - t < 20) {{}} {n}"
            try:
                r = requests.post(
                    self.node.url + "/api/exec", json={"code": code, "snapshot": False}, timeout=120
                )
            except requests.RequestException as e:
                self.answers.append((time.monotonic(), 0, {"error": str(e)}, None))
                self._stop.wait(0.2)
                continue
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            self.answers.append((time.monotonic(), r.status_code, body, r.headers.get("Retry-After")))
            self._stop.wait(0.05 if r.status_code == 202 else 0.2)  # a load, not a flood

    def start(self) -> Load:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(180)
        assert not self._thread.is_alive()

    def accepted(self) -> list[str]:
        return [body["execution_id"] for _, status, body, _ in self.answers if status in (200, 202)]

    def since(self, t: float) -> list[int]:
        return [status for at, status, _, _ in self.answers if at >= t]


def test_postgresql_restarted_under_load(
    own_postgres: RestartablePostgres, cluster: Callable[..., Node]
) -> None:
    database = own_postgres.create_database("restart")
    node = cluster("n", database, "--workers", "2").start()
    assert node.run("1 + 1", snapshot=False)["result"] == "2"
    load = Load(node).start()
    try:
        until(lambda: len(load.accepted()) >= 10, 120, "the load is accepted")
        # One that prints and ends while PostgreSQL is down: its output and outcome wait for it.
        through = node.submit(
            "console.log('started'); const t = Date.now(); while (Date.now() - t < 3000) {}"
            " console.log('ending'); 'survived'",
            snapshot=False,
        )
        node.wait_output(through, "started")
        own_postgres.pause()
        down = time.monotonic()
        # While it is down, a submit is refused as unavailable (503 with Retry-After), never a 500.
        r = requests.post(node.url + "/api/exec", json={"code": "1", "snapshot": False}, timeout=120)
        assert r.status_code == 503, (r.status_code, r.text)
        assert r.headers.get("Retry-After") is not None
        assert "database" in r.json()["error"], r.json()
        assert requests.get(node.url + "/api/version", timeout=60).status_code == 200
        until(lambda: any(s != 202 for s in load.since(down)), 120, "the load sees the outage")
        time.sleep(max(0.0, down + 40 - time.monotonic()))  # longer than the pool waits (30 s)
        own_postgres.resume()
        up = time.monotonic()
        # The node recovers by itself: submits succeed again.
        until(lambda: 202 in load.since(up), 60, "a submit accepted after PostgreSQL came back")
    finally:
        load.stop()
    statuses = {s for _, s, _, _ in load.answers}
    assert statuses <= {202, 429, 503}, [(s, b) for _, s, b, _ in load.answers if s not in (202, 429, 503)]
    assert all(ra is not None for _, s, _, ra in load.answers if s in (429, 503))
    # Nothing accepted is lost: each one ends (failed, with an error, if the outage caught it).
    accepted = load.accepted() + [through]
    assert len(accepted) == len(set(accepted))
    ended = {eid: node.wait(eid, timeout=120) for eid in accepted}
    for info in ended.values():
        assert info["status"] in TERMINAL, info
        if info["status"] != "completed":
            assert info["error"], info
    assert ended[through]["status"] in ("completed", "failed"), ended[through]
    until(lambda: node.running() == [], 120, "nothing listed as running")
    assert sql(database, "SELECT count(*) FROM executions WHERE status = 'running'")[0][0] == 0
    assert sql(database, "SELECT count(*) FROM queue")[0][0] == 0
    # A record a submit wrote but could not queue (the outage came in between, or its node died):
    # no node owns it, no job runs it; the nodes' reaper fails it.
    orphan = str(uuid.uuid4())
    sql(
        database,
        "INSERT INTO executions (execution_id, status, started_at) VALUES (%s, 'running', now() - interval '5 minutes')",
        (orphan,),
    )
    info = node.wait(orphan, timeout=60)
    assert info["status"] == "failed" and "could not be queued" in info["error"], info
    # Both workers still serve: two executions at once.
    pair = [
        node.submit("const t = Date.now(); while (Date.now() - t < 500) {} 'after'", snapshot=False)
        for _ in range(2)
    ]
    assert [node.wait(eid)["result"] for eid in pair] == ['"after"'] * 2


# -- 3. the S3 server down and back ----------------------------------------------------------------


def restart_s3(server: S3Server, timeout: float = 60.0) -> S3Server:
    """Starts ``weed`` again with the arguments of ``server`` (same ports, same data directory)."""
    env = {**os.environ, "AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": server.secret_key}
    with open(server.directory / "weed.log", "ab") as log:
        process = subprocess.Popen(
            server.process.args,  # type: ignore[arg-type]
            cwd=server.directory,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    again = S3Server(
        endpoint=server.endpoint,
        bucket=server.bucket,
        access_key=server.access_key,
        secret_key=server.secret_key,
        directory=server.directory,
        process=process,
        ports=server.ports,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if _ready(again):
            return again
        time.sleep(0.2)
    again.stop()
    pytest.skip(f"SeaweedFS did not come back on the same ports: {again.log_tail()}")


@pytest.fixture
def own_s3(tmp_path: Path) -> Iterator[list[S3Server]]:
    """A SeaweedFS of this test alone (a list: the test replaces it when it restarts it)."""
    try:
        import obstore  # noqa: F401
    except ImportError as e:
        pytest.skip(f"obstore not installed ({e})")
    try:
        servers = [start_s3_server(tmp_path / "s3")]
    except S3ServerCannotStart as e:
        pytest.skip(str(e))
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


def test_s3_down_fails_only_what_needs_it_and_recovers(
    database: str, own_s3: list[S3Server], cluster: Callable[..., Node]
) -> None:
    s3 = own_s3[0]
    node = cluster(
        "n", database, "--heap-store", f"{s3.url}/faults", "--s3-endpoint-url", s3.endpoint, env=s3.env()
    ).start()
    before = node.run("var kept = 'before'; kept")
    assert before["status"] == "completed" and before["heap"] is not None
    s3.stop()
    failed = node.run("var lost = 1; lost")
    assert failed["status"] == "failed" and failed["heap"] is None, failed
    assert failed["error"].startswith("the heap snapshot could not be stored"), failed
    plain = node.run("2 + 2", snapshot=False)  # needs no heap store
    assert (plain["status"], plain["result"]) == ("completed", "4")
    assert requests.get(node.url + "/api/version", timeout=60).status_code == 200
    listed = requests.get(node.url + "/api/executions", params={"limit": 10}, timeout=60)
    assert listed.status_code == 200
    assert {failed["execution_id"], plain["execution_id"]} <= {
        e["execution_id"] for e in listed.json()["executions"]
    }
    assert node.get(before["execution_id"])["status"] == "completed"
    assert node.running() == []
    # Back on the same ports and directory: snapshots are stored again, and the old heap is there.
    own_s3.append(restart_s3(s3))
    again = node.run("var kept2 = 'after'; kept2", heap=before["heap"])
    assert again["status"] == "completed" and again["heap"] is not None, again
    resumed = node.run("kept + ' ' + kept2", heap=again["heap"], snapshot=False)
    assert (resumed["status"], resumed["result"]) == ("completed", '"before after"'), resumed


# -- 4. two nodes racing submits against cancels ---------------------------------------------------

RACERS = 500


def test_two_nodes_racing_submits_and_cancels(database: str, cluster: Callable[..., Node]) -> None:
    nodes = [cluster(n, database, "--queue-limit", "2000").start() for n in ("a", "b")]
    rng = random.Random(1234)
    codes = ["1 + 1", "const t = Date.now(); while (Date.now() - t < 30) {} 'slow'", "'x'.repeat(3)"]
    submitted: list[tuple[str, int]] = []  # (execution id, index of the node it was submitted to)
    lock = threading.Lock()
    cancels: dict[str, bool] = {}  # execution id -> the cancel's ok

    def submit(i: int) -> None:
        node = i % 2
        eid = nodes[node].submit(codes[i % len(codes)], snapshot=False)
        with lock:
            submitted.append((eid, node))

    def cancel(eid: str, node: int) -> None:
        other = nodes[1 - node]  # from the other node than the one it was submitted to
        r = requests.post(f"{other.url}/api/executions/{eid}/cancel", timeout=60)
        assert r.status_code in (200, 400), (r.status_code, r.text)
        cancels[eid] = bool(r.json()["ok"])
        assert r.status_code == (200 if cancels[eid] else 400)

    stop = threading.Event()

    def canceller() -> None:
        seen = 0
        while not stop.is_set() or seen < len(submitted):
            with lock:
                fresh = submitted[seen:]
                seen += len(fresh)
            for eid, node in fresh:
                if rng.random() < 0.25:
                    cancel(eid, node)
            time.sleep(0.01)

    with ThreadPoolExecutor(4) as pool:
        cancelling = pool.submit(canceller)
        list(ThreadPoolExecutor(3).map(submit, range(RACERS)))
        stop.set()
        cancelling.result(300)
    assert len(submitted) == RACERS and len({e for e, _ in submitted}) == RACERS
    assert cancels, "no cancel was issued"
    ended = {eid: nodes[1 - node].wait(eid, timeout=120) for eid, node in submitted}
    for eid, info in ended.items():
        if eid in cancels and cancels[eid]:
            assert info["status"] == "cancelled", info
        elif eid in cancels:  # refused: it had finished before the cancel came
            assert info["status"] == "completed", info
        else:
            assert info["status"] == "completed", info
    # Both nodes tell the same story, and so does the database.
    ids = list(ended)
    rows = dict(
        sql(
            database,
            "SELECT execution_id::text, status FROM executions WHERE execution_id::text = ANY(%s)",
            (ids,),
        )
    )
    assert len(rows) == RACERS
    assert rows == {eid: info["status"] for eid, info in ended.items()}
    for eid, node in rng.sample(submitted, 50):
        assert nodes[node].get(eid)["status"] == ended[eid]["status"]
    assert nodes[0].running() == [] and nodes[1].running() == []
    assert (
        sql(
            database,
            "SELECT count(*) FROM queue q JOIN executions e USING (execution_id) WHERE e.status <> 'running'",
        )[0][0]
        == 0
    )
    assert sql(database, "SELECT count(*) FROM queue")[0][0] == 0
    owners = {r[0] for r in sql(database, "SELECT DISTINCT owner FROM executions WHERE status = 'completed'")}
    assert len(owners) == 2, owners  # both nodes ran some
    assert sum(cancels.values()) > 0, "no cancel was accepted"
