"""Execution manager and worker processes: where submitted code actually runs."""

from .manager import CancelOutcome, ExecutionManager, QueueFull, ShuttingDown
from .spec import ExecutionSpec, FetchPolicy, Limits, spec_from_request

__all__ = [
    "CancelOutcome",
    "ExecutionManager",
    "ExecutionSpec",
    "FetchPolicy",
    "Limits",
    "QueueFull",
    "ShuttingDown",
    "spec_from_request",
]
