"""The hand-offs of mcp_v8.Context (calls out, answers, the end of a run, re-entry, the run
lock) driven against a fake native context, without V8: each interleaving is forced."""

from __future__ import annotations

import asyncio
import json
import threading
from types import SimpleNamespace
from typing import Any, Callable

from mcp_v8 import ContextBusyError
from mcp_v8.context import Context

WAIT = 30  # seconds; only a broken hand-off waits this long


class FakeLive:
    """Stands in for _engine.LiveContext: ``behave(fake, kwargs)`` plays the run."""

    def __init__(self, *, dispatch: Callable[..., None], **options: Any) -> None:
        self.dispatch = dispatch
        self.replies: list[tuple[int, bool, Any]] = []
        self.replied = threading.Event()
        self.behave: Callable[[FakeLive, dict[str, Any]], None] = lambda fake, kw: None
        self.closed = False

    def run(self, code: str, **kwargs: Any) -> Any:
        self.behave(self, kwargs)
        return SimpleNamespace(result='"done"', buffers=[], raise_for_error=lambda: None)

    def expose(self, name: str) -> None:
        pass

    def reply(self, call_id: int, ok: bool, text: str, buffers: list[bytes] | None = None) -> None:
        self.replies.append((call_id, ok, json.loads(text)))
        self.replied.set()

    def close(self) -> None:
        self.closed = True


def make() -> tuple[Context, FakeLive]:
    ctx = Context(_native=FakeLive)
    fake = ctx._live
    assert isinstance(fake, FakeLive)
    return ctx, fake


def test_an_answer_that_comes_during_the_run_is_posted() -> None:
    ctx, fake = make()
    ctx.expose("f", lambda x: x * 2)

    def behave(fake: FakeLive, kw: dict[str, Any]) -> None:
        fake.dispatch(1, "f", "[21]", [])
        assert fake.replied.wait(WAIT)

    fake.behave = behave
    assert ctx.eval("f(21)") == "done"
    assert fake.replies == [(1, True, 42)]
    assert ctx._pending == {}


def test_an_answer_that_comes_after_the_run_is_dropped() -> None:
    ctx, fake = make()
    release, finished = threading.Event(), threading.Event()

    def slow() -> str:
        release.wait(WAIT)
        finished.set()
        return "late"

    ctx.expose("slow", slow)
    fake.behave = lambda fake, kw: fake.dispatch(7, "slow", "[]", [])
    ctx.eval("slow()")  # the run ends with the call pending
    assert ctx._pending == {}
    release.set()
    assert finished.wait(WAIT)
    ctx._executor.shutdown(wait=True)  # type: ignore[union-attr]
    assert fake.replies == []


def test_a_coroutine_pending_at_the_end_of_its_run_is_cancelled() -> None:
    ctx, fake = make()
    started, cancelled = threading.Event(), threading.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    ctx.expose("forever", forever)

    def behave(fake: FakeLive, kw: dict[str, Any]) -> None:
        fake.dispatch(3, "forever", "[]", [])
        assert started.wait(WAIT)

    fake.behave = behave
    ctx.eval("forever()")
    assert cancelled.wait(WAIT)
    assert fake.replies == []
    ctx.close()


def test_an_unknown_name_and_a_raising_function_answer_with_errors() -> None:
    ctx, fake = make()

    def fail() -> None:
        raise KeyError("missing")

    ctx.expose("fail", fail)

    def behave(fake: FakeLive, kw: dict[str, Any]) -> None:
        fake.dispatch(1, "nobody", "[]", [])
        fake.dispatch(2, "fail", "[]", [])
        while len(fake.replies) < 2:
            assert fake.replied.wait(WAIT)
            fake.replied.clear()

    fake.behave = behave
    ctx.eval("x")
    assert sorted(fake.replies) == [
        (
            1,
            False,
            {"name": "ReferenceError", "message": "no Python function is exposed as nobody in this context"},
        ),
        (2, False, {"name": "KeyError", "message": "'missing'"}),
    ]


def test_a_function_calling_back_into_its_context_gets_busy() -> None:
    ctx, fake = make()
    ctx.expose("reenter", lambda: ctx.eval("1"))

    def behave(fake: FakeLive, kw: dict[str, Any]) -> None:
        if kw.get("bytes_result"):
            fake.dispatch(5, "reenter", "[]", [])
            assert fake.replied.wait(WAIT)

    fake.behave = behave
    ctx.eval("reenter()")
    ((call_id, ok, error),) = fake.replies
    assert (call_id, ok, error["name"]) == (5, False, ContextBusyError.__name__)


def test_runs_from_two_threads_are_serialised() -> None:
    ctx, fake = make()
    order: list[str] = []
    go = threading.Event()
    inside = threading.Lock()

    def behave(fake: FakeLive, kw: dict[str, Any]) -> None:
        assert inside.acquire(blocking=False), "two runs overlapped"
        try:
            name = threading.current_thread().name
            order.append(name)
            if name == "first":
                assert go.wait(WAIT)
        finally:
            inside.release()

    fake.behave = behave
    first = threading.Thread(target=ctx.eval, args=("a",), name="first")
    first.start()
    while not order:
        threading.Event().wait(0.001)
    second = threading.Thread(target=ctx.eval, args=("b",), name="second")
    second.start()
    second.join(0.05)  # it waits for the lock the first run holds
    assert order == ["first"]
    go.set()
    first.join(WAIT)
    second.join(WAIT)
    assert order == ["first", "second"]


def test_close_closes_the_native_context_once() -> None:
    ctx, fake = make()
    ctx.close()
    ctx.close()
    assert fake.closed and ctx.closed
