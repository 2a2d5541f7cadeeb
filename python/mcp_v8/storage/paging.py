"""Keyset paging for the stores' listings: a :class:`Page` of items and an opaque cursor.

A cursor is the position of the last item of a page in its listing's order, not an offset: the next
page is "the items after this one", found through an index whatever the page number, and an item
deleted or added meanwhile shifts nothing. It is the base64url (no padding) of a small JSON object,
``{"list": "<listing>", "after": [<the sort key of that item>]}``, opaque to clients. Decoding is
strict: a string that is not the canonical encoding of such an object, names another listing or
holds values of the wrong shape raises :class:`InvalidCursor` (a ``ValueError``), never anything
else. A well-formed cursor carries no secret and no signature: forging one only selects another
position in a listing the client can read from its start anyway.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .errors import InvalidCursor

__all__ = ["InvalidCursor", "Page", "decode_cursor", "encode_cursor", "is_row_id", "is_text", "is_timestamp"]

T = TypeVar("T")

_CURSOR_RE = re.compile(r"[A-Za-z0-9_-]+")
_TIMESTAMP_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
_MAX_ROW_ID = 2**63 - 1


@dataclass(frozen=True)
class Page(Generic[T]):
    """Items in the listing's order; ``next_cursor`` continues after the last one, and is None
    when nothing follows (the last page)."""

    items: list[T]
    next_cursor: str | None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def encode_cursor(listing: str, after: Sequence[Any]) -> str:
    """The cursor for the position ``after`` (a sort key of JSON values) in ``listing``."""
    payload = {"list": listing, "after": list(after)}
    return _b64(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def decode_cursor(listing: str, cursor: str, shape: Sequence[Callable[[Any], bool]]) -> list[Any]:
    """The sort key a cursor of ``listing`` holds, each value accepted by the matching check of
    ``shape``. Raises :class:`InvalidCursor` for anything else."""

    def invalid(reason: str) -> InvalidCursor:
        return InvalidCursor(f"invalid cursor: {reason}; pass the next_cursor of an earlier page unchanged")

    if not isinstance(cursor, str) or not cursor or _CURSOR_RE.fullmatch(cursor) is None:
        raise invalid("not base64url text")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise invalid("not base64url text") from None
    if _b64(raw) != cursor:  # a different spelling of the same bytes: not one this code wrote
        raise invalid("not base64url text")
    try:
        payload = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise invalid("not the JSON of a cursor") from None
    if not isinstance(payload, dict) or set(payload) != {"list", "after"}:
        raise invalid("not the JSON of a cursor")
    if payload["list"] != listing:
        raise invalid("it belongs to another listing")
    after = payload["after"]
    if (
        not isinstance(after, list)
        or len(after) != len(shape)
        or not all(ok(v) for ok, v in zip(shape, after))
    ):
        raise invalid("its position is malformed")
    return after


def is_timestamp(value: Any) -> bool:
    """A timestamp as the stores write them: ISO-8601 UTC, milliseconds, ``Z``."""
    return isinstance(value, str) and _TIMESTAMP_RE.fullmatch(value) is not None


def is_row_id(value: Any) -> bool:
    """A positive 64-bit integer (JSON's ``true`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= _MAX_ROW_ID


def is_text(value: Any) -> bool:
    """A string that is valid Unicode: JSON can spell a lone surrogate (``"\\ud800"``), which no
    UTF-8 encoder (SQLite's included) accepts."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
