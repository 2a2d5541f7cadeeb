"""Approval of gated tool calls through the whole service: a script's call of a gated tool pauses
it in its heap (status ``waiting``, no worker held), and the approver's decision on
``POST /api/executions/{id}/approve`` resumes it on any node, after a restart too. A real stdio
tool server (tests/tool_servers.py) gates ``echo`` by name and ``delete_everything`` by its
destructive hint."""

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
from mcp_v8.client import Client
from mcp_v8.config import Settings
from mcp_v8.errors import APIError

from .live_server import LiveServer
from .pg_server import PostgresServer
from .service_helpers import HOST, SIGNING_KEY
from .tool_server_process import tools_ready

SERVERS = Path(__file__).resolve().parent / "tool_servers.py"
API_TOKEN = "api-token-for-the-scripts-author"
APPROVER_TOKEN = "approver-token-of-a-person"
AS_AUTHOR = {**HOST, "Authorization": f"Bearer {API_TOKEN}"}
AS_APPROVER = {**HOST, "Authorization": f"Bearer {APPROVER_TOKEN}"}
HANG = 120.0  # seconds; only reached when something is broken

# Pauses on a gated call between two lines of output, then returns what the call answered.
GATED = """
console.log('before');
let said;
try { said = await tools.t.echo({text: 'hi'}); } catch (e) { said = [e.name, e.reason, e.server, e.tool]; }
console.log('after');
said
"""


def tools_file(base: Path) -> Path:
    path = base / "tools.json"
    server = {
        "command": sys.executable,
        "args": [str(SERVERS), "stdio"],
        "approve": ["echo"],
        "approveDestructive": True,
    }
    path.write_text(json.dumps({"mcpServers": {"t": server}}))
    return path


def settings(base: Path, name: str = "data", **more: Any) -> Settings:
    return Settings(
        data_dir=base / name,
        workers=1,
        tools_config=tools_file(base),
        api_token=API_TOKEN,
        approver_token=APPROVER_TOKEN,
        **more,
    )


def ready(client: testing.TestClient) -> testing.TestClient:
    return tools_ready(client, AS_AUTHOR)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[testing.TestClient]:
    service = Service(settings(tmp_path_factory.mktemp("approval"))).start()
    try:
        yield ready(testing.TestClient(create_app(service=service)))
    finally:
        service.close()


def submit(client: testing.TestClient, code: str, **fields: Any) -> str:
    resp = client.simulate_post("/api/exec", json={"code": code, **fields}, headers=AS_AUTHOR)
    assert resp.status_code == 202, resp.text
    return str(resp.json["execution_id"])


def settled(client: testing.TestClient, execution_id: str) -> dict[str, Any]:
    """The execution once it is no longer running (waiting or terminal)."""
    deadline = time.monotonic() + HANG
    while True:
        resp = client.simulate_get(
            f"/api/executions/{execution_id}", params={"wait_ms": "5000"}, headers=AS_AUTHOR
        )
        assert resp.status_code == 200, resp.text
        info: dict[str, Any] = resp.json
        if info["status"] != "running" or time.monotonic() > deadline:
            return info


def approve(
    client: testing.TestClient, execution_id: str, decisions: list[dict[str, Any]], **headers: str
) -> Any:
    return client.simulate_post(
        f"/api/executions/{execution_id}/approve",
        json={"decisions": decisions},
        headers=headers or AS_APPROVER,
    )


def tool_calls(client: testing.TestClient, execution_id: str) -> list[tuple[str, str]]:
    """The execution's recorded calls as (tool, outcome), once none is held any more (the
    records are written a moment after the calls end)."""
    deadline = time.monotonic() + 30
    while True:
        resp = client.simulate_get(f"/api/executions/{execution_id}/tool-calls", headers=AS_AUTHOR)
        assert resp.status_code == 200, resp.text
        calls = [(c["tool"], c["outcome"]) for c in resp.json["tool_calls"]]
        if all(outcome != "held" for _, outcome in calls) or time.monotonic() > deadline:
            return calls
        time.sleep(0.05)


