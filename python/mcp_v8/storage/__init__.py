"""Storage for the service, one store per job, each behind a ``Protocol`` that other backends can
implement: heap snapshots (:class:`HeapStore`, content-addressed blobs on the filesystem), execution
records and their state machine, with the sessions they belong to (:class:`ExecutionStore`),
console output (:class:`OutputLog`), and, over the heap stores, the index and the tags, the heap
catalogue that answers every heap question for the whole deployment (:class:`HeapCatalogue`).
The SQLite implementations of the last two keep their tables in one database file
(:func:`open_database`) and share only its plumbing (:mod:`.sqlite`)."""

from __future__ import annotations

from .blobs import BlobStore, BlobStoreUnavailable
from .executions import (
    TERMINAL_STATUSES,
    DuplicateExecution,
    ExecutionNotFound,
    ExecutionRecord,
    ExecutionStatus,
    ExecutionStore,
    SessionSummary,
    SQLiteExecutionStore,
    TerminalStatus,
)
from .heap_catalogue import Catalogue, HeapCatalogue
from .heap_index import HeapIndex, HeapInUse, SQLiteHeapIndex
from .heap_tags import HeapTagLimit, HeapTags, SQLiteHeapTags, merge_patch
from .heaps import FileHeapStore, HeapMeta, HeapNotFound, HeapStore, InvalidHeapKey, validate_heap_key
from .leases import Lease
from .output import OutputLog, OutputPage, OutputTotals, SQLiteOutputLog, truncation_marker
from .paging import InvalidCursor, Page
from .schema import SCHEMA_VERSION, open_database
from .shared_heaps import HeapBlobs, HeapStoreUnavailable, LocalHeaps, SharedHeaps
from .sqlite import DatabaseUnavailable, SchemaVersionError, SQLiteDatabase

__all__ = [
    "SCHEMA_VERSION",
    "TERMINAL_STATUSES",
    "BlobStore",
    "BlobStoreUnavailable",
    "Catalogue",
    "DatabaseUnavailable",
    "DuplicateExecution",
    "ExecutionNotFound",
    "ExecutionRecord",
    "ExecutionStatus",
    "ExecutionStore",
    "FileHeapStore",
    "HeapBlobs",
    "HeapCatalogue",
    "HeapInUse",
    "HeapIndex",
    "HeapMeta",
    "HeapNotFound",
    "HeapStore",
    "HeapStoreUnavailable",
    "HeapTagLimit",
    "HeapTags",
    "InvalidCursor",
    "InvalidHeapKey",
    "Lease",
    "LocalHeaps",
    "OutputLog",
    "OutputPage",
    "OutputTotals",
    "Page",
    "SQLiteDatabase",
    "SQLiteExecutionStore",
    "SQLiteHeapIndex",
    "SQLiteHeapTags",
    "SQLiteOutputLog",
    "SchemaVersionError",
    "SessionSummary",
    "SharedHeaps",
    "TerminalStatus",
    "merge_patch",
    "open_database",
    "truncation_marker",
    "validate_heap_key",
]
