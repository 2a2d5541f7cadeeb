"""The WSGI application: ``create_app(settings)``.

``Service`` owns what the app needs (heap store, execution store, output log, execution
manager with its worker processes); ``create_app`` wires it to Falcon resources, the door's
middleware (:mod:`.resources.security`: allowlists, principals and scopes, body limit), the count of every
request (``GET /metrics``) and one error mapping that turns everything into
``{"error": "..."}`` with no server stack trace.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import falcon
from falcon.routing import CompiledRouter

from .backends import BackendError, open_stores
from .config import TENANT_QUOTA_SETTINGS, Settings
from .executions import Admission, ExecutionManager, SharedQueue
from .executions.approvals import Approvals
from .executions.cluster import Cluster
from .executions.sandbox import data_limit_mb
from .executions.siblings import RECHECK_SECS, SiblingEvents
from .executions.tool_caller import SessionsCaller
from .executions.waiters import FinishEvents, QueueEvents
from .mcp import McpResource
from .metrics import Metrics
from .operations import OperationError, Operations
from .principal import DEFAULT_TENANT
from .quotas import QuotaSource, TenantQuotas, from_limits
from .resources.executions import (
    ApproveResource,
    CancelResource,
    ExecResource,
    ExecutionListResource,
    ExecutionResource,
    OutputResource,
    ToolCallsResource,
)
from .resources.heaps import HeapQueryResource, HeapResource, HeapTagsResource
from .resources.meta import (
    CliDownloadResource,
    CliIndexResource,
    OpenApiResource,
    StatsResource,
    VersionResource,
)
from .resources.metrics import MetricsResource, RequestMetrics
from .resources.security import METRICS_ROUTE, QueryParamsMiddleware, SecurityMiddleware
from .resources.sessions import LiveSessionResource, SessionListResource, SessionLogResource
from .resources.tools import ToolDeclarationsResource, ToolsResource
from .resources.usage import UsageResource
from .storage import (
    DatabaseUnavailable,
    ExecutionStore,
    FileHeapStore,
    HeapCatalogue,
    Lease,
    OutputLog,
)
from .tools.config import ToolsConfigError, load_tools_config
from .tracing import OFF, Tracer, Tracing, endpoint_from

log = logging.getLogger("mcp_v8")

if TYPE_CHECKING:
    from .tools.sessions import ToolSessions

RETENTION_INTERVAL_SECONDS = 300.0
APPROVAL_SWEEP_SECONDS = 5.0


class StartupError(RuntimeError):
    """The service cannot start as configured; the message says why."""


class DataDirError(StartupError):
    """The data directory cannot be used (missing permissions, read-only, full)."""


class TracingError(StartupError):
    """Traces are asked for (``--otlp-endpoint``, ``OTEL_EXPORTER_OTLP_*``) without the ``otel``
    extra installed."""


class ToolServersError(StartupError):
    """``--tools-config`` cannot be used: the MCP SDK is missing, or the file changed since the
    settings were checked."""


def check_data_dir(path: Path) -> None:
    """Fails at start, with a clear message, when the data directory is unusable."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-probe"
        with open(probe, "wb") as f:
            f.write(b"x" * 4096)
            f.flush()
        probe.unlink()
    except OSError as e:
        raise DataDirError(f"data directory {path} is not usable: {e.strerror or e}") from e


def _tool_sessions(settings: Settings) -> ToolSessions | None:
    """The sessions of the tool servers of ``--tools-config`` (not yet started), or None."""
    if settings.tools_config is None:
        return None
    try:
        from .tools.sessions import ToolSessions
    except ImportError as e:  # the extra is not installed (or Python is older than 3.10)
        raise ToolServersError(
            f"--tools-config needs the MCP SDK: pip install 'mcp-v8[tools]' (Python 3.10 or later); {e}"
        ) from None
    try:
        config = load_tools_config(settings.tools_config)
    except ToolsConfigError as e:  # changed since the settings were checked
        raise ToolServersError(f"tools_config: {e}") from None
    return ToolSessions(config)


