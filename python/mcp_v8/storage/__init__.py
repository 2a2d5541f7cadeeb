"""Storage for the service: heap snapshots (content-addressed blobs) and the execution registry
(execution records and console output in SQLite)."""

from __future__ import annotations

from .heaps import FileHeapStore, HeapMeta, HeapNotFound, HeapStore, InvalidHeapKey, validate_heap_key
from .registry import (
    TERMINAL_STATUSES,
    DuplicateExecution,
    ExecutionNotFound,
    ExecutionRecord,
    ExecutionStatus,
    OutputPage,
    Registry,
    TerminalStatus,
    truncation_marker,
)

__all__ = [
    "TERMINAL_STATUSES",
    "DuplicateExecution",
    "ExecutionNotFound",
    "ExecutionRecord",
    "ExecutionStatus",
    "FileHeapStore",
    "HeapMeta",
    "HeapNotFound",
    "HeapStore",
    "InvalidHeapKey",
    "OutputPage",
    "Registry",
    "TerminalStatus",
    "truncation_marker",
    "validate_heap_key",
]
