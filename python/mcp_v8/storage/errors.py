"""The exceptions of every store, in one place: what a caller of ``storage`` catches, whichever
backend raised it. The modules that raise them re-export the ones their callers know them by."""

from __future__ import annotations

__all__ = [
    "BlobStoreUnavailable",
    "DatabaseUnavailable",
    "DuplicateExecution",
    "DuplicateKey",
    "ExecutionNotFound",
    "HeapCorrupt",
    "HeapInUse",
    "HeapNotFound",
    "HeapNotSigned",
    "HeapStoreUnavailable",
    "HeapTagLimit",
    "InvalidCursor",
    "InvalidHeapKey",
    "SchemaVersionError",
]


# -- databases ------------------------------------------------------------------------------------


class SchemaVersionError(RuntimeError):
    """The database's schema is newer than this code knows; it is not opened (nor changed)."""

    @classmethod
    def newer(cls, what: str, version: int, latest: int, instead: str) -> SchemaVersionError:
        """The error for ``what`` (a database) at schema ``version`` when this release knows
        versions up to ``latest``; ``instead``: what to do."""
        return cls(
            f"{what} has schema version {version}, but this release knows versions up to {latest}:"
            f" it was written by a newer release; {instead}"
        )


class DatabaseUnavailable(RuntimeError):
    """A database server (PostgreSQL) cannot be reached now: down, restarting, no connection
    free in time. Nothing was done; the request may be retried later (HTTP 503)."""


class DuplicateKey(Exception):
    """A statement would have stored a second row under a unique key; it changed nothing. The
    connectors raise it for their driver's unique violation; the stores turn it into theirs."""


# -- executions and their output ------------------------------------------------------------------


class ExecutionNotFound(KeyError):
    """No execution (or no output log of an execution) is recorded under this id."""


class DuplicateExecution(ValueError):
    """An execution (or an output log of an execution) with this id is already recorded."""


class InvalidCursor(ValueError):
    """A cursor that is not one a page of this listing returned; the message says why."""


# -- heaps ----------------------------------------------------------------------------------------


class InvalidHeapKey(ValueError):
    """The key is not exactly 64 lowercase hexadecimal characters."""


class HeapNotFound(KeyError):
    """No heap snapshot is stored under this key."""


class HeapInUse(Exception):
    """A queued or running execution (of any node or process) resumes the heap: it cannot go now."""


class HeapTagLimit(ValueError):
    """A patch whose result breaks the tags' limits (entries, lengths) or holds a non-string."""


class HeapStoreUnavailable(RuntimeError):
    """The remote heap store cannot be reached or answered with an error."""


class BlobStoreUnavailable(RuntimeError):
    """The remote blob store could not be reached, timed out, or answered with an error."""


class HeapNotSigned(ValueError):
    """A heap whose signature does not verify with this deployment's keys (or that has none
    where unsigned heaps are not trusted): it is never given to a worker."""

    def __init__(self, key: str, hint: str = "") -> None:
        self.key = key
        super().__init__(f"heap {key} is not signed by this deployment" + (f" ({hint})" if hint else ""))


class HeapCorrupt(HeapStoreUnavailable):
    """The stored bytes of a heap are not what its key names (damaged on disk or in the store)."""
