"""Execution manager and worker processes: where submitted code actually runs."""

from .manager import CancelOutcome, ExecutionManager, HeapInUse, QueueFull, ShuttingDown, SubmitRequest

__all__ = ["CancelOutcome", "ExecutionManager", "HeapInUse", "QueueFull", "ShuttingDown", "SubmitRequest"]
