"""The service's metrics, in the Prometheus text format (``GET /metrics``), with the official
client library (``prometheus-client``).

One :class:`Metrics` per service, on a registry of its own (never the library's global one), so
that several services in one process count apart. The counters are the library's (thread-safe:
each value has its own lock), and ``GET /api/stats`` reads the same ones (:meth:`Metrics.total`).

Several processes on one port (``serve --processes N``: the kernel hands each connection to any
of them) use the library's multiprocess mode: the parent gives its processes one empty directory
in ``PROMETHEUS_MULTIPROC_DIR``, each writes its values to files of its own there, and a scrape,
whichever process answers it, adds up the files of all of them (gauges of processes that ended
excluded). A process knows it is one of several by that variable, read once when the library is
imported (the library's rule).

Gauges are set where the state they show changes. A cluster-wide gauge (the database's queue)
is read when a scrape asks for it (:meth:`Metrics.cluster_gauge`): every node that is scraped
exports the same value, under a name of its own (``mcp_v8_cluster_*``), so a query takes its
``max`` over the nodes, never the ``sum``.

Buckets, from the reference bench (``benches/reference/bench.json``) and the ceilings measured in
the design notes:

- :data:`RUN_BUCKETS` (queue wait and run time, seconds): an execution without a snapshot runs
  in ~2.4 ms (engine, one thread), one with a snapshot in ~10–15 ms, restoring and snapshotting a
  10 MB heap ~400 ms; under load the service's latency reaches ~150–200 ms at 16 concurrent
  clients; timeouts go up to 300 s (``--max-timeout-secs``' default).
- :data:`STORE_BUCKETS` (a heap read for a restore, or published for a save, seconds): a 50 KB
  heap in PostgreSQL 0.18/0.5 ms (read/write), 1 MB 3.3/9.6 ms, S3 1.2/2.2 ms at 50 KB; a local
  file below those; ``--durable-heaps`` adds ~3.6 ms.
- :data:`SIZE_BUCKETS` (stored heap bytes): a near-empty heap is ~26 KB stored, a 10 MB heap
  ~560 KB (stored heaps are compressed to ~5 %); at that ratio the largest heap cap (1 GiB) would
  store at ~60 MB.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

__all__ = [
    "CONTENT_TYPE",
    "MODES",
    "MULTIPROCESS_ENV",
    "OTHER_TENANT",
    "RUN_BUCKETS",
    "SIZE_BUCKETS",
    "STORE_BUCKETS",
    "Metrics",
]

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The classic text format (what every Prometheus reads; the names here need none of the newer
# format's escaping), whatever the library's latest is.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

RUN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)  # fmt: skip
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SIZE_BUCKETS = tuple(float(1 << n) for n in (14, 15, 16, 17, 18, 19, 20, 22, 24, 26, 28))  # 16 KiB .. 256 MiB

# The ``mode`` label (``ExecutionSpec.mode``): an execution that produces a heap snapshot, or
# not; ``live`` is kept for the live sessions to come.
MODES = ("snapshot", "no_snapshot", "live")
OTHER_TENANT = "other"  # the tenant label of every tenant the configuration does not name


def _tool_outcome(outcome: str) -> str:
    """The ``outcome`` label of a script's tool call from its record's outcome (``ok``, the
    name of the error the script got, ``held`` or ``abandoned``): a bounded set."""
    if outcome in ("ok", "abandoned", "held"):
        return outcome
    if outcome == "TypeError":  # refused before anything was sent: budget, catalogue, arguments
        return "refused"
    if outcome == "ToolDenied":
        return "denied"
    return "failed"


class _ClusterGauge:
    """A gauge read when a scrape asks for it (a custom collector)."""

    def __init__(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        self._name, self._documentation, self._read = name, documentation, read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            value = float(self._read())
        except Exception:  # the database is away: the scrape goes on without this gauge
            return
        yield GaugeMetricFamily(self._name, self._documentation, value=value)


class Metrics:
    """The metrics of one service (see the module's docstring)."""

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        """``multiprocess_dir``: the directory the processes of one port share (default: the
        ``PROMETHEUS_MULTIPROC_DIR`` variable, as the library reads it)."""
        self.multiprocess_dir = multiprocess_dir or os.environ.get(MULTIPROCESS_ENV) or None
        self.registry = r = CollectorRegistry(auto_describe=True)
        self._cluster: list[Collector] = []
        self.executions_started = Counter(
            "mcp_v8_executions_started",
            "Executions this process took into its queue, by mode",
            ["mode"],
            registry=r,
        )
        self.executions_ended = Counter(
            "mcp_v8_executions_ended",
            "Executions this process queued or ran that ended, by terminal status and mode",
            ["status", "mode"],
            registry=r,
        )
        self.queue_wait = Histogram(
            "mcp_v8_queue_wait_seconds",
            "Time from an execution's acceptance here to a worker taking it",
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.run_time = Histogram(
            "mcp_v8_run_seconds",
            "Time a worker spent on an execution (restore, script, snapshot), by mode",
            ["mode"],
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.restore_time = Histogram(
            "mcp_v8_snapshot_restore_seconds",
            "Time to read and verify the heap an execution resumes and hand it to its worker",
            buckets=STORE_BUCKETS,
            registry=r,
        )
        self.restore_size = Histogram(
            "mcp_v8_snapshot_restore_bytes",
            "Size of the heaps executions resume (as stored)",
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.save_time = Histogram(
            "mcp_v8_snapshot_save_seconds",
            "Time to publish, sign and index the heap an execution produced",
            buckets=STORE_BUCKETS,
            registry=r,
        )
        self.save_size = Histogram(
            "mcp_v8_snapshot_save_bytes",
            "Size of the heaps executions produced (as stored)",
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.workers = Gauge("mcp_v8_workers", "Worker processes", registry=r, multiprocess_mode="livesum")
        self.workers_busy = Gauge(
            "mcp_v8_workers_busy",
            "Workers running an execution now",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.queued = Gauge(
            "mcp_v8_queued",
            "Executions in this process's queue, waiting for a worker",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.worker_crashes = Counter(
            "mcp_v8_worker_crashes", "Worker processes that died while running an execution", registry=r
        )
        self.worker_restarts = Counter(
            "mcp_v8_worker_restarts",
            "Worker processes started to replace one that crashed or was killed",
            registry=r,
        )
        self.sandbox_violations = Counter(
            "mcp_v8_sandbox_violations",
            "Executions the worker sandbox ended for a forbidden system call",
            registry=r,
        )
        self.fetch_calls = Counter(
            "mcp_v8_fetch_calls",
            "fetch() calls of scripts, by outcome (ok, failed, refused, abandoned)",
            ["outcome"],
            registry=r,
        )
        self.tool_calls = Counter(
            "mcp_v8_tool_calls",
            "Tool calls of scripts, by outcome (ok, refused, denied, failed, abandoned)",
            ["outcome"],
            registry=r,
        )
        self.output_bytes = Counter(
            "mcp_v8_output_bytes", "Console output written by executions (UTF-8 bytes)", registry=r
        )
        self.http_requests = Counter(
            "mcp_v8_http_requests",
            "HTTP requests, by method, route template and status code",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "mcp_v8_http_request_duration_seconds",
            "Time to answer HTTP requests (a long-poll's wait included), by route template",
            ["route"],
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.mcp_tool_calls = Counter(
            "mcp_v8_mcp_tool_calls",
            "MCP tools/call requests, by tool and outcome (ok, error)",
            ["tool", "outcome"],
            registry=r,
        )

        self.quota_refusals = Counter(
            "mcp_v8_quota_refusals",
            "Requests and tool calls a tenant's quota refused, by tenant (those the configuration "
            "names; others are 'other') and quota",
            ["tenant", "quota"],
            registry=r,
        )
        # The tenants whose names may be labels (bounded: the configuration's, never a client's).
        self.named_tenants: frozenset[str] = frozenset({"default"})

    # -- what the service counts ---------------------------------------------------
    def tenant_label(self, tenant: str) -> str:
        """``tenant`` as a label: its name when the configuration names it, else ``other``."""
        return tenant if tenant in self.named_tenants else OTHER_TENANT

    def quota_refused(self, tenant: str, quota: str) -> None:
        """A quota of ``tenant`` refused a request or a tool call."""
        self.quota_refusals.labels(self.tenant_label(tenant), quota).inc()

    def tool_call(self, outcome: str) -> None:
        """A script's tool call ended with the record's ``outcome``."""
        self.tool_calls.labels(_tool_outcome(outcome)).inc()

    def cluster_gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge of the whole cluster, read at each scrape (see the module's docstring)."""
        collector = _ClusterGauge(name, documentation, read)
        self._cluster.append(collector)
        if self.multiprocess_dir is None:
            self.registry.register(collector)

    # -- reading -----------------------------------------------------------------------
    @staticmethod
    def total(metric: Counter) -> int:
        """A counter's value in this process, over all its labels (what ``/api/stats`` shows)."""
        return round(
            sum(s.value for family in metric.collect() for s in family.samples if s.name.endswith("_total"))
        )

    def exposition(self) -> bytes:
        """The text format of every metric: this process's, or, with several processes on one
        port, all of theirs added up."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        for collector in self._cluster:
            registry.register(collector)
        return generate_latest(registry)
