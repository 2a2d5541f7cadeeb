"""Part 2, service level: a real ``mcp-v8 serve`` on loopback driven by benches/loadgen.py in its own
process (closed-loop clients, submit + long-poll), stateless (with the default snapshot, and with
``"snapshot": false``) and stateful, with and without 10 % cancels; cancel → ``cancelled`` over HTTP
of a busy loop and of a parked promise; and a leak check of one worker process over many executions."""

from __future__ import annotations

import http.client
import threading
import time
from pathlib import Path
from typing import Any

from benchlib import TRIVIAL, TRIVIAL_RESULT, cpu_seconds, log, rss_kb, summary_ms
from server import Server, run_loadgen

from mcp_v8.client import Client
from mcp_v8.config import Settings
from mcp_v8.errors import APIError

LEAK_CODE = "console.log('leak check', 42);\n" + TRIVIAL


def _cpu(pids: list[int]) -> float:
    return sum(cpu_seconds(p) or 0.0 for p in pids)


class Probe:
    """``GET /api/version`` every 50 ms on its own keep-alive connection while a load runs: how long
    a request that needs no work waits for one of the server's HTTP threads."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.latencies: list[float] = []
        self.errors = 0

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self._port, timeout=60)
        while not self._stop.wait(0.05):
            t0 = time.perf_counter()
            try:
                conn.request("GET", "/api/version")
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    self.errors += 1
                    continue
            except (OSError, http.client.HTTPException):
                self.errors += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self._port, timeout=60)
                continue
            self.latencies.append(time.perf_counter() - t0)
        conn.close()

    def summary(self) -> dict[str, Any]:
        return {"count": len(self.latencies), "errors": self.errors, **summary_ms(self.latencies)}


SESSION_TAGS = "project=bench,owner=loadgen"  # loadgen --tags: two tags on every execution


def load_run(
    server: Server,
    *,
    concurrency: int,
    seconds: float,
    mode: str,
    cancel: float,
    http_threads: int,
    submit_wait: bool = False,
    session_tags: bool = False,
) -> dict[str, Any]:
    """One loadgen run, with the server's and its workers' CPU time per finished execution and the
    latency of a side probe; with ``session_tags`` every execution carries a session (one per
    client) and SESSION_TAGS."""
    workers = server.worker_pids()
    server_cpu0, workers_cpu0 = _cpu([server.pid]), _cpu(workers)
    with Probe(server.port) as probe:
        result = run_loadgen(
            server.url,
            timeout=seconds + 120,
            concurrency=concurrency,
            seconds=seconds,
            mode=mode,
            cancel_fraction=cancel,
            seed=concurrency,
            submit_wait=submit_wait,
            session="bench" if session_tags else False,
            tags=SESSION_TAGS if session_tags else False,
        )
    result["probe_version"] = probe.summary()
    result["http_threads"] = http_threads
    finished = max(1, result["finished"])
    result["server_cpu_ms_per_exec"] = (_cpu([server.pid]) - server_cpu0) / finished * 1e3
    result["workers_cpu_ms_per_exec"] = (_cpu(workers) - workers_cpu0) / finished * 1e3
    result["worker_replacements"] = len(set(server.worker_pids()) - set(workers))
    log(
        f"service {mode}{' submit-wait' if submit_wait else ''}{' session+tags' if session_tags else ''} "
        f"c={concurrency} threads={http_threads} "
        f"cancel={cancel:.0%}: "
        f"{result['throughput_per_s']:.1f}/s, "
        f"median {result['latency']['median_ms']:.1f} ms, errors {result['errors']}"
    )
    return result


# Scripts of the HTTP cancel measurement; each prints a line first, so its output tells that a worker
# has started it (the record says `running` from the submit on, queued or not).
CANCEL_SCRIPTS = {
    "busy_loop": "console.log('started');\nwhile (true) {}",
    "parked_promise": "console.log('started');\nawait new Promise(() => {})",
}
CANCEL_MARGIN_S = 0.005  # after the line is seen: the script is inside its loop or its await


def cancel_over_http(server: Server, rounds: int) -> dict[str, Any]:
    """For each script of CANCEL_SCRIPTS, ``rounds`` times one after another on an idle server:
    submit it, poll its output until the worker has printed the first line (the console flusher sends
    it within ~20 ms), wait CANCEL_MARGIN_S, then time ``POST /api/executions/{id}/cancel`` until a
    ``GET /api/executions/{id}?wait_ms=...`` long-poll answers ``cancelled``."""
    client = Client(server.url, timeout=30.0, retries=0)
    out: dict[str, Any] = {"rounds": rounds, "margin_ms": CANCEL_MARGIN_S * 1e3, "scripts": CANCEL_SCRIPTS}
    try:
        for name, code in CANCEL_SCRIPTS.items():
            samples: list[float] = []
            posts: list[float] = []
            starts: list[float] = []
            errors: list[str] = []
            for _ in range(rounds):
                try:
                    t_submit = time.perf_counter()
                    eid = client.execute(code, execution_timeout_secs=30, wait=False).execution_id
                    deadline = time.monotonic() + 20
                    # One output page per poll (follow=False): it yields only when it holds data.
                    while not any(client.output_pages(eid, follow=False)):
                        if time.monotonic() > deadline:
                            raise RuntimeError("no output after 20 s")
                        time.sleep(0.002)
                    starts.append(time.perf_counter() - t_submit)
                    time.sleep(CANCEL_MARGIN_S)
                    t0 = time.perf_counter()
                    accepted = client.cancel(eid)
                    posts.append(time.perf_counter() - t0)
                    if not accepted:
                        raise RuntimeError("cancel refused: the execution had ended")
                    info = client.wait(eid)
                    t1 = time.perf_counter()
                    if info.status != "cancelled":
                        raise RuntimeError(f"ended {info.status} after the cancel")
                    samples.append(t1 - t0)
                except (OSError, RuntimeError, APIError, ValueError, KeyError) as e:
                    errors.append(f"{type(e).__name__}: {e}"[:300])
            out[name] = {
                "cancelled": len(samples),
                **summary_ms(samples),
                "samples_ms": [x * 1e3 for x in samples],
                "cancel_post_ms": summary_ms(posts),
                "submit_to_started_ms": summary_ms(starts),
                "errors": errors,
            }
            log(
                f"service cancel over HTTP, {name}: median {out[name]['median_ms']:.2f} ms "
                f"({len(samples)}/{rounds} cancelled)"
            )
    finally:
        client.close()
    return out


def http_floor(server: Server, *, clients: int = 4, requests: int = 1500) -> dict[str, Any]:
    """The server's CPU per ``GET /api/version`` (no work behind it) from ``clients`` keep-alive
    connections: what Waitress and Falcon cost per request, the floor under an execution's two
    (submit + long-poll) or one (submit with wait_ms)."""

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        for _ in range(requests):
            conn.request("GET", "/api/version")
            conn.getresponse().read()
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    cpu0, t0 = _cpu([server.pid]), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed, cpu = time.perf_counter() - t0, _cpu([server.pid]) - cpu0
    total = clients * requests
    result = {
        "clients": clients,
        "requests": total,
        "per_s": total / elapsed,
        "server_cpu_ms_per_request": cpu / total * 1e3,
    }
    log(f"service HTTP floor: {result['server_cpu_ms_per_request']:.2f} ms server CPU per GET /api/version")
    return result


# Every mode is measured without cancels; the rows with 10 % cancels keep to two (a shorter run).
MODES = ("stateless", "stateless-no-snapshot", "stateful")
CANCEL_MODES = ("stateless", "stateful")


def run(*, workers: int, quick: bool, concurrencies: tuple[int, ...] | None = None) -> dict[str, Any]:
    if concurrencies is None:
        concurrencies = (1, 16) if quick else (1, 4, 16, 64)
    seconds = 2.0 if quick else 8.0
    queue_limit = 2 * max(concurrencies)  # closed loop: at most one execution per client is queued
    out: dict[str, Any] = {
        "workers": workers,
        "queue_limit": queue_limit,
        "seconds": seconds,
        "concurrencies": list(concurrencies),
        "runs": [],
    }
    default_threads = Settings().threads
    with Server(workers=workers, queue_limit=queue_limit) as server:
        out["server_args"] = server.args
        run_loadgen(server.url, timeout=60, concurrency=workers, seconds=1.0)  # warm-up
        for cancel in (0.0, 0.1):
            for mode in CANCEL_MODES if cancel else MODES:
                for c in concurrencies:
                    out["runs"].append(
                        load_run(
                            server,
                            concurrency=c,
                            seconds=seconds,
                            mode=mode,
                            cancel=cancel,
                            http_threads=default_threads,
                        )
                    )
        # One request per execution: the submit carries wait_ms and answers with the execution.
        out["submit_wait_runs"] = [
            load_run(
                server,
                concurrency=c,
                seconds=seconds,
                mode=mode,
                cancel=0.0,
                http_threads=default_threads,
                submit_wait=True,
            )
            for mode in MODES
            for c in sorted({min(concurrencies), 4} & set(concurrencies))
        ]
        # What sessions and heap tags add: the stateless rows again, every execution with both.
        out["session_tags_runs"] = [
            load_run(
                server,
                concurrency=c,
                seconds=seconds,
                mode="stateless",
                cancel=0.0,
                http_threads=default_threads,
                session_tags=True,
            )
            for c in sorted({min(concurrencies), 4} & set(concurrencies))
        ]
        out["data_dir_bytes"] = _du(server.data_dir)
        out["http_floor"] = http_floor(server, requests=500 if quick else 1500)
        try:
            out["cancel_http"] = cancel_over_http(server, 10 if quick else 20)
        except Exception as e:  # the load rows stay
            out["cancel_http"] = {"error": f"{type(e).__name__}: {e}"}
    # Long-polls hold an HTTP thread each: the busiest row again with enough threads for every client.
    top = max(concurrencies)
    threads = 2 * top + default_threads
    with Server(workers=workers, queue_limit=queue_limit, threads=threads) as server:
        run_loadgen(server.url, timeout=60, concurrency=workers, seconds=1.0)  # warm-up
        for cancel in (0.0, 0.1):
            out["runs"].append(
                load_run(
                    server,
                    concurrency=top,
                    seconds=seconds,
                    mode="stateless",
                    cancel=cancel,
                    http_threads=threads,
                )
            )
    return out


def _du(path: Path) -> dict[str, int]:
    """Bytes on disk under ``path`` by top-level entry (heaps, registry, workers...)."""
    sizes: dict[str, int] = {}
    for entry in path.iterdir():
        if entry.is_dir():
            total = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())
        else:
            total = entry.stat().st_size
        key = "registry" if entry.name.startswith("registry") else entry.name
        sizes[key] = sizes.get(key, 0) + total
    return sizes


def leak_check(*, executions: int, quick: bool) -> dict[str, Any]:
    """``executions`` trivial executions (with a console line) through a server with one worker;
    the worker's and the server's VmRSS sampled at the start, every second and at the end."""
    samples: list[dict[str, Any]] = []
    with Server(workers=1, queue_limit=64) as server:
        (worker,) = server.worker_pids()
        start: dict[str, Any] = {"t": 0.0, "worker_kb": rss_kb(worker), "server_kb": rss_kb(server.pid)}
        stop = threading.Event()
        t0 = time.monotonic()

        def sample() -> None:
            while not stop.wait(1.0):
                samples.append(
                    {"t": time.monotonic() - t0, "worker_kb": rss_kb(worker), "server_kb": rss_kb(server.pid)}
                )

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            result = run_loadgen(
                server.url,
                timeout=3600,
                concurrency=4,
                seconds=1800,
                max_executions=executions,
                code=LEAK_CODE,
                expect=TRIVIAL_RESULT,
            )
        finally:
            stop.set()
            sampler.join()
        end: dict[str, Any] = {
            "t": time.monotonic() - t0,
            "worker_kb": rss_kb(worker),
            "server_kb": rss_kb(server.pid),
        }
        replaced = server.worker_pids() != [worker]
        disk = _du(server.data_dir)
    done = result["finished"]
    # Growth over the second half of the run (after warm-up effects) per 1000 executions.
    half = [s for s in samples if s["t"] >= end["t"] / 2 and s["worker_kb"]]
    slope = None
    if len(half) >= 2 and done:
        rate = done / end["t"]
        slope = (
            (half[-1]["worker_kb"] - half[0]["worker_kb"]) / ((half[-1]["t"] - half[0]["t"]) * rate) * 1000
        )
    log(f"leak check: worker RSS {start['worker_kb']} kB -> {end['worker_kb']} kB over {done} executions")
    return {
        "executions": done,
        "errors": result["errors"],
        "errors_by_kind": result["errors_by_kind"],
        "throughput_per_s": result["throughput_per_s"],
        "worker_pid_replaced": replaced,
        "start": start,
        "end": end,
        "samples": samples,
        "worker_kb_per_1000_second_half": slope,
        "data_dir_bytes": disk,
        "quick": quick,
    }
