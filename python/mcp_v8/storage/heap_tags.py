"""The tags of heap snapshots, in the registry database (table ``heap_tags``, schema version 4).

A heap's first meta (session, tags) is its row in the heap index (:mod:`.heap_index`); its
tags as clients change them (``PATCH /api/heaps/{key}/tags``) and as they are searched
(``POST /api/heaps/query``) live here, one row per heap: ``tags`` (a JSON object), ``created_at``
(the heap's creation time, which orders the query's results) and ``updated_at``. The heap
catalogue (:mod:`.heap_catalogue`) keeps the two together.

A row exists for every heap stored with tags by an execution of this server (recorded when the
execution finishes, copying the first meta) and for every heap whose tags were patched.
Once a row exists it is the heap's tags; a heap without a row has the tags of its first meta.
Heaps stored with tags before schema version 4 have no row until they are patched, so the query
does not find them. A row with non-empty tags keeps its heap from age-based retention.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Protocol, runtime_checkable

from .heaps import validate_heap_key
from .paging import Page, decode_cursor, encode_cursor, is_timestamp
from .sqlite import SQLiteDatabase

__all__ = ["MAX_TAGS", "MAX_TAG_CHARS", "HeapTagLimit", "HeapTags", "SQLiteHeapTags", "merge_patch"]

MAX_TAGS = 64  # entries, as ExecRequest.tags
MAX_TAG_CHARS = 256  # characters of a key or a value
_LISTING = "heaps"


class HeapTagLimit(ValueError):
    """A patch whose result breaks the tags' limits (entries, lengths) or holds a non-string."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _is_key(value: object) -> bool:
    try:
        validate_heap_key(value)
    except ValueError:
        return False
    return True


def merge_patch(base: Mapping[str, str], patch: Mapping[str, object]) -> dict[str, str]:
    """RFC 7396 on a flat object of strings: a string value sets its key, ``None`` removes it.
    Raises :class:`HeapTagLimit` when a value is neither or the result breaks the limits."""
    merged = dict(base)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, str):
            merged[key] = value
        else:
            raise HeapTagLimit(f"tags[{json.dumps(key[:40])}] must be a string or null")
    if len(merged) > MAX_TAGS:
        raise HeapTagLimit(f"a heap has at most {MAX_TAGS} tags; this patch would leave {len(merged)}")
    for key, value in merged.items():
        if len(key) > MAX_TAG_CHARS:
            raise HeapTagLimit(f"a tag key must be at most {MAX_TAG_CHARS} characters")
        if len(value) > MAX_TAG_CHARS:
            raise HeapTagLimit(f"tags[{json.dumps(key[:40])}] must be at most {MAX_TAG_CHARS} characters")
    return merged


def _loads(raw: object) -> dict[str, str]:
    doc = json.loads(str(raw))
    return {str(k): str(v) for k, v in doc.items()} if isinstance(doc, dict) else {}


def _dumps(tags: Mapping[str, str]) -> str:
    return json.dumps(dict(tags), ensure_ascii=False, sort_keys=True, separators=(",", ":"))


@runtime_checkable
class HeapTags(Protocol):
    """The ``heap_tags`` rows of a registry database (:class:`SQLiteHeapTags`,
    :class:`~.postgres.heap_tags.PostgresHeapTags`); see the methods of :class:`SQLiteHeapTags`."""

    def get(self, key: str) -> dict[str, str] | None: ...

    def record(self, key: str, tags: Mapping[str, str], created_at: str) -> None: ...

    def patch(
        self,
        key: str,
        patch: Mapping[str, object],
        *,
        base: Mapping[str, str] | None,
        created_at: str,
        replace: bool = False,
    ) -> dict[str, str]: ...

    def delete(self, key: str) -> bool: ...

    def tagged(self) -> set[str]: ...

    def query(
        self, tags: Mapping[str, str], limit: int, *, cursor: str | None = None
    ) -> Page[tuple[str, dict[str, str]]]: ...


class SQLiteHeapTags:
    """The ``heap_tags`` table of the registry database. Safe to share between threads."""

    def __init__(self, database: SQLiteDatabase) -> None:
        self._db = database

    def get(self, key: str) -> dict[str, str] | None:
        """The heap's tags as recorded here, or None when it has no row."""
        rows = self._db.run("SELECT tags FROM heap_tags WHERE key = ?", (validate_heap_key(key),))
        return _loads(rows[0][0]) if rows else None

    def record(self, key: str, tags: Mapping[str, str], created_at: str) -> None:
        """Records the tags a heap was stored with, unless it has a row already (first wins, as
        the blob's meta does)."""
        self._db.run(
            "INSERT INTO heap_tags (key, tags, created_at, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (key) DO NOTHING",
            (validate_heap_key(key), _dumps(tags), created_at, _now()),
        )

    def patch(
        self,
        key: str,
        patch: Mapping[str, object],
        *,
        base: Mapping[str, str] | None,
        created_at: str,
        replace: bool = False,
    ) -> dict[str, str]:
        """Applies a merge patch to the heap's tags (its row's, else ``base``: the blob's meta)
        in one transaction and returns the result; with ``replace``, ``patch`` becomes all of
        its tags. Raises :class:`HeapTagLimit`."""
        validate_heap_key(key)
        with self._db.write() as conn:
            row = conn.execute("SELECT tags FROM heap_tags WHERE key = ?", (key,)).fetchone()
            current = {} if replace else _loads(row[0]) if row else dict(base or {})
            merged = merge_patch(current, patch)
            conn.execute(
                "INSERT INTO heap_tags (key, tags, created_at, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET tags = excluded.tags, updated_at = excluded.updated_at",
                (key, _dumps(merged), created_at, _now()),
            )
        return merged

    def delete(self, key: str) -> bool:
        rows = self._db.run("DELETE FROM heap_tags WHERE key = ? RETURNING key", (validate_heap_key(key),))
        return bool(rows)

    def tagged(self) -> set[str]:
        """Keys of the heaps with at least one tag here: kept by age-based retention."""
        return {str(r[0]) for r in self._db.run("SELECT key FROM heap_tags WHERE tags <> '{}'")}

    def query(
        self, tags: Mapping[str, str], limit: int, *, cursor: str | None = None
    ) -> Page[tuple[str, dict[str, str]]]:
        """Keys and tags of the heaps whose tags hold every pair of ``tags``, newest first (by
        ``created_at``, then key, both descending), a page of ``limit``. Raises
        :class:`~.paging.InvalidCursor`."""
        where = []
        params: list[object] = []
        for name, value in tags.items():
            where.append("EXISTS (SELECT 1 FROM json_each(h.tags) AS t WHERE t.key = ? AND t.value = ?)")
            params += [name, value]
        if cursor is not None:
            created_at, after = decode_cursor(_LISTING, cursor, (is_timestamp, _is_key))
            where.append("(h.created_at, h.key) < (?, ?)")
            params += [created_at, after]
        sql = "SELECT h.key, h.created_at, h.tags FROM heap_tags AS h"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY h.created_at DESC, h.key DESC LIMIT ?"
        rows = self._db.run(sql, (*params, limit + 1))
        items = [(str(r[0]), _loads(r[2])) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor(_LISTING, [last[1], last[0]])
        return Page(items, next_cursor)
