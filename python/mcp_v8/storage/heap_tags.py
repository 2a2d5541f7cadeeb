"""The tags of heap snapshots, in the registry database (table ``heap_tags``, schema version 4).

A heap's first meta (session, tags) is its row in the heap index (:mod:`.heap_index`); its
tags as clients change them (``PATCH /api/heaps/{key}/tags``) and as they are searched
(``POST /api/heaps/query``) live here, one row per heap and tenant (schema version 14: each tenant
owning a heap has its own tags for it, and the query finds only its tenant's): ``tags`` (a JSON object), ``created_at``
(the heap's creation time, which orders the query's results) and ``updated_at``. The heap
catalogue (:mod:`.heap_catalogue`) keeps the two together.

A row exists for every heap stored with tags by an execution of this server (recorded when the
execution finishes, copying the first meta) and for every heap whose tags were patched.
Once a row exists it is the heap's tags; a heap without a row has the tags of its first meta.
Heaps stored with tags before schema version 4 have no row until they are patched, so the query
does not find them. A row with non-empty tags keeps its heap from age-based retention.

:class:`HeapTags` is the contract; :class:`SQLHeapTags` keeps it in SQLite or PostgreSQL (where
``tags`` is ``jsonb`` with a GIN index, ``jsonb_path_ops``, so the tag query is one containment
test, ``tags @> query``; SQLite walks the query's pairs with ``json_each``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Protocol, runtime_checkable

from ..principal import DEFAULT_TENANT
from .errors import HeapTagLimit, InvalidCursor
from .heaps import is_heap_key, validate_heap_key
from .paging import Page, decode_cursor, encode_cursor, is_timestamp
from .sql import Connector, Json
from .sqlite import SQLiteDatabase

__all__ = [
    "MAX_TAGS",
    "MAX_TAG_CHARS",
    "HeapTagLimit",
    "HeapTags",
    "SQLHeapTags",
    "SQLiteHeapTags",
    "merge_patch",
]

MAX_TAGS = 64  # entries, as ExecRequest.tags
MAX_TAG_CHARS = 256  # characters of a key or a value
_LISTING = "heaps"
_UPSERT = (
    "INSERT INTO heap_tags (tenant, key, tags, created_at, updated_at)"
    " VALUES (:tenant, :key, {json:tags}, :created_at, :now) ON CONFLICT (tenant, key) DO"
)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _at(text: str) -> datetime:
    """An ISO timestamp as a UTC datetime at millisecond precision."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    dt = dt.astimezone(timezone.utc)
    return dt.replace(microsecond=dt.microsecond - dt.microsecond % 1000)


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


@runtime_checkable
class HeapTags(Protocol):
    """The ``heap_tags`` rows of a registry database. Every method may be called from many
    threads (and processes, or nodes, sharing the database) at once."""

    def get(self, key: str, *, tenant: str = DEFAULT_TENANT) -> dict[str, str] | None:
        """``tenant``'s tags of the heap as recorded here, or None when it has no row."""
        ...

    def record(
        self, key: str, tags: Mapping[str, str], created_at: str, *, tenant: str = DEFAULT_TENANT
    ) -> None:
        """Records the tags ``tenant``'s heap was stored with, unless it has a row already (first
        wins, as the ownership's meta does)."""
        ...

    def patch(
        self,
        key: str,
        patch: Mapping[str, object],
        *,
        base: Mapping[str, str] | None,
        created_at: str,
        replace: bool = False,
        tenant: str = DEFAULT_TENANT,
    ) -> dict[str, str]:
        """Applies a merge patch to ``tenant``'s tags of the heap (its row's, else ``base``: the blob's meta)
        in one transaction that holds the row, and returns the result; with ``replace``,
        ``patch`` becomes all of its tags. Raises :class:`HeapTagLimit`."""
        ...

    def delete(self, key: str, *, tenant: str | None = DEFAULT_TENANT) -> bool:
        """Removes ``tenant``'s row of the heap (None: every tenant's); whether there was one."""
        ...

    def tagged(self) -> set[str]:
        """Keys of the heaps with at least one tag here, of any tenant: kept by age-based retention."""
        ...

    def query(
        self, tags: Mapping[str, str], limit: int, *, cursor: str | None = None, tenant: str = DEFAULT_TENANT
    ) -> Page[tuple[str, dict[str, str]]]:
        """Keys and tags of ``tenant``'s heaps whose tags hold every pair of ``tags``, newest first
        (by ``created_at``, then key, both descending), a page of ``limit``. Raises
        :class:`~.errors.InvalidCursor`."""
        ...


