"""Execution manager and worker processes: where submitted code actually runs."""

from .manager import CancelOutcome, ExecutionManager, QueueFull, SubmitRequest

__all__ = ["CancelOutcome", "ExecutionManager", "QueueFull", "SubmitRequest"]
