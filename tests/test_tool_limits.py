"""The limits on a script's tool calls and their records, through the whole service with a real
stdio tool server (tests/tool_servers.py), on the SQLite registry and on PostgreSQL: the budget a
request sets (max_tool_calls), the per-call timeout, the answer cap, and the records
(GET /api/executions/{id}/tool-calls)."""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from falcon import testing

from mcp_v8.app import Service, create_app
from mcp_v8.config import Settings

from .service_helpers import HOST, submit, wait, wait_for_output
from .tool_server_process import tools_ready

SERVERS = Path(__file__).resolve().parent / "tool_servers.py"
SIGNING_KEY = "a-heap-signing-key-of-this-test"
CALL_TIMEOUT = 3  # seconds: a sleep of a minute outlasts it by far, an add never comes near
RESULT_CAP = 2000  # bytes of one answer


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.database)],
)
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[testing.TestClient]:
    base = tmp_path_factory.mktemp("tool-limits")
    tools_file = base / "tools.json"
    tools_file.write_text(
        json.dumps({"mcpServers": {"calc": {"command": sys.executable, "args": [str(SERVERS), "stdio"]}}})
    )
    store: dict[str, Any] = {}
    if request.param == "postgres":
        server = request.getfixturevalue("postgres_server")
        store = {
            "database_url": server.create_database("tools_" + uuid.uuid4().hex[:12]),
            "heap_signing_key": (SIGNING_KEY,),
        }
    settings = Settings(
        data_dir=base / "data",
        workers=1,
        tools_config=tools_file,
        tool_call_timeout_secs=CALL_TIMEOUT,
        tool_result_max_bytes=RESULT_CAP,
        **store,
    )
    service = Service(settings).start()
    try:
        yield tools_ready(testing.TestClient(create_app(service=service)), HOST)
    finally:
        service.close()


def run(client: testing.TestClient, code: str, **fields: Any) -> tuple[str, dict[str, Any]]:
    execution_id = submit(client, code, **fields)
    info = wait(client, execution_id, timeout=120)
    assert info["status"] == "completed", json.dumps(info)
    return execution_id, json.loads(info["result"])


def records(client: testing.TestClient, execution_id: str) -> list[dict[str, Any]]:
    resp = client.simulate_get(f"/api/executions/{execution_id}/tool-calls", headers=HOST)
    assert resp.status_code == 200, resp.text
    assert resp.json["execution_id"] == execution_id
    calls: list[dict[str, Any]] = resp.json["tool_calls"]
    return calls


def test_the_call_past_max_tool_calls_throws_a_type_error_and_is_recorded(client: testing.TestClient) -> None:
    execution_id, result = run(
        client,
        """
        const sums = [];
        for (let i = 0; i < 5; i++) {
          try { sums.push((await tools.calc.add({a: i, b: 1})).result); }
          catch (e) { sums.push(`${e.name}: ${e.message}`); }
        }
        sums
        """,
        max_tool_calls=2,
    )
    refused = "TypeError: tool call refused: more than 2 tool calls in one execution (max_tool_calls)"
    assert result == [1, 2, refused, refused, refused]
    calls = records(client, execution_id)
    # The calls past the budget: only the first is recorded.
    assert [(c["call_id"], c["outcome"]) for c in calls] == [(1, "ok"), (2, "ok"), (3, "TypeError")]
    assert "max_tool_calls" in calls[2]["message"]


def test_max_tool_calls_zero_refuses_every_call(client: testing.TestClient) -> None:
    _, result = run(
        client,
        "try { await tools.calc.add({a: 1, b: 1}); 'called' } catch (e) { e.name }",
        max_tool_calls=0,
    )
    assert result == "TypeError"


def test_a_call_that_outlasts_its_timeout_fails_and_the_script_goes_on(client: testing.TestClient) -> None:
    execution_id, result = run(
        client,
        """
        let caught;
        try { await tools.calc.sleep({seconds: 120}); } catch (e) { caught = [e.name, e.message]; }
        [caught, (await tools.calc.add({a: 1, b: 2})).result]
        """,
    )
    assert result == [["Error", "tool call failed: calc.sleep did not answer within its time"], 3]
    calls = records(client, execution_id)
    assert [c["outcome"] for c in calls] == ["Error", "ok"]
    assert calls[0]["duration_ms"] >= CALL_TIMEOUT * 1000 * 0.9


def test_an_answer_over_the_cap_fails_that_call(client: testing.TestClient) -> None:
    execution_id, result = run(
        client,
        """
        let caught;
        try { await tools.calc.echo({text: 'x'.repeat(5000)}); } catch (e) { caught = [e.name, e.message]; }
        [caught, (await tools.calc.echo({text: 'small'})).result]
        """,
    )
    (name, message), small = result
    assert (name, small) == ("Error", "small")
    assert "more than 2000" in message and "tool_result_max_bytes" in message
    assert [c["outcome"] for c in records(client, execution_id)] == ["Error", "ok"]


