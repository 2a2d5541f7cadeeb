"""A Python client of the mcp-v8 HTTP API (``openapi.json``), on the standard library only.

>>> from mcp_v8.client import Client
>>> with Client("http://127.0.0.1:3000") as c:
...     first = c.execute("var n = 41; n")
...     c.execute("n += 1", heap=first.heap).value
42

One keep-alive connection per thread (a ``Client`` may be shared by threads), reopened once
when the server closed it. A 429 (queue full) is retried after its ``Retry-After``, up to
``retries`` times; every other refusal raises the :class:`~mcp_v8.errors.APIError` of its
status with the server's ``error`` text; an answer that is not the API's JSON (a proxy's error
page, a truncated body) raises the error of its status, or :class:`~mcp_v8.errors.InvalidResponseError`
for a 2xx, with an excerpt of the body. Listings are iterators that follow ``next_cursor``.
``requests`` and ``reconnects`` count the HTTP requests sent and the dropped keep-alive connections
reopened (a load generator reads them).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar
from urllib.parse import quote, urlencode, urlsplit

from .errors import (
    ExecutionCancelled,
    ExecutionTimeout,
    InvalidResponseError,
    JSError,
    MCPV8Error,
    api_error,
)

__all__ = [
    "Client",
    "Execution",
    "ExecutionSummary",
    "HeapInfo",
    "OutputPage",
    "SessionLogEntry",
    "SessionSummary",
]

_LONG_POLL_MS = 30_000  # the contract's largest wait_ms
_MAX_RETRY_AFTER = 30.0
_EXCERPT = 200  # characters of a body that is not JSON kept in the error


@dataclass(frozen=True)
class Execution:
    """An execution as ``GET /api/executions/{id}`` answers it. ``result`` is the JSON text of the
    completion value (``value`` parses it); ``heap`` the key of the snapshot it produced;
    ``js_error`` the script's error taken apart (name, message, stack, line, column), when the
    script's error ended it. ``waiting``: the script waits for a person's decision on the gated
    tool calls ``pending_tool_calls`` (see :meth:`Client.approve`), until ``approval_deadline``."""

    execution_id: str
    status: str
    started_at: str | None = None
    completed_at: str | None = None
    result: str | None = None
    error: str | None = None
    heap: str | None = None
    session: str | None = None
    tags: dict[str, str] | None = None
    duration_ms: float | None = None
    js_error: dict[str, Any] | None = None
    pending_tool_calls: list[dict[str, Any]] | None = None
    approval_deadline: str | None = None

    @property
    def done(self) -> bool:
        """Nothing runs it: it ended, or waits for a decision (``waiting``)."""
        return self.status != "running"

    @property
    def value(self) -> Any:
        """The completion value, parsed from ``result`` (None when there is none)."""
        return None if self.result is None else json.loads(self.result)

    def check(self) -> Execution:
        """Returns self when it completed or still runs; raises what the in-process engine raises
        for the same end: :class:`JSError` (failed), :class:`ExecutionTimeout`,
        :class:`ExecutionCancelled`."""
        kind: type[MCPV8Error] | None = {
            "failed": JSError,
            "timed_out": ExecutionTimeout,
            "cancelled": ExecutionCancelled,
        }.get(self.status)
        if kind is not None:
            raise kind(self.error or self.status)
        return self


@dataclass(frozen=True)
class ExecutionSummary:
    execution_id: str
    status: str
    started_at: str
    completed_at: str | None


@dataclass(frozen=True)
class SessionSummary:
    session: str
    executions: int
    first_activity_at: str
    last_activity_at: str
    latest_heap: str | None
    latest_heap_stored: bool | None = None  # false once that heap was pruned or deleted


@dataclass(frozen=True)
class SessionLogEntry:
    execution_id: str
    status: str
    heap_in: str | None
    heap: str | None
    tags: dict[str, str] | None
    started_at: str
    completed_at: str | None
    heap_stored: bool | None = None  # false once ``heap`` was pruned or deleted


@dataclass(frozen=True)
class OutputPage:
    """One page of console output (``GET /api/executions/{id}/output``)."""

    execution_id: str
    status: str
    data: str
    start_byte: int
    end_byte: int
    next_byte_offset: int
    start_line: int
    end_line: int
    next_line_offset: int
    has_more: bool
    total_bytes: int
    total_lines: int


@dataclass(frozen=True)
class HeapInfo:
    """A stored heap snapshot's metadata (``GET /api/heaps/{key}``)."""

    heap: str
    size_bytes: int
    created_at: str
    last_used_at: str
    session: str | None = None
    tags: dict[str, str] | None = None


