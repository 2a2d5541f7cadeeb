"""SQL written once for SQLite and PostgreSQL, and the connector each database is reached through.

The stores (:mod:`.execution_store`, :mod:`.output_log`, :mod:`.heap_tags`, :mod:`.heap_index`)
are one class each over a :class:`Connector`: SQLite's (:class:`~.sqlite.SQLiteDatabase`) or
PostgreSQL's (:class:`~.postgres.database.PostgresDatabase`). Each statement is written once, in
a neutral spelling that :func:`render` turns into the driver's:

- ``:name`` is a parameter, taken from a mapping (``%(name)s`` for psycopg; ``::`` stays a cast);
- ``{fragment}`` and ``{fragment:argument}`` stand for what the two databases spell differently,
  named and listed in each :class:`Dialect` (``$`` in a fragment is its argument): a row lock
  (``{for_update}``: SQLite's ``BEGIN IMMEDIATE`` already holds the whole database), the scalar
  maximum, "any of this list" (a PostgreSQL array, a JSON array for SQLite's ``json_each``), a
  JSON parameter's type, milliseconds since a timestamp, a tag containment test (``jsonb @>``, or
  ``json_each`` both ways);
- quoted literals and identifiers are left as they are (but for psycopg's doubled ``%``).

Values cross in one shape whichever database holds them: a parameter is a Python value
(``datetime`` for a timestamp, :class:`Json` for a JSON document, a list for ``{any:...}``) that
the dialect adapts; a row gives back timestamps as ISO-8601 strings at milliseconds with a ``Z``
and JSON documents as text (the PostgreSQL connector loads ``timestamptz`` and ``jsonb`` so). A
unique violation raises :class:`~.errors.DuplicateKey` from either. What is PostgreSQL's alone
(``FOR UPDATE SKIP LOCKED``, ``LISTEN``/``NOTIFY``, statements with data-modifying ``WITH``)
is spelt in the modules only PostgreSQL uses (:mod:`.postgres`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timezone
from types import TracebackType
from typing import Any, Protocol, TypeVar

__all__ = [
    "Closing",
    "Connector",
    "Dialect",
    "Json",
    "Params",
    "Row",
    "Session",
    "iso",
    "render",
]

Row = tuple[Any, ...]
Params = Mapping[str, Any]

_C = TypeVar("_C", bound="Closing")


class Closing:
    """``with`` support for a store: leaving the block calls ``close()``."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Json:
    """A JSON document as a statement's parameter (``{json:name}`` gives it its type)."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value


def iso(dt: datetime) -> str:
    """A timestamp as the stores hand it out: ISO-8601 UTC at milliseconds, with a ``Z``."""
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, eq=False)
class Dialect:
    """How one database spells what differs: ``paramstyle`` (``named``: ``:name``, as written;
    ``pyformat``: ``%(name)s``), the ``fragments`` statements name in braces, and ``adapt``,
    which turns one parameter's value into what the driver takes."""

    name: str
    paramstyle: str
    fragments: Mapping[str, str]
    adapt: Callable[[Any], Any]
    holds_nul: bool  # whether text may hold U+0000 (PostgreSQL's cannot)

    def params(self, params: Params | Sequence[Any]) -> Any:
        if isinstance(params, Mapping):
            return {k: self.adapt(v) for k, v in params.items()}
        return [self.adapt(v) for v in params]


_TOKEN = re.compile(
    r"""
      '(?:[^']|'')*'                                  # a string literal: as written
    | "(?:[^"]|"")*"                                  # a quoted identifier: as written
    | ::                                              # a cast
    | :(?P<param>[A-Za-z_][A-Za-z0-9_]*)              # a parameter
    | \{(?P<fragment>[a-z_]+)(?::(?P<arg>[A-Za-z0-9_.]+))?\}   # a fragment, maybe with an argument
    | %                                               # a percent sign (doubled for pyformat)
    """,
    re.VERBOSE,
)


@functools.lru_cache(maxsize=1024)
def render(dialect: Dialect, sql: str) -> str:
    """``sql`` (the neutral spelling: see the module) as ``dialect``'s driver takes it."""

    def token(m: re.Match[str]) -> str:
        if m["param"] is not None:
            return f"%({m['param']})s" if dialect.paramstyle == "pyformat" else m[0]
        if m["fragment"] is not None:
            try:
                template = dialect.fragments[m["fragment"]]
            except KeyError:
                raise ValueError(f"no fragment {m['fragment']!r} in the {dialect.name} dialect") from None
            return render(dialect, template.replace("$", m["arg"] or ""))
        # A percent sign, also in a literal: psycopg reads every one, and "%%" as one.
        return m[0].replace("%", "%%") if dialect.paramstyle == "pyformat" else m[0]

    return _TOKEN.sub(token, sql)


class Session(Protocol):
    """Statements on one connection: each its own transaction, or all of one (see
    :meth:`Connector.transaction`)."""

    def run(self, sql: str, params: Params = ...) -> list[Row]:
        """Runs one statement and returns its rows (none for a statement that returns none)."""
        ...

    def count(self, sql: str, params: Params = ...) -> int:
        """Runs one statement and returns how many rows it changed."""
        ...

    def many(self, sql: str, rows: Sequence[Params]) -> None:
        """Runs one statement once for each of ``rows`` (one round trip where the driver can)."""
        ...


class Connector(Session, Protocol):
    """One database: a pool of connections, its schema brought up to date at open, its
    :class:`Dialect`. ``run``, ``count`` and ``many`` borrow a connection for one statement
    (its own transaction). ``errors`` are what a statement that failed raises (the driver's,
    and :class:`~.errors.DatabaseUnavailable`). Safe to share between threads."""

    dialect: Dialect
    errors: tuple[type[BaseException], ...]

    def session(self) -> AbstractContextManager[Session]:
        """One connection for several statements, each its own transaction."""
        ...

    def transaction(self) -> AbstractContextManager[Session]:
        """One short transaction, committed on success and rolled back on error: SQLite's
        ``BEGIN IMMEDIATE`` (the database's write lock, from the first statement), PostgreSQL's
        ``BEGIN`` (``READ COMMITTED``; rows are locked by the statements that say so)."""
        ...

    def close(self) -> None: ...
