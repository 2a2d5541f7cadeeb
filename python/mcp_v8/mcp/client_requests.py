"""Requests the server sends the client over stdio (``elicitation/create``: a question for the
person behind the client) and the responses that come back on the same stream.

Each request gets an id of the server's own (``"mcp-v8-<n>"``, never one a client uses for its
own requests, which the server does not send); the reader hands a response to the request that
waits for it, and a response to no request in flight (late, unknown or repeated) is dropped. A
waiting request ends with its result, an error the client sent, its timeout, its caller's
cancel, or the session's end, whichever comes first.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ClientRequestError", "ClientRequests"]


class ClientRequestError(Exception):
    """The request got no result: the client answered with an error, did not answer in time,
    the caller gave up, or the session ended."""


@dataclass
class _Waiting:
    done: threading.Event = field(default_factory=threading.Event)
    response: dict[str, Any] | None = None


class ClientRequests:
    """Requests in flight to one client; ``send`` writes one message to it."""

    def __init__(self, send: Callable[[dict[str, Any]], None]) -> None:
        self._send = send
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._waiting: dict[str, _Waiting] = {}
        self._closed = False

    def request(
        self, method: str, params: dict[str, Any], timeout: float, cancelled: threading.Event | None = None
    ) -> dict[str, Any]:
        """Sends the request and returns its result; raises :class:`ClientRequestError`."""
        waiting = _Waiting()
        with self._lock:
            if self._closed:
                raise ClientRequestError("the client is gone")
            id = f"mcp-v8-{next(self._ids)}"
            self._waiting[id] = waiting
        try:
            self._send({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
            deadline = threading.Event()  # set by the timer: the time is up
            timer = threading.Timer(timeout, deadline.set)
            timer.daemon = True
            timer.start()
            try:
                while not waiting.done.wait(0.05):
                    if deadline.is_set():
                        raise ClientRequestError(f"{method}: no answer within {timeout:g} s")
                    if cancelled is not None and cancelled.is_set():
                        raise ClientRequestError(f"{method}: the call was cancelled")
            finally:
                timer.cancel()
        finally:
            with self._lock:
                self._waiting.pop(id, None)
        response = waiting.response
        if response is None:
            raise ClientRequestError(f"{method}: the client is gone")
        if "error" in response:
            error = response["error"]
            message = error.get("message") if isinstance(error, dict) else None
            raise ClientRequestError(f"{method}: the client answered with an error: {message!s:.200}")
        result = response.get("result")
        if not isinstance(result, dict):
            raise ClientRequestError(f"{method}: the client's result is not an object")
        return result

    def deliver(self, message: dict[str, Any]) -> bool:
        """Hands a response to its request; False when no request in flight has its id."""
        id = message.get("id")
        if not isinstance(id, str):
            return False
        with self._lock:
            waiting = self._waiting.get(id)
            if waiting is None or waiting.done.is_set():
                return False
            waiting.response = message
            waiting.done.set()
            return True

    def close(self) -> None:
        """The session ended: every request in flight fails, later ones at once."""
        with self._lock:
            self._closed = True
            for waiting in self._waiting.values():
                waiting.done.set()