_T = TypeVar("_T")


def _typed(cls: type[_T], doc: Mapping[str, Any]) -> _T:
    """``cls`` from a response object, keeping the fields it knows (a newer server may send more)."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = frozenset(f.name for f in fields(cls))  # type: ignore[arg-type]
    return cls(**{k: v for k, v in doc.items() if k in names})


_FIELD_NAMES: dict[type, frozenset[str]] = {}


class Client:
    """``Client(url, token=None)``: ``url`` is the server's base (``http://host:port``)."""

    def __init__(
        self, url: str, token: str | None = None, *, timeout: float = 60.0, retries: int = 5
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be http(s)://host[:port], not {url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._base = parts.path.rstrip("/")
        self._headers = {"Accept": "application/json"}
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout
        self.retries = retries
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self.requests = 0  # HTTP requests sent, retries included
        self.reconnects = 0  # keep-alive connections the server had closed, reopened

    # -- executions ----------------------------------------------------------------
    def execute(
        self,
        code: str,
        *,
        heap: str | None = None,
        session: str | None = None,
        tags: Mapping[str, str] | None = None,
        heap_memory_max_mb: int | None = None,
        execution_timeout_secs: int | None = None,
        wall_timeout_secs: int | None = None,
        max_tool_calls: int | None = None,
        snapshot: bool | None = None,
        live: bool | None = None,
        wait: bool = True,
        timeout: float | None = None,
    ) -> Execution:
        """Submits ``code``. With ``wait`` (the default) returns the execution once it has ended,
        or as it stands when ``timeout`` seconds (None: no limit) have passed; without, at once
        (status ``running``, only ``execution_id`` known). ``live`` (with a ``session``): a step
        in the session's live context. The script's own failure is not an exception here: see
        :meth:`Execution.check`."""
        body: dict[str, Any] = {"code": code}
        for name, value in (
            ("heap", heap),
            ("session", session),
            ("tags", dict(tags) if tags is not None else None),
            ("heap_memory_max_mb", heap_memory_max_mb),
            ("execution_timeout_secs", execution_timeout_secs),
            ("wall_timeout_secs", wall_timeout_secs),
            ("max_tool_calls", max_tool_calls),
            ("snapshot", snapshot),
            ("live", live),
        ):
            if value is not None:
                body[name] = value
        deadline = None if timeout is None else time.monotonic() + timeout
        if wait:
            body["wait_ms"] = _wait_ms(deadline)
        doc = self._request("POST", "/api/exec", body)
        if not wait or "status" not in doc:
            return Execution(execution_id=doc["execution_id"], status="running")
        execution = _typed(Execution, doc)
        if execution.done or _wait_ms_left(deadline) == 0:
            return execution
        return self.wait(execution.execution_id, None if deadline is None else deadline - time.monotonic())

    def get(self, execution_id: str) -> Execution:
        return _typed(Execution, self._request("GET", f"/api/executions/{_segment(execution_id)}"))

    def wait(self, execution_id: str, timeout: float | None = None) -> Execution:
        """Long-polls until the execution ends, or ``timeout`` seconds (None: no limit) pass."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ms = _wait_ms(deadline)
            doc = self._request("GET", f"/api/executions/{_segment(execution_id)}", query={"wait_ms": ms})
            execution = _typed(Execution, doc)
            if execution.done or _wait_ms_left(deadline) == 0:
                return execution

    def approve(self, execution_id: str, decisions: Iterable[Mapping[str, Any]]) -> Execution:
        """Decides every tool call a waiting execution holds, each once
        (``{"call_id", "approved", "reason"?}``); returns it running again. Needs a client made
        with the approver's token (``--approver-token``)."""
        body = {"decisions": [dict(d) for d in decisions]}
        return _typed(
            Execution, self._request("POST", f"/api/executions/{_segment(execution_id)}/approve", body)
        )

    def cancel(self, execution_id: str) -> bool:
        """True when this cancel stopped the execution; False when it had already ended or no
        execution has that id (the server answers both with a refused CancelResult)."""
        doc = self._request("POST", f"/api/executions/{_segment(execution_id)}/cancel", accept=(400,))
        return bool(doc.get("ok"))

    def tool_calls(self, execution_id: str) -> list[dict[str, Any]]:
        """The records of the execution's tool calls, in call order (the contract's ToolCallRecord)."""
        doc = self._request("GET", f"/api/executions/{_segment(execution_id)}/tool-calls")
        return list(doc["tool_calls"])

    def output_pages(
        self, execution_id: str, *, follow: bool = True, byte_offset: int = 0
    ) -> Iterator[OutputPage]:
        """Pages of console output from ``byte_offset``; with ``follow``, until the execution has
        ended and all of its output was read (long-polling between pages while it runs)."""
        offset = byte_offset
        while True:
            doc = self._request(
                "GET", f"/api/executions/{_segment(execution_id)}/output", query={"byte_offset": offset}
            )
            page = _typed(OutputPage, doc)
            offset = page.next_byte_offset
            if page.data:
                yield page
            if page.has_more:
                continue
            # The server reads the status before the page, and seals the output before an
            # execution ends: a page that says it ended holds the last of it.
            if not follow or page.status != "running":
                return
            self._request(
                "GET", f"/api/executions/{_segment(execution_id)}", query={"wait_ms": 250}
            )  # returns at once when it ends

    def output(self, execution_id: str, *, follow: bool = True) -> Iterator[str]:
        """Console output as text, line by line (each with its newline, but a last unfinished one),
        following the execution while it runs (``follow``)."""
        pending = ""
        for page in self.output_pages(execution_id, follow=follow):
            pending += page.data
            *lines, pending = pending.split("\n")
            for line in lines:
                yield line + "\n"
        if pending:
            yield pending

    def executions(
        self, *, status: str | None = None, session: str | None = None, page_size: int = 100
    ) -> Iterator[ExecutionSummary]:
        """Every retained execution, newest first (of ``status`` / ``session`` when given)."""
        query: dict[str, Any] = {"limit": page_size}
        if status is not None:
            query["status"] = status
        if session is not None:
            query["session"] = session
        for doc in self._pages("/api/executions", query, "executions"):
            yield _typed(ExecutionSummary, doc)

    # -- sessions ------------------------------------------------------------------
    def sessions(self, *, page_size: int = 100) -> Iterator[SessionSummary]:
        """Every session, latest activity first."""
        for doc in self._pages("/api/sessions", {"limit": page_size}, "sessions"):
            yield _typed(SessionSummary, doc)

    def session_log(self, session: str, *, page_size: int = 100) -> Iterator[SessionLogEntry]:
        """The session's executions, oldest first. Raises :class:`~mcp_v8.errors.NotFoundError`
        for a session with no retained execution."""
        for doc in self._pages("/api/sessions/log", {"session": session, "limit": page_size}, "executions"):
            yield _typed(SessionLogEntry, doc)

    # -- heaps ---------------------------------------------------------------------
    def heap(self, key: str) -> HeapInfo:
        """The metadata of the heap ``key``; raises :class:`~mcp_v8.errors.NotFoundError`."""
        return _typed(HeapInfo, self._request("GET", f"/api/heaps/{_segment(key)}"))

    def query_heaps(self, tags: Mapping[str, str], *, page_size: int = 100) -> Iterator[HeapInfo]:
        """Every heap whose tags hold all pairs of ``tags``, newest first."""
        cursor: str | None = None
        while True:
            body: dict[str, Any] = {"tags": dict(tags), "limit": page_size}
            if cursor:
                body["cursor"] = cursor
            doc = self._request("POST", "/api/heaps/query", body)
            for item in doc["heaps"]:
                yield _typed(HeapInfo, item)
            cursor = doc.get("next_cursor")
            if not cursor:
                return

    def tag_heap(self, key: str, patch: Mapping[str, str | None]) -> HeapInfo:
        """Changes the heap's tags with a JSON merge patch (a string sets a key, None removes
        it) and returns its metadata."""
        return _typed(HeapInfo, self._request("PATCH", f"/api/heaps/{_segment(key)}/tags", dict(patch)))

    def delete_heap(self, key: str) -> None:
        """Removes the heap; raises :class:`~mcp_v8.errors.ConflictError` while an execution
        that resumes it is queued or running, :class:`~mcp_v8.errors.NotFoundError` when absent."""
        self._request("DELETE", f"/api/heaps/{_segment(key)}")

    # -- the server ----------------------------------------------------------------
    def version(self) -> dict[str, Any]:
        return self._request("GET", "/api/version")

    def stats(self) -> dict[str, Any]:
        return self._request("GET", "/api/stats")

    def usage(self, tenant: str | None = None) -> dict[str, Any]:
        """The quotas of the token's tenant and what it uses of each (``GET /api/usage``);
        ``tenant``: another tenant's, for a token with the ``admin`` scope."""
        return self._request("GET", "/api/usage", query=None if tenant is None else {"tenant": tenant})

    def close(self) -> None:
        """Closes every connection this client opened (in any thread)."""
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -----------------------------------------------------------------
    def _pages(self, path: str, query: dict[str, Any], key: str) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            doc = self._request("GET", path, query={**query, **({"cursor": cursor} if cursor else {})})
            yield from doc[key]
            cursor = doc.get("next_cursor")
            if not cursor:
                return

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            factory = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            # A long-poll answers within wait_ms (at most 30 s): the socket waits longer than that.
            conn = factory(self._host, self._port, timeout=self.timeout + _LONG_POLL_MS / 1000)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
            with self._lock:
                if conn in self._connections:
                    self._connections.remove(conn)

    def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, Any] | None = None,
        accept: tuple[int, ...] = (),
    ) -> dict[str, Any]:
        target = self._base + path + ("?" + urlencode(query) if query else "")
        payload = None if body is None else json.dumps(body).encode("utf-8")
        headers = dict(self._headers)
        if payload is not None:
            headers["Content-Type"] = "application/json"
        attempt = 0
        while True:
            status, retry_after, doc = self._send(method, target, payload, headers)
            if status < 300 or status in accept:
                return doc
            if status == 429 and attempt < self.retries:
                attempt += 1
                time.sleep(
                    min(_MAX_RETRY_AFTER, retry_after if retry_after is not None else 0.1 * 2**attempt)
                )
                continue
            raise api_error(status, str(doc.get("error") or f"HTTP {status}"))

    def _send(
        self, method: str, target: str, payload: bytes | None, headers: dict[str, str]
    ) -> tuple[int, float | None, dict[str, Any]]:
        for attempt in (0, 1):
            conn = self._connection()
            with self._lock:
                self.requests += 1
            try:
                conn.request(method, target, body=payload, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A keep-alive connection the server closed meanwhile: once more on a new one.
                self._drop_connection()
                if attempt:
                    raise
                with self._lock:
                    self.reconnects += 1
                continue
            except BaseException:
                self._drop_connection()
                raise
            if resp.getheader("Connection", "").lower() == "close":
                self._drop_connection()
            try:
                doc = json.loads(data) if data else {}
            except ValueError:
                doc = None
            if not isinstance(doc, dict):
                excerpt = data[: _EXCERPT * 4].decode("utf-8", "replace")[:_EXCERPT]
                kind = resp.getheader("Content-Type") or "no Content-Type"
                message = f"not a JSON object ({kind}): {excerpt!r}"
                if resp.status < 300:
                    raise InvalidResponseError(resp.status, message)
                doc = {"error": message}
            return resp.status, _retry_after(resp.getheader("Retry-After")), doc
        raise AssertionError("unreachable")


def _segment(value: str) -> str:
    return quote(value, safe="")


def _retry_after(header: str | None) -> float | None:
    try:
        return max(0.0, float(header)) if header is not None else None
    except ValueError:
        return None


def _wait_ms_left(deadline: float | None) -> int | None:
    """Milliseconds until ``deadline`` (None: no deadline), never below 0."""
    if deadline is None:
        return None
    return max(0, int((deadline - time.monotonic()) * 1000))


def _wait_ms(deadline: float | None) -> int:
    left = _wait_ms_left(deadline)
    return _LONG_POLL_MS if left is None else min(_LONG_POLL_MS, left)
