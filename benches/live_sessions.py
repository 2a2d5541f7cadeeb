"""A live-session step over HTTP against a heap-chain step, in one run on one server.

One client (``mcp_v8.client.Client`` on its keep-alive connection), each request a submit with
``wait_ms``: the HTTP floor (``GET /api/version``, a request that does no work), a step of a live
session (``"live": true``: no heap restored, none made) and a step of a heap chain (the heap the
previous step made passed back, a new one made). The three alternate in rounds, so the machine's
noise falls on each alike. Also counts the heaps the live session's steps left in its log.

Then ``--clients`` clients at once (4 by default), each with a session of its own, on the same
server (``--clients`` live workers, as many execution workers): live-session steps against
heap-chain steps, in alternating rounds of ``--seconds`` each, for their rates (steps/s) and
the ratio of the two. Writes ``results/live_sessions.json`` and ``results/live_sessions.md``.

    .venv/bin/python benches/live_sessions.py [--steps 1000] [--round 50] [--clients 4] [--rounds 6]
"""

from __future__ import annotations

import argparse
import functools
import json
import queue
import time
from pathlib import Path
from typing import Any, Callable

from benchlib import BENCHES, log, machine_info, run_threads, summary_ms
from server import Server

from mcp_v8.client import Client

STEP = "n += 1"


def chain_step(client: Client, heap: str | None) -> Any:
    return client.execute(STEP, session="chain", heap=heap).check()


def concurrent(server: Server, clients: int, rounds: int, seconds: float) -> dict[str, dict[str, float]]:
    """Live steps and heap-chain steps at ``clients`` clients, one session each, in alternating
    rounds: each kind's steps/s (all its rounds' steps over their time) and p50 latency."""
    live = [Client(server.url) for _ in range(clients)]
    chain = [Client(server.url) for _ in range(clients)]
    heaps: list[str | None] = []
    for i in range(clients):
        live[i].execute("var n = 0", session=f"live-{i}", live=True).check()
        heaps.append(chain[i].execute("var n = 0", session=f"chain-{i}").check().heap)

    def live_step(i: int) -> Callable[[], None]:
        def step() -> None:
            live[i].execute(STEP, session=f"live-{i}", live=True).check()

        return step

    def chain_step(i: int) -> Callable[[], None]:
        def step() -> None:
            heaps[i] = chain[i].execute(STEP, session=f"chain-{i}", heap=heaps[i]).check().heap

        return step

    totals: dict[str, dict[str, Any]] = {
        k: {"count": 0, "seconds": 0.0, "p50": []} for k in ("live", "chain")
    }
    try:
        for _ in range(rounds):
            for kind, make in (("live", live_step), ("chain", chain_step)):
                steps: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
                for i in range(clients):
                    steps.put(make(i))
                row = run_threads(clients, seconds, steps.get_nowait)
                totals[kind]["count"] += row["count"]
                totals[kind]["seconds"] += row["count"] / row["rate_per_s"]
                totals[kind]["p50"].append(row["median_ms"])
    finally:
        for client in live + chain:
            client.close()
    return {
        kind: {
            "steps": t["count"],
            "rate_per_s": t["count"] / t["seconds"],
            "median_ms": sorted(t["p50"])[len(t["p50"]) // 2],
        }
        for kind, t in totals.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="steps of each kind")
    parser.add_argument("--round", type=int, default=50, help="steps of one kind in a row")
    parser.add_argument("--clients", type=int, default=4, help="clients of the concurrent rounds")
    parser.add_argument("--rounds", type=int, default=6, help="concurrent rounds of each kind")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one concurrent round")
    args = parser.parse_args()
    server_args = {"workers": args.clients, "live_workers": args.clients}
    with Server(**server_args) as server, Client(server.url) as client:
        client.execute("var n = 0", session="live", live=True).check()
        heap = client.execute("var n = 0", session="chain").check().heap
        times: dict[str, list[float]] = {"floor": [], "live": [], "chain": []}

        def timed(kind: str, call: Callable[[], Any]) -> Any:
            started = time.perf_counter()
            value = call()
            times[kind].append(time.perf_counter() - started)
            return value

        done = 0
        while done < args.steps:
            n = min(args.round, args.steps - done)
            for _ in range(n):
                timed("floor", client.version)
            for _ in range(n):
                timed("live", lambda: client.execute(STEP, session="live", live=True).check())
            for _ in range(n):
                heap = timed("chain", functools.partial(chain_step, client, heap)).heap
            done += n
        live_heaps = sum(1 for e in client.session_log("live") if e.heap is not None)
        chain_heaps = sum(1 for e in client.session_log("chain") if e.heap is not None)
        together = concurrent(server, args.clients, args.rounds, args.seconds)
    rows = {kind: summary_ms(values) for kind, values in times.items()}
    report = {
        "machine": machine_info(),
        "steps": args.steps,
        "latency": rows,
        "live_over_floor_ms": rows["live"]["median_ms"] - rows["floor"]["median_ms"],
        "chain_over_live": rows["chain"]["median_ms"] / rows["live"]["median_ms"],
        "heaps_written": {"live": live_heaps, "chain": chain_heaps},
        "concurrent": {"clients": args.clients, **together},
        "live_over_chain_rate": together["live"]["rate_per_s"] / together["chain"]["rate_per_s"],
    }
    results = BENCHES / "results"
    results.mkdir(exist_ok=True)
    (results / "live_sessions.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"One client, submit with wait_ms, {args.steps} steps of each kind in alternating rounds of {args.round}.",
        "",
        "| request | p50 ms | p95 ms | p99 ms |",
        "|---|---|---|---|",
    ]
    names = {
        "floor": "HTTP floor (GET /api/version)",
        "live": "live-session step",
        "chain": "heap-chain step",
    }
    for kind, row in rows.items():
        lines.append(
            f"| {names[kind]} | {row['median_ms']:.2f} | {row['p95_ms']:.2f} | {row['p99_ms']:.2f} |"
        )
    lines += [
        "",
        f"Live step over the floor: {report['live_over_floor_ms']:.2f} ms (p50); heap-chain step / live "
        f"step: {report['chain_over_live']:.1f}x. Heaps written by {args.steps + 1} steps: live "
        f"{live_heaps}, chain {chain_heaps}.",
        "",
        f"{args.clients} clients, a session each, {args.rounds} rounds of {args.seconds:g} s of each kind:",
        "",
        "| steps | steps/s | p50 ms |",
        "|---|---|---|",
        f"| live-session | {together['live']['rate_per_s']:.0f} | {together['live']['median_ms']:.2f} |",
        f"| heap-chain | {together['chain']['rate_per_s']:.0f} | {together['chain']['median_ms']:.2f} |",
        "",
        f"Live steps / heap-chain steps at {args.clients} clients: {report['live_over_chain_rate']:.1f}x.",
    ]
    Path(results / "live_sessions.md").write_text("\n".join(lines) + "\n")
    log("\n".join(lines))


if __name__ == "__main__":
    main()
