"""Storage for the service, one store per job, each behind a ``Protocol`` that other backends can
implement: heap snapshots (:class:`HeapStore`, content-addressed blobs on the filesystem), execution
records and their state machine, with the sessions they belong to (:class:`ExecutionStore`),
console output (:class:`OutputLog`), and, over the heap stores, the index and the tags, the heap
catalogue that answers every heap question for the whole deployment (:class:`HeapCatalogue`), and
the queue of several nodes (:class:`WorkQueue`). The stores of the registry database are one class
each (:class:`SQLExecutionStore`, :class:`SQLOutputLog`, :class:`SQLHeapTags`,
:class:`SQLHeapIndex`), their statements written once (:mod:`.sql`) over a connector: SQLite's, one
file in the data directory (:func:`open_database`, :mod:`.sqlite`), or PostgreSQL's
(:mod:`.postgres`). Their exceptions are in one module (:mod:`.errors`)."""

from __future__ import annotations

from .blobs import BlobStore
from .errors import (
    BlobStoreUnavailable,
    DatabaseUnavailable,
    DuplicateExecution,
    ExecutionNotFound,
    HeapInUse,
    HeapNotFound,
    HeapNotSigned,
    HeapStoreUnavailable,
    HeapTagLimit,
    InvalidCursor,
    InvalidHeapKey,
    SchemaVersionError,
)
from .execution_store import SQLExecutionStore, SQLiteExecutionStore
from .executions import (
    TERMINAL_STATUSES,
    ExecutionRecord,
    ExecutionStatus,
    ExecutionStore,
    PendingToolCall,
    SessionSummary,
    TerminalStatus,
)
from .heap_catalogue import Catalogue, HeapCatalogue
from .heap_index import HeapIndex, SQLHeapIndex, SQLiteHeapIndex
from .heap_signing import HeapSigner
from .heap_tags import HeapTags, SQLHeapTags, SQLiteHeapTags, merge_patch
from .heaps import FileHeapStore, HeapMeta, HeapStore, validate_heap_key
from .leases import Lease
from .output import OutputLog, OutputPage, OutputTotals, truncation_marker
from .output_log import SQLiteOutputLog, SQLOutputLog
from .paging import Page
from .schema import SCHEMA_VERSION, open_database
from .shared_heaps import HeapBlobs, LocalHeaps, SharedHeaps
from .sqlite import SQLiteDatabase
from .tool_call_log import SQLiteToolCallLog, SQLToolCallLog, ToolCallLog, ToolCallRow
from .work_queue import Claim, ClusterQueue, WorkQueue

__all__ = [
    "SCHEMA_VERSION",
    "TERMINAL_STATUSES",
    "BlobStore",
    "BlobStoreUnavailable",
    "Catalogue",
    "Claim",
    "ClusterQueue",
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
    "HeapNotSigned",
    "HeapSigner",
    "HeapStore",
    "HeapStoreUnavailable",
    "HeapTagLimit",
    "HeapTags",
    "InvalidCursor",
    "InvalidHeapKey",
    "Lease",
    "LocalHeaps",
    "OutputLog",
    "ToolCallLog",
    "ToolCallRow",
    "OutputPage",
    "OutputTotals",
    "Page",
    "SQLExecutionStore",
    "SQLHeapIndex",
    "SQLHeapTags",
    "SQLOutputLog",
    "SQLToolCallLog",
    "SQLiteDatabase",
    "SQLiteExecutionStore",
    "SQLiteHeapIndex",
    "SQLiteHeapTags",
    "SQLiteOutputLog",
    "SQLiteToolCallLog",
    "SchemaVersionError",
    "PendingToolCall",
    "SessionSummary",
    "SharedHeaps",
    "TerminalStatus",
    "WorkQueue",
    "merge_patch",
    "open_database",
    "truncation_marker",
    "validate_heap_key",
]
