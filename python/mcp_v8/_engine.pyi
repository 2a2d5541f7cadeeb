"""Native engine of mcp-v8 (Rust + C++ shim over V8 10.2). Use mcp_v8.Engine instead."""

from typing import Any, Callable, Final, Literal, final

__all__ = [
    "Control",
    "DEFAULT_CONSOLE_LIMIT_BYTES",
    "DEFAULT_MAX_FETCH_BYTES",
    "DEFAULT_MAX_FETCH_REQUESTS",
    "FetchRelay",
    "FetchRequest",
    "FetchRun",
    "LiveContext",
    "Outcome",
    "SANDBOX_VIOLATION_EXIT",
    "SNAPSHOT_FORMAT_VERSION",
    "ToolRelay",
    "_register_errors",
    "discard_prepared_isolate",
    "execute",
    "fetch_origins",
    "jitless",
    "prepare_isolate",
    "prepared_isolate",
    "sandbox_enter",
    "sandbox_syscalls",
    "set_jitless",
    "snapshot_key",
    "syscall_name",
    "v8_version",
]

SNAPSHOT_FORMAT_VERSION: Final[int]
DEFAULT_CONSOLE_LIMIT_BYTES: Final[int]
DEFAULT_MAX_FETCH_BYTES: Final[int]
SANDBOX_VIOLATION_EXIT: Final[int]
DEFAULT_MAX_FETCH_REQUESTS: Final[int]

@final
class Control:
    """Cancellation handle, usable from any thread before or while an execution runs."""

    def __new__(cls) -> Control: ...
    def cancel(self) -> None: ...

@final
class Outcome:
    """The immutable outcome of one execution."""

    @property
    def status(self) -> Literal["completed", "failed", "timed_out", "cancelled", "suspended"]: ...
    @property
    def completed(self) -> bool: ...
    @property
    def failed(self) -> bool: ...
    @property
    def timed_out(self) -> bool: ...
    @property
    def cancelled(self) -> bool: ...
    @property
    def heap_limit_exceeded(self) -> bool: ...
    @property
    def syntax_error(self) -> bool: ...
    @property
    def result(self) -> str | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def error_name(self) -> str | None: ...
    @property
    def error_message(self) -> str | None: ...
    @property
    def error_line(self) -> int | None: ...
    @property
    def error_column(self) -> int | None: ...
    @property
    def console(self) -> list[tuple[str, str]]: ...
    @property
    def output(self) -> str: ...
    @property
    def buffers(self) -> list[bytes]: ...
    @property
    def console_dropped(self) -> int: ...
    @property
    def snapshot(self) -> bytes | None: ...
    @property
    def heap_key(self) -> str | None: ...
    @property
    def snapshot_raw_bytes(self) -> int | None: ...
    @property
    def duration_ms(self) -> float: ...
    @property
    def phases(self) -> list[tuple[str, int, int]]: ...
    @property
    def heap_used_bytes(self) -> int: ...
    @property
    def external_peak_bytes(self) -> int: ...
    def raise_for_error(self) -> None: ...

@final
class LiveContext:
    """One isolate whose globals persist across runs; mcp_v8.Context wraps it."""

    def __new__(
        cls,
        *,
        heap: bytes | None = None,
        snapshots: bool = False,
        heap_limit_mb: int | None = None,
        dispatch: Callable[[int, str, str, list[bytes]], object] | None = None,
        allow_fetch: list[str] | None = None,
        max_fetch_bytes: int = ...,
        max_fetch_requests: int = ...,
        fetch_to_dispatch: bool = False,
    ) -> LiveContext: ...
    def run(
        self,
        code: str,
        *,
        timeout: float | None = None,
        language: str = "auto",
        filename: str | None = None,
        max_result_bytes: int = 0,
        console_limit_bytes: int = ...,
        keep_console: bool = True,
        bytes_result: bool = False,
        on_console: Callable[[str, str], object] | None = None,
        control: Control | None = None,
    ) -> Outcome: ...
    def call(
        self,
        path: str,
        args_json: str,
        buffers: list[bytes],
        *,
        timeout: float | None = None,
        max_result_bytes: int = 0,
        console_limit_bytes: int = ...,
        keep_console: bool = True,
        bytes_result: bool = True,
        on_console: Callable[[str, str], object] | None = None,
        control: Control | None = None,
    ) -> Outcome: ...
    def expose(self, name: str) -> None: ...
    def reply(self, call_id: int, ok: bool, json: str, buffers: list[bytes] = ...) -> None: ...
    def snapshot(self) -> tuple[bytes, str, int, int]: ...
    def heap_stats(self) -> dict[str, int]: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...

