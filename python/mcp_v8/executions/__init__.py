"""Execution manager and worker processes: where submitted code actually runs."""

from .admission import Admission, SharedQueue
from .errors import QueueFull, ShuttingDown
from .manager import CancelOutcome, ExecutionManager
from .spec import ExecutionSpec, FetchPolicy, Limits, spec_from_request

__all__ = [
    "Admission",
    "CancelOutcome",
    "ExecutionManager",
    "ExecutionSpec",
    "FetchPolicy",
    "Limits",
    "QueueFull",
    "SharedQueue",
    "ShuttingDown",
    "spec_from_request",
]