def output(client: testing.TestClient, execution_id: str) -> str:
    return str(client.simulate_get(f"/api/executions/{execution_id}/output", headers=AS_AUTHOR).json["data"])


def test_a_gated_call_waits_without_a_worker_and_an_approval_completes_it(client: testing.TestClient) -> None:
    execution_id = submit(client, GATED, tags={"suite": "approval"})
    info = settled(client, execution_id)
    assert info["status"] == "waiting", info
    (call,) = info["pending_tool_calls"]
    listed = client.simulate_get("/api/executions", params={"status": "waiting"}, headers=AS_AUTHOR).json
    assert execution_id in [e["execution_id"] for e in listed["executions"]]
    # The heap it paused in is its own: no tag query finds it.
    query = client.simulate_post("/api/heaps/query", json={"tags": {"suite": "approval"}}, headers=AS_AUTHOR)
    assert query.json["heaps"] == [], query.text
    assert {k: call[k] for k in ("server", "tool", "arguments")} == {
        "server": "t",
        "tool": "echo",
        "arguments": {"text": "hi"},
    }
    assert info["approval_deadline"] is not None and info["result"] is None and info["heap"] is None
    # The one worker is free: another execution runs meanwhile.
    other = settled(client, submit(client, "6 * 7"))
    assert (other["status"], other["result"]) == ("completed", "42")
    resp = approve(client, execution_id, [{"call_id": call["call_id"], "approved": True}])
    assert resp.status_code == 202, resp.text
    assert resp.json["status"] == "running" and resp.json["pending_tool_calls"] is None
    info = settled(client, execution_id)
    assert info["status"] == "completed", info
    assert json.loads(info["result"]) == {"result": "hi"}  # what the tool answered
    assert info["heap"] is not None  # it snapshots as it asked, with its tags
    query = client.simulate_post("/api/heaps/query", json={"tags": {"suite": "approval"}}, headers=AS_AUTHOR)
    assert [h["heap"] for h in query.json["heaps"]] == [info["heap"]]
    assert output(client, execution_id) == "before\nafter\n"  # one log, both runs
    again = approve(client, execution_id, [{"call_id": call["call_id"], "approved": True}])
    assert again.status_code == 409, again.text


def test_a_denied_call_throws_tool_denied_with_the_reason(client: testing.TestClient) -> None:
    execution_id = submit(client, GATED)
    info = settled(client, execution_id)
    call_id = info["pending_tool_calls"][0]["call_id"]
    assert (
        approve(
            client, execution_id, [{"call_id": call_id, "approved": False, "reason": "not today"}]
        ).status_code
        == 202
    )
    info = settled(client, execution_id)
    assert info["status"] == "completed", info
    assert json.loads(info["result"]) == ["ToolDenied", "not today", "t", "echo"]
    assert tool_calls(client, execution_id) == [("echo", "ToolDenied")]


def test_a_free_call_finishes_first_then_the_script_waits_on_the_gated_one(
    client: testing.TestClient,
) -> None:
    code = """
    const order = [];
    const [sum, gone] = await Promise.all([
      tools.t.add({a: 2, b: 3}).then(r => { order.push('add'); return r; }),
      tools.t.delete_everything({path: '/tmp/x'}).then(r => { order.push('delete'); return r; }),
    ]);
    ({sum, gone, order})
    """
    execution_id = submit(client, code)
    info = settled(client, execution_id)
    assert info["status"] == "waiting", info
    assert [(c["tool"], c["arguments"]) for c in info["pending_tool_calls"]] == [
        ("delete_everything", {"path": "/tmp/x"})
    ]
    call_id = info["pending_tool_calls"][0]["call_id"]
    assert approve(client, execution_id, [{"call_id": call_id, "approved": True}]).status_code == 202
    info = settled(client, execution_id)
    assert info["status"] == "completed", info
    result = json.loads(info["result"])
    assert result["sum"] == {"result": 5} and result["order"] == ["add", "delete"]
    # The records: the free call ok at once; the gated one held, then as the decision went.
    assert tool_calls(client, execution_id) == [("add", "ok"), ("delete_everything", "ok")]


