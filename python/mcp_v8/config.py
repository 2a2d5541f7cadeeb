"""Server settings: embedded defaults, overridable by ``MCP_V8_*`` environment variables
and by ``mcp-v8 serve`` flags (flags win). One table, ``FIELDS``, drives all three."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .logs import LOG_FORMATS
from .redaction import passwords, redact_url
from .tool_answers import ANSWER_LIMIT

if TYPE_CHECKING:
    from .auth.config import AuthConfig


def _default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def _default_live_workers() -> int:
    return min(2, _default_workers())


SANDBOX_MODES = ("require", "auto", "off")


def default_sandbox() -> str:
    """``require`` on Linux, whose kernels have the walls (executions/sandbox.py); ``off``
    elsewhere."""
    return "require" if sys.platform.startswith("linux") else "off"


def _sandbox(value: str) -> str:
    mode = value.strip().lower()
    if mode not in SANDBOX_MODES:
        raise ValueError(f"expected one of {', '.join(SANDBOX_MODES)}")
    return mode


MCP_SESSIONS = ("live", "snapshot")


def _mcp_sessions(value: str) -> str:
    chosen = value.strip().lower()
    if chosen not in MCP_SESSIONS:
        raise ValueError(f"expected one of {', '.join(MCP_SESSIONS)}")
    return chosen


def _log_format(value: str) -> str:
    chosen = value.strip().lower()
    if chosen not in LOG_FORMATS:
        raise ValueError(f"expected one of {', '.join(LOG_FORMATS)}")
    return chosen


def _otlp_endpoint(value: str) -> str | None:
    url = value.strip()
    if not url:
        return None
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s]*)?", url):
        raise ValueError("expected an http:// or https:// URL")
    return url


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true/false, not {value!r}")


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


_ORIGIN = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(\[[0-9A-Fa-f:.]+\]|[^\[\]:@/?#\s]+)(?::([0-9]{1,5}))?")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def normalize_origin(value: str) -> str | None:
    """The canonical form of an ``Origin`` header value or allowlist entry: scheme and
    host lower-cased, the port kept as written but dropped when it is the scheme's
    default (browsers never send ``:80`` or ``:443``); ``null`` stays ``null``. None
    when the value is not ``scheme://host[:port]`` (a path, userinfo or query is not an
    origin)."""
    text = value.strip()
    if text.lower() == "null":
        return "null"
    match = _ORIGIN.fullmatch(text)
    if match is None:
        return None
    scheme, host, port = match.group(1).lower(), match.group(2).lower(), match.group(3)
    if port is None or _DEFAULT_PORTS.get(scheme) == port:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def origin_allowlist(entries: tuple[str, ...]) -> frozenset[str]:
    """Normalised allowlist entries (``*`` kept as is); ValueError names a bad entry."""
    allowed = set()
    for entry in entries:
        canonical = "*" if entry.strip() == "*" else normalize_origin(entry)
        if canonical is None:
            raise ValueError(f"{entry!r} is not an origin (scheme://host[:port], 'null' or '*')")
        allowed.add(canonical)
    return frozenset(allowed)


def _database_url(value: str) -> str | None:
    if not value:
        return None
    if not re.match(r"postgres(ql)?://", value):
        raise ValueError("expected a postgresql:// URL")
    return value


def _heap_store(value: str) -> str | None:
    if not value:
        return None
    if value in ("file", "postgresql") or re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?", value):
        return value
    raise ValueError("expected file, postgresql or s3://bucket[/prefix]")


def _origins(value: str) -> tuple[str, ...]:
    entries = _csv(value)
    origin_allowlist(entries)  # refuse a malformed entry at start, naming it
    return entries


# Each tenant's quota (mcp_v8.quotas) and the setting of its default for every tenant.
TENANT_QUOTA_SETTINGS = {
    "concurrent_executions": "tenant_max_concurrent",
    "queued_executions": "tenant_max_queued",
    "live_sessions": "tenant_max_live_sessions",
    "heap_bytes": "tenant_max_heap_bytes",
    "executions_per_minute": "tenant_executions_per_minute",
    "tool_calls_per_minute": "tenant_tool_calls_per_minute",
}


@dataclass(frozen=True)
class Settings:
    host: str = field(default="127.0.0.1", metadata={"help": "address to bind (loopback by default)"})
    port: int = field(default=3000, metadata={"help": "TCP port"})
    data_dir: Path = field(
        default=Path("data"),
        metadata={"help": "directory for the heap store, the executions database and worker logs"},
    )
    workers: int = field(
        default_factory=_default_workers, metadata={"help": "worker processes (default: CPU count)"}
    )
    queue_limit: int = field(default=256, metadata={"help": "executions waiting for a worker before 429"})
    threads: int = field(default=64, metadata={"help": "HTTP threads; a long-poll holds one while it waits"})
    mcp_tool_calls: int = field(
        default=32,
        metadata={
            "help": "mcp only: tools/call requests run at once (a waiting run_js holds one); more wait in order "
            "for a free one, and ping, cancellation and tools/list never wait"
        },
    )
    processes: int = field(
        default=1,
        metadata={
            "help": "serve processes sharing the port (SO_REUSEPORT), each a node with its own workers; "
            "more than 1 needs --database-url"
        },
    )
    default_timeout_secs: int = field(
        default=30, metadata={"help": "execution timeout when the request has none"}
    )
    max_timeout_secs: int = field(default=300, metadata={"help": "largest execution_timeout_secs accepted"})
    default_wall_timeout_secs: int = field(
        default=120,
        metadata={
            "help": "an execution's whole time, waiting on tool calls included, when the request has no "
            "wall_timeout_secs (execution_timeout_secs bounds the script's own time; a larger one raises this)"
        },
    )
    max_wall_timeout_secs: int = field(default=900, metadata={"help": "largest wall_timeout_secs accepted"})
    default_heap_mb: int = field(default=64, metadata={"help": "heap cap when the request has none"})
    max_heap_mb: int = field(default=1024, metadata={"help": "largest heap_memory_max_mb accepted"})
    max_code_bytes: int = field(default=1 << 20, metadata={"help": "largest code accepted (UTF-8 bytes)"})
    max_body_bytes: int = field(default=2 << 20, metadata={"help": "largest request body (413 beyond)"})
    max_output_bytes: int = field(default=10 << 20, metadata={"help": "console output kept per execution"})
    max_result_bytes: int = field(
        default=8 << 20, metadata={"help": "largest JSON result; a larger one fails the execution"}
    )
    allow_fetch: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "origins (scheme://host[:port], comma-separated) that scripts may fetch; empty: fetch is off. "
            "Redirects elsewhere are refused; a host name resolving to an internal address only when the "
            "origin names that address"
        },
    )
    max_fetch_bytes: int = field(
        default=10 << 20,
        metadata={
            "help": "largest response (or request) body of a fetch; at most 64 MiB through the workers"
        },
    )
    max_fetch_requests: int = field(default=50, metadata={"help": "fetch requests one execution may make"})
    max_tool_calls: int = field(
        default=50,
        metadata={
            "help": "tool calls an execution may make when its request has no max_tool_calls (refused calls "
            "count; the next one is refused with a TypeError)"
        },
    )
    max_tool_calls_ceiling: int = field(
        default=1000, metadata={"help": "largest max_tool_calls a request may ask for"}
    )
    tool_call_timeout_secs: int = field(
        default=60,
        metadata={
            "help": "time one tool call may take; then it fails with an Error and the tool server is told"
        },
    )
    tool_result_max_bytes: int = field(
        default=4 << 20,
        metadata={
            "help": f"largest answer of one tool call (as JSON); a larger one fails the call. At most {ANSWER_LIMIT}"
        },
    )
    max_tool_calls_in_flight: int = field(
        default=64,
        metadata={
            "help": "tool calls in flight at once across this process's workers; a call past it waits for a "
            "place (its tool_call_timeout_secs running)"
        },
    )
    durable_heaps: bool = field(
        default=False,
        metadata={"help": "fsync every heap snapshot (survives power loss; ~3.6 ms per execution)"},
    )
    snapshot_default: bool = field(
        default=True,
        metadata={
            "help": "whether an execution whose request has no snapshot field (or null) produces a heap snapshot "
            "(false: it runs in a plain isolate, with WebAssembly, and its heap is null)"
        },
    )
    retention_max_age_secs: int = field(
        default=7 * 86400,
        metadata={
            "help": "finished executions older than this, and heap snapshots unused for as long, are deleted (0: keep)"
        },
    )
    retention_max_count: int = field(
        default=10000, metadata={"help": "finished executions kept at most (0: no limit)"}
    )
    database_url: str | None = field(
        default=None,
        metadata={
            "help": "postgresql://... : executions, console output and heap tags in PostgreSQL instead of "
            "the data directory's SQLite file"
        },
    )
    heap_store: str | None = field(
        default=None,
        metadata={
            "help": "where heap snapshots live: file (the data directory; not with --database-url, whose nodes "
            "share heaps), postgresql (bytea in the database of --database-url) or s3://bucket/prefix; the data "
            "directory then caches them. Default: postgresql with --database-url, else file"
        },
    )
    s3_endpoint_url: str | None = field(
        default=None,
        metadata={"help": "the S3 endpoint of an s3:// heap store (credentials from AWS_* variables)"},
    )
    node_lease_secs: int = field(
        default=10,
        metadata={
            "help": "with --database-url: a node that has not renewed its lease for this long is lost, and "
            "its running executions fail"
        },
    )
    heap_signing_key: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "keys that sign heap snapshots (HMAC-SHA256; each at least 16 bytes, comma-separated: the "
            "first signs, every one verifies, for rotation). Prefer the variable or --heap-signing-key-file: a "
            "command line is visible to other local users. Without any, a single node generates one in its data "
            "directory; --database-url or a shared --heap-store needs one, the same on every node"
        },
    )
    heap_signing_key_file: Path | None = field(
        default=None,
        metadata={
            "help": "a file of heap signing keys, one a line, the first signs; '#' lines are skipped. "
            "Its keys come after those of --heap-signing-key"
        },
    )
    trust_unsigned_heaps: bool = field(
        default=False,
        metadata={
            "help": "sign, on first use, heaps a shared store holds without a signature (stored by a release "
            "before heaps were signed) instead of refusing them: once, to re-admit them. A single node always "
            "trusts the unsigned heaps of its own data directory"
        },
    )
    jitless: bool = field(
        default=False,
        metadata={
            "help": "workers run V8 without its JIT compilers: bytecode is interpreted, no machine code is "
            "generated at run time (where most V8 exploits live), WebAssembly is not defined; compute-heavy "
            "scripts run up to ~3x slower (benches/jitless.py). Heaps restore across both settings"
        },
    )
    warm_isolates: bool = field(
        default=True,
        metadata={
            "help": "each worker prepares the isolate of its next execution while idle (the base context, the "
            "heap cap of its last execution that restored no heap and made no snapshot, at first "
            "--default-heap-mb): such an execution (snapshot false, no heap) starts without creating one, "
            "about 2 ms sooner; it costs 1 to 3 MB of RSS per worker"
        },
    )
    sandbox: str = field(
        default_factory=default_sandbox,
        metadata={
            "help": "the walls around each worker process (network and user namespaces, no capabilities, "
            "Landlock, a seccomp allow-list, limits): require (refuse to start without seccomp, the "
            "dropped capabilities and Landlock), auto (what the kernel allows; what is missing is logged "
            "and in /api/stats) or off"
        },
    )
    tools_config: Path | None = field(
        default=None,
        metadata={
            "help": "a JSON file of the MCP tool servers scripts may call (the mcpServers shape: command/args/env "
            "for stdio, type http + url/headers for Streamable HTTP; per server tools, approve, "
            "approveDestructive); checked at startup"
        },
    )
    approver_token: str | None = field(
        default=None,
        metadata={
            "help": "bearer token of whoever approves the gated tool calls of --tools-config (approve, "
            "approveDestructive); required when a tool is gated, and not the --api-token: approving is not the "
            "script author's to do"
        },
    )
    mcp_sessions: str = field(
        default="live",
        metadata={
            "help": "live: run_js with a session and no heap runs in the session's live context (needs "
            "--live-workers); snapshot: every run_js resumes and makes heap snapshots, as with a heap"
        },
    )
    live_workers: int = field(
        default_factory=_default_live_workers,
        metadata={
            "help": "worker processes for live sessions (POST /api/exec with live: true), a pool of their own "
            "beside --workers, so live sessions never starve one-off executions (0: no live sessions; "
            "default: 2, or 1 on one CPU)"
        },
    )
    live_sessions_per_worker: int = field(
        default=1,
        metadata={
            "help": "live sessions one live worker holds at once; above 1, a V8 fatal error or a sandbox kill "
            "under one session ends the others it holds too (they resume from their last snapshots)"
        },
    )
    live_snapshot_secs: int = field(
        default=60,
        metadata={
            "help": "a live session that changed is snapshotted this often: the most a worker crash can lose"
        },
    )
    live_idle_secs: int = field(
        default=300,
        metadata={"help": "a live session idle this long is snapshotted and its live context ended"},
    )
    approval_timeout_secs: int = field(
        default=3600,
        metadata={
            "help": "an execution waiting for a decision on its held tool calls (status waiting) fails when "
            "none came within this many seconds"
        },
    )
    tenant_max_concurrent: int = field(
        default=0,
        metadata={
            "help": "each tenant's executions running at once (queued or on a worker, every node; 429 beyond); "
            "the auth config's per-tenant quotas win. 0: unlimited"
        },
    )
    tenant_max_queued: int = field(
        default=0,
        metadata={"help": "each tenant's executions waiting for a worker (429 beyond). 0: unlimited"},
    )
    tenant_max_live_sessions: int = field(
        default=0,
        metadata={"help": "each tenant's live sessions open in one process (429 beyond). 0: unlimited"},
    )
    tenant_max_heap_bytes: int = field(
        default=0,
        metadata={
            "help": "bytes of the stored heaps each tenant owns; a submit at or over it gets 429. "
            "0: unlimited"
        },
    )
    tenant_executions_per_minute: int = field(
        default=0,
        metadata={
            "help": "executions each tenant starts per clock minute, every node (429 beyond). 0: unlimited"
        },
    )
    tenant_tool_calls_per_minute: int = field(
        default=0,
        metadata={
            "help": "tool calls each tenant's scripts make per clock minute in one process (a call beyond "
            "throws in the script). 0: unlimited"
        },
    )
    api_token: str | None = field(
        default=None,
        metadata={
            "help": "bearer token required on every route but /api/version and /api/openapi.json (a server "
            "of one tenant; not with --auth-config or --jwks-url, whose principals have tokens of their own)"
        },
    )
    auth_config: Path | None = field(
        default=None,
        metadata={
            "help": "a JSON file of tenants: their API tokens (SHA-256 hashes: mcp-v8 hash-token) and scopes (run, "
            "read, cancel, approve, admin), quotas and tool servers; and how JWTs are verified (jwt). Every "
            "route but the public ones then needs a token of a tenant; checked at startup"
        },
    )
    jwks_url: str | None = field(
        default=None,
        metadata={
            "help": "accept JWT bearer tokens signed by a key of this JWKS (https://, or http:// on loopback); "
            "with --jwt-issuer and --jwt-audience. Overrides the auth config's jwt.jwks_url"
        },
    )
    jwt_issuer: str | None = field(
        default=None, metadata={"help": "the iss a JWT must have (overrides jwt.issuer)"}
    )
    jwt_audience: str | None = field(
        default=None, metadata={"help": "the aud a JWT must hold (overrides jwt.audience)"}
    )
    jwt_tenant_claim: str | None = field(
        default=None,
        metadata={
            "help": "the JWT claim naming the principal's tenant (overrides jwt.tenant_claim; default: tenant)"
        },
    )
    tenant: str | None = field(
        default=None,
        metadata={
            "help": "mcp only: the tenant of the auth config that stdio acts for (with run, read, cancel and "
            "approve); required with --auth-config, and only the default tenant without one"
        },
    )
    allowed_hosts: tuple[str, ...] = field(
        default=("127.0.0.1", "localhost", "[::1]"),
        metadata={"help": "Host header values accepted, comma-separated ('*' accepts any)"},
    )
    metrics_public: bool = field(
        default=False,
        metadata={
            "help": "serve GET /metrics without the API token (for a scraper that holds none); it is exempt "
            "from the Host check then, as it is when a token is required"
        },
    )
    log_format: str = field(
        default="text",
        metadata={
            "help": "the server's log lines on standard error: text (human-readable) or json (one object a "
            "line: time, level, logger, message, execution_id, trace_id, node)"
        },
    )
    otlp_endpoint: str | None = field(
        default=None,
        metadata={
            "help": "export OpenTelemetry traces of each execution over OTLP/HTTP to this collector (its base "
            "URL, e.g. http://localhost:4318: spans go to /v1/traces); without it the standard "
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT turns them on; needs the "
            "mcp-v8[otel] extra. Off by default"
        },
    )
    allowed_origins: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "Origin header values accepted (scheme://host[:port], comma-separated; '*' accepts any, "
            "'null' the null origin); a request with any other Origin gets 403, one without Origin is unaffected"
        },
    )

    def __post_init__(self) -> None:
        if self.processes < 1:
            raise ValueError("processes must be at least 1")
        if self.mcp_tool_calls < 1:
            raise ValueError("mcp_tool_calls must be at least 1")
        if self.max_fetch_bytes < 1 or self.max_fetch_requests < 1:
            raise ValueError("max_fetch_bytes and max_fetch_requests must be at least 1")
        fetch_origins(self.allow_fetch)
        if not 0 <= self.max_tool_calls <= self.max_tool_calls_ceiling:
            raise ValueError(
                f"max_tool_calls must be between 0 and max_tool_calls_ceiling ({self.max_tool_calls_ceiling})"
            )
        if not 1 <= self.default_wall_timeout_secs <= self.max_wall_timeout_secs:
            raise ValueError(
                f"default_wall_timeout_secs must be between 1 and max_wall_timeout_secs ({self.max_wall_timeout_secs})"
            )
        if self.max_tool_calls_in_flight < 1:
            raise ValueError("max_tool_calls_in_flight must be at least 1")
        if self.tool_call_timeout_secs < 1:
            raise ValueError("tool_call_timeout_secs must be at least 1")
        if not 1 <= self.tool_result_max_bytes <= ANSWER_LIMIT:
            raise ValueError(f"tool_result_max_bytes must be between 1 and {ANSWER_LIMIT}")
        self._check_auth()
        if self.tools_config is not None:
            from .tools.config import load_tools_config

            try:
                tools = load_tools_config(self.tools_config)
            except ValueError as e:
                raise ValueError(f"tools_config: {e}") from None
            gating = [s.name for s in tools.servers if s.gates_any]
            if gating and not self.approver_token and not self.auth.enabled:
                raise ValueError(
                    f"tools_config gates tools of {', '.join(gating)} (approve, approveDestructive) but no "
                    "approver_token is set: approving a call needs a credential of its own"
                )
            for tenant in (self.auth.tenants or {}).values():
                unknown = sorted((tenant.tool_servers or frozenset()) - {s.name for s in tools.servers})
                if unknown:
                    raise ValueError(
                        f"auth_config: tenants.{tenant.name}.tool_servers: {unknown[0]!r} is not a server of "
                        "the tools_config"
                    )
        else:
            for tenant in (self.auth.tenants or {}).values():
                if tenant.tool_servers:
                    raise ValueError(
                        f"auth_config: tenants.{tenant.name}.tool_servers names tool servers, but there is no "
                        "tools_config"
                    )
        for name in TENANT_QUOTA_SETTINGS.values():
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be at least 0 (0: unlimited)")
        if self.approval_timeout_secs < 1:
            raise ValueError("approval_timeout_secs must be at least 1")
        if self.live_workers < 0:
            raise ValueError("live_workers must be at least 0")
        for name in ("live_sessions_per_worker", "live_snapshot_secs", "live_idle_secs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.approver_token is not None and self.approver_token == self.api_token:
            raise ValueError(
                "approver_token must differ from api_token: approving is not the script author's to do"
            )
        if self.processes > 1 and self.database_url is None:
            # A request may reach any of them: they must share the registry and the queue.
            raise ValueError("processes above 1 need database_url: the processes answer for each other")
        if self.heap_store == "postgresql" and self.database_url is None:
            raise ValueError("heap_store postgresql needs database_url")
        if self.heap_store == "file" and self.database_url is not None:
            # Any node may run any execution: a heap only one node's disk holds would be lost
            # to the others.
            raise ValueError(
                "with database_url, heap_store must be postgresql or s3://...: nodes share heaps"
            )

        if self.shared_heaps and not self.heap_signing_key and self.heap_signing_key_file is None:
            raise ValueError(
                "a shared heap store (database_url, or heap_store postgresql or s3://...) needs a heap signing "
                "key, the same on every node: set MCP_V8_HEAP_SIGNING_KEY or --heap-signing-key-file"
            )

    def _check_auth(self) -> None:
        """Parses the auth config and the JWT settings once (:attr:`auth`), and refuses a token of
        the single tenant beside them: it would act across every tenant."""
        from .auth.config import build_auth

        try:
            auth = build_auth(
                self.auth_config,
                jwks_url=self.jwks_url,
                issuer=self.jwt_issuer,
                audience=self.jwt_audience,
                tenant_claim=self.jwt_tenant_claim,
            )
        except ValueError as e:
            where = "auth_config" if self.auth_config is not None else "jwks_url"
            raise ValueError(f"{where}: {e}") from None
        object.__setattr__(self, "_auth", auth)
        if auth.enabled:
            with_ = "auth_config" if self.auth_config is not None else "jwks_url"
            for name in ("api_token", "approver_token"):
                if getattr(self, name) is not None:
                    raise ValueError(
                        f"{name} cannot be used with {with_}: every token is then a tenant's (list it in the "
                        "auth config, hashed, with its scopes); a token of its own would act across tenants"
                    )
        if self.tenant is not None:
            from .principal import check_tenant_name

            check_tenant_name(self.tenant)

    @property
    def auth(self) -> AuthConfig:
        """The principals this server knows (:class:`mcp_v8.auth.AuthConfig`), parsed from
        ``auth_config`` and the JWT settings when the settings were made: tenants, their tokens,
        quotas and tool servers (``settings.auth.tenant(name)``)."""
        auth: AuthConfig = self.__dict__["_auth"]
        return auth

    @property
    def shared_heaps(self) -> bool:
        """Whether heaps live where other nodes (or anyone who can write that store) write too."""
        return self.database_url is not None or self.heap_backend != "file"

    @property
    def heap_backend(self) -> str:
        """The heap store in force: ``heap_store``, else postgresql with a database, else file."""
        if self.heap_store is not None:
            return self.heap_store
        return "file" if self.database_url is None else "postgresql"

    def with_overrides(self, **values: Any) -> Settings:
        return replace(self, **{k: v for k, v in values.items() if v is not None})


def fetch_origins(entries: tuple[str, ...]) -> tuple[str, ...]:
    """The canonical allowed origins; ValueError names a bad entry. The engine's own rule
    (rust/engine/src/fetch.rs), not a second one."""
    from . import _engine

    return tuple(_engine.fetch_origins(list(entries)))


def _fetch_origins(value: str) -> tuple[str, ...]:
    return fetch_origins(_csv(value))


MIN_SIGNING_KEY_BYTES = 16


def parse_signing_keys(text: str, *, file: bool = False) -> list[bytes]:
    """The heap signing keys of a setting (comma-separated) or of a key file (``file``: one a
    line, blank lines and lines starting with ``#`` skipped); the first signs. Each at least
    :data:`MIN_SIGNING_KEY_BYTES` bytes (UTF-8), without the spaces around it; ValueError
    otherwise, never showing a key."""
    if file:
        parts = [line for line in text.splitlines() if not line.strip().startswith("#")]
    else:
        parts = text.split(",")
    keys = [part.strip().encode("utf-8") for part in parts if part.strip()]
    for i, k in enumerate(keys):
        if len(k) < MIN_SIGNING_KEY_BYTES:
            raise ValueError(
                f"heap signing key {i + 1} is {len(k)} bytes; at least {MIN_SIGNING_KEY_BYTES} are needed"
            )
    return keys


def _signing_keys(value: str) -> tuple[str, ...]:
    parse_signing_keys(value)
    return _csv(value)


def _tenant(value: str) -> str | None:
    if not value:
        return None
    from .principal import check_tenant_name

    return check_tenant_name(value)


def parser_for(name: str) -> Callable[[str], Any]:
    special: dict[str, Callable[[str], Any]] = {
        "data_dir": Path,
        "allowed_hosts": _csv,
        "allowed_origins": _origins,
        "allow_fetch": _fetch_origins,
        "api_token": lambda v: v or None,
        "approver_token": lambda v: v or None,
        "heap_signing_key": _signing_keys,
        "heap_signing_key_file": lambda v: Path(v) if v else None,
        "tools_config": lambda v: Path(v) if v else None,
        "auth_config": lambda v: Path(v) if v else None,
        "jwks_url": lambda v: v or None,
        "jwt_issuer": lambda v: v or None,
        "jwt_audience": lambda v: v or None,
        "jwt_tenant_claim": lambda v: v or None,
        "tenant": _tenant,
        "trust_unsigned_heaps": _bool,
        "database_url": _database_url,
        "heap_store": _heap_store,
        "s3_endpoint_url": lambda v: v or None,
        "durable_heaps": _bool,
        "snapshot_default": _bool,
        "sandbox": _sandbox,
        "jitless": _bool,
        "metrics_public": _bool,
        "log_format": _log_format,
        "warm_isolates": _bool,
        "otlp_endpoint": _otlp_endpoint,
        "mcp_sessions": _mcp_sessions,
        "host": str,
    }
    return special.get(name, int)


FIELDS = [f for f in fields(Settings)]


def env_name(name: str) -> str:
    return "MCP_V8_" + name.upper()


def shown(name: str, value: Any) -> str:
    """How the value of setting ``name`` is shown (``--help`` defaults, errors): never a secret.
    The API token is ``(set)``, a database URL has its passwords as ``***`` (and a value that is
    no such URL is not shown at all)."""
    if value and name in ("api_token", "approver_token", "heap_signing_key"):
        return "(set)"
    if isinstance(value, tuple):
        return ",".join(value)
    if value and name == "database_url":
        return redact_url(value) if re.match(r"postgres(ql)?://", value) else "(not shown)"
    return str(value)


def secrets(settings: Settings) -> list[str]:
    """What the settings hold that logs must never show: the API and approver tokens, the
    database's passwords, the heap signing keys, the headers of the tool servers."""
    found = passwords(settings.database_url) if settings.database_url else []
    tokens = [t for t in (settings.api_token, settings.approver_token) if t]
    return found + tokens + list(settings.heap_signing_key) + _tool_server_headers(settings)


def _tool_server_headers(settings: Settings) -> list[str]:
    """The header values of the tools file's HTTP servers (credentials, as a rule), whole and
    without their scheme (``Bearer <token>``: the token alone too)."""
    if settings.tools_config is None:
        return []
    from .tools.config import HttpServer, load_tools_config

    try:
        servers = load_tools_config(settings.tools_config).servers
    except ValueError:  # checked when the settings were made; changed since: nothing to hide
        return []
    values = [v for s in servers if isinstance(s.transport, HttpServer) for v in s.transport.headers.values()]
    return [part for v in values for part in (v, v.partition(" ")[2]) if part.strip()]


def from_env(environ: dict[str, str] | None = None) -> Settings:
    """Settings from the embedded defaults and ``MCP_V8_*`` variables."""
    environ = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    for f in FIELDS:
        raw = environ.get(env_name(f.name))
        if raw is not None and raw != "":
            try:
                values[f.name] = parser_for(f.name)(raw)
            except ValueError as e:
                raise ValueError(f"{env_name(f.name)}={shown(f.name, raw)!r}: {e}") from e
    return Settings(**values)