def _tracing(settings: Settings) -> Tracing:
    """The service's traces (:mod:`.tracing`): on with ``--otlp-endpoint`` or the standard
    variables, which need the ``otel`` extra installed."""
    endpoint = endpoint_from(settings.otlp_endpoint)
    if endpoint is None:
        return OFF
    try:
        return Tracer(endpoint, {"service.instance.id": f"{socket.gethostname()}:{os.getpid()}"})
    except ImportError as e:
        raise TracingError(
            f"traces are on (--otlp-endpoint or OTEL_EXPORTER_OTLP_*), but {e.name or e} is not installed: "
            "pip install 'mcp-v8[otel]'"
        ) from None


def default_quotas(settings: Settings) -> TenantQuotas:
    """The quotas of every tenant the auth config gives none: the ``--tenant-*`` settings (0:
    unlimited)."""
    return from_limits((quota, getattr(settings, name)) for quota, name in TENANT_QUOTA_SETTINGS.items())


def configured_quotas(settings: Settings) -> QuotaSource:
    """Each tenant's quotas: those of its entry in the auth config when it has ``"quotas"``
    (absent ones unlimited), else the ``--tenant-*`` settings; its tool servers are its entry's
    (every one when it has none)."""
    defaults = default_quotas(settings)
    configured: dict[str, TenantQuotas] = {}
    for name, tenant in (settings.auth.tenants or {}).items():
        base = TenantQuotas(**cast(Any, dict(tenant.quotas))) if tenant.quotas else defaults  # 0: none
        configured[name] = dataclasses.replace(base, tool_servers=tenant.tool_servers)
    return lambda tenant: configured.get(tenant, defaults)


