"""The app and openapi.json agree — every route is documented, every
documented operation is served, and schemathesis finds no 5xx and no response that
breaks the schema."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from mcp_v8.app import App, Service, create_app
from mcp_v8.config import Settings

from .live_server import LiveServer

SPEC = Path(__file__).resolve().parents[1] / "openapi.json"
METHODS = {"get", "post", "put", "patch", "delete"}


def _app_routes(app: App) -> set[tuple[str, str]]:
    routes: set[tuple[str, str]] = set()
    stack = list(app._router._roots)  # falcon's CompiledRouter
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.method_map:
            for method, responder in node.method_map.items():
                if method.lower() in METHODS and not getattr(responder, "__name__", "").startswith(
                    "method_not_allowed"
                ):
                    routes.add((method.lower(), node.uri_template))
    return routes


def test_every_route_is_documented_and_every_operation_served(tmp_path: Path) -> None:
    spec = json.loads(SPEC.read_text())
    documented = {(m, p) for p, ops in spec["paths"].items() for m in ops if m in METHODS}
    service = Service(Settings(data_dir=tmp_path, workers=1))  # not started: routes only
    try:
        assert _app_routes(create_app(service=service)) == documented
    finally:
        service.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(
        tmp_path_factory.mktemp("schemathesis"), "--workers", "2", "--queue-limit", "8", "--max-timeout-secs", "2",
    ).start()  # fmt: skip
    yield server
    server.stop()


schema = schemathesis.openapi.from_path(SPEC)


@schema.parametrize()
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_openapi(case: schemathesis.Case, live: LiveServer) -> None:
    # Bounds that are server settings (timeout, heap cap, code size) cannot be in the
    # schema, so schema-valid data may still be refused: that one check does not apply.
    case.call_and_validate(
        base_url=live.url,
        timeout=60,
        excluded_checks=[positive_data_acceptance],
    )