def test_a_waiting_execution_can_be_cancelled(client: testing.TestClient) -> None:
    execution_id = submit(client, GATED)
    call_id = settled(client, execution_id)["pending_tool_calls"][0]["call_id"]
    resp = client.simulate_post(f"/api/executions/{execution_id}/cancel", headers=AS_AUTHOR)
    assert resp.status_code == 200 and resp.json["ok"], resp.text
    info = settled(client, execution_id)
    assert (info["status"], info["pending_tool_calls"]) == ("cancelled", None)
    resp = approve(client, execution_id, [{"call_id": call_id, "approved": True}])
    assert resp.status_code == 409 and "cancelled" in resp.json["error"], resp.text


def test_without_a_snapshot_a_gated_call_is_denied_at_once(client: testing.TestClient) -> None:
    info = settled(client, submit(client, GATED, snapshot=False))
    assert info["status"] == "completed", info
    assert json.loads(info["result"])[:2] == ["ToolDenied", "a gated call cannot pause without a snapshot"]


def test_a_live_step_pauses_on_a_gated_call_and_its_session_goes_on_from_the_resume(
    client: testing.TestClient,
) -> None:
    session = f"live-{uuid.uuid4()}"
    first = settled(client, submit(client, "var kept = 41", session=session, live=True))
    assert first["status"] == "completed", first
    code = "kept += 1; console.log('before'); var said = await tools.t.echo({text: 'hi'}); console.log('after'); said"
    paused = submit(client, code, session=session, live=True)
    info = settled(client, paused)
    assert info["status"] == "waiting", info  # in its context's heap: the live worker is free
    (call,) = info["pending_tool_calls"]
    # Until the paused step has ended, the session has nowhere to go on from: a step fails, unrun.
    early = settled(client, submit(client, "kept = 0", session=session, live=True))
    assert early["status"] == "failed" and paused in early["error"], early
    assert approve(client, paused, [{"call_id": call["call_id"], "approved": True}]).status_code == 202
    info = settled(client, paused)
    assert info["status"] == "completed" and json.loads(info["result"]) == {"result": "hi"}, info
    assert info["heap"] is not None and output(client, paused) == "before\nafter\n"
    # The next live step starts from the heap the resumed execution made, in a new context.
    after = settled(client, submit(client, "[kept, said]", session=session, live=True))
    assert json.loads(after["result"]) == [42, {"result": "hi"}], after
    assert settled(client, submit(client, "kept += 1", session=session, live=True))["result"] == "43"


def test_only_the_approvers_token_approves(client: testing.TestClient) -> None:
    execution_id = submit(client, GATED)
    call_id = settled(client, execution_id)["pending_tool_calls"][0]["call_id"]
    decisions = [{"call_id": call_id, "approved": True}]
    assert approve(client, execution_id, decisions, **AS_AUTHOR).status_code == 403
    assert approve(client, execution_id, decisions, **HOST).status_code == 401
    assert (
        approve(client, execution_id, decisions, **{**HOST, "Authorization": "Bearer wrong"}).status_code
        == 401
    )
    # The approver's token opens no other route.
    assert client.simulate_get(f"/api/executions/{execution_id}", headers=AS_APPROVER).status_code == 401
    assert settled(client, execution_id)["status"] == "waiting"  # nothing changed
    assert approve(client, execution_id, decisions).status_code == 202
    assert settled(client, execution_id)["status"] == "completed"


