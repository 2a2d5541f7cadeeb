"""The public engine API: ``Engine().execute(code)`` runs one script in a fresh V8 isolate."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Callable, Literal

from . import _engine
from ._engine import Control, Outcome
from .context import Context
from .local_tools import LocalTools

Language = Literal["auto", "javascript", "typescript"]
ConsoleCallback = Callable[[str, str], None]

DEFAULT_CONSOLE_LIMIT_BYTES = _engine.DEFAULT_CONSOLE_LIMIT_BYTES

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape_lone_surrogates(text: str) -> str:
    """``text`` with each lone surrogate (which UTF-8 cannot carry) written as the JavaScript
    escape ``\\uXXXX``: the same code unit inside string, template and regular expression
    literals, and the same ``SyntaxError`` elsewhere."""
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class Engine:
    """Runs JavaScript in V8 isolates, one fresh isolate per execution.

    The constructor's arguments are defaults for every ``execute`` call; each call
    may override them. Several threads may call ``execute`` on one ``Engine`` at
    once: the GIL is released while JavaScript runs. For every limit, 0 means none
    (``max_result_bytes``, ``console_limit_bytes``); ``keep_console=False`` keeps no
    console calls in the outcome (``on_console`` still sees them).

    ``fetch`` is off unless ``allow_fetch`` lists origins (``"https://api.example.com"``,
    ``"http://127.0.0.1:8080"``: scheme, host and port); then the standard ``fetch`` reaches
    those origins only (redirects included; a host name that resolves to an internal
    address only when the origin names that address), with at most ``max_fetch_bytes`` of
    response body and ``max_fetch_requests`` requests per execution. A request waits for its
    server until the execution ends (at most 300 s for the response head and between two
    reads of the body); the end of the execution shuts its connections down.

    Result conversion (``Outcome.result`` is JSON text):
    objects, arrays, strings, numbers, booleans and null are plain JSON;
    ``undefined``, functions and symbols are dropped inside objects, ``null`` inside
    arrays and ``null`` at the top level; NaN and Infinity are ``null``; a BigInt is the
    string of its digits; a reference back to an ancestor is ``"[Circular]"``; a
    ``toJSON`` or getter that throws becomes ``"[Thrown: <exception>]"``; a Promise is
    awaited first.
    """

    def __init__(
        self,
        *,
        heap_limit_mb: int | None = None,
        timeout: float | None = None,
        language: Language = "auto",
        max_result_bytes: int = 0,
        console_limit_bytes: int = DEFAULT_CONSOLE_LIMIT_BYTES,
        keep_console: bool = True,
        allow_fetch: list[str] | tuple[str, ...] | None = None,
        max_fetch_bytes: int = _engine.DEFAULT_MAX_FETCH_BYTES,
        max_fetch_requests: int = _engine.DEFAULT_MAX_FETCH_REQUESTS,
    ) -> None:
        # Refused now, naming the entry, rather than at the first execution.
        self.allow_fetch = _engine.fetch_origins(list(allow_fetch)) if allow_fetch else None
        self.max_fetch_bytes = max_fetch_bytes
        self.max_fetch_requests = max_fetch_requests
        self.heap_limit_mb = heap_limit_mb
        self.timeout = timeout
        self.language: Language = language
        self.max_result_bytes = max_result_bytes
        self.console_limit_bytes = console_limit_bytes
        self.keep_console = keep_console

    def execute(
        self,
        code: str,
        *,
        heap: bytes | None = None,
        snapshot: bool = False,
        heap_limit_mb: int | None = None,
        timeout: float | None = None,
        language: Language | None = None,
        filename: str | None = None,
        on_console: ConsoleCallback | None = None,
        control: Control | None = None,
        max_result_bytes: int | None = None,
        fetch_relay: _engine.FetchRelay | None = None,
        tool_relay: _engine.ToolRelay | None = None,
        tools: Mapping[str, Mapping[str, Callable[..., Any]]] | None = None,
    ) -> Outcome:
        """Runs ``code`` as a script (V8's REPL mode: top-level ``await``, completion value kept) and returns its :class:`Outcome`.

        ``on_console(level, text)`` is called for each console call while the script
        runs, on the executing thread. ``control`` cancels it from another thread.
        ``heap`` restores a snapshot envelope produced by an earlier ``snapshot=True``
        execution; ``snapshot=True`` returns a new one in ``Outcome.snapshot``.
        Script errors are reported in the outcome (``outcome.raise_for_error()`` turns
        them into exceptions); a refused ``heap`` raises :class:`SnapshotError`.

        Any source text gives an outcome: nesting deeper than the parser allows is a
        ``SyntaxError`` naming the limit, and a lone surrogate in ``code`` (a ``str`` can
        hold one, UTF-8 cannot) stands for that UTF-16 code unit, as the escape
        ``\\uXXXX`` would (columns after it on its line shift by five).

        ``fetch_relay`` (the service's workers) hands the calls of ``fetch`` to the relay's
        callback instead of making them here; the engine's fetch settings then do not apply.

        ``tools`` gives the script a ``tools`` namespace of Python callables:
        ``tools={"calc": {"add": add}}`` makes ``await tools.calc.add({a: 1, b: 2})`` call
        ``add(a=1, b=2)`` on a thread of its own (calls awaited together run in parallel) and
        resolve with its return value (JSON); ``mcp.callTool("calc", "add", {...})`` is the
        same call. Arguments that do not bind to the callable's signature reject with a
        ``TypeError``, an exception it raises with a ``ToolError`` (see :mod:`mcp_v8.local_tools`).
        ``tool_relay`` (the service's workers) hands the calls to the relay instead.
        """
        if tools is not None:
            if tool_relay is not None:
                raise ValueError("give tools or tool_relay, not both")
            tool_relay = LocalTools(tools).relay()
        options: dict[str, Any] = {
            "heap": heap,
            "snapshot": snapshot,
            "heap_limit_mb": self.heap_limit_mb if heap_limit_mb is None else heap_limit_mb,
            "timeout": self.timeout if timeout is None else timeout,
            "language": language or self.language,
            "max_result_bytes": self.max_result_bytes if max_result_bytes is None else max_result_bytes,
            "console_limit_bytes": self.console_limit_bytes,
            "keep_console": self.keep_console,
            "on_console": on_console,
            "control": control,
            "allow_fetch": self.allow_fetch,
            "max_fetch_bytes": self.max_fetch_bytes,
            "max_fetch_requests": self.max_fetch_requests,
            "fetch_relay": fetch_relay,
            "tool_relay": tool_relay,
        }
        try:
            return _engine.execute(code, filename=filename, **options)
        except UnicodeEncodeError:
            # Only lone surrogates make a str unencodable: carry them, then run once more.
            code = _escape_lone_surrogates(code)
            if filename is not None:
                filename = _LONE_SURROGATE.sub("\ufffd", filename)
        return _engine.execute(code, filename=filename, **options)

    def prepare(self, *, heap_limit_mb: int | None = None) -> None:
        """Makes the isolate of the calling thread's next execution now, while the thread is
        idle (a warm isolate): the base context, no snapshot, ``heap_limit_mb`` (the engine's
        default when None). The next ``execute`` on this thread that restores no ``heap``, asks
        for no ``snapshot`` and has the same heap cap runs in it and skips creating an isolate
        (about 2 ms); any other execution creates its own and leaves it for a later one. It is
        used once, is held per thread (V8 binds an isolate to the thread that makes it) and is
        replaced by the next ``prepare``; it costs the memory of an empty isolate while held.
        Its clock starts when the execution does (``performance.timeOrigin``), and preparing it
        changes no limit of an execution running meanwhile."""
        _engine.prepare_isolate(heap_limit_mb=self.heap_limit_mb if heap_limit_mb is None else heap_limit_mb)

    @staticmethod
    def prepared() -> dict[str, int | None] | None:
        """The isolate the calling thread holds prepared (``{"heap_limit_mb": ...}``), or None."""
        return _engine.prepared_isolate()

    @staticmethod
    def discard_prepared() -> None:
        """Disposes the isolate the calling thread holds prepared, if any."""
        _engine.discard_prepared_isolate()

    def context(
        self,
        *,
        heap_limit_mb: int | None = None,
        heap: bytes | None = None,
        snapshot: bool = False,
        timeout: float | None = None,
        tools: Mapping[str, Mapping[str, Callable[..., Any]]] | None = None,
    ) -> Context:
        """A live :class:`~mcp_v8.context.Context`: one isolate whose globals persist across
        its calls, started from ``heap`` (an envelope) or the base context. ``snapshot=True``
        lets it make snapshots (``Context.snapshot()``; no ``WebAssembly`` then); ``tools``
        gives its scripts a ``tools`` namespace of Python callables (see ``execute``). The
        engine's defaults apply where an argument is None; a refused ``heap`` raises
        :class:`SnapshotError`."""
        return Context(
            heap_limit_mb=self.heap_limit_mb if heap_limit_mb is None else heap_limit_mb,
            heap=heap,
            snapshot=snapshot,
            timeout=self.timeout if timeout is None else timeout,
            language=self.language,
            max_result_bytes=self.max_result_bytes,
            console_limit_bytes=self.console_limit_bytes,
            allow_fetch=self.allow_fetch,
            max_fetch_bytes=self.max_fetch_bytes,
            max_fetch_requests=self.max_fetch_requests,
            tools=tools,
        )

    def evaluate(self, code: str, **kwargs: Any) -> Any:
        """Runs ``code`` and returns its completion value as a Python object, raising
        the matching :mod:`mcp_v8.errors` exception when it did not complete."""
        outcome = self.execute(code, **kwargs)
        outcome.raise_for_error()
        assert outcome.result is not None
        return json.loads(outcome.result)


def v8_version() -> str:
    """The version of the V8 the engine runs."""
    return _engine.v8_version()


def set_jitless(jitless: bool = True) -> None:
    """Runs V8 in this process without its JIT compilers (``jitless=True``): bytecode is
    interpreted, no machine code is generated at run time, and ``WebAssembly`` is not defined.
    Most V8 exploits go through the JIT compilers; the cost is speed on compute-heavy scripts
    (``benches/jitless.py``). V8 flags are process-wide and read when V8 starts, so call it
    before the first :class:`Engine` or :class:`Context` runs anything; once V8 started with
    the other setting it raises ``RuntimeError``. Heaps restore across both settings."""
    _engine.set_jitless(jitless)


def jitless() -> bool:
    """Whether V8 runs (or will start) in this process without its JIT compilers."""
    return _engine.jitless()


__all__ = ["Context", "Control", "Engine", "Outcome", "jitless", "set_jitless", "v8_version"]
