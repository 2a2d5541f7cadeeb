"""Closed-loop load generator for a running ``mcp-v8 serve``, run as its own process.

Each of ``--concurrency`` client threads owns one :class:`mcp_v8.client.Client` (one keep-alive
HTTP/1.1 connection, 429s counted as errors, not retried) and loops:
``POST /api/exec``, then ``GET /api/executions/{id}?wait_ms=30000`` (the long-poll, repeated only
if it returns while still running) until the status is terminal; the end-to-end latency is from
before the POST to the terminal answer. ``--mode stateful`` makes every client keep a heap chain
(each execution restores the ``heap`` the previous one produced, and the counter it returns is
checked); ``--mode stateless-no-snapshot`` runs the stateless script with ``"snapshot": false`` (a
plain isolate, no heap snapshot taken or stored; the answer's ``heap`` is checked to be null). With
``--submit-wait`` each submit carries ``"wait_ms": 30000`` and is answered with the execution when it
ends (one request per execution instead of a submit and a long-poll; the long-poll follows only if
the submit's wait elapsed); it does not combine with cancels. With
``--cancel-fraction`` that share of executions is cancelled
(``POST /api/executions/{id}/cancel``), half of them right after the submit and half after a random
delay; a cancel that comes too late (400) is not an error, a cancel that was accepted but whose
execution still completed is. ``--session PREFIX`` gives every execution the session
``PREFIX-<client index>`` and ``--tags k=v,...`` these tags (what sessions and heap tags write).

Only loopback targets are accepted. The run is bounded by ``--seconds`` (and ``--max-executions``).
Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import resource
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from benchlib import TRIVIAL, TRIVIAL_RESULT, summary_ms

from mcp_v8.client import Client, Execution
from mcp_v8.errors import APIError

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
WAIT_MS = 30000
CHAIN_FIRST = "var n = 0; n"
CHAIN_STEP = "n += 1; JSON.stringify(n)"
MODES = ("stateless", "stateless-no-snapshot", "stateful")


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)  # completed executions, seconds
    cancel_latencies: list[float] = field(default_factory=list)  # cancelled: cancel POST -> terminal
    cancelled_e2e: list[float] = field(default_factory=list)  # cancelled: submit -> terminal
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    cancels_sent: int = 0
    cancels_accepted: int = 0
    cancels_late: int = 0
    requests: int = 0
    reconnects: int = 0

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.error_samples) < 10:
            self.error_samples.append(f"{kind}: {detail[:300]}")


class ClientLoop:
    def __init__(self, args: argparse.Namespace, url: str, index: int, stop_at: list[float]) -> None:
        self.args = args
        # One keep-alive connection (this thread's); a 429 is counted, not retried.
        self.client = Client(url, timeout=30.0, retries=0)
        self.rng = random.Random(args.seed * 1000 + index)
        self.stats = Stats()
        self.stop_at = stop_at
        self.heap: str | None = None
        self.counter = 0
        self.session = None if args.session is None else f"{args.session}-{index}"
        self.tags = args.tags

    def submit(self, code: str, wait: bool = False) -> Execution:
        """The new execution, ``running`` with only its id, or with ``wait`` as the submit's own wait
        (and, if it elapsed, the long-poll) saw it end."""
        return self.client.execute(
            code,
            heap=self.heap,
            session=self.session,
            tags=self.tags,
            snapshot=False if self.args.mode == "stateless-no-snapshot" else None,
            wait=wait,
        )

    def setup(self) -> None:
        if self.args.mode == "stateful":
            info = self.client.wait(self.submit(CHAIN_FIRST).execution_id)
            if info.status != "completed" or not info.heap:
                raise RuntimeError(f"chain setup failed: {info}")
            self.heap = info.heap

    def one(self) -> None:
        stats = self.stats
        stateful = self.args.mode == "stateful"
        cancel = self.rng.random() < self.args.cancel_fraction
        t0 = time.perf_counter()
        info = self.submit(CHAIN_STEP if stateful else self.args.code, self.args.submit_wait)
        execution_id = info.execution_id
        accepted = False
        t_cancel = 0.0
        if cancel:
            if self.rng.random() >= 0.5:
                time.sleep(self.rng.uniform(0, self.args.cancel_max_delay_ms / 1000))
            t_cancel = time.perf_counter()
            stats.cancels_sent += 1
            try:
                accepted = self.client.cancel(execution_id)
            except APIError as e:
                stats.error(f"cancel_http_{e.status}", str(e))
            else:
                if accepted:
                    stats.cancels_accepted += 1
                else:  # 400: it had already ended
                    stats.cancels_late += 1
        if not info.done:
            info = self.client.wait(execution_id)
        t1 = time.perf_counter()
        if t1 > self.stop_at[0]:
            return  # finished after the window: not counted
        status_name = info.status
        stats.statuses[status_name] += 1
        if accepted and status_name != "cancelled":
            stats.error("cancel_not_final", f"{execution_id} cancelled (200) but ended {status_name}")
            return
        if status_name == "cancelled":
            stats.cancel_latencies.append(t1 - t_cancel)
            stats.cancelled_e2e.append(t1 - t0)
            return  # the chain stays at the heap it started from
        if status_name != "completed":
            stats.error(f"status_{status_name}", str(info.error))
            return
        stats.latencies.append(t1 - t0)
        if stateful:
            self.counter += 1
            if info.result != f'"{self.counter}"':
                stats.error("wrong_result", f"expected {self.counter}, got {info.result}")
                self.counter = int(info.value)
            self.heap = info.heap
        elif self.args.expect is not None and info.result != self.args.expect:
            stats.error("wrong_result", str(info.result))
        elif self.args.mode == "stateless-no-snapshot" and info.heap is not None:
            stats.error("unexpected_heap", f"{execution_id} asked for no snapshot but has heap {info.heap}")

    def loop(self, start: threading.Barrier, budget: list[int], budget_lock: threading.Lock) -> None:
        try:
            self.setup()
        except Exception as e:
            self.stats.error("setup", repr(e))
        start.wait()
        while time.perf_counter() < self.stop_at[0]:
            with budget_lock:
                if budget[0] <= 0:
                    break
                budget[0] -= 1
            try:
                self.one()
            except APIError as e:
                self.stats.error(f"http_{e.status}", str(e))
                if e.status == 429:
                    time.sleep(0.05)
            except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
                self.stats.error(type(e).__name__, repr(e))
                time.sleep(0.05)
        self.stats.requests = self.client.requests
        self.stats.reconnects = self.client.reconnects
        self.client.close()


def _tags(text: str) -> dict[str, str]:
    pairs = [item.partition("=") for item in text.split(",") if item]
    if not pairs or any(not sep or not key for key, sep, _ in pairs):
        raise argparse.ArgumentTypeError(f"expected k=v[,k=v...], not {text!r}")
    return {key: value for key, _, value in pairs}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="http://127.0.0.1:PORT (loopback only)")
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--max-executions", type=int, default=10**9, help="stop after this many submits")
    ap.add_argument("--mode", choices=MODES, default="stateless")
    ap.add_argument(
        "--submit-wait", action="store_true", help="submit with wait_ms: one request per execution"
    )
    ap.add_argument("--cancel-fraction", type=float, default=0.0)
    ap.add_argument("--cancel-max-delay-ms", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--code", default=TRIVIAL, help="the script of the stateless modes")
    ap.add_argument(
        "--expect", default=None, help="its expected result (default: that of the trivial script)"
    )
    ap.add_argument(
        "--session",
        default=None,
        help="every execution carries a session: this prefix and the client's index",
    )
    ap.add_argument("--tags", default=None, type=_tags, help="k=v[,k=v...]: the tags every execution carries")
    args = ap.parse_args(argv)
    if args.expect is None and args.code == TRIVIAL:
        args.expect = TRIVIAL_RESULT
    if args.submit_wait and args.cancel_fraction:
        ap.error("--submit-wait does not combine with --cancel-fraction (the submit holds the connection)")
    url = urlsplit(args.url)
    if url.scheme != "http" or url.hostname not in LOOPBACK or url.port is None:
        ap.error("--url must be http://127.0.0.1:PORT (load targets loopback only)")

    stop_at = [float("inf")]
    loops = [ClientLoop(args, args.url, i, stop_at) for i in range(args.concurrency)]
    start = threading.Barrier(args.concurrency + 1)
    budget, budget_lock = [args.max_executions], threading.Lock()
    threads = [threading.Thread(target=c.loop, args=(start, budget, budget_lock), daemon=True) for c in loops]
    for t in threads:
        t.start()
    start.wait()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    stop_at[0] = t0 + args.seconds
    for t in threads:
        t.join(args.seconds + WAIT_MS / 1000 + 60)
    # Executions still in flight at the deadline are not counted; a run cut short by the
    # execution budget ends when its last client does.
    elapsed = min(time.perf_counter(), stop_at[0]) - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)

    total = Stats()
    for c in loops:
        s = c.stats
        total.latencies += s.latencies
        total.cancel_latencies += s.cancel_latencies
        total.cancelled_e2e += s.cancelled_e2e
        total.statuses += s.statuses
        total.errors += s.errors
        total.error_samples += s.error_samples[: max(0, 10 - len(total.error_samples))]
        total.cancels_sent += s.cancels_sent
        total.cancels_accepted += s.cancels_accepted
        total.cancels_late += s.cancels_late
        total.requests += s.requests
        total.reconnects += s.reconnects
    finished = sum(total.statuses.values())
    out = {
        "mode": args.mode,
        "submit_wait": args.submit_wait,
        "session": args.session,
        "tags": args.tags,
        "concurrency": args.concurrency,
        "cancel_fraction": args.cancel_fraction,
        "elapsed_s": elapsed,
        "finished": finished,
        "completed": total.statuses.get("completed", 0),
        "statuses": dict(total.statuses),
        "throughput_per_s": finished / elapsed if elapsed > 0 else 0.0,
        "completed_per_s": total.statuses.get("completed", 0) / elapsed if elapsed > 0 else 0.0,
        "latency": summary_ms(total.latencies),
        "cancelled_latency": summary_ms(total.cancelled_e2e),
        "cancel_to_terminal": summary_ms(total.cancel_latencies),
        "errors": sum(total.errors.values()),
        "errors_by_kind": dict(total.errors),
        "error_samples": total.error_samples,
        "cancels_sent": total.cancels_sent,
        "cancels_accepted": total.cancels_accepted,
        "cancels_late": total.cancels_late,
        "http_requests": total.requests,
        "reconnects": total.reconnects,
        "loadgen_cpu_s": (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime),
    }
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