class Service:
    """Storage and execution manager of one server process."""

    def __init__(
        self,
        settings: Settings,
        *,
        quotas: QuotaSource | None = None,
        named_tenants: frozenset[str] = frozenset(),
    ) -> None:
        """``quotas``: each tenant's (:mod:`.quotas`; default: :func:`configured_quotas`).
        ``named_tenants``: the tenants the configuration names beside the auth config's, whose
        names label the metrics (others are ``other``)."""
        self.settings = settings
        self.quotas: QuotaSource = quotas or configured_quotas(settings)
        self.metrics = Metrics()  # this service's registry: /metrics and /api/stats read it
        listed = frozenset(settings.auth.tenants or ())
        self.metrics.named_tenants = frozenset({DEFAULT_TENANT}) | listed | named_tenants
        self.tracing = _tracing(settings)  # this service's tracer provider (traces off: OFF)
        check_data_dir(settings.data_dir)
        self.tools = _tool_sessions(settings)  # before anything is opened: it may refuse to start
        try:
            self.heaps = FileHeapStore(settings.data_dir, durable=settings.durable_heaps)
            stale = self.heaps.remove_stale_temp_files()
        except OSError as e:
            raise DataDirError(f"data directory {settings.data_dir} is not usable: {e}") from e
        if stale:
            log.info("removed %d temp files of interrupted heap snapshot writes", stale)
        try:
            self.stores = open_stores(settings, self.heaps)
        except BackendError as e:
            raise DataDirError(str(e)) from e
        self.executions: ExecutionStore = self.stores.executions
        self.output: OutputLog = self.stores.output
        self.catalogue: HeapCatalogue = self.stores.catalogue
        # Other processes may serve this directory (and, on PostgreSQL, this registry) too: fail
        # only the running executions of processes known to be gone. Without a shared registry,
        # an owner with no lease here is gone; with one, it may be a node elsewhere.
        self.lease = Lease(settings.data_dir)
        gone = self.lease.gone(self.executions.running_owners(), unknown_is_gone=self.stores.work is None)
        failed = self.executions.fail_running_of(gone, "the server stopped while this execution was running")
        if failed:
            log.warning("marked %d interrupted executions as failed", failed)
        self.lease.remove_stale()
        # The one place that knows whether executions are shared. The processes on one data
        # directory queue their own and tell each other of the ones they finish (datagrams, and a
        # periodic re-read for one that was lost); the nodes of a database queue them all in the
        # database and hear each other through its notifications.
        work = self.stores.work
        admission: Admission | None = None
        events: FinishEvents
        recheck: float | None = None
        if work is None:
            events, recheck = SiblingEvents(self.lease), RECHECK_SECS
        else:
            admission = SharedQueue(work, self.catalogue, settings.queue_limit, self.quotas)
            events = QueueEvents(work)
        caller = None if self.tools is None else SessionsCaller(self.tools)
        self.manager = ExecutionManager(
            executions=self.executions,
            output=self.output,
            catalogue=self.catalogue,
            data_dir=settings.data_dir,
            workers=settings.workers,
            queue_limit=settings.queue_limit,
            admission=admission,
            events=events,
            recheck_secs=recheck,
            owner=self.lease.id,
            log_dir=self.lease.worker_log_dir,
            sandbox=settings.sandbox,
            jitless=settings.jitless,
            warm_heap_mb=settings.default_heap_mb if settings.warm_isolates else 0,
            max_data_mb=data_limit_mb(settings.max_heap_mb),
            tool_caller=caller,
            metrics=self.metrics,
            tool_calls_in_flight=settings.max_tool_calls_in_flight,
            tool_records=self.stores.tool_calls,
            approval_timeout_secs=float(settings.approval_timeout_secs),
            tracing=self.tracing,
            live_workers=settings.live_workers,
            live_sessions_per_worker=settings.live_sessions_per_worker,
            live_snapshot_secs=float(settings.live_snapshot_secs),
            live_idle_secs=float(settings.live_idle_secs),
            live_holds=None if self.stores.live_holds is None else self.stores.live_holds(self.lease.id),
            quotas=self.quotas,
        )
        self.approvals = Approvals(self.executions, self.manager, caller, owner=self.lease.id)
        if work is not None:  # the cluster's queue: the same on every node (a query takes the max)
            self.metrics.cluster_gauge(
                "mcp_v8_cluster_queued",
                "Executions waiting in the database's queue for any node (the same on every node)",
                work.waiting,
            )
        self.cluster = (
            None
            if work is None
            else Cluster(work, self.manager, self.lease.id, lease_secs=settings.node_lease_secs)
        )
        self._stop = threading.Event()
        self._pruner: threading.Thread | None = None
        self._expirer: threading.Thread | None = None

    def start(self) -> Service:
        if self.tools is not None:
            self.tools.start()  # connects in the background: GET /api/tools shows each server's state
        self.manager.start()
        if self.cluster is not None:
            self.cluster.start()
        self._pruner = threading.Thread(target=self._prune_loop, daemon=True, name="mcp-v8-retention")
        self._pruner.start()
        self._expirer = threading.Thread(
            target=self._expire_loop, daemon=True, name="mcp-v8-approval-timeout"
        )
        self._expirer.start()
        return self

    def prune(self) -> int:
        """One retention pass: finished executions by age and count, and heap snapshots
        neither stored nor resumed for the same age (by any node), but those with tags in the
        registry (``heap_tags``) and those a queued or running execution resumes. Returns the
        number of executions removed."""
        s = self.settings
        doomed = self.executions.prunable(
            max_age_seconds=float(s.retention_max_age_secs) or None,
            max_count=s.retention_max_count or None,
        )
        # Output first: after a crash in between, the records left are still due and go next pass.
        self.output.delete(doomed)
        self.stores.tool_calls.delete(doomed)
        removed = self.executions.delete(doomed)
        if s.retention_max_age_secs:
            self.catalogue.prune(float(s.retention_max_age_secs))
        return removed

    def _prune_loop(self) -> None:
        while not self._stop.wait(RETENTION_INTERVAL_SECONDS):
            try:
                self.prune()
            except Exception:  # retention must never take the server down
                log.exception("retention pass failed")

    def _expire_loop(self) -> None:
        """Fails the waits for a decision past their deadline (``--approval-timeout-secs``), a
        few times within that timeout: on several nodes, the store's transition fails each once."""
        interval = min(APPROVAL_SWEEP_SECONDS, max(0.2, self.settings.approval_timeout_secs / 4))
        while not self._stop.wait(interval):
            try:
                self.manager.expire_waiting()
            except Exception:  # the sweep must never take the server down
                log.exception("the approval timeout sweep failed")

    def operations(self) -> Operations:
        """What clients can do with this service, for any door (REST, MCP over HTTP or stdio)."""
        return Operations(
            self.settings,
            manager=self.manager,
            executions=self.executions,
            output=self.output,
            catalogue=self.catalogue,
            tools=self.tools,
            tool_calls=self.stores.tool_calls,
            approvals=self.approvals,
        )

    def close(self) -> None:
        self._stop.set()
        if self.tools is not None:
            self.tools.close()
        # No claims from here; the node leaves only once the manager recorded its executions.
        if self.cluster is not None:
            self.cluster.stop()
        self.manager.close()
        self.tracing.close()  # the spans of what the manager recorded, exported
        if self.cluster is not None:
            self.cluster.leave()
        self.output.close()
        self.executions.close()
        self.stores.close()
        self.lease.close()


