"""The output log: the console output of each execution, appended while it runs and read in pages.

:class:`OutputLog` is the contract; :class:`~.output_log.SQLOutputLog` keeps the logs in the
``output_logs`` (totals) and ``output_chunks`` (the bytes) tables of the registry database, SQLite
or PostgreSQL, and touches no other table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .errors import DuplicateExecution, ExecutionNotFound

__all__ = [
    "DEFAULT_MAX_OUTPUT_BYTES",
    "DuplicateExecution",
    "ExecutionNotFound",
    "OutputLog",
    "OutputPage",
    "OutputTotals",
    "truncation_marker",
]

DEFAULT_MAX_OUTPUT_BYTES = 10 * 1024 * 1024


def truncation_marker(max_output_bytes: int) -> str:
    """The one line appended when an execution's output reaches its cap."""
    return f"[output truncated: limit of {max_output_bytes} bytes reached]\n"


@dataclass(frozen=True)
class OutputPage:
    """A window of console output: the contract's ExecutionOutput without execution_id and status.

    ``end_line`` and ``end_byte`` are exclusive; ``next_line_offset == end_line`` and
    ``next_byte_offset == end_byte``; ``has_more`` is whether the window ends before the output does.
    """

    data: str
    start_line: int
    end_line: int
    start_byte: int
    end_byte: int
    next_line_offset: int
    next_byte_offset: int
    has_more: bool
    total_lines: int
    total_bytes: int


@dataclass(frozen=True)
class OutputTotals:
    """The size of one execution's output: UTF-8 bytes, lines (a final line without a newline
    counts), and whether the cap cut it (then its last line is the truncation marker)."""

    total_bytes: int
    total_lines: int
    truncated: bool


@runtime_checkable
class OutputLog(Protocol):
    """The console output of executions: one append-only log per execution id, read in pages.

    Contract every backend keeps:

    * :meth:`create` starts an empty log (an existing one raises :class:`DuplicateExecution`);
      :meth:`append`, :meth:`totals` and the reads of an id without a log raise
      :class:`ExecutionNotFound`. :meth:`adopt` makes this store the appender of a log another
      one created (the node that claimed an execution another node accepted).
    * :meth:`append` stores text as UTF-8 (a lone surrogate becomes ``?``), in call order; the text
      of one call is never interleaved with another's. A sealed log still takes appends (a worker may
      print after a cancel was recorded), visible to every reader once :meth:`append` returns.
    * Cap: once a log holds ``max_output_bytes``, one :func:`truncation_marker` line is stored (on a
      line of its own) and later text is dropped; the cut never splits a UTF-8 character.
    * Reads see every :meth:`append` that returned before them; once :meth:`seal` returns, so does
      every reader of the store (other processes included). Call it before recording the terminal
      status of the execution.
    * :meth:`read_lines` and :meth:`read_bytes` return :class:`OutputPage` windows as their
      docstrings below say; :meth:`read_bytes` never splits a UTF-8 character. The cost of a page
      is independent of the size of the log and of the offset (a backend finds the first chunk by
      an index, never by scanning from the start).
    * :meth:`delete` removes logs and their output; unknown ids are not an error.
    * Every method may be called from many threads at once.

    Both backends keep the same two tables (in PostgreSQL: ``data bytea``, btree indexes on
    ``(execution_id, start_byte)`` and ``(execution_id, start_line, seq)``) and write the chunks
    and the new totals in one transaction.
    """

    max_output_bytes: int

    def create(self, execution_id: str) -> None:
        """Starts the empty log of ``execution_id``."""
        ...

    def adopt(self, execution_id: str) -> None:
        """This store appends to the log of ``execution_id`` from now on, as if it had created it:
        a log another store created empty and nothing appended to yet (an execution claimed from
        the queue of several nodes)."""
        ...

    def append(self, execution_id: str, text: str) -> None:
        """Appends console text (each entry already rendered with its trailing newline)."""
        ...

    def seal(self, execution_id: str) -> None:
        """The execution is over: makes everything appended so far visible to every reader."""
        ...

    def totals(self, execution_id: str) -> OutputTotals:
        """The size of the log of ``execution_id``."""
        ...

    def read_lines(self, execution_id: str, line_offset: int = 0, line_limit: int = 1000) -> OutputPage:
        """Up to ``line_limit`` whole lines from line ``line_offset``."""
        ...

    def read_bytes(self, execution_id: str, byte_offset: int = 0, byte_limit: int = 65536) -> OutputPage:
        """Up to ``byte_limit`` bytes from ``byte_offset``, never splitting a character."""
        ...

    def delete(self, execution_ids: Iterable[str]) -> int:
        """Removes the logs of ``execution_ids``; returns how many there were."""
        ...

    def close(self) -> None:
        """Makes buffered output durable and releases what the log holds. Idempotent."""
        ...
