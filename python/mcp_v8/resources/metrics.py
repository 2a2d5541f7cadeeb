"""GET /metrics (the Prometheus text format) and the middleware that counts HTTP requests.

Requests are counted by method, route template (``/api/executions/{id}``, never the path a
client sent, so the labels stay a bounded set; ``(unmatched)`` for a path no route takes) and
status code (methods outside the usual seven as ``OTHER``), the requests refused before routing (Host, Origin, token, body size) included.
"""

from __future__ import annotations

import time
from typing import Any

import falcon
from falcon.routing import CompiledRouter

from ..metrics import CONTENT_TYPE, Metrics

UNMATCHED = "(unmatched)"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})  # others: OTHER


class MetricsResource:
    """The service's metrics (:mod:`mcp_v8.metrics`): this process's, or those of all the
    processes serving its port."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = CONTENT_TYPE
        resp.data = self._metrics.exposition()


class RequestMetrics:
    """Counts and times every request (first of the middleware, so that it sees those the
    others refuse). ``router`` is the app's: it names the route of a request refused before
    routing."""

    def __init__(self, metrics: Metrics, router: CompiledRouter) -> None:
        self._metrics = metrics
        self._router = router

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.metrics_started = time.monotonic()

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        route = req.uri_template
        if route is None:  # refused before routing, or no route takes the path
            found = self._router.find(req.path)
            route = found[3] if found is not None else UNMATCHED
        method = req.method if req.method in METHODS else "OTHER"
        self._metrics.http_requests.labels(method, route, str(resp.status_code)).inc()
        started = getattr(req.context, "metrics_started", None)
        if started is not None:
            self._metrics.http_duration.labels(route).observe(time.monotonic() - started)
