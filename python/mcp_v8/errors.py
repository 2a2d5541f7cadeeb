"""The exception hierarchy of mcp-v8, with one root and one table from outcome to exception.

``MCPV8Error``
    ``JSError``                 the script failed (exception, rejected promise)
        ``JSSyntaxError``       it did not parse (also a ``SyntaxError``)
        ``HeapLimitExceeded``   the heap cap stopped it (also a ``MemoryError``)
    ``ExecutionTimeout``        the deadline passed (also a ``TimeoutError``)
    ``ExecutionCancelled``      ``Control.cancel()`` stopped it
    ``SnapshotError``           a heap snapshot envelope was refused (also a ``ValueError``)
    ``EngineError``             the engine itself could not run (V8 initialisation)
    ``ContextClosedError``      a live context was used after it closed (also a ``RuntimeError``)
    ``ContextBusyError``        an exposed function called back into its own context
    ``APIError``                the HTTP API refused a request (:mod:`mcp_v8.client`);
                                ``status`` and the server's ``error`` text
        ``BadRequestError`` 400, ``AuthError`` 401/403, ``NotFoundError`` 404 (also a
        ``LookupError``), ``ConflictError`` 409, ``PayloadTooLargeError`` 413,
        ``QueueFullError`` 429, ``UnavailableError`` 503, ``ServerError`` other 5xx,
        ``InvalidResponseError`` a 2xx whose body is not a JSON object
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _engine

if TYPE_CHECKING:
    from ._engine import Outcome


class MCPV8Error(Exception):
    """Root of every mcp-v8 error. ``outcome`` is set when raised for an execution."""

    outcome: Outcome | None = None


class JSError(MCPV8Error):
    """The script threw, or its result promise was rejected."""

    @property
    def name(self) -> str | None:
        return self.outcome.error_name if self.outcome else None

    @property
    def line(self) -> int | None:
        return self.outcome.error_line if self.outcome else None

    @property
    def column(self) -> int | None:
        return self.outcome.error_column if self.outcome else None


class JSSyntaxError(JSError, SyntaxError):
    """The code did not parse (JavaScript or TypeScript)."""


class HeapLimitExceeded(JSError, MemoryError):
    """The execution went over its heap cap."""


class ExecutionTimeout(MCPV8Error, TimeoutError):
    """The execution ran past its timeout."""


class ExecutionCancelled(MCPV8Error):
    """The execution was cancelled through its Control."""


class SnapshotError(MCPV8Error, ValueError):
    """A heap snapshot envelope was refused (corrupt, truncated, other engine or V8)."""


class EngineError(MCPV8Error, RuntimeError):
    """The engine could not run at all."""


class ContextClosedError(MCPV8Error, RuntimeError):
    """A live context was used after it closed: ``close()`` was called, or one of its runs
    went over the heap cap (a context is not reused after that)."""


class ContextBusyError(MCPV8Error, RuntimeError):
    """A function exposed to a live context called back into the context that is running
    it (the context waits for that function: the call could never start)."""


class APIError(MCPV8Error):
    """The HTTP API answered with an error status; ``message`` is its ``error`` text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class BadRequestError(APIError, ValueError):
    """400: the request broke the contract (the message names the field)."""


class AuthError(APIError, PermissionError):
    """401 or 403: a missing or wrong token, or a Host or Origin the server does not allow."""


class NotFoundError(APIError, LookupError):
    """404: no such execution, heap or session."""


class ConflictError(APIError):
    """409: the resource is in use."""


class PayloadTooLargeError(APIError):
    """413: the body or the code is over the server's limit."""


class QueueFullError(APIError):
    """429: the server's queue stayed full through the client's retries."""


class UnavailableError(APIError):
    """503: the server is shutting down."""


class ServerError(APIError):
    """A 5xx other than 503: a fault in the server."""


class InvalidResponseError(APIError):
    """A success status whose body is not a JSON object (not the API, or a cut answer); the
    message holds an excerpt of the body. An error status with such a body raises its own class."""


_API_ERRORS = {
    400: BadRequestError,
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    429: QueueFullError,
    503: UnavailableError,
}


def api_error(status: int, message: str) -> APIError:
    """The exception for an HTTP error ``status`` with the server's ``message``."""
    cls = _API_ERRORS.get(status, ServerError if status >= 500 else APIError)
    return cls(status, message)


# What stopped an execution, most specific first: the outcome's flag and its exception.
# This table is the only place that maps engine statuses to exceptions. A script that
# throws an error merely named "SyntaxError" (JSON.parse, eval, its own) is a JSError:
# only source that did not compile sets ``syntax_error``.
OUTCOME_ERRORS: tuple[tuple[str, type[MCPV8Error]], ...] = (
    ("timed_out", ExecutionTimeout),
    ("cancelled", ExecutionCancelled),
    ("heap_limit_exceeded", HeapLimitExceeded),
    ("syntax_error", JSSyntaxError),
    ("failed", JSError),
)


def error_for(outcome: Outcome) -> MCPV8Error | None:
    """The exception matching ``outcome``, or None when it completed."""
    if outcome.completed:
        return None
    cls = next((cls for flag, cls in OUTCOME_ERRORS if getattr(outcome, flag)), JSError)
    exc = cls(outcome.error or outcome.status)
    exc.outcome = outcome
    return exc


def raise_for(outcome: Outcome) -> None:
    """Raises ``error_for(outcome)`` unless the execution completed."""
    exc = error_for(outcome)
    if exc is not None:
        raise exc


# The native module raises these; it learns them here instead of importing the package.
_engine._register_errors(raise_for, SnapshotError, EngineError, ContextClosedError)
