"""mcp-v8: run untrusted JavaScript and TypeScript in V8 isolates.

>>> from mcp_v8 import Engine
>>> Engine().execute("[1,2].map(x => x*2)").result
'[2,4]'
"""

from ._engine import Control, Outcome
from .engine import Engine, v8_version
from .errors import (
    APIError,
    EngineError,
    ExecutionCancelled,
    ExecutionTimeout,
    HeapLimitExceeded,
    JSError,
    JSSyntaxError,
    MCPV8Error,
    SnapshotError,
)

__version__ = "0.1.0"

__all__ = [
    "APIError",
    "Control",
    "Engine",
    "EngineError",
    "ExecutionCancelled",
    "ExecutionTimeout",
    "HeapLimitExceeded",
    "JSError",
    "JSSyntaxError",
    "MCPV8Error",
    "Outcome",
    "SnapshotError",
    "__version__",
    "v8_version",
]
