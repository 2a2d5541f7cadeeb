"""GET/DELETE /api/heaps/{key}, PATCH /api/heaps/{key}/tags, POST /api/heaps/query."""

from __future__ import annotations

from typing import Any

import falcon

from ..config import Settings
from ..contract import BodyValidator, InvalidRequest
from ..executions import ExecutionManager, HeapInUse
from ..storage import (
    FileHeapStore,
    HeapMeta,
    HeapTagLimit,
    InvalidCursor,
    InvalidHeapKey,
    SQLiteHeapTags,
    validate_heap_key,
)
from .validation import bad_request, read_json_body


def _key(value: str) -> str:
    try:
        return validate_heap_key(value)
    except InvalidHeapKey as e:
        raise bad_request(str(e)) from None


def _not_found(key: str) -> falcon.HTTPError:
    return falcon.HTTPNotFound(description=f"heap {key} not found")


def heap_info(meta: HeapMeta, tags: dict[str, str] | None) -> dict[str, Any]:
    """A heap as the contract's HeapInfo: ``tags`` are the registry's when it has a row (given),
    else the blob's first meta's."""
    return {
        "heap": meta.key,
        "size_bytes": meta.size,
        "created_at": meta.created_at,
        "last_used_at": meta.last_used_at or meta.created_at,
        "session": meta.session,
        "tags": tags if tags is not None else meta.tags,
    }


class _Heaps:
    def __init__(
        self, settings: Settings, heaps: FileHeapStore, tags: SQLiteHeapTags, manager: ExecutionManager
    ) -> None:
        self._settings = settings
        self._heaps = heaps
        self._tags = tags
        self._manager = manager

    def _meta(self, key: str) -> HeapMeta:
        meta = self._heaps.meta(key)
        if meta is None:
            raise _not_found(key)
        return meta


class HeapResource(_Heaps):
    def on_get(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        meta = self._meta(_key(key))
        resp.media = heap_info(meta, self._tags.get(key))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        _key(key)
        try:
            # Only the blob under the manager's lock (no SQLite write while dispatchers wait).
            removed = self._manager.delete_heap(key, self._heaps.delete)
        except HeapInUse as e:
            raise falcon.HTTPConflict(description=str(e)) from None
        # Then its row: a crash in between leaves tags without a heap, which GET and the query
        # ignore and the next DELETE of the key removes; never a heap that lost its tags.
        self._tags.delete(key)
        if not removed:
            raise _not_found(key)
        resp.media = {"ok": True}


class HeapTagsResource(_Heaps):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._body = BodyValidator("HeapTagsPatch")

    def on_patch(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        _key(key)
        try:
            patch = self._body.validate(read_json_body(req, self._settings.max_body_bytes))
        except InvalidRequest as e:
            raise bad_request(str(e)) from None
        meta = self._meta(key)
        try:
            tags = self._tags.patch(key, patch, base=meta.tags, created_at=meta.created_at)
        except HeapTagLimit as e:
            raise bad_request(str(e)) from None
        resp.media = heap_info(meta, tags)


class HeapQueryResource(_Heaps):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._body = BodyValidator("HeapQuery")

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            body = self._body.validate(read_json_body(req, self._settings.max_body_bytes))
        except InvalidRequest as e:
            raise bad_request(str(e)) from None
        try:
            page = self._tags.query(body["tags"], body.get("limit", 100), cursor=body.get("cursor"))
        except InvalidCursor as e:
            raise bad_request(str(e)) from None
        heaps = []
        for key, tags in page.items:
            meta = self._heaps.meta(key)
            if meta is not None:  # a row whose blob went outside this server
                heaps.append(heap_info(meta, tags))
        resp.media = {"heaps": heaps, "next_cursor": page.next_cursor}
