"""Shared helpers for the service tests."""

from __future__ import annotations

import time
from typing import Any

from falcon import testing

HOST = {"Host": "127.0.0.1:3000"}


# The heap signing key of the test deployments that share a store (every node the same).
SIGNING_KEY = "test-heap-signing-key-0123456789"


def submit(client: testing.TestClient, code: str, **fields: Any) -> str:
    resp = client.simulate_post("/api/exec", json={"code": code, **fields}, headers=HOST)
    assert resp.status_code == 202, resp.text
    return str(resp.json["execution_id"])


def wait(client: testing.TestClient, execution_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        resp = client.simulate_get(
            f"/api/executions/{execution_id}", params={"wait_ms": "5000"}, headers=HOST
        )
        assert resp.status_code == 200, resp.text
        info: dict[str, Any] = resp.json
        if info["status"] != "running" or time.monotonic() > deadline:
            return info


def wait_for_output(client: testing.TestClient, execution_id: str, needle: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = client.simulate_get(f"/api/executions/{execution_id}/output", headers=HOST).json["data"]
        if needle in data:
            return str(data)
        time.sleep(0.02)
    raise AssertionError(f"{needle!r} never appeared in the output of {execution_id}")
