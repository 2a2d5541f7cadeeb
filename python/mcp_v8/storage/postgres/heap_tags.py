"""The tags of heap snapshots in PostgreSQL: :class:`PostgresHeapTags`, the ``heap_tags`` table of
:mod:`.schema`, with the public methods of :class:`~..heap_tags.SQLiteHeapTags` and the same rules
(first-wins records, merge patches, the query's order and paging). ``tags`` is ``jsonb`` with a GIN
index (``jsonb_path_ops``), so the tag query is one containment test (``tags @> query``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from psycopg.types.json import Jsonb

from ..heap_tags import merge_patch
from ..heaps import validate_heap_key
from ..paging import InvalidCursor, Page, decode_cursor, encode_cursor, is_timestamp
from .database import PostgresDatabase

__all__ = ["PostgresHeapTags"]

_LISTING = "heaps"


def _is_key(value: object) -> bool:
    try:
        validate_heap_key(value)
    except ValueError:
        return False
    return True


def _at(text: str) -> datetime:
    """An ISO timestamp as a UTC datetime at millisecond precision."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).replace(microsecond=dt.microsecond - dt.microsecond % 1000)


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _tags(raw: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


class PostgresHeapTags:
    """The ``heap_tags`` table of a PostgreSQL database. Safe to share between threads."""

    def __init__(self, database: PostgresDatabase) -> None:
        self._db = database

    def get(self, key: str) -> dict[str, str] | None:
        """The heap's tags as recorded here, or None when it has no row."""
        rows = self._db.run("SELECT tags FROM heap_tags WHERE key = %s", (validate_heap_key(key),))
        return _tags(rows[0][0]) if rows else None

    def record(self, key: str, tags: Mapping[str, str], created_at: str) -> None:
        """Records the tags a heap was stored with, unless it has a row already (first wins)."""
        self._db.run(
            "INSERT INTO heap_tags (key, tags, created_at, updated_at) VALUES (%s, %s, %s, now())"
            " ON CONFLICT (key) DO NOTHING",
            (validate_heap_key(key), Jsonb(dict(tags)), _at(created_at)),
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
        """Applies a merge patch to the heap's tags (its row's, else ``base``) in one transaction
        (the row locked) and returns the result; with ``replace``, ``patch`` becomes all of its
        tags. Raises :class:`~..heap_tags.HeapTagLimit`."""
        validate_heap_key(key)
        with self._db.transaction() as conn:
            row = conn.execute("SELECT tags FROM heap_tags WHERE key = %s FOR UPDATE", (key,)).fetchone()
            current = {} if replace else _tags(row[0]) if row else dict(base or {})
            merged = merge_patch(current, patch)
            conn.execute(
                "INSERT INTO heap_tags (key, tags, created_at, updated_at) VALUES (%s, %s, %s, now())"
                " ON CONFLICT (key) DO UPDATE SET tags = excluded.tags, updated_at = excluded.updated_at",
                (key, Jsonb(merged), _at(created_at)),
            )
        return merged

    def delete(self, key: str) -> bool:
        return bool(
            self._db.run("DELETE FROM heap_tags WHERE key = %s RETURNING key", (validate_heap_key(key),))
        )

    def tagged(self) -> set[str]:
        """Keys of the heaps with at least one tag here: kept by age-based retention."""
        return {str(r[0]) for r in self._db.run("SELECT key FROM heap_tags WHERE tags <> '{}'::jsonb")}

    def query(
        self, tags: Mapping[str, str], limit: int, *, cursor: str | None = None
    ) -> Page[tuple[str, dict[str, str]]]:
        """Keys and tags of the heaps whose tags hold every pair of ``tags``, newest first (by
        ``created_at``, then key, both descending), a page of ``limit``. Raises
        :class:`~..paging.InvalidCursor`."""
        where = ["tags @> %s"]
        params: list[object] = [Jsonb(dict(tags))]
        if cursor is not None:
            created_at, after = decode_cursor(_LISTING, cursor, (is_timestamp, _is_key))
            try:
                at = _at(created_at)
            except ValueError:
                raise InvalidCursor("invalid cursor: its position is malformed") from None
            where.append("(created_at, key) < (%s, %s)")
            params += [at, after]
        rows = self._db.run(
            "SELECT key, created_at, tags FROM heap_tags WHERE "
            + " AND ".join(where)
            + " ORDER BY created_at DESC, key DESC LIMIT %s",
            (*params, limit + 1),
        )
        items = [(str(r[0]), _tags(r[2])) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor(_LISTING, [_iso(last[1]), last[0]])
        return Page(items, next_cursor)