def test_decisions_must_name_each_pending_call_once(client: testing.TestClient) -> None:
    code = "await Promise.all([tools.t.echo({text: 'a'}), tools.t.echo({text: 'b'})])"
    execution_id = submit(client, code)
    info = settled(client, execution_id)
    first, second = (c["call_id"] for c in info["pending_tool_calls"])
    for decisions, said in [
        ([{"call_id": first, "approved": True}], "undecided"),
        ([{"call_id": first, "approved": True}, {"call_id": first, "approved": False}], "twice"),
        (
            [{"call_id": first, "approved": True}, {"call_id": 999, "approved": True}],
            "not one this execution waits on",
        ),
        ([], None),
        ([{"call_id": first}], None),
    ]:
        resp = approve(client, execution_id, decisions)
        assert resp.status_code == 400, resp.text
        assert said is None or said in resp.json["error"], resp.text
    assert settled(client, execution_id)["status"] == "waiting"  # nothing changed
    unknown = approve(client, str(uuid.uuid4()), [{"call_id": 1, "approved": True}])
    assert unknown.status_code == 404, unknown.text
    done = settled(client, submit(client, "1"))["execution_id"]
    assert approve(client, done, [{"call_id": 1, "approved": True}]).status_code == 409
    both = [{"call_id": first, "approved": True}, {"call_id": second, "approved": False}]
    assert approve(client, execution_id, both).status_code == 202
    info = settled(client, execution_id)
    assert info["status"] == "failed" and "ToolDenied" in info["error"], info  # the script did not catch it


def test_an_undecided_wait_fails_at_its_deadline(tmp_path: Path) -> None:
    service = Service(settings(tmp_path, approval_timeout_secs=1)).start()
    try:
        client = ready(testing.TestClient(create_app(service=service)))
        execution_id = submit(client, GATED)
        # Waiting, unless a very busy machine let its second pass before this looked.
        assert settled(client, execution_id)["status"] in ("waiting", "failed")
        deadline = time.monotonic() + HANG
        info = settled(client, execution_id)
        while info["status"] == "waiting" and time.monotonic() < deadline:
            time.sleep(0.1)
            info = settled(client, execution_id)
        assert info["status"] == "failed", info
        assert "no decision on its held tool calls within 1 s" in info["error"]
    finally:
        service.close()


def test_a_wait_outlives_a_restart_of_the_server(tmp_path: Path) -> None:
    first = Service(settings(tmp_path)).start()
    try:
        client = ready(testing.TestClient(create_app(service=first)))
        execution_id = submit(client, GATED)
        call_id = settled(client, execution_id)["pending_tool_calls"][0]["call_id"]
    finally:
        first.close()
    second = Service(settings(tmp_path)).start()  # the same data directory
    try:
        client = ready(testing.TestClient(create_app(service=second)))
        assert settled(client, execution_id)["status"] == "waiting"  # not failed as interrupted
        assert approve(client, execution_id, [{"call_id": call_id, "approved": True}]).status_code == 202
        info = settled(client, execution_id)
        assert (info["status"], info["result"]) == ("completed", '{"result":"hi"}'), info
        assert output(client, execution_id) == "before\nafter\n"
    finally:
        second.close()


