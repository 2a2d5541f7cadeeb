"""The records of the tool calls each execution's script made, in the registry database (table
``tool_calls``: SQLite's schema version 9, PostgreSQL's 8).

One row per call: its id (the script's own counter, so in call order), the tool server and the
tool, the size of its arguments (never the arguments themselves: they may hold what a log must
not), its outcome (``ok``, the name of the error the script got, or ``abandoned``), that error's
message, when it started and how long it took. :class:`ToolCallLog` is the contract;
:class:`SQLToolCallLog` keeps it in SQLite or PostgreSQL, with each statement written once.
Records are deleted with their execution by retention.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol, runtime_checkable

from .schema import opened
from .sql import Connector
from .sqlite import SQLiteDatabase

__all__ = ["MESSAGE_CHARS", "SQLToolCallLog", "SQLiteToolCallLog", "ToolCallLog", "ToolCallRow"]

MESSAGE_CHARS = 4096  # a record keeps this much of an error's message
_DELETE_BATCH = 500
_COLUMNS = "call_id, server, tool, arguments_bytes, outcome, message, started_at, duration_ms"


@dataclass(frozen=True)
class ToolCallRow:
    """One call as the store keeps it; ``started_at`` is ISO-8601 UTC at milliseconds (``Z``)."""

    call_id: int
    server: str
    tool: str
    arguments_bytes: int
    outcome: str
    message: str | None
    started_at: str
    duration_ms: float

    def as_json(self) -> dict[str, object]:
        return {
            "call_id": self.call_id,
            "server": self.server,
            "tool": self.tool,
            "arguments_bytes": self.arguments_bytes,
            "outcome": self.outcome,
            "message": self.message,
            "started_at": self.started_at,
            "duration_ms": self.duration_ms,
        }


@runtime_checkable
class ToolCallLog(Protocol):
    """The tool calls of executions. Contract every backend keeps:

    * :meth:`add` stores calls of one execution; a call id the execution has stored already keeps
      its first record (a call is recorded once; a repeat changes nothing). Text that a database
      cannot hold (U+0000 in PostgreSQL) is stored with it replaced; a message is cut to
      :data:`MESSAGE_CHARS`.
    * :meth:`list` gives an execution's calls in call order (by call id), after ``after`` when given,
      at most ``limit``; an execution without calls (or unknown) has none.
    * :meth:`delete` removes the calls of executions; unknown ids are not an error.
    * Every method may be called from many threads at once."""

    def add(self, execution_id: str, calls: Sequence[ToolCallRow]) -> None: ...

    def list(
        self, execution_id: str, *, after: int | None = None, limit: int = 1000
    ) -> list[ToolCallRow]: ...

    def delete(self, execution_ids: Iterable[str]) -> int:
        """Removes the calls of ``execution_ids``; returns how many calls there were."""
        ...

    def close(self) -> None: ...


def _at(text: str) -> datetime:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


class SQLToolCallLog:
    """The :class:`ToolCallLog` of the registry database ``database``. Safe to share between threads."""

    def __init__(self, database: Connector, *, owned: bool = False) -> None:
        self._db = database
        self._owned = owned
        self._nul = not database.dialect.holds_nul

    def close(self) -> None:
        """Closes the database when the store opened it."""
        if self._owned:
            self._db.close()

    def _text(self, value: str) -> str:
        return value.replace("\x00", "\ufffd") if self._nul else value

    def add(self, execution_id: str, calls: Sequence[ToolCallRow]) -> None:
        if not calls:
            return
        rows = [
            {
                "execution_id": self._text(execution_id),
                "call_id": c.call_id,
                "server": self._text(c.server),
                "tool": self._text(c.tool),
                "arguments_bytes": c.arguments_bytes,
                "outcome": self._text(c.outcome),
                "message": None if c.message is None else self._text(c.message[:MESSAGE_CHARS]),
                "started_at": _at(c.started_at),
                "duration_ms": float(c.duration_ms),
            }
            for c in calls
        ]
        self._db.many(
            f"INSERT INTO tool_calls (execution_id, {_COLUMNS}) VALUES (:execution_id, :call_id, :server, :tool,"
            " :arguments_bytes, :outcome, :message, :started_at, :duration_ms)"
            # A call held for a decision is recorded twice: held, then as its decision went
            # (made or denied); any other repeat leaves the first record standing.
            " ON CONFLICT (execution_id, call_id) DO UPDATE SET outcome = excluded.outcome,"
            " message = excluded.message, duration_ms = excluded.duration_ms"
            " WHERE tool_calls.outcome = 'held'",
            rows,
        )

    def list(self, execution_id: str, *, after: int | None = None, limit: int = 1000) -> list[ToolCallRow]:
        if self._nul and "\x00" in execution_id:
            return []
        rows = self._db.run(
            f"SELECT {_COLUMNS} FROM tool_calls WHERE execution_id = :id AND call_id > :after"
            " ORDER BY call_id LIMIT :limit",
            {"id": execution_id, "after": -1 if after is None else after, "limit": limit},
        )
        return [
            ToolCallRow(int(r[0]), str(r[1]), str(r[2]), int(r[3]), str(r[4]), r[5], str(r[6]), float(r[7]))
            for r in rows
        ]

    def delete(self, execution_ids: Iterable[str]) -> int:
        ids = sorted({i for i in execution_ids if not (self._nul and "\x00" in i)})
        deleted = 0
        for i in range(0, len(ids), _DELETE_BATCH):
            deleted += self._db.count(
                "DELETE FROM tool_calls WHERE execution_id {any:ids}", {"ids": ids[i : i + _DELETE_BATCH]}
            )
        return deleted


class SQLiteToolCallLog(SQLToolCallLog):
    """The tool call records in the service's SQLite database, or in that of a data directory
    (then closed with the store)."""

    def __init__(self, database: SQLiteDatabase | str | os.PathLike[str]) -> None:
        db, owned = opened(database)
        super().__init__(db, owned=owned)
