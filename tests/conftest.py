from __future__ import annotations

from pathlib import Path

import pytest

from mcp_v8 import Engine

from .pg_server import postgres_server, postgres_url  # noqa: F401  (fixtures)
from .s3_server import s3_server  # noqa: F401  (fixture)

# Every test module belongs to one level (a pytest marker of the same name):
#   unit       no V8, no process: state machines, stores, validation (milliseconds)
#   database   as unit, against a real PostgreSQL or S3 server the tests start: a test of a
#              unit module that uses one (its fixtures, or a parameter marked `database`)
#   engine     the engine in this process (or a child interpreter)
#   service    the app through falcon.testing, with real worker processes
#   e2e        a real server (Waitress) or the CLI over HTTP, faults, load
#   packaging  building and installing the wheel
# `make test` runs every level; `make test-fast` all but e2e and packaging.
LEVELS: dict[str, str] = {
    "test_config": "unit",
    "test_auth": "unit",
    "test_auth_service": "service",
    "test_auth_mcp": "e2e",
    "test_layers": "unit",
    "test_contract": "unit",
    "test_openapi": "unit",
    "test_storage": "unit",
    "test_store_contracts": "unit",
    "test_migrations": "unit",
    "test_executions_state": "unit",
    "test_fetches": "unit",
    "test_heap_tags": "unit",
    "test_heap_catalogue": "service",
    "test_waiters": "unit",
    "test_postgres_storage": "unit",
    "test_cluster_queue": "unit",
    "test_leases": "service",
    "test_mcp_protocol": "unit",
    "test_heaps_service": "service",
    "test_tenants": "service",
    "test_signed_heaps": "service",
    "test_worker": "unit",
    "test_cli_module": "unit",
    "test_engine_basics": "engine",
    "test_engine_limits": "engine",
    "test_engine_async": "engine",
    "test_context": "engine",
    "test_context_state": "unit",
    "test_web": "engine",
    "test_builtins": "engine",
    "test_fetch": "service",
    "test_tools_engine": "engine",
    "test_tool_calls": "unit",
    "test_tools_worker": "service",
    "test_warm_isolates": "service",
    "test_live_worker": "service",
    "test_live_service": "service",
    "test_live_state": "unit",
    "test_console": "engine",
    "test_snapshots": "engine",
    "test_repl_mode": "engine",
    "test_jitless": "engine",
    "test_typescript": "engine",
    "test_untrusted_sources": "engine",
    "test_service": "service",
    "test_bad_requests": "service",
    "test_hardening": "service",
    "test_live_server": "e2e",
    "test_client": "e2e",
    "test_api_contract": "e2e",
    "test_cli_client": "e2e",
    "test_hostile": "e2e",
    "test_faults": "e2e",
    "test_sandbox": "e2e",
    "test_load": "e2e",
    "test_fuzz_http": "e2e",
    "test_mcp": "e2e",
    "test_tool_sessions": "e2e",
    "test_tools_config": "unit",
    "test_tools_catalogue": "engine",
    "test_tools_api": "service",
    "test_code_mode": "e2e",
    "test_tool_schemas": "unit",
    "test_sessions_caller": "unit",
    "test_mcp_client_requests": "unit",
    "test_tool_limits": "e2e",
    "test_approval": "e2e",
    "test_blob_stores": "e2e",
    "test_nodes": "e2e",
    "test_cluster_faults": "e2e",
    "test_live_nodes": "e2e",
    "test_live_holds": "engine",
    "test_tenants_client": "e2e",
    "test_processes": "e2e",
    "test_metrics": "service",
    "test_quotas_state": "unit",
    "test_quotas_cluster": "unit",
    "test_quotas_service": "service",
    "test_metrics_http": "unit",
    "test_metrics_processes": "e2e",
    "test_traces": "service",
    "test_secrets_shown": "e2e",
    "test_wheel": "packaging",
    "test_bench_ceiling": "packaging",
}


# The fixtures that start a server process.
SERVERS = {"postgres_server", "postgres_url", "s3_server"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = Path(str(item.fspath)).stem
        level = LEVELS.get(module)
        if level is None:
            raise pytest.UsageError(f"{module}.py has no level: add it to LEVELS in tests/conftest.py")
        uses_server = SERVERS & set(getattr(item, "fixturenames", ())) or item.get_closest_marker("database")
        if level == "unit" and uses_server:
            level = "database"
        if level != "database" or not item.get_closest_marker("database"):
            item.add_marker(getattr(pytest.mark, level))


@pytest.fixture(scope="session")
def engine() -> Engine:
    return Engine()
