"""SessionsCaller (executions/tool_caller.py): the executions' ToolCaller over the control
plane's, against a fake plane caller: the catalogue, the result's shape, each error, the past
deadline and the abandoned call."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from mcp_v8.executions.tool_caller import SessionsCaller, ToolTimeout, ToolUnavailable
from mcp_v8.tools import caller as plane


class _Pending:
    def __init__(self, outcome: Any, done: threading.Event) -> None:
        self.outcome, self.done, self.cancelled = outcome, done, False

    def result(self) -> plane.ToolResult:
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome  # type: ignore[no-any-return]

    def wait(self, timeout: float) -> bool:
        return self.done.wait(timeout)

    def cancel(self) -> None:
        self.cancelled = True


class FakePlane:
    def __init__(self, outcome: Any, finished: bool = True) -> None:
        self.done = threading.Event()
        if finished:
            self.done.set()
        self.pending = _Pending(outcome, self.done)
        self.calls: list[tuple[str, str, dict[str, Any], float]] = []

    def catalogue(self) -> list[plane.ServerInfo]:
        tool = plane.ToolInfo("add", "Adds.", {"type": "object"}, None, None, gated=True)
        return [plane.ServerInfo("calc", "stdio", "ready", None, (tool,))]

    def start_call(self, server: str, tool: str, arguments: dict[str, Any], timeout: float) -> _Pending:
        self.calls.append((server, tool, arguments, timeout))
        return self.pending

    def call(self, server: str, tool: str, arguments: dict[str, Any], timeout: float) -> plane.ToolResult:
        return self.start_call(server, tool, arguments, timeout).result()


def call(fake: FakePlane, deadline_in: float = 30.0, abandoned: threading.Event | None = None) -> Any:
    caller = SessionsCaller(fake)  # type: ignore[arg-type]
    return caller.call(
        "calc", "add", '{"a": 1}', time.monotonic() + deadline_in, abandoned or threading.Event()
    )


def test_the_catalogue_and_a_result() -> None:
    fake = FakePlane(plane.ToolResult([{"type": "text", "text": "2"}], {"result": 2}, False))
    info = SessionsCaller(fake).tools()["calc"]["add"]  # type: ignore[arg-type]
    assert info.needs_approval and info.description == "Adds."
    assert call(fake) == {
        "content": [{"type": "text", "text": "2"}],
        "isError": False,
        "structuredContent": {"result": 2},
    }
    ((server, tool, arguments, timeout),) = fake.calls
    assert (server, tool, arguments) == ("calc", "add", {"a": 1}) and 0 < timeout <= 30


def test_a_result_without_structured_content_has_no_such_field() -> None:
    assert call(FakePlane(plane.ToolResult([], None, True))) == {"content": [], "isError": True}


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        (plane.ToolTimeout("calc", "add", "no answer within 30 s"), ToolTimeout),
        (plane.ServerUnavailable("calc", "add", "calc is down: refused"), ToolUnavailable),
        (plane.ToolProtocolError("calc", "add", "invalid params", -32602), ToolUnavailable),
        (plane.UnknownTool("calc", "add", "no tool add"), ToolUnavailable),
    ],
)
def test_each_error_of_the_plane_is_one_the_executions_know(error: Exception, raised: type) -> None:
    with pytest.raises(raised, match=str(error)):
        call(FakePlane(error))


def test_a_call_past_its_deadline_is_not_made() -> None:
    fake = FakePlane(plane.ToolResult())
    with pytest.raises(ToolTimeout):
        call(fake, deadline_in=-1)
    assert fake.calls == []


def test_an_abandoned_call_is_cancelled_at_the_plane() -> None:
    fake = FakePlane(plane.ToolResult(), finished=False)  # never answers
    abandoned = threading.Event()
    abandoned.set()
    with pytest.raises(ToolUnavailable, match="abandoned"):
        call(fake, abandoned=abandoned)
    assert fake.pending.cancelled
