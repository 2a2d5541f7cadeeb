"""The cross-tenant battery: one tenant tries every operation of a door on another tenant's real
ids, heap keys, session names and cursors, and must get exactly what the door answers for ones
that do not exist (the same status and body, the unknown id swapped for the real one), and
listings without a single object of the other tenant; the other tenant's objects are unchanged
afterwards.

A door (:class:`Door`) is one way in (the operations, MCP, REST) acting for one principal; each
call answers an :data:`Answer`, ``(status, body)``: ``(200, document)`` for a success, the
refusal's status (or ``"error"`` where a door has none, as MCP) and its text otherwise. A door
without an operation answers None for it, and the battery skips it. :func:`make_objects` makes a
tenant's objects through its operations; :func:`cross_tenant` runs the battery.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from mcp_v8.operations import OperationError, Operations

Answer = tuple[Any, Any]
SPIN = "while (true) {}"  # runs until cancelled
WAIT = 60.0  # seconds; only reached when something is broken


class Door(Protocol):
    def get(self, execution_id: str, wait_ms: int = 0) -> Answer | None: ...
    def output(self, execution_id: str) -> Answer | None: ...
    def tool_calls(self, execution_id: str) -> Answer | None: ...
    def cancel(self, execution_id: str) -> Answer | None: ...
    def approve(self, execution_id: str) -> Answer | None: ...
    def list_executions(self, *, cursor: str | None = None, session: str | None = None) -> Answer | None: ...
    def sessions(self, *, cursor: str | None = None) -> Answer | None: ...
    def session_log(self, session: str, *, cursor: str | None = None) -> Answer | None: ...
    def heap(self, key: str) -> Answer | None: ...
    def patch_tags(self, key: str, patch: dict[str, str | None]) -> Answer | None: ...
    def replace_tags(self, key: str, tags: dict[str, str]) -> Answer | None: ...
    def remove_tags(self, key: str, names: list[str] | None) -> Answer | None: ...
    def query(self, tags: dict[str, str], *, cursor: str | None = None) -> Answer | None: ...
    def delete_heap(self, key: str) -> Answer | None: ...
    def resume(self, key: str) -> Answer | None: ...
    def snapshot_session(self, session: str) -> Answer | None: ...
    def end_session(self, session: str) -> Answer | None: ...


@dataclass
class Objects:
    """What a tenant made: executions (oldest first) of its session ``main`` and of a session only it
    has, their heaps, a tag only it uses, a running execution, a live session only it has, and a
    cursor of each paged listing (pages of one)."""

    tenant: str
    executions: list[str]
    running: str
    only_session: str
    live_session: str | None
    live_steps: list[str]  # the executions of its live session
    heaps: list[str]
    tag: dict[str, str]
    list_cursor: str
    sessions_cursor: str
    log_cursor: str
    query_cursor: str


def settle(ops: Operations, execution_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT
    while True:
        info = ops.get(execution_id, 5000)
        if info["status"] != "running":
            return info
        assert time.monotonic() < deadline, info


def make_objects(ops: Operations, *, live: bool = False) -> Objects:
    """The objects of ``ops``'s tenant (see :class:`Objects`); ``live``: with a live session too
    (the server runs live workers)."""
    tenant = ops.principal.tenant
    tag = {"owner": f"tag-of-{tenant}"}
    executions, heaps = [], []
    for i, session in enumerate(("main", "main", f"only-{tenant}")):
        code = f"globalThis.who = '{tenant}-{i}'; console.log('{tenant} says {i}'); who"
        info = settle(ops, ops.submit({"code": code, "session": session, "tags": tag, "snapshot": True}))
        assert info["status"] == "completed" and info["heap"], info
        executions.append(info["execution_id"])
        heaps.append(info["heap"])
    live_session, live_steps = None, []
    if live:
        live_session = f"live-{tenant}"
        info = settle(ops, ops.submit({"code": "globalThis.x = 1", "session": live_session, "live": True}))
        assert info["status"] == "completed", info
        live_steps.append(info["execution_id"])
    running = ops.submit({"code": SPIN, "execution_timeout_secs": WAIT * 2})
    cursors = (
        ops.list_executions(1)["next_cursor"],
        ops.sessions(1)["next_cursor"],
        ops.session_log("main", 1)["next_cursor"],
        ops.query_heaps(tag, 1)["next_cursor"],
    )
    assert all(cursors), cursors
    return Objects(
        tenant, executions, running, f"only-{tenant}", live_session, live_steps, heaps, tag, *cursors
    )


def _text(body: Any) -> str:
    return body if isinstance(body, str) else json.dumps(body, sort_keys=True)


def as_missing(answer: Answer | None, unknown: Answer | None, real: str, fake: str) -> None:
    """``answer`` (for a real object of another tenant) is what the door says of a missing one,
    ``unknown`` (for ``fake``), with ``fake`` read as ``real``."""
    assert (answer is None) == (unknown is None)
    if answer is None or unknown is None:
        return
    assert answer[0] != 200, answer  # a refusal...
    assert answer[0] == unknown[0] and _text(answer[1]) == _text(unknown[1]).replace(fake, real), (
        answer,
        unknown,
    )


def _ids(answer: Answer | None, field: str, item: str) -> set[str]:
    if answer is None:
        return set()
    assert answer[0] == 200, answer
    return {entry[item] for entry in answer[1][field]}


def _listed_only_own(answer: Answer | None, field: str, item: str, own: set[str], theirs: set[str]) -> None:
    """A listing the intruder asked for: only its own items, or a refusal (a cursor it could not have)."""
    if answer is None or answer[0] != 200:
        return
    listed = _ids(answer, field, item)
    assert not listed & theirs, (listed & theirs, answer)
    assert listed <= own, answer


def cross_tenant(door: Door, own: Objects, theirs: Objects, victim: Operations) -> None:
    """``door`` (acting for ``own``'s tenant) on every object of ``theirs``; ``victim``: the
    operations of ``theirs``'s tenant, to check nothing of theirs changed."""
    fake_id, fake_key = str(uuid.uuid4()), uuid.uuid4().hex * 2
    their_ids = {*theirs.executions, *theirs.live_steps, theirs.running}
    own_ids = {*own.executions, *own.live_steps, own.running}
    # Executions: every read and change of one is as for an unknown id.
    for execution_id in sorted(their_ids):
        for op in (
            lambda i: door.get(i),
            lambda i: door.get(i, 200),
            door.output,
            door.tool_calls,
            door.cancel,
            door.approve,
        ):
            as_missing(op(execution_id), op(fake_id), execution_id, fake_id)
    # Listings: none of theirs, with or without their cursors and session names.
    for answer in (
        door.list_executions(),
        door.list_executions(session="main"),
        door.list_executions(session=theirs.only_session),
        door.list_executions(cursor=theirs.list_cursor),
        door.list_executions(cursor=theirs.list_cursor, session="main"),
    ):
        _listed_only_own(answer, "executions", "execution_id", own_ids, their_ids)
    assert _ids(door.list_executions(session=theirs.only_session), "executions", "execution_id") == set()
    own_sessions = {"main", own.only_session} | ({own.live_session} if own.live_session else set())
    for answer in (door.sessions(), door.sessions(cursor=theirs.sessions_cursor)):
        if answer is not None and answer[0] == 200:
            assert {s["session"] for s in answer[1]["sessions"]} <= own_sessions, answer
            mains = [s for s in answer[1]["sessions"] if s["session"] == "main"]
            assert all(s["executions"] == 2 and s["latest_heap"] == own.heaps[1] for s in mains), mains
    for answer in (door.session_log("main"), door.session_log("main", cursor=theirs.log_cursor)):
        _listed_only_own(answer, "executions", "execution_id", own_ids, their_ids)
    for session in (theirs.only_session, *([theirs.live_session] if theirs.live_session else [])):
        fake_session = f"never-{uuid.uuid4().hex}"
        as_missing(door.session_log(session), door.session_log(fake_session), session, fake_session)
        as_missing(door.snapshot_session(session), door.snapshot_session(fake_session), session, fake_session)
        as_missing(door.end_session(session), door.end_session(fake_session), session, fake_session)
    # Heaps: by their keys, as missing ones; their tags never match.
    for key in theirs.heaps:
        for op in (
            door.heap,
            lambda k: door.patch_tags(k, {"x": "y"}),
            lambda k: door.replace_tags(k, {"x": "y"}),
            lambda k: door.remove_tags(k, None),
            lambda k: door.remove_tags(k, ["owner"]),
            door.resume,
            door.delete_heap,
        ):
            as_missing(op(key), op(fake_key), key, fake_key)
    own_heaps, their_heaps = set(own.heaps), set(theirs.heaps)
    for answer in (
        door.query(theirs.tag),
        door.query({}),
        door.query({}, cursor=theirs.query_cursor),
        door.query(own.tag, cursor=theirs.query_cursor),
    ):
        _listed_only_own(answer, "heaps", "heap", own_heaps, their_heaps)
    assert _ids(door.query(theirs.tag), "heaps", "heap") == set()
    # Nothing of theirs changed.
    assert victim.get(theirs.running)["status"] == "running"
    for key in theirs.heaps:
        assert victim.heap(key)["tags"] == theirs.tag
    assert {h["heap"] for h in victim.query_heaps(theirs.tag, 100)["heaps"]} == their_heaps
    if theirs.live_session is not None:
        assert victim.sessions(100)["sessions"] and any(
            s["session"] == theirs.live_session and s["live"] is not None
            for s in victim.sessions(100)["sessions"]
        )


class OperationsDoor:
    """The operations themselves, as one principal: a refusal's status is its OperationError's."""

    def __init__(self, ops: Operations) -> None:
        self.ops = ops

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Answer:
        try:
            return 200, fn(*args, **kwargs)
        except OperationError as e:
            return e.status, str(e)

    def get(self, execution_id: str, wait_ms: int = 0) -> Answer:
        return self._call(self.ops.get, execution_id, wait_ms)

    def output(self, execution_id: str) -> Answer:
        return self._call(self.ops.output, execution_id)

    def tool_calls(self, execution_id: str) -> Answer:
        return self._call(self.ops.tool_calls, execution_id)

    def cancel(self, execution_id: str) -> Answer:
        result = self.ops.cancel(execution_id)
        return (200 if result["ok"] else 400), result

    def approve(self, execution_id: str) -> Answer:
        body = {"decisions": [{"call_id": "c1", "approved": True}]}
        return self._call(self.ops.approve, execution_id, body)

    def list_executions(self, *, cursor: str | None = None, session: str | None = None) -> Answer:
        return self._call(self.ops.list_executions, 100, cursor=cursor, session=session)

    def sessions(self, *, cursor: str | None = None) -> Answer:
        return self._call(self.ops.sessions, 100, cursor=cursor)

    def session_log(self, session: str, *, cursor: str | None = None) -> Answer:
        return self._call(self.ops.session_log, session, 100, cursor=cursor)

    def heap(self, key: str) -> Answer:
        return self._call(self.ops.heap, key)

    def patch_tags(self, key: str, patch: dict[str, str | None]) -> Answer:
        return self._call(self.ops.patch_heap_tags, key, patch)

    def replace_tags(self, key: str, tags: dict[str, str]) -> Answer:
        return self._call(self.ops.replace_heap_tags, key, tags)

    def remove_tags(self, key: str, names: list[str] | None) -> Answer:
        return self._call(self.ops.remove_heap_tags, key, names)

    def query(self, tags: dict[str, str], *, cursor: str | None = None) -> Answer:
        return self._call(self.ops.query_heaps, tags, 100, cursor=cursor)

    def delete_heap(self, key: str) -> Answer:
        return self._call(self.ops.delete_heap, key)

    def resume(self, key: str) -> Answer:
        return self._call(self.ops.submit, {"code": "who", "heap": key})

    def snapshot_session(self, session: str) -> Answer:
        return self._call(self.ops.snapshot_session, session)

    def end_session(self, session: str) -> Answer:
        return self._call(self.ops.end_session, session)


class McpDoor:
    """The MCP tools (``Server.handle`` with a principal), as one principal: a refusal is
    ``("error", its text)``. Operations without a tool answer None."""

    VERSION = "2025-06-18"

    def __init__(self, ops: Operations, principal: Any) -> None:
        from mcp_v8.mcp.protocol import Server

        self.server = Server(ops)
        self.approver = Server(ops, approver=True)
        self.principal = principal
        self._ids = iter(range(1, 1 << 30))

    def _tool(self, name: str, arguments: dict[str, Any], *, approver: bool = False) -> Answer:
        from mcp_v8.mcp.protocol import Request

        request = Request(next(self._ids), "tools/call", {"name": name, "arguments": arguments})
        response = (self.approver if approver else self.server).handle(
            request, self.VERSION, principal=self.principal
        )
        assert response is not None and "result" in response, response
        result = response["result"]
        if result["isError"]:
            return "error", result["content"][0]["text"]
        return 200, result.get("structuredContent", json.loads(result["content"][0]["text"]))

    def get(self, execution_id: str, wait_ms: int = 0) -> Answer:
        return self._tool("get_execution", {"execution_id": execution_id, "wait_ms": wait_ms})

    def output(self, execution_id: str) -> Answer:
        return self._tool("get_execution_output", {"execution_id": execution_id})

    def tool_calls(self, execution_id: str) -> None:
        return None

    def cancel(self, execution_id: str) -> Answer:
        return self._tool("cancel_execution", {"execution_id": execution_id})

    def approve(self, execution_id: str) -> Answer:
        decisions = [{"call_id": "c1", "approved": True}]
        return self._tool(
            "approve_tool_calls", {"execution_id": execution_id, "decisions": decisions}, approver=True
        )

    def list_executions(self, *, cursor: str | None = None, session: str | None = None) -> Answer:
        args = {k: v for k, v in (("cursor", cursor), ("session", session)) if v is not None}
        return self._tool("list_executions", args)

    def sessions(self, *, cursor: str | None = None) -> Answer:
        return self._tool("list_sessions", {} if cursor is None else {"cursor": cursor})

    def session_log(self, session: str, *, cursor: str | None = None) -> Answer:
        return self._tool(
            "list_session_snapshots", {"session": session, **({"cursor": cursor} if cursor else {})}
        )

    def heap(self, key: str) -> Answer:
        return self._tool("get_heap_tags", {"heap": key})

    def patch_tags(self, key: str, patch: dict[str, str | None]) -> None:
        return None

    def replace_tags(self, key: str, tags: dict[str, str]) -> Answer:
        return self._tool("set_heap_tags", {"heap": key, "tags": tags})

    def remove_tags(self, key: str, names: list[str] | None) -> Answer:
        return self._tool("delete_heap_tags", {"heap": key, **({"keys": names} if names is not None else {})})

    def query(self, tags: dict[str, str], *, cursor: str | None = None) -> Answer:
        return self._tool("query_heaps_by_tags", {"tags": tags, **({"cursor": cursor} if cursor else {})})

    def delete_heap(self, key: str) -> None:
        return None

    def resume(self, key: str) -> Answer:
        return self._tool("run_js", {"code": "who", "heap": key})

    def snapshot_session(self, session: str) -> None:
        return None

    def end_session(self, session: str) -> None:
        return None


class RestDoor:
    """The REST API through a falcon test client, with ``headers`` (the Host, and whatever names
    the principal: a bearer token): a status and the JSON body. Operations without a route
    answer None."""

    def __init__(self, client: Any, headers: dict[str, str]) -> None:
        self.client = client
        self.headers = headers

    def _answer(self, resp: Any) -> Answer:
        return resp.status_code, resp.json

    def _get(self, path: str, **params: Any) -> Answer:
        given = {k: str(v) for k, v in params.items() if v is not None}
        return self._answer(self.client.simulate_get(path, params=given, headers=self.headers))

    def get(self, execution_id: str, wait_ms: int = 0) -> Answer:
        return self._get(f"/api/executions/{execution_id}", wait_ms=wait_ms or None)

    def output(self, execution_id: str) -> Answer:
        return self._get(f"/api/executions/{execution_id}/output")

    def tool_calls(self, execution_id: str) -> Answer:
        return self._get(f"/api/executions/{execution_id}/tool-calls")

    def cancel(self, execution_id: str) -> Answer:
        return self._answer(
            self.client.simulate_post(f"/api/executions/{execution_id}/cancel", headers=self.headers)
        )

    def approve(self, execution_id: str) -> Answer:
        body = {"decisions": [{"call_id": 1, "approved": True}]}
        return self._answer(
            self.client.simulate_post(
                f"/api/executions/{execution_id}/approve", json=body, headers=self.headers
            )
        )

    def list_executions(self, *, cursor: str | None = None, session: str | None = None) -> Answer:
        return self._get("/api/executions", cursor=cursor, session=session, limit=100)

    def sessions(self, *, cursor: str | None = None) -> Answer:
        return self._get("/api/sessions", cursor=cursor, limit=100)

    def session_log(self, session: str, *, cursor: str | None = None) -> Answer:
        return self._get("/api/sessions/log", session=session, cursor=cursor, limit=100)

    def heap(self, key: str) -> Answer:
        return self._get(f"/api/heaps/{key}")

    def patch_tags(self, key: str, patch: dict[str, str | None]) -> Answer:
        headers = {**self.headers, "Content-Type": "application/merge-patch+json"}
        return self._answer(self.client.simulate_patch(f"/api/heaps/{key}/tags", json=patch, headers=headers))

    def replace_tags(self, key: str, tags: dict[str, str]) -> None:
        return None

    def remove_tags(self, key: str, names: list[str] | None) -> None:
        return None

    def query(self, tags: dict[str, str], *, cursor: str | None = None) -> Answer | None:
        if not tags:  # the route needs at least one pair
            return None
        body: dict[str, Any] = {"tags": tags, **({"cursor": cursor} if cursor else {})}
        return self._answer(self.client.simulate_post("/api/heaps/query", json=body, headers=self.headers))

    def delete_heap(self, key: str) -> Answer:
        return self._answer(self.client.simulate_delete(f"/api/heaps/{key}", headers=self.headers))

    def resume(self, key: str) -> Answer:
        body = {"code": "who", "heap": key}
        return self._answer(self.client.simulate_post("/api/exec", json=body, headers=self.headers))

    def snapshot_session(self, session: str) -> Answer:
        return self._answer(
            self.client.simulate_post(
                "/api/sessions/snapshot", params={"session": session}, headers=self.headers
            )
        )

    def end_session(self, session: str) -> Answer:
        return self._answer(
            self.client.simulate_delete(
                "/api/sessions/snapshot", params={"session": session}, headers=self.headers
            )
        )
