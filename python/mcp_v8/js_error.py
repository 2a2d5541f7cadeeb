"""The structured error of a script, as the engine reports it, carried unchanged from the worker
to the execution record, the REST execution (``js_error``) and MCP's ``js_error``.

It mirrors the engine's ``JsError`` (``rust/engine/src/engine.rs``), which :class:`~mcp_v8.Outcome`
exposes as ``error_name``, ``error_message``, ``error`` (the stack), ``error_line`` and
``error_column``: nothing is parsed back out of the error text. ``name`` is None when the thrown
value is not an ``Error`` (``throw 5``) and when the engine stopped the script itself (a timeout,
the heap cap, a cancel); ``line`` and ``column`` (1-based, in the source as sent) are None when no
position in the script is known. A failure that is not the script's (a worker crash, a heap that
cannot be restored) has no JsError at all.

This is a value; :class:`mcp_v8.errors.JSError` is the exception the library raises for one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["JsError"]


class _EngineOutcome(Protocol):
    """What :meth:`JsError.from_outcome` reads of an engine outcome."""

    @property
    def error(self) -> str | None: ...
    @property
    def error_name(self) -> str | None: ...
    @property
    def error_message(self) -> str | None: ...
    @property
    def error_line(self) -> int | None: ...
    @property
    def error_column(self) -> int | None: ...


@dataclass(frozen=True)
class JsError:
    """A script's error: its ``name`` (``TypeError``; None for a non-Error value or an end the
    engine imposed), ``message``, ``stack`` (``Name: message`` then ``    at ...`` frames; the
    engine's ``error`` text) and the ``line`` and ``column`` where it was raised."""

    name: str | None
    message: str
    stack: str
    line: int | None = None
    column: int | None = None

    @classmethod
    def from_outcome(cls, outcome: _EngineOutcome) -> JsError | None:
        """The error of an engine outcome; None when it has none."""
        if outcome.error is None:
            return None
        return cls(
            name=outcome.error_name,
            message=outcome.error_message or "",
            stack=outcome.error,
            line=outcome.error_line,
            column=outcome.error_column,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the contract's ``JsError`` (REST, MCP, the records' column)."""
        return {
            "name": self.name,
            "message": self.message,
            "stack": self.stack,
            "line": self.line,
            "column": self.column,
        }

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> JsError:
        """The inverse of :meth:`to_dict`. Raises ``ValueError`` for anything else."""
        if not isinstance(value, Mapping) or set(value) != {"name", "message", "stack", "line", "column"}:
            raise ValueError("a JsError is an object of name, message, stack, line and column")
        name, message, stack = value["name"], value["message"], value["stack"]
        line, column = value["line"], value["column"]
        if (
            not (name is None or isinstance(name, str))
            or not isinstance(message, str)
            or not isinstance(stack, str)
        ):
            raise ValueError("a JsError's name, message and stack are strings (name may be null)")
        for position in (line, column):
            if position is not None and (type(position) is not int or position < 0):
                raise ValueError("a JsError's line and column are non-negative integers or null")
        return cls(name=name, message=message, stack=stack, line=line, column=column)
