"""``mcp-v8 mcp``: the MCP server on stdin/stdout, one JSON-RPC message per line.

stdout carries nothing but protocol: the process's file descriptor 1 is pointed at stderr
before anything else runs (so a worker process, a library or a stray print writes to stderr),
and the messages go to a private duplicate of the original stdout. Requests run on a pool of
threads, so a ``ping`` or a ``notifications/cancelled`` is answered while a ``run_js`` waits.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import sys
import threading
from typing import Any, BinaryIO

from ..operations import Operations
from .protocol import (
    BATCH_VERSIONS,
    INVALID_REQUEST,
    LATEST_VERSION,
    ProtocolError,
    Request,
    Server,
    classify,
    error_response,
    negotiate,
    parse,
    progress_token,
)
from .tools import Call

log = logging.getLogger("mcp_v8.mcp")

MAX_LINE_BYTES = 64 << 20  # a message longer than this is refused, not buffered further
REQUEST_THREADS = 32


def claim_stdout() -> BinaryIO:
    """The original stdout, for protocol only; fd 1 becomes a copy of stderr."""
    sys.stdout.flush()
    protocol = os.fdopen(os.dup(1), "wb", buffering=0)  # os.dup: not inherited by workers
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return protocol


class StdioSession:
    """One client on one pair of streams: the negotiated version, the requests in flight."""

    def __init__(self, server: Server, out: BinaryIO, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._server = server
        self._out = out
        self._write_lock = threading.Lock()
        self._max_line = max_line_bytes
        self._version = LATEST_VERSION
        self._calls_lock = threading.Lock()
        self._calls: dict[Any, Call] = {}
        self._pool = concurrent.futures.ThreadPoolExecutor(
            REQUEST_THREADS, thread_name_prefix="mcp-v8-request"
        )

    def run(self, stream: BinaryIO) -> None:
        """Serves messages from ``stream`` until it ends. Then the client is gone: the requests
        in flight are cancelled (their executions too) and get no response."""
        try:
            while True:
                line = stream.readline(self._max_line + 1)
                if not line:
                    break
                if len(line) > self._max_line and not line.endswith(b"\n"):
                    self._skip_rest(stream)
                    self._send(
                        error_response(None, INVALID_REQUEST, f"message longer than {self._max_line} bytes")
                    )
                    continue
                if line.strip():
                    self._receive(line)
        finally:
            self._cancel_all()
            self._pool.shutdown(wait=True)

    def _skip_rest(self, stream: BinaryIO) -> None:
        while True:
            chunk = stream.readline(self._max_line)
            if not chunk or chunk.endswith(b"\n"):
                return

    def _receive(self, line: bytes) -> None:
        try:
            message = parse(line)
        except ProtocolError as e:
            self._send(error_response(None, e.code, str(e)))
            return
        if isinstance(message, list):
            if self._version not in BATCH_VERSIONS or not message:
                why = (
                    "an empty batch"
                    if not message
                    else f"batches are not part of protocol version {self._version}"
                )
                self._send(error_response(None, INVALID_REQUEST, f"invalid request: {why}"))
                return
            self._pool.submit(self._batch, message)
            return
        request = self._request(message)
        if request is None:
            return
        if request.method == "initialize":  # in order: later messages speak its version
            self._version = negotiate(request.params["protocolVersion"])
            self._send(self._server.handle(request, self._version))
            return
        if request.is_notification:
            self._notified(request)
            return
        # Registered here, in order: a cancel right behind its request always finds the call.
        call = Call()
        token = progress_token(request)
        if token is not None and request.method == "tools/call":
            call.progress = self._progress_sender(token)
        with self._calls_lock:
            self._calls[request.id] = call
        self._pool.submit(self._respond, request, call)

    def _request(self, message: Any) -> Request | None:
        try:
            return classify(message)
        except ProtocolError as e:
            if e.notification:  # a notification is never answered, even to say it is wrong
                log.warning("ignored a malformed notification: %s", e)
            else:
                self._send(error_response(e.id, e.code, str(e)))
            return None

    def _batch(self, messages: list[Any]) -> None:
        # Every message is checked before any runs: one that is not JSON-RPC refuses the batch,
        # as POST /mcp does.
        requests = []
        for message in messages:
            try:
                requests.append(classify(message))
            except ProtocolError as e:
                self._send(error_response(e.id, e.code, str(e)))
                return
        responses = []
        for request in requests:
            if request is None:
                continue
            if request.is_notification:
                self._notified(request)
                continue
            response = self._server.handle(request, self._version)
            if response is not None:
                responses.append(response)
        if responses:
            self._send(responses)

    def _notified(self, request: Request) -> None:
        if request.method == "notifications/cancelled":
            with self._calls_lock:
                call = self._calls.get(request.params.get("requestId"))
            execution_id = call.cancel() if call is not None else None
            if execution_id is not None:
                self._server.ops.cancel(execution_id)

    def _respond(self, request: Request, call: Call) -> None:
        try:
            response = self._server.handle(request, self._version, call)
        finally:
            with self._calls_lock:
                self._calls.pop(request.id, None)
        if not call.cancelled.is_set():  # a cancelled request gets no response
            self._send(response)

    def _progress_sender(self, token: Any) -> Any:
        count = 0

        def send(text: str) -> None:
            nonlocal count
            count += 1
            params = {"progressToken": token, "progress": count, "message": text}
            self._send({"jsonrpc": "2.0", "method": "notifications/progress", "params": params})

        return send

    def _cancel_all(self) -> None:
        with self._calls_lock:
            calls = list(self._calls.values())
        for call in calls:
            execution_id = call.cancel()
            if execution_id is not None:
                self._server.ops.cancel(execution_id)

    def _send(self, message: Any) -> None:
        if message is None:
            return
        data = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
        with self._write_lock:
            try:
                self._out.write(data)
                self._out.flush()
            except (BrokenPipeError, ValueError):  # the client went away; the reader sees EOF
                pass


def serve_stdio(ops: Operations, stdin: BinaryIO, stdout: BinaryIO) -> None:
    """Serves one MCP client on ``stdin``/``stdout`` until stdin ends."""
    StdioSession(Server(ops), stdout).run(stdin)
