"""What each route and each MCP tool needs of a principal: one table each.

A route's entry is the scope it needs (:data:`mcp_v8.principal.SCOPES`), :data:`ANY` for one
every principal may use (its own checks follow: ``POST /mcp`` checks each tool's scope), or
:data:`PUBLIC` for one that needs no principal at all. A responder missing from the table is
refused to every principal (deny by default); tests hold the table to ``openapi.json``.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ANY", "PUBLIC", "ROUTE_SCOPES", "TOOL_SCOPES", "lacks", "route_scope"]

PUBLIC: Final = "public"  # no principal needed
ANY: Final = "any"  # any principal

ROUTE_SCOPES: dict[tuple[str, str], str] = {
    ("POST", "/api/exec"): "run",
    ("GET", "/api/executions"): "read",
    ("GET", "/api/executions/{id}"): "read",
    ("POST", "/api/executions/{id}/cancel"): "cancel",
    ("POST", "/api/executions/{id}/approve"): "approve",
    ("GET", "/api/executions/{id}/output"): "read",
    ("GET", "/api/executions/{id}/tool-calls"): "read",
    ("POST", "/api/heaps/query"): "read",  # a query: reads
    ("GET", "/api/heaps/{key}"): "read",
    ("DELETE", "/api/heaps/{key}"): "run",  # the tenant's own heaps, as a run makes them
    ("PATCH", "/api/heaps/{key}/tags"): "run",
    ("GET", "/api/sessions"): "read",
    ("GET", "/api/sessions/log"): "read",
    ("POST", "/api/sessions/snapshot"): "run",
    ("DELETE", "/api/sessions/snapshot"): "run",
    ("GET", "/api/tools"): "read",
    ("GET", "/api/tools/declarations"): "read",
    ("GET", "/api/stats"): "read",
    ("GET", "/api/usage"): "read",
    ("GET", "/metrics"): "admin",  # every tenant's counts; PUBLIC with --metrics-public
    ("GET", "/api/cli"): ANY,  # the command-line client, no tenant's data
    ("GET", "/api/cli/{platform}"): ANY,
    ("POST", "/mcp"): ANY,  # each tool checks its own (TOOL_SCOPES)
    ("GET", "/mcp"): ANY,  # 405
    ("DELETE", "/mcp"): ANY,  # 405
    ("GET", "/api/version"): PUBLIC,
    ("GET", "/api/openapi.json"): PUBLIC,
}

TOOL_SCOPES: dict[str, str] = {
    "run_js": "run",
    "get_execution": "read",
    "get_execution_output": "read",
    "cancel_execution": "cancel",
    "list_executions": "read",
    "list_sessions": "read",
    "list_session_snapshots": "read",
    "get_heap_tags": "read",
    "set_heap_tags": "run",
    "delete_heap_tags": "run",
    "query_heaps_by_tags": "read",
    "search_tools": "read",
    "describe_tools": "read",
    "approve_tool_calls": "approve",
}


def route_scope(method: str, template: str | None) -> str | None:
    """What ``method`` on the route ``template`` needs; None: not in the table (refused)."""
    if template is None:
        return None
    return ROUTE_SCOPES.get((method.upper(), template))


def lacks(scope: str) -> str:
    """The refusal of a principal without ``scope``."""
    return f"this token lacks the {scope!r} scope"