class SQLHeapTags:
    """The :class:`HeapTags` of the registry database ``database``. Safe to share between threads."""

    def __init__(self, database: Connector) -> None:
        self._db = database

    def get(self, key: str, *, tenant: str = DEFAULT_TENANT) -> dict[str, str] | None:
        rows = self._db.run(
            "SELECT tags FROM heap_tags WHERE tenant = :tenant AND key = :key",
            {"key": validate_heap_key(key), "tenant": tenant},
        )
        return _loads(rows[0][0]) if rows else None

    def record(
        self, key: str, tags: Mapping[str, str], created_at: str, *, tenant: str = DEFAULT_TENANT
    ) -> None:
        self._db.run(
            f"{_UPSERT} NOTHING",
            {
                "tenant": tenant,
                "key": validate_heap_key(key),
                "tags": Json(dict(tags)),
                "created_at": _at(created_at),
                "now": _now(),
            },
        )

    def patch(
        self,
        key: str,
        patch: Mapping[str, object],
        *,
        base: Mapping[str, str] | None,
        created_at: str,
        replace: bool = False,
        tenant: str = DEFAULT_TENANT,
    ) -> dict[str, str]:
        validate_heap_key(key)
        with self._db.transaction() as session:
            rows = session.run(
                "SELECT tags FROM heap_tags WHERE tenant = :tenant AND key = :key{for_update}",
                {"key": key, "tenant": tenant},
            )
            current = {} if replace else _loads(rows[0][0]) if rows else dict(base or {})
            merged = merge_patch(current, patch)
            session.run(
                f"{_UPSERT} UPDATE SET tags = excluded.tags, updated_at = excluded.updated_at",
                {
                    "tenant": tenant,
                    "key": key,
                    "tags": Json(merged),
                    "created_at": _at(created_at),
                    "now": _now(),
                },
            )
        return merged

    def delete(self, key: str, *, tenant: str | None = DEFAULT_TENANT) -> bool:
        of = "key = :key" if tenant is None else "tenant = :tenant AND key = :key"
        rows = self._db.run(
            f"DELETE FROM heap_tags WHERE {of} RETURNING key",
            {"key": validate_heap_key(key), "tenant": tenant},
        )
        return bool(rows)

    def tagged(self) -> set[str]:
        rows = self._db.run("SELECT key FROM heap_tags WHERE tags <> :none", {"none": Json({})})
        return {str(r[0]) for r in rows}

    def query(
        self, tags: Mapping[str, str], limit: int, *, cursor: str | None = None, tenant: str = DEFAULT_TENANT
    ) -> Page[tuple[str, dict[str, str]]]:
        sql = "SELECT key, created_at, tags FROM heap_tags WHERE tenant = :tenant AND {tags_hold:query}"
        params: dict[str, object] = {"query": Json(dict(tags)), "limit": limit + 1, "tenant": tenant}
        if cursor is not None:
            created_at, params["after"] = decode_cursor(_LISTING, cursor, (is_timestamp, is_heap_key))
            try:
                params["at"] = _at(created_at)
            except ValueError:
                raise InvalidCursor("invalid cursor: its position is malformed") from None
            sql += " AND (created_at, key) < (:at, :after)"
        rows = self._db.run(sql + " ORDER BY created_at DESC, key DESC LIMIT :limit", params)
        items = [(str(r[0]), _loads(r[2])) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor(_LISTING, [last[1], last[0]])
        return Page(items, next_cursor)


class SQLiteHeapTags(SQLHeapTags):
    """The heap tags in the service's SQLite database."""

    def __init__(self, database: SQLiteDatabase) -> None:
        super().__init__(database)
