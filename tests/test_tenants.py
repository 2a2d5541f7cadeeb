"""Tenants apart, on SQLite and on PostgreSQL, against real workers: two tenants' operations (and
their MCP tools) on each other's executions, outputs, sessions, live sessions, heaps, tags and
cursors answer exactly as for objects that do not exist (tests/tenant_battery.py), each tenant's
session ``main`` is its own, an admin reads every tenant's executions but changes only its own,
and the stats show a crash's details only to whom may read its execution. (Two tenants making the
same bytes, one blob with two owners, are tests/test_heap_catalogue.py's: the engine's snapshots
of one state differ.)"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from falcon import testing

from mcp_v8.app import Service, create_app
from mcp_v8.auth.config import hash_token
from mcp_v8.config import Settings
from mcp_v8.operations import NotFound, Operations
from mcp_v8.principal import SCOPES, Principal

from .service_helpers import HOST
from .tenant_battery import McpDoor, Objects, OperationsDoor, RestDoor, cross_tenant, make_objects, settle

SIGNING_KEY = "the heap signing key of the tenants test"
TENANT_SCOPES = frozenset(SCOPES) - {"admin"}


def principal(tenant: str, *, admin: bool = False) -> Principal:
    return Principal(tenant, TENANT_SCOPES | ({"admin"} if admin else set()), f"{tenant}-test")


def token(tenant: str) -> str:
    return f"the API token of {tenant} in the tenants test"


def bearer(tenant: str) -> dict[str, str]:
    return {**HOST, "Authorization": f"Bearer {token(tenant)}"}


def auth_config() -> dict[str, object]:
    """Two tenants, each with a token of every scope but admin (as :func:`principal` has)."""
    return {
        "tenants": {
            name: {
                "tokens": [
                    {
                        "name": f"{name}-test",
                        "sha256": hash_token(token(name)),
                        "scopes": sorted(TENANT_SCOPES),
                    }
                ]
            }
            for name in ("acme", "beta")
        }
    }


@dataclass
class Tenants:
    service: Service
    ops: Operations
    acme: Operations
    beta: Operations
    acme_objects: Objects
    beta_objects: Objects


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.database)])
def tenants(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenants]:
    base = tmp_path_factory.mktemp("tenants")
    more: dict[str, object] = {}
    if request.param == "postgres":
        server = request.getfixturevalue("postgres_server")
        more = {
            "database_url": server.create_database("tenants_" + uuid.uuid4().hex[:12]),
            "heap_signing_key": (SIGNING_KEY,),
        }
    config = base / "auth.json"
    config.write_text(json.dumps(auth_config()))
    settings = Settings(
        data_dir=base / "data",
        workers=3,
        live_workers=2,  # a live worker each: sessions of different tenants never share one
        live_sessions_per_worker=4,
        queue_limit=50,
        auth_config=config,
        **more,
    )
    service = Service(settings).start()
    try:
        ops = service.operations()
        acme, beta = ops.for_principal(principal("acme")), ops.for_principal(principal("beta"))
        made = Tenants(service, ops, acme, beta, make_objects(acme, live=True), make_objects(beta, live=True))
        yield made
        for tenant_ops, objects in ((acme, made.acme_objects), (beta, made.beta_objects)):
            tenant_ops.cancel(objects.running)
    finally:
        service.close()


def test_every_operation_on_another_tenant_s_objects_answers_as_for_missing_ones(tenants: Tenants) -> None:
    cross_tenant(OperationsDoor(tenants.beta), tenants.beta_objects, tenants.acme_objects, tenants.acme)
    cross_tenant(OperationsDoor(tenants.acme), tenants.acme_objects, tenants.beta_objects, tenants.beta)


def test_every_mcp_tool_on_another_tenant_s_objects_answers_as_for_missing_ones(tenants: Tenants) -> None:
    door = McpDoor(tenants.ops, principal("beta"))
    cross_tenant(door, tenants.beta_objects, tenants.acme_objects, tenants.acme)
    # The door is the tenant's: its own objects answer.
    assert door.get(tenants.beta_objects.executions[0])[0] == 200
    assert door.heap(tenants.beta_objects.heaps[0])[0] == 200


def test_every_route_on_another_tenant_s_objects_answers_as_for_missing_ones(tenants: Tenants) -> None:
    client = testing.TestClient(create_app(service=tenants.service))
    door = RestDoor(client, bearer("beta"))  # beta's own token, as its clients send it
    cross_tenant(door, tenants.beta_objects, tenants.acme_objects, tenants.acme)
    fake = str(uuid.uuid4())
    assert door.get(fake)[0] == 404 and door.cancel(fake)[0] == 400  # what "missing" is over REST
    assert door.get(tenants.beta_objects.executions[0])[0] == 200


def test_each_tenant_s_session_main_is_its_own(tenants: Tenants) -> None:
    """Both have a session main: each one's log, latest heap and live step are its own."""
    for mine, theirs, name in (
        (tenants.acme, tenants.acme_objects, "acme"),
        (tenants.beta, tenants.beta_objects, "beta"),
    ):
        log = mine.session_log("main", 100)
        assert [e["execution_id"] for e in log["executions"]] == theirs.executions[:2]
        (main,) = [s for s in mine.sessions(100)["sessions"] if s["session"] == "main"]
        assert (main["executions"], main["latest_heap"], main["latest_heap_stored"]) == (
            2,
            theirs.heaps[1],
            True,
        )
        assert "tenant" not in main and "tenant" not in log["executions"][0]
        # A live step in it: from the session's latest heap, its own tenant's.
        info = settle(mine, mine.submit({"code": "who", "session": "main", "live": True}))
        assert (info["status"], info["result"]) == ("completed", f'"{name}-1"'), info
        assert "tenant" not in info


