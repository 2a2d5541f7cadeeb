"""Two tenants of a real ``mcp-v8 serve`` (an auth config with a token each) through the Python
client: each one's executions, heaps, sessions and usage are its own; the other's ids and keys
answer as missing ones; a tenant's quota from the auth config holds (429 with the quota named)
and frees with its execution."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from mcp_v8.auth.config import hash_token
from mcp_v8.client import Client
from mcp_v8.errors import NotFoundError, QueueFullError

from .live_server import LiveServer

ACME, BETA = "acme's token in the client test, 0123456789", "beta's token in the client test, 0123456789"
SCOPES = ["run", "read", "cancel"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    directory = tmp_path_factory.mktemp("tenants-client")
    config = directory / "auth.json"
    config.write_text(
        json.dumps(
            {
                "tenants": {
                    "acme": {"tokens": [{"name": "ci", "sha256": hash_token(ACME), "scopes": SCOPES}]},
                    "beta": {
                        "tokens": [{"name": "agent", "sha256": hash_token(BETA), "scopes": SCOPES}],
                        "quotas": {"concurrent_executions": 1},
                    },
                }
            }
        )
    )
    live = LiveServer(directory / "data", "--workers", "2", "--auth-config", str(config)).start()
    yield live
    live.stop()


def test_each_tenant_sees_only_its_own_through_the_client(server: LiveServer) -> None:
    with Client(server.url, ACME, retries=0) as acme, Client(server.url, BETA, retries=0) as beta:
        mine = acme.execute("var secret = 'acme only'; secret", session="main").check()
        assert mine.value == "acme only" and mine.heap is not None
        theirs = beta.execute("var other = 1; other", session="main").check()
        for call in (
            lambda: beta.get(mine.execution_id),
            lambda: beta.heap(mine.heap),  # type: ignore[arg-type]
            lambda: beta.execute("secret", heap=mine.heap),
            lambda: list(beta.session_log("only-acme")),
        ):
            with pytest.raises(NotFoundError):
                call()
        acme.execute("1", session="only-acme").check()
        assert beta.cancel(mine.execution_id) is False  # as for an id nobody has
        assert {e.execution_id for e in beta.executions()} == {theirs.execution_id}
        assert [s.session for s in beta.sessions()] == ["main"]
        (log,) = list(beta.session_log("main"))
        assert log.execution_id == theirs.execution_id  # beta's "main", not acme's
        assert acme.heap(mine.heap).heap == mine.heap  # type: ignore[arg-type]
        assert acme.execute("secret", heap=mine.heap).check().value == "acme only"


def test_a_tenants_quota_from_the_auth_config_holds_and_frees(server: LiveServer) -> None:
    with Client(server.url, BETA, retries=0) as beta, Client(server.url, ACME, retries=0) as acme:
        usage = beta.usage()
        assert usage["quotas"]["concurrent_executions"]["limit"] == 1, usage
        running = beta.execute("while (true) {}", snapshot=False, wait=False)
        with pytest.raises(QueueFullError, match="concurrent_executions"):
            beta.execute("1", snapshot=False)
        assert acme.execute("2", snapshot=False).check().result == "2"  # acme has no such quota
        assert beta.cancel(running.execution_id) is True
        assert beta.execute("3", snapshot=False).check().result == "3"  # the place is free again