@pytest.mark.database
def test_an_approval_on_another_node_completes_the_execution(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    database = postgres_server.create_database("approval_" + uuid.uuid4().hex[:12])
    started: list[Service] = []

    def node(name: str) -> testing.TestClient:
        service = Service(
            settings(tmp_path, name, database_url=database, heap_signing_key=(SIGNING_KEY,))
        ).start()
        started.append(service)
        return ready(testing.TestClient(create_app(service=service)))

    try:
        a, b = node("a"), node("b")
        execution_id = submit(a, GATED)
        info = settled(b, execution_id)
        assert info["status"] == "waiting", info
        call_id = info["pending_tool_calls"][0]["call_id"]
        assert approve(b, execution_id, [{"call_id": call_id, "approved": True}]).status_code == 202
        assert (
            approve(a, execution_id, [{"call_id": call_id, "approved": True}]).status_code == 409
        )  # decided
        for client in (a, b):
            info = settled(client, execution_id)
            assert (info["status"], info["result"]) == ("completed", '{"result":"hi"}'), info
        assert output(a, execution_id) == "before\nafter\n"
    finally:
        for service in started:
            service.close()


def mcp(client: testing.TestClient, headers: dict[str, str], method: str, params: dict[str, Any]) -> Any:
    resp = client.simulate_post(
        "/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
        headers={**headers, "Content-Type": "application/json", "MCP-Protocol-Version": "2025-06-18"},
    )
    assert resp.status_code == 200, resp.text
    return resp.json.get("result", resp.json)


def test_over_mcp_run_js_returns_the_wait_and_only_the_approver_gets_approve_tool_calls(
    client: testing.TestClient,
) -> None:
    author = {t["name"] for t in mcp(client, AS_AUTHOR, "tools/list", {})["tools"]}
    approver = {t["name"] for t in mcp(client, AS_APPROVER, "tools/list", {})["tools"]}
    assert "run_js" in author and "approve_tool_calls" not in author
    assert approver == {"list_executions", "get_execution", "approve_tool_calls"}
    ran = mcp(
        client, AS_AUTHOR, "tools/call", {"name": "run_js", "arguments": {"code": GATED, "wait_ms": 30000}}
    )
    info = ran["structuredContent"]
    assert info["status"] == "waiting" and not ran["isError"], ran
    (call,) = info["pending_tool_calls"]
    assert (call["tool"], call["arguments"]) == ("echo", {"text": "hi"})
    denied = mcp(
        client,
        AS_AUTHOR,
        "tools/call",
        {"name": "approve_tool_calls", "arguments": {"execution_id": info["execution_id"], "decisions": []}},
    )
    assert "approve_tool_calls" in denied["error"]["message"], denied  # no such tool for the author
    decided = mcp(
        client,
        AS_APPROVER,
        "tools/call",
        {
            "name": "approve_tool_calls",
            "arguments": {
                "execution_id": info["execution_id"],
                "decisions": [{"call_id": call["call_id"], "approved": True}],
            },
        },
    )
    assert decided["structuredContent"]["status"] == "running", decided
    done = settled(client, info["execution_id"])
    assert (done["status"], done["result"]) == ("completed", '{"result":"hi"}'), done


def test_the_python_client_sees_the_wait_and_the_approvers_client_decides(tmp_path: Path) -> None:
    live = LiveServer(
        tmp_path / "data",
        "--workers",
        "1",
        "--api-token",
        API_TOKEN,
        "--approver-token",
        APPROVER_TOKEN,
        "--tools-config",
        str(tools_file(tmp_path)),
    ).start()
    try:
        with Client(live.url, token=API_TOKEN) as author, Client(live.url, token=APPROVER_TOKEN) as approver:
            deadline = time.monotonic() + HANG
            waiting = author.execute(GATED, timeout=HANG)
            while (
                waiting.status == "completed" and time.monotonic() < deadline
            ):  # the tool server was not up yet
                time.sleep(0.2)
                waiting = author.execute(GATED, timeout=HANG)
            assert waiting.done and waiting.status == "waiting", waiting
            assert waiting.pending_tool_calls is not None and waiting.approval_deadline is not None
            call_id = waiting.pending_tool_calls[0]["call_id"]
            with pytest.raises(APIError) as refused:  # the author's token cannot approve
                author.approve(waiting.execution_id, [{"call_id": call_id, "approved": True}])
            assert refused.value.status == 403
            resumed = approver.approve(waiting.execution_id, [{"call_id": call_id, "approved": True}])
            assert resumed.status == "running"
            done = author.wait(waiting.execution_id, timeout=HANG)
            assert (done.status, done.value) == ("completed", {"result": "hi"})
    finally:
        live.stop()
