"""Live contexts: one V8 isolate whose globals persist from call to call, for programs that
embed the engine (what ``MiniRacer`` is to PyMiniRacer's users), with heap snapshots.

``Engine.context()`` makes one; see :class:`Context`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import json
import re
import threading
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from . import _engine
from ._engine import Control, Outcome
from .errors import ContextBusyError, ContextClosedError
from .local_tools import TOOL_CALL, LocalTools

# A byte string travels beside the JSON; in it, it is this one-key object naming its index.
BYTES_KEY = "\x00mcp-v8:bytes"

_NAME = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")

# The contexts whose exposed function the current thread or task is running: a call back
# into one of them could never start (that context waits for the function).
_RUNNING_CALLBACK_OF: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar(
    "mcp_v8_running_callback_of", default=frozenset()
)


def encode(values: Any) -> tuple[str, list[bytes]]:
    """``values`` as JSON text plus the byte strings its markers name."""
    buffers: list[bytes] = []

    def default(value: Any) -> Any:
        if isinstance(value, (bytes, bytearray, memoryview)):
            buffers.append(bytes(value))
            return {BYTES_KEY: len(buffers) - 1}
        raise TypeError(
            f"a {type(value).__name__} cannot cross to JavaScript: values are JSON types "
            "(dict, list, str, int, float, bool, None) and bytes"
        )

    try:
        text = json.dumps(values, default=default, allow_nan=False, separators=(",", ":"))
    except ValueError as exc:
        raise ValueError(f"{exc}: NaN and infinities cannot cross to JavaScript as JSON") from None
    return text, buffers


def decode(text: str, buffers: list[bytes]) -> Any:
    """The value of JSON ``text`` whose markers name ``buffers`` (bytes in the result)."""
    if not buffers:
        return json.loads(text)

    def hook(obj: dict[str, Any]) -> Any:
        if len(obj) == 1 and BYTES_KEY in obj:
            index = obj[BYTES_KEY]
            if isinstance(index, int) and 0 <= index < len(buffers):
                return buffers[index]
        return obj

    return json.loads(text, object_hook=hook)


class HeapSnapshot(bytes):
    """The envelope of a context's heap: pass it as ``heap=`` to ``Engine.execute`` or
    ``Engine.context``. ``key`` is its key (the SHA-256 of its payload, as the service stores
    it), ``raw_bytes`` the size of V8's blob before compression."""

    key: str
    raw_bytes: int

    def __new__(cls, envelope: bytes, key: str, raw_bytes: int) -> HeapSnapshot:
        self = super().__new__(cls, envelope)
        self.key = key
        self.raw_bytes = raw_bytes
        return self


