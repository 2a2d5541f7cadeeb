"""Executions per second with 1, 2 and 3 nodes on one PostgreSQL, next to the SQLite single node, and
what each part costs per execution: the nodes' server processes (the control plane), their workers,
PostgreSQL, the client.

Starts its own PostgreSQL 15 (``tests/pg_server.py``, restarted once with ``pg_stat_statements``
preloaded), then for each configuration fresh ``mcp-v8 serve`` processes (``--workers 2`` each, heap
store ``postgresql``: bytea in the same database; the SQLite row is one node on its data directory)
and ``--threads`` client threads in this process, each an :class:`mcp_v8.client.Client` bound to node
``i % N``, in a closed loop of submits with ``wait_ms`` (one request per execution; the execution runs
on whichever node claims it). Two modes: ``stateless`` (``"snapshot": false``) and ``chain`` (each
client resumes the heap its previous execution produced, checked by its counter).

Per execution: server CPU (utime+stime of each node process, from /proc, before/after), worker CPU
(the nodes' worker processes), PostgreSQL CPU (the postmaster, every process under it, and the CPU of
the backends that exited in between, from its cutime/cstime), client CPU (this process), database
statements (``pg_stat_statements`` calls of the nodes' database) and transactions (``pg_stat_database``
xact_commit + xact_rollback; backends report them within a second, so both readings follow a pause).

    .venv/bin/python benches/nodes.py [--seconds 4] [--threads 4] [--nodes 1,2,3]

Rows per configuration: stateless and chain at ``--threads`` clients, stateless at 1 client (the
latency of one execution through the shared queue).

Prints a Markdown table; writes benches/results/nodes.json (and nodes.md). Everything it starts is
stopped by its pid on the way out. The machine is shared: compare rows of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

BENCHES = Path(__file__).resolve().parent
ROOT = BENCHES.parent
sys.path.insert(0, str(BENCHES))
sys.path.insert(0, str(ROOT))

from benchlib import (  # noqa: E402
    RESULTS,
    TRIVIAL,
    TRIVIAL_RESULT,
    children,
    load_average,
    log,
    machine_info,
    run_threads,
)
from round_trips import RoundTripProxy  # noqa: E402
from server import Server  # noqa: E402

from mcp_v8.client import Client  # noqa: E402
from tests.pg_server import BIN_DIR, PostgresServer  # noqa: E402

WORKERS_PER_NODE = 2
MODES = ("stateless", "chain")
TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _cpu(pid: int, *, reaped: bool = False) -> float:
    """utime+stime of ``pid`` (and, with ``reaped``, of its children it has waited for) in seconds."""
    f = _stat(pid)
    if f is None:
        return 0.0
    ticks = int(f[11]) + int(f[12]) + ((int(f[13]) + int(f[14])) if reaped else 0)
    return ticks / TICK


def _tree_cpu(pid: int) -> float:
    """CPU of ``pid``, of every live process under it and of those under it that exited."""
    total = _cpu(pid, reaped=True)
    for child in children(pid):
        total += _tree_cpu(child)
    return total


class Postgres:
    """tests/pg_server.py's server, restarted with pg_stat_statements when it can be."""

    def __init__(self) -> None:
        self.server = PostgresServer()
        self.statements = False

    def start(self) -> None:
        import psycopg

        self.server.start()
        try:
            with psycopg.connect(self.server.url, autocommit=True) as conn:
                conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
            data = str(self.server.data_dir)
            log_file = str(self.server.data_dir.parent / "server.log")  # the server's output, not our pipe
            subprocess.run(
                self.server._as_server_user(
                    [str(BIN_DIR / "pg_ctl"), "-D", data, "-w", "-t", "60", "-l", log_file, "restart"]
                ),
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=90,
            )
            self.server.pid = self.server._read_pid()
            self.server._wait_ready()
            with psycopg.connect(self.server.url, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            self.statements = True
        except Exception as e:  # the transaction counts remain
            log(f"no pg_stat_statements ({type(e).__name__}: {e}); counting transactions only")
            self.server._wait_ready()

    @property
    def url(self) -> str:
        return self.server.url

    def cpu(self) -> float:
        assert self.server.pid is not None
        return _tree_cpu(self.server.pid)

    def counters(self, database: str) -> dict[str, int]:
        import psycopg

        with psycopg.connect(self.server.url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", (database,)
            ).fetchone()
            out = {"transactions": int(row[0]) if row else 0}
            if self.statements:
                row = conn.execute(
                    "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements"
                    " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = %s)",
                    (database,),
                ).fetchone()
                out["statements"] = int(row[0]) if row else 0
        return out

    def stop(self) -> None:
        self.server.stop()


def _step_factory(urls: list[str], mode: str) -> Callable[[], Callable[[], None]]:
    lock = threading.Lock()
    taken = [0]

    def factory() -> Callable[[], None]:
        with lock:
            index = taken[0]
            taken[0] += 1
        client = Client(urls[index % len(urls)], timeout=60, retries=0)
        if mode == "stateless":

            def stateless() -> None:
                done = client.execute(TRIVIAL, snapshot=False)
                if done.status != "completed" or done.result != TRIVIAL_RESULT:
                    raise RuntimeError(f"stateless: {done}")

            return stateless
        state = {"heap": client.execute("var n = 0; n").check().heap, "n": 0}

        def chain() -> None:
            done = client.execute("n += 1; n", heap=state["heap"])
            state["n"] += 1
            if done.status != "completed" or done.result != str(state["n"]):
                raise RuntimeError(f"chain: expected {state['n']}, got {done}")
            state["heap"] = done.heap

        return chain

    return factory


def _measure(
    servers: list[Server], pg: Postgres | None, database: str | None, mode: str, threads: int, seconds: float
) -> dict[str, Any]:
    urls = [s.url for s in servers]
    run_threads(threads, min(1.0, seconds / 2), _step_factory(urls, mode))  # warm-up: connections, workers
    time.sleep(1.2)  # backends report their transaction counts within a second
    workers = [w for s in servers for w in s.worker_pids()]

    def sample() -> dict[str, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        out = {
            "server": sum(_cpu(s.pid) for s in servers),
            "workers": sum(_cpu(w) for w in workers),
            "client": usage.ru_utime + usage.ru_stime,
        }
        if pg is not None:
            out["postgres"] = pg.cpu()
        return out

    before, counts_before = sample(), (pg.counters(database) if pg and database else {})
    each_before = [_cpu(s.pid) for s in servers]
    run = run_threads(threads, seconds, _step_factory(urls, mode))
    after = sample()
    each_after = [_cpu(s.pid) for s in servers]
    time.sleep(1.2)
    counts_after = pg.counters(database) if pg and database else {}
    n = run["count"]
    # The chain's factory runs one execution per thread before the clock starts (its first heap):
    # those are inside the CPU window too.
    executions = n + (threads if mode == "chain" else 0)
    row: dict[str, Any] = {
        "rate_per_s": run["rate_per_s"],
        "count": n,
        "median_ms": run["median_ms"],
        "p95_ms": run["p95_ms"],
        "cpu_ms_per_execution": {k: (after[k] - before[k]) * 1e3 / executions for k in after},
        "per_node_server_cpu_ms_per_execution": [
            (a - b) * 1e3 / executions for a, b in zip(each_after, each_before)
        ],
    }
    if counts_after:
        row["db_per_execution"] = {
            k: (counts_after[k] - counts_before.get(k, 0)) / executions for k in counts_after
        }
        row["db_per_execution"]["transactions"] = max(0.0, row["db_per_execution"]["transactions"])
    return row


def _round_trips(
    servers: list[Server], proxy: RoundTripProxy, mode: str, threads: int, seconds: float
) -> float:
    """Round trips per execution through ``proxy`` (which the servers' database URL names)."""
    urls = [s.url for s in servers]
    run_threads(threads, min(1.0, seconds / 2), _step_factory(urls, mode))
    before = proxy.round_trips()
    run = run_threads(threads, seconds, _step_factory(urls, mode))
    executions = run["count"] + (threads if mode == "chain" else 0)
    return (proxy.round_trips() - before) / max(executions, 1)


ROWS = [(m, None) for m in MODES] + [("stateless", 1)]  # (mode, clients): None is --threads


def run(
    nodes: tuple[int, ...] = (1, 2, 3), seconds: float = 4.0, threads: int = 4, sqlite: bool = True
) -> dict[str, Any]:
    results: dict[str, Any] = {
        "seconds": seconds,
        "threads": threads,
        "workers_per_node": WORKERS_PER_NODE,
        "rows": [],
    }
    configs: list[tuple[str, int]] = ([("sqlite", 1)] if sqlite else []) + [("postgresql", n) for n in nodes]
    pg: Postgres | None = None
    try:
        if any(kind == "postgresql" for kind, _ in configs):
            pg = Postgres()
            pg.start()
            results["pg_stat_statements"] = pg.statements
        for kind, count in configs:
            database = None
            extra: dict[str, Any] = {}
            if kind == "postgresql":
                assert pg is not None
                database = f"nodes{count}_{int(time.time())}"
                extra = {"database_url": pg.server.create_database(database), "heap_store": "postgresql"}
            servers = [Server(workers=WORKERS_PER_NODE, **extra) for _ in range(count)]
            try:
                for s in servers:
                    s.start()
                rows = []
                for mode, clients in [(m, c or threads) for m, c in ROWS]:
                    log(f"{kind} x{count}, {mode}: {clients} clients, {seconds} s")
                    row = _measure(
                        servers, pg if kind == "postgresql" else None, database, mode, clients, seconds
                    )
                    row.update(store=kind, nodes=count, mode=mode, clients=clients)
                    rows.append(row)
                    log(f"  {row['rate_per_s']:.0f} exec/s, cpu ms/exec {row['cpu_ms_per_execution']}")
            finally:
                for s in servers:
                    s.stop()
            if kind == "postgresql":
                with RoundTripProxy(extra["database_url"]) as proxy:
                    proxied = [
                        Server(workers=WORKERS_PER_NODE, **{**extra, "database_url": proxy.url})
                        for _ in range(count)
                    ]
                    try:
                        for s in proxied:
                            s.start()
                        for row in rows:
                            log(f"{kind} x{count}, {row['mode']}: round trips, {row['clients']} clients")
                            row["round_trips_per_execution"] = _round_trips(
                                proxied, proxy, row["mode"], row["clients"], seconds / 2
                            )
                    finally:
                        for s in proxied:
                            s.stop()
            results["rows"].extend(rows)
    finally:
        if pg is not None:
            pg.stop()
    return results


def render(results: dict[str, Any]) -> str:
    lines = [
        f"{results['threads']} client threads, and 1 (round-robin over the nodes, submit with wait_ms), "
        f"{results['seconds']} s per row, {results['workers_per_node']} workers per node, heap store "
        "postgresql (bytea) for the PostgreSQL rows; CPU in ms per execution (server: the nodes' "
        "server processes); statements (pg_stat_statements calls, BEGIN and COMMIT included), "
        "transactions and round trips (counted through a proxy, in a pass of their own) per "
        "execution, between the nodes and their database.",
        "",
        "| store | nodes | mode | clients | exec/s | p50 ms | server CPU | workers CPU | PostgreSQL CPU | client CPU "
        "| statements | round trips | transactions |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        cpu = r["cpu_ms_per_execution"]
        db = r.get("db_per_execution", {})

        def f(value: float | None, digits: int = 2) -> str:
            return "-" if value is None else f"{value:.{digits}f}"

        lines.append(
            f"| {r['store']} | {r['nodes']} | {r['mode']} | {r.get('clients', results['threads'])} "
            f"| {r['rate_per_s']:.0f} | {r['median_ms']:.1f} "
            f"| {f(cpu['server'])} | {f(cpu['workers'])} | {f(cpu.get('postgres'))} | {f(cpu['client'])} "
            f"| {f(db.get('statements'), 1)} | {f(r.get('round_trips_per_execution'), 1)} "
            f"| {f(db.get('transactions'), 1)} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="measured seconds per row")
    ap.add_argument("--threads", type=int, default=4, help="client threads")
    ap.add_argument("--nodes", default="1,2,3", help="node counts on PostgreSQL")
    ap.add_argument("--no-sqlite", action="store_true", help="leave out the SQLite single node")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: every server is stopped
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    machine = machine_info()
    results = run(
        tuple(int(n) for n in args.nodes.split(",") if n),
        args.seconds,
        args.threads,
        sqlite=not args.no_sqlite,
    )
    results["meta"] = {"started_at": started, "argv": sys.argv, "load_average_at_end": load_average()}
    results["machine"] = machine
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "nodes.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    table = render(results)
    (RESULTS / "nodes.md").write_text("# Nodes on one PostgreSQL\n\n" + table)
    print(table)
    log(f"wrote {RESULTS / 'nodes.json'} and {RESULTS / 'nodes.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
