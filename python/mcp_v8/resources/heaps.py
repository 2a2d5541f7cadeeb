"""GET/DELETE /api/heaps/{key}, PATCH /api/heaps/{key}/tags, POST /api/heaps/query."""

from __future__ import annotations

import falcon

from ..contract import BodyValidator, InvalidRequest
from ..operations import Operations, check_heap_key
from .tenancy import ops_for
from .validation import bad_request, read_json_body


class _Heaps:
    def __init__(self, ops: Operations) -> None:
        self._ops = ops

    def _body(self, validator: BodyValidator, req: falcon.Request) -> dict[str, object]:
        try:
            return validator.validate(read_json_body(req, self._ops.settings.max_body_bytes))
        except InvalidRequest as e:
            raise bad_request(str(e)) from None


class HeapResource(_Heaps):
    def on_get(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        resp.media = ops_for(self._ops, req).heap(key)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        resp.media = ops_for(self._ops, req).delete_heap(key)


class HeapTagsResource(_Heaps):
    PATCH = BodyValidator("HeapTagsPatch")

    def on_patch(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        check_heap_key(key)  # a malformed key is said before the body's mistakes
        patch = self._body(self.PATCH, req)
        resp.media = ops_for(self._ops, req).patch_heap_tags(key, patch)  # type: ignore[arg-type]


class HeapQueryResource(_Heaps):
    QUERY = BodyValidator("HeapQuery")

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = self._body(self.QUERY, req)
        resp.media = ops_for(self._ops, req).query_heaps(
            body["tags"],  # type: ignore[arg-type]
            body.get("limit", 100),  # type: ignore[arg-type]
            cursor=body.get("cursor"),  # type: ignore[arg-type]
        )