def test_the_records_of_a_run_with_every_outcome(client: testing.TestClient) -> None:
    execution_id, result = run(
        client,
        """
        const out = [(await tools.calc.add({a: 1, b: 2})).result];
        for (const call of [() => tools.calc.fail({message: 'no luck'}), () => tools.calc.add({a: 'x', b: 1}),
                            () => tools.nowhere.add({})]) {
          try { await call(); } catch (e) { out.push(e.name); }
        }
        out
        """,
    )
    assert result == [3, "ToolError", "TypeError", "TypeError"]
    calls = records(client, execution_id)
    assert [(c["call_id"], c["server"], c["tool"], c["outcome"]) for c in calls] == [
        (1, "calc", "add", "ok"),
        (2, "calc", "fail", "ToolError"),
        (3, "calc", "add", "TypeError"),
        (4, "nowhere", "add", "TypeError"),
    ]
    assert calls[0]["arguments_bytes"] == len('{"a":1,"b":2}') and calls[0]["message"] is None
    assert "no luck" in calls[1]["message"]
    assert calls[2]["message"] == "calc.add: arguments.a: 'x' is not of type 'integer'"
    assert "no tool server 'nowhere'" in calls[3]["message"]
    assert all(c["started_at"].endswith("Z") and c["duration_ms"] >= 0 for c in calls)
    assert [c["started_at"] for c in calls] == sorted(c["started_at"] for c in calls)


def test_a_call_in_flight_when_its_execution_is_cancelled_is_recorded_abandoned(
    client: testing.TestClient,
) -> None:
    execution_id = submit(
        client,
        "console.log('calling'); await tools.calc.add({a: 1, b: 1}); await tools.calc.sleep({seconds: 120})",
    )
    wait_for_output(client, execution_id, "calling")
    deadline = time.monotonic() + 60
    while [c["outcome"] for c in records(client, execution_id)] != ["ok"]:  # the sleep comes next
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.0)  # the sleep's call reaches the server (well within the call's timeout)
    assert client.simulate_post(f"/api/executions/{execution_id}/cancel", headers=HOST).json["ok"]
    assert wait(client, execution_id)["status"] == "cancelled"
    calls = records(client, execution_id)
    assert [(c["tool"], c["outcome"], c["message"]) for c in calls] == [
        ("add", "ok", None),
        ("sleep", "abandoned", None),
    ]


def test_an_execution_without_calls_has_none_and_an_unknown_one_is_404(client: testing.TestClient) -> None:
    execution_id, _ = run(client, "1 + 1")
    assert records(client, execution_id) == []
    for unknown in ("00000000-0000-0000-0000-000000000000", "not-an-id"):
        resp = client.simulate_get(f"/api/executions/{unknown}/tool-calls", headers=HOST)
        assert resp.status_code == 404 and "not found" in resp.json["error"]


# -- the wall limit: the execution's whole time, waiting on tools included --------------------


def test_time_spent_waiting_on_tools_is_not_the_scripts_own(client: testing.TestClient) -> None:
    # Four seconds of waiting on tools, well past a two-second timeout, which bounds the script's
    # own running time only.
    _, result = run(
        client,
        """
        const said = [];
        for (let i = 0; i < 2; i++) said.push((await tools.calc.sleep({seconds: 2})).result);
        said
        """,
        execution_timeout_secs=2,
    )
    assert result == ["slept 2.0", "slept 2.0"]


def test_the_scripts_own_time_is_still_bounded_between_tool_calls(client: testing.TestClient) -> None:
    info = wait(
        client,
        submit(client, "await tools.calc.add({a: 1, b: 1}); while (true) {}", execution_timeout_secs=2),
        timeout=120,
    )
    assert info["status"] == "timed_out", json.dumps(info)
    assert info["js_error"]["message"] == "execution timed out after 2 s"


def test_the_wall_limit_ends_an_execution_that_waits_on_tools(client: testing.TestClient) -> None:
    execution_id = submit(
        client,
        "for (;;) await tools.calc.sleep({seconds: 2})",
        execution_timeout_secs=2,
        wall_timeout_secs=5,
    )
    info = wait(client, execution_id, timeout=120)
    assert info["status"] == "timed_out", json.dumps(info)
    message = info["js_error"]["message"]
    assert (
        message
        == "execution timed out after 5 s of wall time (wall_timeout_secs), waiting on tool calls included"
    )
    calls = records(client, execution_id)
    assert [c["outcome"] for c in calls[:2]] == ["ok", "ok"]
    assert calls[-1]["outcome"] in ("abandoned", "Error")  # the call in flight as the wall passed


def test_a_wall_limit_below_the_timeout_is_refused(client: testing.TestClient) -> None:
    resp = client.simulate_post(
        "/api/exec", json={"code": "1", "wall_timeout_secs": 2, "execution_timeout_secs": 3}, headers=HOST
    )
    assert resp.status_code == 400
    assert resp.json["error"].startswith("wall_timeout_secs (2) must be at least execution_timeout_secs (3)")
