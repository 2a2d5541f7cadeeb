"""Execution manager and worker processes: where submitted code actually runs."""

from .manager import CancelOutcome, ExecutionManager, QueueFull, ShuttingDown, SubmitRequest

__all__ = ["CancelOutcome", "ExecutionManager", "QueueFull", "ShuttingDown", "SubmitRequest"]
