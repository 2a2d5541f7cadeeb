"""Live contexts (mcp_v8.Context): globals that persist, values both ways, Python functions
for JavaScript, asyncio, limits, snapshots and the thread rules."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref

import pytest

from mcp_v8 import (
    Context,
    ContextBusyError,
    ContextClosedError,
    Engine,
    ExecutionCancelled,
    ExecutionTimeout,
    HeapLimitExceeded,
    HeapSnapshot,
    JSError,
    JSSyntaxError,
    _engine,
)


@pytest.fixture
def ctx(engine: Engine):
    with engine.context() as context:
        yield context


def test_globals_persist_across_eval_execute_and_call(ctx: Context) -> None:
    assert ctx.eval("var n = 40; let m = 1; const add = (a, b) => a + b; n") == 40
    assert ctx.eval("n += m; n") == 41
    outcome = ctx.execute("console.log('n is', n); n + 1")
    assert outcome.completed and outcome.result == "42" and outcome.output == "n is 41\n"
    assert ctx.call("add", n := 2, 3) == n + 3
    assert ctx.eval("typeof add") == "function"


def test_values_come_back_as_python_values(ctx: Context) -> None:
    assert ctx.eval("({a: [1, 'x', null, true], b: {c: 1.5}})") == {
        "a": [1, "x", None, True],
        "b": {"c": 1.5},
    }
    assert ctx.eval("undefined") is None
    assert ctx.eval("10n ** 20n") == "100000000000000000000"
    assert ctx.eval("const o = {}; o.self = o; o") == {"self": "[Circular]"}
    assert ctx.eval("Promise.resolve('later')") == "later"
    assert ctx.eval("new Uint8Array([1, 2, 255])") == b"\x01\x02\xff"
    assert ctx.eval("({buf: new Uint16Array([1]).buffer, list: [new Uint8Array(0)]})") == {
        "buf": b"\x01\x00",
        "list": [b""],
    }


def test_call_converts_arguments_and_awaits_promises(ctx: Context) -> None:
    ctx.eval(
        """
        globalThis.lib = {
          scale: 3,
          times(x) { return x * this.scale; },
          describe(v) { return [typeof v, Array.isArray(v), v instanceof Uint8Array]; },
          sum(bytes) { return bytes.reduce((a, b) => a + b, 0); },
          echo(...args) { return args; },
          later: async (x) => { await null; return x + 1; },
        };
        """
    )
    assert ctx.call("lib.times", 7) == 21  # `this` is the object holding the function
    assert ctx.call("lib.describe", b"abc") == ["object", False, True]
    assert ctx.call("lib.sum", b"\x01\x02\x03") == 6
    value = {"k": [1, 2.5, "s", None, False], "raw": b"\x00\x01"}
    assert ctx.call("lib.echo", value, [b"x"]) == [value, [b"x"]]
    assert ctx.call("lib.later", 1) == 2
    assert ctx.call("Math.max", 1, 9, 4) == 9


def test_call_refuses_what_cannot_cross_or_is_not_a_function(ctx: Context) -> None:
    ctx.eval("globalThis.notfn = 1; globalThis.f = x => x")
    with pytest.raises(JSError, match="notfn is not a function"):
        ctx.call("notfn")
    with pytest.raises(JSError, match="missing is not defined"):
        ctx.call("missing.deep")
    with pytest.raises(JSError, match=r"notfn.deep is not a function \(notfn is not an object\)"):
        ctx.call("notfn.deep")
    with pytest.raises(ValueError, match="NaN"):
        ctx.call("f", float("nan"))
    with pytest.raises(TypeError, match="set cannot cross"):
        ctx.call("f", {1, 2})
    with pytest.raises(ValueError, match="path"):
        ctx.call("")
    assert ctx.call("f", "still usable") == "still usable"


def test_script_errors_raise_and_keep_the_context(ctx: Context) -> None:
    ctx.eval("var kept = 'yes'")
    with pytest.raises(JSError) as info:
        ctx.eval("null.x")
    assert info.value.name == "TypeError"
    with pytest.raises(JSSyntaxError):
        ctx.eval("let = ;")
    with pytest.raises(JSError, match="boom"):
        ctx.eval("Promise.reject(new Error('boom'))")
    assert ctx.eval("kept") == "yes"


def test_exposed_sync_function_and_its_exceptions(ctx: Context) -> None:
    seen: list[tuple[object, ...]] = []

    def record(*args: object) -> dict[str, object]:
        seen.append(args)
        return {"count": len(seen), "echo": list(args)}

    def fail(message: str) -> None:
        raise ValueError(message)

    ctx.expose("record", record)
    ctx.expose("fail", fail)
    assert ctx.eval("record(1, 'two', new Uint8Array([3]))") == {"count": 1, "echo": [1, "two", b"\x03"]}
    assert seen == [(1, "two", b"\x03")]
    caught = ctx.eval("fail('bad input').catch(e => [e instanceof Error, e.name, e.message])")
    assert caught == [True, "ValueError", "bad input"]
    with pytest.raises(JSError, match="bad input"):
        ctx.eval("(async () => { await fail('bad input'); })()")
    with pytest.raises(ValueError, match="identifier"):
        ctx.expose("not a name", record)


def test_a_result_that_cannot_cross_rejects_in_javascript(ctx: Context) -> None:
    ctx.expose("gives_a_set", lambda: {1, 2})
    assert ctx.eval("gives_a_set().catch(e => e.name + ': ' + e.message)").startswith(
        "TypeError: the function's result cannot cross to JavaScript"
    )


def test_async_def_callback_is_awaited_from_javascript_on_a_private_loop(ctx: Context) -> None:
    threads: list[str] = []

    async def slow_double(x: int) -> int:
        threads.append(threading.current_thread().name)
        await asyncio.sleep(0.01)
        return 2 * x

    ctx.expose("slowDouble", slow_double)
    assert ctx.eval("(async () => (await slowDouble(4)) + (await slowDouble(1)))()") == 10
    assert threads == ["mcp-v8-context-loop"] * 2


def test_a_plain_function_returning_a_coroutine_is_awaited(ctx: Context) -> None:
    async def later(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    ctx.expose("viaPlain", lambda x: later(x))
    assert ctx.eval("viaPlain(1)") == 2


def test_async_def_callback_runs_on_the_loop_of_the_async_call(ctx: Context) -> None:
    async def main() -> tuple[object, bool]:
        running = asyncio.get_running_loop()
        loops: list[asyncio.AbstractEventLoop] = []

        async def where() -> str:
            loops.append(asyncio.get_running_loop())
            await asyncio.sleep(0)
            return "here"

        ctx.expose("where", where)
        value = await ctx.eval_async("where()")
        return value, loops == [running]

    assert asyncio.run(main()) == ("here", True)


def test_cancelling_the_task_terminates_the_script_and_the_context_goes_on(ctx: Context) -> None:
    ctx.eval("var before = 'kept'")

    async def main() -> object:
        task = asyncio.create_task(ctx.eval_async("globalThis.started = true; while (true) {}"))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await ctx.eval_async("[before, 1 + 1]")

    assert asyncio.run(main()) == ["kept", 2]


def test_cancelling_call_async_and_a_pending_coroutine_callback(ctx: Context) -> None:
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    ctx.expose("forever", forever)
    ctx.eval("globalThis.waitForever = async () => { await forever(); return 'never'; }")

    async def main() -> object:
        task = asyncio.create_task(ctx.call_async("waitForever"))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await ctx.call_async("Math.min", 3, 2)

    assert asyncio.run(main()) == 2
    assert cancelled.wait(10), "the coroutine of the ended run was not cancelled"


def test_a_blocked_callback_does_not_hold_the_context_past_its_timeout(ctx: Context) -> None:
    release = threading.Event()
    finished = threading.Event()

    def stuck() -> str:
        release.wait(30)
        finished.set()
        return "too late"

    ctx.expose("stuck", stuck)
    with pytest.raises(ExecutionTimeout):
        ctx.eval("stuck()", timeout=0.3)
    # The callback still runs; the context does not wait for it.
    assert not finished.is_set()
    assert ctx.eval("'free'") == "free"
    release.set()
    assert finished.wait(10)
    assert ctx.eval("'still free'") == "still free"  # its late answer was dropped


def test_timeout_and_cancel_per_call_keep_globals(engine: Engine) -> None:
    with engine.context(timeout=5) as ctx:
        ctx.eval("var count = 1")
        with pytest.raises(ExecutionTimeout):
            ctx.eval("count++; while (true) {}", timeout=0.2)
        assert ctx.eval("count") == 2
        control = _engine.Control()
        control.cancel()
        outcome = ctx.execute("count = 100", control=control)
        assert outcome.cancelled
        assert ctx.eval("count") == 2
        with pytest.raises(ExecutionCancelled):
            outcome.raise_for_error()


def test_the_heap_cap_closes_the_context_with_a_clear_error(engine: Engine) -> None:
    ctx = engine.context(heap_limit_mb=16)
    ctx.eval("var small = [1, 2, 3]")
    with pytest.raises(HeapLimitExceeded):
        ctx.eval("const hog = []; while (true) hog.push(new Array(10000).fill(1.5));")
    assert ctx.closed
    with pytest.raises(ContextClosedError, match="heap limit of 16 MB"):
        ctx.eval("small")
    with pytest.raises(ContextClosedError):
        ctx.call("Math.max", 1)
    ctx.close()  # idempotent after a kill


def test_array_buffer_memory_counts_against_the_cap(engine: Engine) -> None:
    with engine.context(heap_limit_mb=16) as ctx:
        with pytest.raises(HeapLimitExceeded) as info:
            ctx.eval("new Uint8Array(64 * 1024 * 1024)")
        assert info.value.outcome is not None
        assert "heap limit of 16 MB includes ArrayBuffer memory" in (info.value.outcome.error_message or "")
        assert not ctx.closed
        # A refused buffer is a RangeError, not a kill: the context goes on.
        assert ctx.eval("new Uint8Array(1024).length") == 1024


def test_heap_stats(ctx: Context) -> None:
    ctx.eval("globalThis.keep = new Uint8Array(1 << 20)")
    stats = ctx.heap_stats()
    assert set(stats) == {
        "total_heap_size",
        "used_heap_size",
        "heap_size_limit",
        "total_physical_size",
        "malloced_memory",
        "external_memory",
        "external_peak",
    }
    assert 0 < stats["used_heap_size"] <= stats["total_heap_size"] < stats["heap_size_limit"]
    assert stats["external_memory"] >= 1 << 20
    ctx.eval("keep = null")


def test_snapshot_resumes_in_execute_and_context_and_the_context_goes_on(engine: Engine) -> None:
    with engine.context(snapshot=True) as ctx:
        ctx.expose("twice", lambda x: 2 * x)
        ctx.eval("var visits = 1; class Box { constructor(v) { this.v = v; } }; var box = new Box(7)")
        snap = ctx.snapshot()
        assert isinstance(snap, HeapSnapshot) and isinstance(snap, bytes)
        assert snap.key == _engine.snapshot_key(snap) and snap.raw_bytes > len(snap)
        # The context goes on from its own snapshot, exposed functions included.
        assert ctx.eval("visits += 1; [visits, box instanceof Box, box.v]") == [2, True, 7]
        assert ctx.eval("twice(21)") == 42
        second = ctx.snapshot()
        assert ctx.eval("visits") == 2
    # Engine.execute resumes the heap of the first snapshot.
    assert engine.evaluate("visits += 10; [visits, box.v]", heap=snap) == [11, 7]
    # ... where no Python answers the exposed function.
    assert "nothing answers it" in engine.evaluate("twice(1).catch(e => e.message)", heap=snap)
    # A new context resumes the second, and can expose its own function under that name.
    with engine.context(heap=second) as resumed:
        assert resumed.eval("visits") == 2
        assert "no Python function is exposed as twice" in resumed.eval("twice(1).catch(e => e.message)")
        resumed.expose("twice", lambda x: 3 * x)
        assert resumed.eval("twice(2)") == 6
    # And an execution's snapshot starts a context.
    heap = engine.execute("var fromExecute = 'yes'", snapshot=True).snapshot
    with engine.context(heap=heap) as from_execute:
        assert from_execute.eval("fromExecute") == "yes"


def test_snapshot_needs_a_snapshot_context_and_plain_ones_have_webassembly(engine: Engine) -> None:
    with engine.context() as plain:
        assert plain.eval("typeof WebAssembly") == "object"
        with pytest.raises(ValueError, match="snapshot=True"):
            plain.snapshot()
    with engine.context(snapshot=True) as capable:
        assert capable.eval("typeof WebAssembly") == "undefined"


def test_a_callback_calling_back_into_its_context_is_refused(ctx: Context) -> None:
    def reenter() -> object:
        return ctx.eval("1 + 1")

    ctx.expose("reenter", reenter)
    message = ctx.eval("reenter().catch(e => e.name + ': ' + e.message)")
    assert message.startswith(
        f"{ContextBusyError.__name__}: a function exposed to this context called back into it"
    )
    # A callback may use another context.
    with Engine().context() as other:
        ctx.expose("useOther", lambda: other.eval("'from the other'"))
        assert ctx.eval("useOther()") == "from the other"


def test_two_threads_on_one_context_are_serialised(ctx: Context) -> None:
    ctx.eval("var spans = []; var total = 0")
    code = """
    (() => {
      const start = Date.now();
      const before = total;
      while (Date.now() - start < 30) {}
      total = before + 1;  // lost if two runs overlapped
      spans.push([start, Date.now()]);
    })()
    """
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(5):
                ctx.eval(code)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert ctx.eval("total") == 20
    spans = sorted(ctx.eval("spans"))
    assert all(prev[1] <= nxt[0] for prev, nxt in zip(spans, spans[1:]))


def test_contexts_run_in_parallel_threads(engine: Engine) -> None:
    contexts = [engine.context() for _ in range(3)]
    results: dict[int, object] = {}

    def work(i: int) -> None:
        contexts[i].eval(f"var id = {i}")
        results[i] = contexts[i].eval("let s = 0; for (let k = 0; k < 2e6; k++) s += k % 7; [id, s]")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == {i: [i, results[0][1]] for i in range(3)}  # type: ignore[index]
    for c in contexts:
        c.close()


def test_close_terminates_a_run_and_later_calls_raise(engine: Engine) -> None:
    ctx = engine.context()
    failure: list[BaseException] = []
    running = threading.Event()
    ctx.expose("running", running.set)

    def spin() -> None:
        try:
            ctx.eval("running(); while (true) {}")
        except BaseException as exc:
            failure.append(exc)

    runner = threading.Thread(target=spin)
    runner.start()
    assert running.wait(30)
    ctx.close()
    runner.join(30)
    assert not runner.is_alive()
    assert failure and isinstance(failure[0], ExecutionCancelled)
    assert ctx.closed
    with pytest.raises(ContextClosedError):
        ctx.eval("1")
    with pytest.raises(ContextClosedError):
        ctx.heap_stats()
    ctx.close()


def test_a_dropped_context_is_freed(engine: Engine) -> None:
    ctx = engine.context()
    ctx.expose("f", lambda: 1)
    assert ctx.eval("f()") == 1
    ref = weakref.ref(ctx)
    del ctx
    gc.collect()
    assert ref() is None


def test_execute_in_a_context_streams_console(ctx: Context) -> None:
    lines: list[tuple[str, str]] = []
    outcome = ctx.execute(
        "console.warn('w'); console.log({a: 1}); 5", on_console=lambda *line: lines.append(line)
    )
    assert outcome.result == "5"
    assert lines == [("warn", "w"), ("log", "{ a: 1 }")]
    assert outcome.console == lines
