"""Fixed schemas for values that cross a process boundary: the worker channel's messages
(:mod:`.protocol`) and the execution spec as the shared queue holds it (:mod:`.spec`).

A schema is a tree of the types below over the values msgpack and JSON both carry (None, bool,
int, float, str, bytes, list, dict). :meth:`Type.check` accepts a value or raises
:class:`SchemaError` naming the field and the rule; it never converts, never calls into what it
checks, and bounds every size (text in UTF-8 bytes, lists and maps in entries), so a value that
passes is as small as its schema says. Types are exact: a ``bool`` is no integer, a ``bytes`` no
text, a ``tuple`` (what Python code builds) a list only where :class:`TextList` says so.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Bytes",
    "Flag",
    "Integer",
    "Number",
    "OneOf",
    "Record",
    "RecordList",
    "SchemaError",
    "Text",
    "TextList",
    "TextMap",
    "Type",
]


class SchemaError(ValueError):
    """A value that breaks its schema; the message names the field and the rule, never the value."""


def _name(path: str) -> str:
    return path or "the value"


def text_bytes(value: str) -> int:
    """The size of ``value`` in UTF-8 (a lone surrogate, which UTF-8 cannot hold, counts 3)."""
    if value.isascii():
        return len(value)
    return len(value.encode("utf-8", "surrogatepass"))


class Type:
    """A schema node. ``nullable``: None is accepted too."""

    nullable: bool = False

    def check(self, value: Any, path: str = "") -> None:
        if value is None:
            if not self.nullable:
                raise SchemaError(f"{_name(path)} is missing (null)")
            return
        self._check(value, path)

    def _check(self, value: Any, path: str) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class Text(Type):
    """A str of at most ``max_bytes`` UTF-8 bytes (and at least ``min_bytes``), matching
    ``pattern`` when given."""

    max_bytes: int
    min_bytes: int = 0
    pattern: str | None = None
    nullable: bool = False

    def _check(self, value: Any, path: str) -> None:
        if type(value) is not str:
            raise SchemaError(f"{_name(path)} must be text, not {type(value).__name__}")
        size = len(value) if len(value) * 4 <= self.max_bytes else text_bytes(value)
        if size > self.max_bytes:
            raise SchemaError(f"{_name(path)} is {size} bytes, more than its limit of {self.max_bytes}")
        if size < self.min_bytes:
            raise SchemaError(f"{_name(path)} is shorter than {self.min_bytes} bytes")
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise SchemaError(f"{_name(path)} does not match {self.pattern}")


@dataclass(frozen=True)
class Bytes(Type):
    """A bytes value of at most ``max_bytes``."""

    max_bytes: int
    nullable: bool = False

    def _check(self, value: Any, path: str) -> None:
        if type(value) is not bytes:
            raise SchemaError(f"{_name(path)} must be bytes, not {type(value).__name__}")
        if len(value) > self.max_bytes:
            raise SchemaError(f"{_name(path)} is {len(value)} bytes, more than its limit of {self.max_bytes}")


@dataclass(frozen=True)
class Integer(Type):
    """An int (never a bool) in ``[low, high]``."""

    low: int
    high: int
    nullable: bool = False

    def _check(self, value: Any, path: str) -> None:
        if type(value) is not int:
            raise SchemaError(f"{_name(path)} must be an integer, not {type(value).__name__}")
        if not self.low <= value <= self.high:
            raise SchemaError(f"{_name(path)} must be between {self.low} and {self.high}")


@dataclass(frozen=True)
class Number(Type):
    """A finite int or float (never a bool) in ``[low, high]``."""

    low: float
    high: float
    nullable: bool = False

    def _check(self, value: Any, path: str) -> None:
        if type(value) not in (int, float):
            raise SchemaError(f"{_name(path)} must be a number, not {type(value).__name__}")
        if not (math.isfinite(value) and self.low <= value <= self.high):
            raise SchemaError(f"{_name(path)} must be a finite number between {self.low:g} and {self.high:g}")


@dataclass(frozen=True)
class Flag(Type):
    """A bool."""

    nullable: bool = False

    def _check(self, value: Any, path: str) -> None:
        if type(value) is not bool:
            raise SchemaError(f"{_name(path)} must be true or false, not {type(value).__name__}")


@dataclass(frozen=True)
class OneOf(Type):
    """One of a few strs."""

    values: frozenset[str]
    nullable: bool = False

    def _check(self, value: Any, path: str) -> None:
        if type(value) is not str or value not in self.values:
            raise SchemaError(f"{_name(path)} must be one of {', '.join(sorted(self.values))}")


def _check_items(value: Any, path: str, max_items: int, item: Type) -> None:
    """A list (or, built by Python code, a tuple) of at most ``max_items``, each ``item``."""
    if type(value) not in (list, tuple):
        raise SchemaError(f"{_name(path)} must be a list, not {type(value).__name__}")
    if len(value) > max_items:
        raise SchemaError(f"{_name(path)} has {len(value)} items, more than its limit of {max_items}")
    for i, element in enumerate(value):
        item.check(element, f"{path}[{i}]")


@dataclass(frozen=True)
class TextList(Type):
    """A list (or, built by Python code, a tuple) of at most ``max_items`` texts."""

    max_items: int
    item: Text
    nullable: bool = False

    def _check(self, value: Any, path: str) -> None:
        _check_items(value, path, self.max_items, self.item)


@dataclass(frozen=True)
class TextMap(Type):
    """A map of at most ``max_entries`` text keys to text values."""

    max_entries: int
    key: Text
    value: Text
    nullable: bool = False

    def _check(self, value: Any, path: str) -> None:
        if type(value) is not dict:
            raise SchemaError(f"{_name(path)} must be a map, not {type(value).__name__}")
        if len(value) > self.max_entries:
            raise SchemaError(
                f"{_name(path)} has {len(value)} entries, more than its limit of {self.max_entries}"
            )
        for k, v in value.items():
            self.key.check(k, f"a key of {_name(path)}")
            self.value.check(v, f"{path}[{k[:40]!r}]")


@dataclass(frozen=True)
class Record(Type):
    """A map with exactly the fields named (each present; a nullable one may be None)."""

    fields: Mapping[str, Type]
    nullable: bool = False

    def _check(self, value: Any, path: str) -> None:
        if type(value) is not dict:
            raise SchemaError(f"{_name(path)} must be a map, not {type(value).__name__}")
        if len(value) != len(self.fields) or any(k not in self.fields for k in value):
            unknown = sorted(str(k)[:40] for k in value if k not in self.fields)[:5]
            missing = sorted(k for k in self.fields if k not in value)
            said = [f"unknown field(s) {', '.join(unknown)}"] if unknown else []
            said += [f"missing field(s) {', '.join(missing)}"] if missing else []
            raise SchemaError(f"{_name(path)} has {'; '.join(said)}")
        prefix = f"{path}." if path else ""
        for name, field in self.fields.items():
            field.check(value[name], prefix + name)


@dataclass(frozen=True)
class RecordList(Type):
    """A list (or, built by Python code, a tuple) of at most ``max_items`` records."""

    max_items: int
    item: Record
    nullable: bool = False

    def _check(self, value: Any, path: str) -> None:
        _check_items(value, path, self.max_items, self.item)