def _serialize_error(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    resp.content_type = falcon.MEDIA_JSON
    resp.media = {"error": exc.description or exc.title}


def _handle_unexpected(
    req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict[str, Any]
) -> None:
    log.exception("internal error on %s %s", req.method, req.path)
    raise falcon.HTTPInternalServerError(description="internal server error")


def _operation_error(
    req: falcon.Request, resp: falcon.Response, ex: OperationError, params: dict[str, Any]
) -> None:
    headers = {"Retry-After": str(ex.retry_after)} if ex.retry_after is not None else None
    raise falcon.HTTPError(falcon.code_to_http_status(ex.status), description=str(ex), headers=headers)


def _database_unavailable(
    req: falcon.Request, resp: falcon.Response, ex: DatabaseUnavailable, params: dict[str, Any]
) -> None:
    log.warning("%s %s: %s", req.method, req.path, ex)
    raise falcon.HTTPServiceUnavailable(description=str(ex), retry_after=5)


class App(falcon.App[falcon.Request, falcon.Response]):
    """The Falcon app, holding the ``Service`` it serves (``app.service``)."""

    service: Service


def create_app(settings: Settings | None = None, service: Service | None = None) -> App:
    """Builds the WSGI app. Without ``service``, one is created and started from
    ``settings`` (defaults: ``Settings()``); it is reachable as ``app.service``."""
    if service is None:
        service = Service(settings or Settings()).start()
    elif settings is not None and settings != service.settings:
        raise ValueError("create_app: settings differ from the given service's; pass one or the other")
    settings = service.settings
    router = CompiledRouter()
    app = App(
        middleware=[
            RequestMetrics(service.metrics, router),
            SecurityMiddleware(settings),
            QueryParamsMiddleware(),
        ],
        router=router,
    )
    app.req_options.keep_blank_qs_values = True
    app.req_options.strip_url_path_trailing_slash = True
    app.set_error_serializer(_serialize_error)
    app.add_error_handler(Exception, _handle_unexpected)
    ops = service.operations()
    app.add_error_handler(OperationError, _operation_error)
    app.add_error_handler(DatabaseUnavailable, _database_unavailable)
    app.add_route("/api/exec", ExecResource(ops))
    app.add_route("/api/executions", ExecutionListResource(ops))
    app.add_route("/api/executions/{id}", ExecutionResource(ops))
    app.add_route("/api/executions/{id}/cancel", CancelResource(ops))
    app.add_route("/api/executions/{id}/approve", ApproveResource(ops))
    app.add_route("/api/executions/{id}/output", OutputResource(ops))
    app.add_route("/api/executions/{id}/tool-calls", ToolCallsResource(ops))
    app.add_route("/api/heaps/query", HeapQueryResource(ops))
    app.add_route("/api/heaps/{key}", HeapResource(ops))
    app.add_route("/api/heaps/{key}/tags", HeapTagsResource(ops))
    app.add_route("/api/sessions", SessionListResource(ops))
    app.add_route("/api/sessions/log", SessionLogResource(ops))
    app.add_route("/api/sessions/snapshot", LiveSessionResource(ops))
    app.add_route("/api/tools", ToolsResource(ops))
    app.add_route("/api/tools/declarations", ToolDeclarationsResource(ops))
    app.add_route("/api/usage", UsageResource(ops))
    app.add_route("/mcp", McpResource(ops))
    app.add_route("/api/version", VersionResource(service.manager.jitless))
    app.add_route("/api/openapi.json", OpenApiResource())
    app.add_route("/api/stats", StatsResource(ops))
    app.add_route(METRICS_ROUTE, MetricsResource(service.metrics))
    app.add_route("/api/cli", CliIndexResource())
    app.add_route("/api/cli/{platform}", CliDownloadResource())
    app.service = service
    return app