@final
class FetchRelay:
    """Hands an execution's fetch calls to ``on_call(call_id, args_json, body)``; ``reply``
    answers them from any thread (False: no execution in progress, the reply dropped)."""

    def __new__(cls, on_call: Callable[[int, str, bytes | None], object]) -> FetchRelay: ...
    def reply(self, call_id: int, ok: bool, head_json: str, body: bytes | None = None) -> bool: ...

@final
class FetchRequest:
    """A request a FetchRun checked, for its ``send``."""

@final
class FetchRun:
    """The fetches of one execution made in this process under its policy (thread-safe)."""

    def __new__(cls, origins: list[str], max_bytes: int = ..., max_requests: int = ...) -> FetchRun: ...
    def admit(self) -> str | None: ...
    def check(self, args_json: str, body: bytes | None = None) -> FetchRequest | str: ...
    def send(self, request: FetchRequest) -> tuple[bool, str, bytes]: ...
    def perform(self, args_json: str, body: bytes | None = None) -> tuple[bool, str, bytes]: ...
    def end(self) -> None: ...
    @property
    def ended(self) -> bool: ...

@final
class ToolRelay:
    """Hands an execution's tool calls to ``on_call(call_id, request_json)`` (request:
    ``{"call_id", "server", "tool", "arguments"}``); ``reply(call_id, answer_json)`` answers
    them from any thread (False: no execution in progress, the reply dropped)."""

    def __new__(cls, on_call: Callable[[int, str], object]) -> ToolRelay: ...
    def reply(self, call_id: int, answer_json: str) -> bool: ...

def execute(
    code: str,
    *,
    heap: bytes | None = None,
    snapshot: bool = False,
    heap_limit_mb: int | None = None,
    timeout: float | None = None,
    language: str = "auto",
    filename: str | None = None,
    max_result_bytes: int = 0,
    console_limit_bytes: int = ...,
    keep_console: bool = True,
    on_console: Callable[[str, str], object] | None = None,
    control: Control | None = None,
    allow_fetch: list[str] | None = None,
    max_fetch_bytes: int = ...,
    max_fetch_requests: int = ...,
    fetch_relay: FetchRelay | None = None,
    tool_relay: ToolRelay | None = None,
) -> Outcome: ...
def v8_version() -> str: ...
def prepare_isolate(*, heap_limit_mb: int | None = None) -> None: ...
def prepared_isolate() -> dict[str, int | None] | None: ...
def discard_prepared_isolate() -> None: ...
def snapshot_key(envelope: bytes) -> str: ...
def set_jitless(jitless: bool) -> None: ...
def jitless() -> bool: ...
def fetch_origins(origins: list[str]) -> list[str]: ...
def sandbox_enter(
    *,
    read_only: list[str],
    read_write: list[str],
    report_fd: int,
    max_files: int,
    max_data_bytes: int,
    require: bool,
) -> dict[str, Any]: ...
def syscall_name(nr: int, arch: str = "") -> str | None: ...
def sandbox_syscalls() -> list[str]: ...
def _register_errors(
    raise_for: Callable[[Outcome], None], snapshot_error: Any, engine_error: Any, closed_error: Any
) -> None: ...
