"""The heap catalogue: every question about heap snapshots, answered for the whole deployment.

Operations (REST and MCP alike) and the execution manager ask it, never a store below it:
a heap's metadata and tags, the tag query, which of a page of keys are still stored, whether a
queued or running execution of any node or process resumes a heap, its deletion (refused while
it is in use), retention; and, for the manager, a heap's use by an execution, its bytes made
present and verified for this node's workers, and a heap a worker produced signed and made known
to every node.

:class:`HeapCatalogue` is the contract and :class:`Catalogue` its one implementation, over three
parts that each backend provides:

- the index (:mod:`.heap_index`): the ``heaps`` rows of the registry database, SQLite on one
  machine, PostgreSQL for several nodes. It says which heaps exist, holds their metadata, and
  makes a deletion and the submits resuming the heap exclusive (a row lock in the database);
- the tags (:mod:`.heap_tags`): the ``heap_tags`` rows, as clients patch and search them;
- the bytes (:mod:`.shared_heaps`): the data directory's files, or a shared blob store (S3,
  PostgreSQL ``bytea``) with the data directory as this node's cache.

Nothing here takes a lock of the process: the database serialises what must be, and a remote
call never waits inside one. Every batch question is one statement per page.

A heap is indexed once its bytes are where every node reads them, and its bytes are removed
while the index holds its row, just before the row goes (a blob store that fails then changes
nothing: the deletion answers 503). So a row names readable bytes, except in one window: an
execution producing the very bytes of a heap while that heap is being deleted may index them
again as they go (resuming it then fails with "not found", as for a deleted heap). On one
machine the row is held with SQLite's write lock, so a deletion's unlink holds up the data
directory's other writes for its duration; with SQLite and an S3 store, for the S3 call.
Every heap the catalogue publishes is signed (:mod:`.heap_signing`: an HMAC under the
deployment's key, kept in the index row), and :meth:`HeapCatalogue.open` gives a worker only the
bytes of a heap whose signature verifies, read once and checked against the key, so the worker
receives exactly what was verified. A heap indexed before heaps were signed has no signature: a
single node trusts its own data directory and signs it on first use; a shared store refuses it
(:class:`~.errors.HeapNotSigned`) unless the signer was told to trust unsigned heaps (an operator
re-admitting the heaps of an earlier release).

Heaps are content-addressed and owned per tenant (:mod:`mcp_v8.principal`): what a client asks
(metadata, tags, the query, a resume, a deletion) is answered for its ``tenant`` only, from its
ownership row (:mod:`.heap_index`), and a heap it does not own is one that is not stored. A
deletion removes the tenant's ownership, and the bytes with the last owner's.

Blobs that a shared store held before the index existed (an S3 store of an earlier release)
are indexed the first time a single key names them (a resume, ``GET``, a tag patch, a delete);
``heap_blobs`` rows were indexed by the migration; both are the default tenant's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Collection, Iterable, Mapping
from typing import Protocol, runtime_checkable

from ..principal import DEFAULT_TENANT
from .errors import HeapCorrupt, HeapNotSigned
from .heap_index import HeapIndex, HeapInUse
from .heap_signing import HeapSigner, envelope_header
from .heap_tags import HeapTags
from .heaps import HeapMeta, HeapNotFound, validate_heap_key
from .paging import Page
from .shared_heaps import HeapBlobs, HeapStoreUnavailable

__all__ = ["Catalogue", "HeapCatalogue", "HeapInUse"]

log = logging.getLogger(__name__)


@runtime_checkable
class HeapCatalogue(Protocol):
    """Heap snapshots as the whole deployment knows them. Keys are checked
    (:class:`~.heaps.InvalidHeapKey`) before any I/O; a remote store that fails raises
    :class:`~.errors.HeapStoreUnavailable`. Safe to share between threads."""

    def meta(self, key: str, *, tenant: str = DEFAULT_TENANT) -> HeapMeta | None:
        """The heap's metadata for ``tenant``, ``tags`` as they stand (its patched ones, else its
        first execution's); None when ``tenant`` does not own it."""
        ...

    def stored(self, keys: Iterable[str | None], *, tenant: str | None = None) -> set[str]:
        """Those of ``keys`` that are stored (owned by ``tenant`` when given; None entries are
        skipped): one query per page."""
        ...

    def query(
        self, tags: Mapping[str, str], limit: int, *, cursor: str | None = None, tenant: str = DEFAULT_TENANT
    ) -> Page[HeapMeta]:
        """``tenant``'s stored heaps whose tags (its own) hold every pair of ``tags``, newest
        first, a page of ``limit``; :class:`~.errors.InvalidCursor` for a bad cursor."""
        ...

    def patch_tags(
        self,
        key: str,
        patch: Mapping[str, str | None],
        *,
        replace: bool = False,
        tenant: str = DEFAULT_TENANT,
    ) -> HeapMeta:
        """Applies a merge patch to ``tenant``'s tags of the heap (``replace``: ``patch`` becomes
        all of them) and returns its metadata; :class:`HeapNotFound` (``tenant`` does not own it),
        :class:`~.errors.HeapTagLimit`."""
        ...

    def in_use(self, key: str) -> bool:
        """Whether a queued or running execution of any node or process resumes the heap."""
        ...

    def in_use_all(self) -> set[str]:
        """Every heap a queued or running execution resumes."""
        ...

    def use(self, key: str, *, tenant: str = DEFAULT_TENANT) -> None:
        """An execution of ``tenant`` is about to resume the heap: counts the use (what retention
        goes by); :class:`HeapNotFound` when ``tenant`` does not own it. The execution's record is then created with
        ``require_heap``, which is the check that counts against a deletion."""
        ...

    def fetch(self, key: str) -> None:
        """Makes the heap's bytes present on this node and checks them as :meth:`open` does (but
        bytes that are not what the key names: the execution then fails saying so)."""
        ...

    def open(self, key: str) -> bytes:
        """The heap's bytes for a worker of this node: made present, read once, checked against
        the key and their signature verified. :class:`HeapNotFound`,
        :class:`~.errors.HeapNotSigned` (counted, see :meth:`refusals`),
        :class:`~.errors.HeapStoreUnavailable`."""
        ...

    def add(
        self,
        key: str,
        envelope: bytes,
        *,
        session: str | None,
        tags: Mapping[str, str] | None,
        tenant: str = DEFAULT_TENANT,
    ) -> None:
        """A worker of this node produced ``envelope`` for ``tenant``, whose key the server computed
        (``key``): stored, published to every node, signed, then indexed as ``tenant``'s with the
        request's session and tags (kept only if it is the first of ``tenant``'s to store the key)."""
        ...

    def refusals(self) -> int:
        """How many times a heap was refused because its signature did not verify, since start."""
        ...

    def delete(self, key: str, *, tenant: str = DEFAULT_TENANT) -> bool:
        """Removes ``tenant``'s ownership of the heap and its tags of it, and the heap itself with
        its last owner's; :class:`HeapInUse` (nothing changes) while an execution of ``tenant``
        resumes it (of any tenant when the heap goes), on any node. Returns whether ``tenant``
        owned it."""
        ...

    def prune(self, max_age_seconds: float, *, keep: Collection[str] = ()) -> int:
        """Removes the heaps neither stored nor resumed for ``max_age_seconds``, but those with
        tags, those in use and those of ``keep``; returns how many went."""
        ...


