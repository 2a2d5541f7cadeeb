"""mcp-v8: run untrusted JavaScript and TypeScript in V8 isolates.

>>> from mcp_v8 import Engine
>>> Engine().execute("[1,2].map(x => x*2)").result
'[2,4]'
"""

from ._engine import Control, Outcome
from .context import Context, HeapSnapshot
from .engine import Engine, jitless, set_jitless, v8_version
from .errors import (
    APIError,
    ContextBusyError,
    ContextClosedError,
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
    "Context",
    "ContextBusyError",
    "ContextClosedError",
    "Control",
    "Engine",
    "EngineError",
    "ExecutionCancelled",
    "ExecutionTimeout",
    "HeapLimitExceeded",
    "JSError",
    "JSSyntaxError",
    "MCPV8Error",
    "HeapSnapshot",
    "Outcome",
    "SnapshotError",
    "__version__",
    "jitless",
    "set_jitless",
    "v8_version",
]