def _is_async(func: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(func):
        return True
    # An object whose __call__ is an async def.
    return not inspect.isroutine(func) and inspect.iscoroutinefunction(type(func).__call__)


def _dispatcher(ref: weakref.ref[Context]) -> Callable[[int, str, str, list[bytes]], None]:
    # A weak reference: the native context holds the dispatcher, and a strong one would keep
    # the Context alive through a cycle no collector sees.
    def dispatch(call_id: int, name: str, args_json: str, buffers: list[bytes]) -> None:
        context = ref()
        if context is not None:
            context._dispatch(call_id, name, args_json, buffers)

    return dispatch


class Context:
    """A live V8 context: its globals persist across ``eval``, ``execute`` and ``call``.

    Made by :meth:`mcp_v8.Engine.context`. It owns one isolate (and a thread that does all
    of its V8 work); ``close()`` (or leaving a ``with`` block) disposes it.

    **Values** cross as JSON types: ``eval`` and ``call`` return the completion value as a
    Python object, with the fallbacks ``Engine.evaluate`` documents (``undefined`` is
    ``None``, a BigInt the string of its digits, cycles ``"[Circular]"``, a promise
    awaited); an ``ArrayBuffer`` or typed array, anywhere in the value, is ``bytes``.
    Arguments of ``call`` and of exposed functions go the other way: JSON types, and
    ``bytes`` (or ``bytearray``, ``memoryview``) as a ``Uint8Array``. JS objects are copied,
    not proxied.

    **Limits**: ``timeout`` per call (a ``TimeoutError``, the context stays usable); the
    heap cap per context, ArrayBuffer memory included. A run that goes over the heap cap
    raises :class:`~mcp_v8.errors.HeapLimitExceeded` and closes the context: every later
    call raises :class:`~mcp_v8.errors.ContextClosedError`.

    **Threads**: calls from several threads (or tasks) are serialised, each waiting for the
    one before it; the GIL is released while V8 runs, so different contexts run in
    parallel. An exposed function that calls back into the context running it raises
    :class:`~mcp_v8.errors.ContextBusyError` (that call could never start).

    **Tools**: ``tools={"server": {"tool": callable}}`` gives its scripts the ``tools``
    namespace, as ``Engine.execute(tools=...)`` does (:mod:`mcp_v8.local_tools`).

    **Snapshots**: a context made with ``snapshot=True`` runs in V8's ``SnapshotCreator``
    (no ``WebAssembly`` there, in V8 10.2) and ``snapshot()`` returns its heap; it then goes
    on from that snapshot, exposed functions included.
    """

    def __init__(
        self,
        *,
        heap_limit_mb: int | None = None,
        heap: bytes | None = None,
        snapshot: bool = False,
        timeout: float | None = None,
        language: str = "auto",
        max_result_bytes: int = 0,
        console_limit_bytes: int = _engine.DEFAULT_CONSOLE_LIMIT_BYTES,
        allow_fetch: list[str] | None = None,
        max_fetch_bytes: int = _engine.DEFAULT_MAX_FETCH_BYTES,
        max_fetch_requests: int = _engine.DEFAULT_MAX_FETCH_REQUESTS,
        tools: Mapping[str, Mapping[str, Callable[..., Any]]] | None = None,
        _native: Callable[..., Any] = _engine.LiveContext,
    ) -> None:
        self._tools = LocalTools(tools or {})
        self.heap_limit_mb = heap_limit_mb
        self.timeout = timeout
        self.language = language
        self.max_result_bytes = max_result_bytes
        self.console_limit_bytes = console_limit_bytes
        self.snapshots = snapshot
        self._functions: dict[str, Callable[..., Any]] = {}
        self._run_lock = threading.Lock()  # one run at a time; held while V8 works
        self._state = threading.Lock()  # guards everything below
        self._pending: dict[int, concurrent.futures.Future[Any]] = {}
        self._run_loop: asyncio.AbstractEventLoop | None = None
        self._run_control: Control | None = None
        self._private_loop: asyncio.AbstractEventLoop | None = None
        self._private_thread: threading.Thread | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._closed = False
        # _native: the engine's LiveContext; the tests of the hand-offs below pass a fake.
        self._live: _engine.LiveContext = _native(
            heap=heap,
            snapshots=snapshot,
            heap_limit_mb=heap_limit_mb,
            dispatch=_dispatcher(weakref.ref(self)),
            allow_fetch=allow_fetch,
            max_fetch_bytes=max_fetch_bytes,
            max_fetch_requests=max_fetch_requests,
        )

    # ---- running code -------------------------------------------------------------------

    def eval(self, code: str, *, timeout: float | None = None, filename: str | None = None) -> Any:
        """Runs ``code`` and returns its completion value as a Python value; raises the
        :mod:`mcp_v8.errors` exception of a failure (``JSError``, ``ExecutionTimeout``, ...)."""
        outcome = self._run_script(code, timeout, filename, None, None, bytes_result=True, loop=None)
        return self._value(outcome)

    def execute(
        self,
        code: str,
        *,
        timeout: float | None = None,
        filename: str | None = None,
        on_console: Callable[[str, str], None] | None = None,
        control: Control | None = None,
    ) -> Outcome:
        """Runs ``code`` and returns its :class:`~mcp_v8.Outcome` (console included), as
        ``Engine.execute`` does; failures are in the outcome, not raised."""
        return self._run_script(code, timeout, filename, on_console, control, bytes_result=False, loop=None)

    def call(self, path: str, *args: Any, timeout: float | None = None) -> Any:
        """Calls the JS function at the dotted ``path`` (``"f"``, ``"lib.util.f"``) with
        ``args`` converted from Python and returns its value (a promise is awaited)."""
        outcome = self._run_call(path, args, timeout, None, loop=None)
        return self._value(outcome)

    async def eval_async(
        self, code: str, *, timeout: float | None = None, filename: str | None = None
    ) -> Any:
        """``eval`` off the event loop. Cancelling the task terminates the script; the
        context stays usable. An exposed ``async def`` runs on this event loop."""
        loop = asyncio.get_running_loop()
        control = Control()
        outcome = await self._off_loop(
            loop,
            control,
            lambda: self._run_script(code, timeout, filename, None, control, bytes_result=True, loop=loop),
        )
        return self._value(outcome)

    async def call_async(self, path: str, *args: Any, timeout: float | None = None) -> Any:
        """``call`` off the event loop; cancelling the task terminates the call."""
        loop = asyncio.get_running_loop()
        control = Control()
        outcome = await self._off_loop(
            loop, control, lambda: self._run_call(path, args, timeout, control, loop=loop)
        )
        return self._value(outcome)

    async def execute_async(
        self, code: str, *, timeout: float | None = None, filename: str | None = None
    ) -> Outcome:
        """``execute`` off the event loop; cancelling the task terminates the script."""
        loop = asyncio.get_running_loop()
        control = Control()
        return await self._off_loop(
            loop,
            control,
            lambda: self._run_script(code, timeout, filename, None, control, bytes_result=False, loop=loop),
        )

    # ---- Python functions for JavaScript ------------------------------------------------

    def expose(self, name: str, func: Callable[..., Any]) -> None:
        """Makes ``func`` the global JS function ``name``. Calling it returns a promise of
        its result; an exception it raises rejects that promise with an ``Error`` whose
        ``name`` is the exception's class and ``message`` its text.

        A plain function runs on a worker thread of the context. An ``async def`` runs on
        the event loop of the ``*_async`` call whose script calls it; under ``eval``,
        ``execute`` and ``call`` (no event loop) it runs on a private event loop of the
        context, in a thread of its own. A call still running when its script ends
        (cancelled, timed out) is cancelled if it is a coroutine; a plain function runs to its
        end and its result is dropped. Either way the context is free at once.
        """
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(f"name must be a JavaScript identifier, not {name!r}")
        if not callable(func):
            raise TypeError("func must be callable")
        self._check_open()
        self._functions[name] = func
        self._live.expose(name)

    def _dispatch(self, call_id: int, name: str, args_json: str, buffers: list[bytes]) -> None:
        # On the context's thread, inside a run: hand the call on, never wait for it.
        if name == TOOL_CALL:
            self._dispatch_tool(call_id, args_json)
            return
        func = self._functions.get(name)
        if func is None:
            self._live.reply(
                call_id,
                False,
                json.dumps(
                    {
                        "name": "ReferenceError",
                        "message": f"no Python function is exposed as {name} in this context",
                    }
                ),
            )
            return
        args = decode(args_json, buffers)
        marker = _RUNNING_CALLBACK_OF.get() | {id(self)}
        future: concurrent.futures.Future[Any]
        if _is_async(func):
            loop = self._run_loop or self._loop_of_context()
            future = asyncio.run_coroutine_threadsafe(self._await_callback(marker, func, args), loop)
        else:
            run = contextvars.copy_context().run
            future = self._callback_executor().submit(
                run, self._call_callback, marker, func, args, self._run_loop
            )
        with self._state:
            self._pending[call_id] = future
        future.add_done_callback(lambda done: self._answer(call_id, done))

    def _dispatch_tool(self, call_id: int, args_json: str) -> None:
        """A call of the script's ``tools``: answered by a Python callable, off this thread."""
        (request,) = json.loads(args_json)
        future = self._callback_executor().submit(contextvars.copy_context().run, self._tools.answer, request)
        with self._state:
            self._pending[call_id] = future
        future.add_done_callback(lambda done: self._answer_tool(call_id, done))

    def _answer_tool(self, call_id: int, future: concurrent.futures.Future[str]) -> None:
        with self._state:
            if self._pending.pop(call_id, None) is None:
                return  # its run is over
        if not future.cancelled():
            self._live.reply(call_id, True, future.result(), [])

    def _call_callback(
        self,
        marker: frozenset[int],
        func: Callable[..., Any],
        args: list[Any],
        loop: asyncio.AbstractEventLoop | None,
    ) -> Any:
        _RUNNING_CALLBACK_OF.set(marker)
        result = func(*args)
        if inspect.isawaitable(result):  # a plain function that returned a coroutine
            target = loop or self._loop_of_context()
            result = asyncio.run_coroutine_threadsafe(_awaited(result), target).result()
        return result

    @staticmethod
    async def _await_callback(
        marker: frozenset[int], func: Callable[..., Awaitable[Any]], args: list[Any]
    ) -> Any:
        _RUNNING_CALLBACK_OF.set(marker)
        return await func(*args)

    def _answer(self, call_id: int, future: concurrent.futures.Future[Any]) -> None:
        with self._state:
            if self._pending.pop(call_id, None) is None:
                return  # its run is over
        if future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            try:
                text, buffers = encode(future.result())
            except (TypeError, ValueError) as bad:
                exc = TypeError(f"the function's result cannot cross to JavaScript: {bad}")
            else:
                self._live.reply(call_id, True, text, buffers)
                return
        self._live.reply(call_id, False, json.dumps({"name": type(exc).__name__, "message": str(exc)}))

    # ---- state --------------------------------------------------------------------------

    def snapshot(self) -> HeapSnapshot:
        """The context's heap as an envelope that ``Engine.execute(heap=...)`` and
        ``Engine.context(heap=...)`` resume. Needs ``snapshot=True`` at creation. The
        context goes on from the snapshot (V8 ends the isolate that makes one): globals
        and exposed functions carry on; it costs about as much as a snapshot execution."""
        self._check_open()
        if not self.snapshots:
            raise ValueError("this context cannot make snapshots: create it with snapshot=True")
        with self._run_lock:
            envelope, key, raw_bytes, _ = self._live.snapshot()
        return HeapSnapshot(envelope, key, raw_bytes)

    def heap_stats(self) -> dict[str, int]:
        """V8's heap statistics (``total_heap_size``, ``used_heap_size``,
        ``heap_size_limit``, ``total_physical_size``, ``malloced_memory``) and the
        ArrayBuffer budget's ``external_memory`` and ``external_peak``, in bytes."""
        self._check_open()
        with self._run_lock:
            return self._live.heap_stats()

    @property
    def closed(self) -> bool:
        return self._closed or self._live.closed

    def close(self) -> None:
        """Terminates a run in progress, disposes the isolate and stops the context's
        threads. Idempotent."""
        with self._state:
            if self._closed:
                return
            self._closed = True
            control, loop, thread, executor = (
                self._run_control,
                self._private_loop,
                self._private_thread,
                self._executor,
            )
        if control is not None:
            control.cancel()
        self._live.close()
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            if not thread.is_alive():
                loop.close()

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<mcp_v8.Context {state} heap_limit_mb={self.heap_limit_mb} snapshot={self.snapshots}>"

    # ---- plumbing -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ContextClosedError("the context is closed")

    def _run(
        self, invoke: Callable[[], Outcome], control: Control, loop: asyncio.AbstractEventLoop | None
    ) -> Outcome:
        if id(self) in _RUNNING_CALLBACK_OF.get():
            raise ContextBusyError(
                "a function exposed to this context called back into it while it waits for that "
                "function: the call could never start"
            )
        self._check_open()
        with self._run_lock:
            with self._state:
                self._run_loop = loop
                self._run_control = control
            try:
                return invoke()
            finally:
                with self._state:
                    self._run_loop = None
                    self._run_control = None
                    stale = list(self._pending.values())
                    self._pending.clear()
                for future in stale:  # their promises are gone with the run
                    future.cancel()

    def _run_script(
        self,
        code: str,
        timeout: float | None,
        filename: str | None,
        on_console: Callable[[str, str], None] | None,
        control: Control | None,
        *,
        bytes_result: bool,
        loop: asyncio.AbstractEventLoop | None,
    ) -> Outcome:
        control = control or Control()
        return self._run(
            lambda: self._live.run(
                code,
                timeout=self.timeout if timeout is None else timeout,
                language=self.language,
                filename=filename,
                max_result_bytes=self.max_result_bytes,
                console_limit_bytes=self.console_limit_bytes,
                bytes_result=bytes_result,
                on_console=on_console,
                control=control,
            ),
            control,
            loop,
        )

    def _run_call(
        self,
        path: str,
        args: tuple[Any, ...],
        timeout: float | None,
        control: Control | None,
        *,
        loop: asyncio.AbstractEventLoop | None,
    ) -> Outcome:
        if not isinstance(path, str) or not path:
            raise ValueError("path must name a function, such as 'f' or 'lib.f'")
        text, buffers = encode(list(args))
        control = control or Control()
        return self._run(
            lambda: self._live.call(
                path,
                text,
                buffers,
                timeout=self.timeout if timeout is None else timeout,
                max_result_bytes=self.max_result_bytes,
                console_limit_bytes=self.console_limit_bytes,
                control=control,
            ),
            control,
            loop,
        )

    @staticmethod
    def _value(outcome: Outcome) -> Any:
        outcome.raise_for_error()
        assert outcome.result is not None
        return decode(outcome.result, outcome.buffers)

    async def _off_loop(
        self, loop: asyncio.AbstractEventLoop, control: Control, invoke: Callable[[], Outcome]
    ) -> Outcome:
        # V8 runs on the context's own thread; this only waits for it. Exposed functions
        # run on the context's executor, never on the loop's default one.
        waiter = loop.run_in_executor(None, invoke)
        try:
            return await asyncio.shield(waiter)
        except asyncio.CancelledError:
            control.cancel()
            await asyncio.wait({waiter})  # the script stops promptly; then the context is free
            raise

    def _loop_of_context(self) -> asyncio.AbstractEventLoop:
        with self._state:
            if self._private_loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="mcp-v8-context-loop", daemon=True)
                thread.start()
                self._private_loop, self._private_thread = loop, thread
            return self._private_loop

    def _callback_executor(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._state:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=4, thread_name_prefix="mcp-v8-callback"
                )
            return self._executor


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


__all__ = ["BYTES_KEY", "Context", "HeapSnapshot", "decode", "encode"]