class Catalogue:
    """The :class:`HeapCatalogue` over one backend's ``index``, ``tags`` and ``blobs``."""

    def __init__(self, index: HeapIndex, tags: HeapTags, blobs: HeapBlobs, signer: HeapSigner) -> None:
        self.index = index
        self.tags = tags
        self.blobs = blobs
        self._signer = signer
        self._refused_lock = threading.Lock()
        self._refused = 0

    # -- what clients ask ----------------------------------------------------------------------

    def meta(self, key: str, *, tenant: str = DEFAULT_TENANT) -> HeapMeta | None:
        meta = self.index.entry(validate_heap_key(key), tenant=tenant)
        if meta is None and self._adopt(key, tenant):
            meta = self.index.entry(key, tenant=tenant)
        return meta

    def stored(self, keys: Iterable[str | None], *, tenant: str | None = None) -> set[str]:
        return self.index.stored((k for k in keys if k is not None), tenant=tenant)

    def query(
        self, tags: Mapping[str, str], limit: int, *, cursor: str | None = None, tenant: str = DEFAULT_TENANT
    ) -> Page[HeapMeta]:
        page = self.tags.query(tags, limit, cursor=cursor, tenant=tenant)
        found = self.index.entries([key for key, _ in page.items], tenant=tenant)
        # A tags row without the tenant's heap (its removal crashed in between) is not a heap.
        items = [dataclasses.replace(found[key], tags=t) for key, t in page.items if key in found]
        return Page(items, page.next_cursor)

    def patch_tags(
        self,
        key: str,
        patch: Mapping[str, str | None],
        *,
        replace: bool = False,
        tenant: str = DEFAULT_TENANT,
    ) -> HeapMeta:
        meta = self.meta(key, tenant=tenant)
        if meta is None:
            raise HeapNotFound(key)
        # With no tags row yet, the patch applies to the first execution's tags (``meta.tags``).
        tags = self.tags.patch(
            key, patch, base=meta.tags, created_at=meta.created_at, replace=replace, tenant=tenant
        )
        return dataclasses.replace(meta, tags=tags)

    def in_use(self, key: str) -> bool:
        return self.index.in_use(key)

    def in_use_all(self) -> set[str]:
        return self.index.in_use_all()

    def delete(self, key: str, *, tenant: str = DEFAULT_TENANT) -> bool:
        # Its bytes go (with the last owner) while the index holds its rows, then the rows: a
        # failure of the blob store changes nothing (HeapStoreUnavailable), and nothing indexes
        # the bytes again meanwhile.
        def bytes_gone(found: bool) -> None:
            if found:
                self.blobs.remove(key)

        removed = self.index.remove(validate_heap_key(key), bytes_gone, tenant=tenant)
        if not removed and self._adopt(key, tenant):
            removed = self.index.remove(key, bytes_gone, tenant=tenant)
        # Then its tags: a crash in between leaves tags without a heap, which nothing answers.
        self.tags.delete(key, tenant=tenant)
        return removed

    def prune(self, max_age_seconds: float, *, keep: Collection[str] = ()) -> int:
        kept = set(keep) | self.tags.tagged() | self.index.used_since(max_age_seconds)
        removed = 0
        for key in self.blobs.stale(max_age_seconds):
            if key in kept:
                continue
            try:
                removed += self._discard(key)
            except HeapInUse:
                continue
            except HeapStoreUnavailable as e:
                log.warning("retention could not remove heap %s: %s", key, e)
        self.blobs.prune_cache(max_age_seconds, keep=self.index.in_use_all())
        return removed

    # -- what the execution manager asks ---------------------------------------------------------

    def use(self, key: str, *, tenant: str = DEFAULT_TENANT) -> None:
        if not self.index.use(validate_heap_key(key), tenant=tenant) and not self._adopt(key, tenant):
            raise HeapNotFound(key)

    def fetch(self, key: str) -> None:
        with contextlib.suppress(HeapCorrupt):  # the execution fails when it runs, saying so
            self.open(key)

    def open(self, key: str) -> bytes:
        found, signature = self.index.signature(validate_heap_key(key))
        if not found:
            if not self._adopt(key):
                raise HeapNotFound(key)
            found, signature = self.index.signature(key)
        self.blobs.fetch(key)
        data = self.blobs.local.get(key)  # read once: what is checked is what a worker receives
        header = envelope_header(key, data)
        if header is None:
            raise HeapCorrupt(
                f"cannot restore heap: heap snapshot is corrupt (its stored bytes are not heap {key})"
            )
        if signature is None and self._signer.trust_unsigned:
            self.index.sign(key, self._signer.sign(key, header))  # its own data directory's heap
            return data
        signed_by = self._signer.signed_by(key, header, signature)
        if signed_by is None:
            with self._refused_lock:
                self._refused += 1
            log.warning("heap %s refused: its signature does not verify with this deployment's keys", key)
            hint = (
                "it was stored before heaps were signed; to re-admit the heaps the shared store holds, "
                "start a node once with --trust-unsigned-heaps"
                if signature is None
                else ""
            )
            raise HeapNotSigned(key, hint)
        if signed_by > 0:  # a key being retired: signed again with the one that signs now
            self.index.sign(key, self._signer.sign(key, header), replacing=signature)
        return data

    def add(
        self,
        key: str,
        envelope: bytes,
        *,
        session: str | None,
        tags: Mapping[str, str] | None,
        tenant: str = DEFAULT_TENANT,
    ) -> None:
        header = envelope_header(validate_heap_key(key), envelope)
        if header is None:
            raise ValueError(f"the bytes given are not heap {key}")
        size = self.blobs.publish(key, envelope)
        signature = self._signer.sign(key, header)
        first = self.index.add(key, size=size, session=session, tags=tags, signature=signature, tenant=tenant)
        if tags and first.tags:  # the tenant's first execution's tags, for its tag query (unless patched)
            self.tags.record(key, first.tags, first.created_at, tenant=tenant)

    def refusals(self) -> int:
        with self._refused_lock:
            return self._refused

    # -- internals -------------------------------------------------------------------------------

    def _discard(self, key: str) -> bool:
        """Removes the heap's bytes, its row if it has one (bytes a crash or a cancel left behind
        have none) and its tags; whether bytes went. :class:`HeapInUse` while it is in use."""
        gone = False

        def bytes_gone(found: bool) -> None:
            nonlocal gone
            gone = self.blobs.remove(key)

        self.index.remove(key, bytes_gone, tenant=None)  # every owner's
        self.tags.delete(key, tenant=None)  # emptied tags rows
        return gone

    def _adopt(self, key: str, tenant: str = DEFAULT_TENANT) -> bool:
        """Indexes a blob the shared store has but the index does not know, as the default
        tenant's (blobs from before tenants are its, as the migrations made every heap); whether
        ``tenant`` now owns it."""
        if tenant != DEFAULT_TENANT or self.index.signature(key)[0]:
            return False  # indexed already: owned by whom the index says
        size = self.blobs.find(key)
        if size is None:
            return False
        self.index.add(key, size=size, session=None, tags=None, tenant=DEFAULT_TENANT)
        return True