def test_an_admin_reads_every_tenant_s_executions_and_changes_only_its_own(tenants: Tenants) -> None:
    admin = tenants.ops.for_principal(principal("ops", admin=True))
    acme = tenants.acme_objects
    own = settle(admin, admin.submit({"code": "'its own'", "session": "main", "snapshot": False}))
    assert own["status"] == "completed" and "tenant" not in own  # its own: no tenant named
    listed = admin.list_executions(1000)["executions"]
    tenant_of = {e["execution_id"]: e.get("tenant") for e in listed}
    assert {tenant_of[i] for i in acme.executions} == {"acme"}
    assert {tenant_of[i] for i in tenants.beta_objects.executions} == {"beta"}
    assert tenant_of[own["execution_id"]] is None
    info = admin.get(acme.executions[0])
    assert (info["tenant"], info["result"]) == ("acme", '"acme-0"')
    assert "acme says 0" in admin.output(acme.executions[0])["data"]
    sessions = {(s.get("tenant"), s["session"]) for s in admin.sessions(1000)["sessions"]}
    assert {("acme", "main"), ("beta", "main"), ("acme", acme.only_session), (None, "main")} <= sessions
    log = admin.session_log("main", 1000)["executions"]
    assert {(e.get("tenant"), e["execution_id"]) for e in log} >= {
        *(("acme", i) for i in acme.executions[:2]),
        *(("beta", i) for i in tenants.beta_objects.executions[:2]),
        (None, own["execution_id"]),
    }
    # What it changes is its own tenant's: another's execution, heap and live session are missing to it.
    assert admin.cancel(acme.running) == {"ok": False, "error": f"execution {acme.running!r} not found"}
    assert admin.get(acme.running)["status"] == "running"
    with pytest.raises(NotFound):
        admin.heap(acme.heaps[0])
    with pytest.raises(NotFound):
        admin.submit({"code": "who", "heap": acme.heaps[0]})
    assert acme.live_session is not None
    with pytest.raises(NotFound):
        admin.end_session(acme.live_session)


def test_stats_show_a_crash_s_details_only_to_whom_may_read_its_execution(tenants: Tenants) -> None:
    manager = tenants.service.manager
    crash = {
        "execution_id": tenants.acme_objects.executions[0],
        "reason": "killed by signal SIGKILL",
        "at": "x",
    }
    with manager._stats_lock:
        before, manager._last_crash = manager._last_crash, crash
    try:
        assert tenants.acme.stats()["last_worker_crash"] == crash
        assert tenants.beta.stats()["last_worker_crash"] is None
        assert tenants.ops.for_principal(principal("ops", admin=True)).stats()["last_worker_crash"] == crash
        assert tenants.beta.stats()["workers"] == 3  # the server's counters name no tenant's object
    finally:
        with manager._stats_lock:
            manager._last_crash = before
