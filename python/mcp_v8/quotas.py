"""How much each tenant may use: the vocabulary of quotas.

A tenant's quotas (:class:`TenantQuotas`) come from a :data:`QuotaSource`, a function of the
tenant's name: the auth config's per-tenant ``"quotas"`` where it names them, else the
server-wide defaults (``--tenant-max-concurrent`` and the others, :func:`from_settings`); a quota
absent (None) is unlimited. What each one counts, and where it is enforced:

- ``concurrent_executions``: the tenant's executions recorded ``running`` (queued or on a
  worker, live steps included; an execution paused for a decision, ``waiting``, holds no worker
  and is not counted, and its resume is never refused). Counted from the records in the
  transaction that inserts a new one, under the tenant's lock, so it holds for every process and
  node sharing the database.
- ``queued_executions``: those not yet on a worker. On the nodes of a database: the tenant's
  unclaimed jobs of the shared queue, counted as above; on one machine, the tenant's executions
  in this process's own queue (each process on a data directory has its own queue, and its own
  count).
- ``live_sessions``: the tenant's live sessions open in this process (a live session is held by
  one process), a new one refused beyond it; steps of open ones are not.
- ``heap_bytes``: the bytes of the stored heaps the tenant owns (its executions produced them,
  and it has not deleted them; bytes another tenant also owns count for both). A submit is
  refused while the tenant is at or over it; a running execution finishes, and its heap is kept
  (an execution's heap size is known only at its end).
- ``executions_per_minute``: executions the tenant started in the current minute of the clock
  (a fixed window, ``Retry-After`` its rest), counted from the records as above.
- ``tool_calls_per_minute``: tool calls the tenant's scripts made in the current minute, in this
  process (a refused call throws in the script).

``tool_servers``: the tool servers the tenant's scripts may call (None: every one); a call to
another is refused as a call to an unknown server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any

__all__ = [
    "QUOTAS",
    "UNLIMITED",
    "MinuteCounter",
    "QuotaReached",
    "QuotaSource",
    "TenantQuotas",
    "every_tenant",
    "from_limits",
    "minute_start",
    "seconds_left_in_minute",
]

QUOTAS: tuple[str, ...] = (
    "concurrent_executions",
    "queued_executions",
    "live_sessions",
    "heap_bytes",
    "executions_per_minute",
    "tool_calls_per_minute",
)
CONCURRENCY_RETRY_SECS = 1  # Retry-After of a quota a finishing execution frees
HEAP_RETRY_SECS = 60  # Retry-After of the heap bytes quota: a delete or retention frees it


@dataclass(frozen=True)
class TenantQuotas:
    """One tenant's quotas (None: unlimited) and the tool servers its scripts may call (None:
    every one)."""

    concurrent_executions: int | None = None
    queued_executions: int | None = None
    live_sessions: int | None = None
    heap_bytes: int | None = None
    executions_per_minute: int | None = None
    tool_calls_per_minute: int | None = None
    tool_servers: frozenset[str] | None = None

    def __post_init__(self) -> None:
        for name in QUOTAS:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"quota {name} must be an integer >= 0 or absent, not {value!r}")

    def limit(self, quota: str) -> int | None:
        """The limit of ``quota`` (one of :data:`QUOTAS`), None: unlimited."""
        if quota not in QUOTAS:
            raise ValueError(f"unknown quota {quota!r}")
        value: int | None = getattr(self, quota)
        return value

    def may_call(self, server: str) -> bool:
        """Whether the tenant's scripts may call the tool server ``server``."""
        return self.tool_servers is None or server in self.tool_servers

    @property
    def limits_admission(self) -> bool:
        """Whether a new execution's record has a quota to pass (else it is inserted as before)."""
        return any(
            v is not None
            for v in (
                self.concurrent_executions,
                self.queued_executions,
                self.heap_bytes,
                self.executions_per_minute,
            )
        )

    def or_else(self, defaults: TenantQuotas) -> TenantQuotas:
        """These quotas, with ``defaults``'s where these have none."""
        chosen: dict[str, Any] = {
            f.name: getattr(defaults, f.name) if getattr(self, f.name) is None else getattr(self, f.name)
            for f in fields(self)
        }
        return TenantQuotas(**chosen)


UNLIMITED = TenantQuotas()
QuotaSource = Callable[[str], TenantQuotas]  # a tenant's name -> its quotas


def every_tenant(quotas: TenantQuotas) -> QuotaSource:
    """The source that gives every tenant ``quotas``."""
    return lambda tenant: quotas


def from_limits(values: Iterable[tuple[str, int]]) -> TenantQuotas:
    """Quotas from ``(quota, limit)`` pairs where a limit of 0 means unlimited (the settings'
    spelling)."""
    limits: dict[str, Any] = {name: (value or None) for name, value in values}
    return TenantQuotas(**limits)


class QuotaReached(Exception):
    """A tenant's quota refused a request; ``retry_after``: the seconds after which it may pass."""

    def __init__(self, tenant: str, quota: str, limit: int, retry_after: int, detail: str) -> None:
        super().__init__(f"tenant {tenant!r} quota {quota} ({limit}) reached: {detail}")
        self.tenant = tenant
        self.quota = quota
        self.limit = limit
        self.retry_after = max(1, retry_after)


def minute_start(now: datetime) -> datetime:
    """The start of the minute ``now`` is in (UTC): the per-minute quotas' window."""
    return now.astimezone(timezone.utc).replace(second=0, microsecond=0)


def seconds_left_in_minute(now: datetime) -> int:
    """Whole seconds (at least 1) until the next minute's window begins."""
    elapsed = (now - minute_start(now)).total_seconds()
    return max(1, 60 - int(elapsed))


class MinuteCounter:
    """How many times each tenant did something in the current minute of ``clock`` (a fixed
    window), and a refusal beyond a limit. Safe to share between threads: one lock guards the
    counts, and a take is one check and one increment under it."""

    def __init__(self, quota: str, clock: Callable[[], datetime] | None = None) -> None:
        self.quota = quota
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._lock = threading.Lock()
        self._window: datetime | None = None
        self._counts: dict[str, int] = {}

    def take(self, tenant: str, limit: int | None, what: str) -> None:
        """Counts one for ``tenant``; :class:`QuotaReached` (counting nothing) when ``limit`` of
        this minute are taken. ``what``: the thing counted, for the message."""
        now = self._clock()
        with self._lock:
            self._roll(now)
            used = self._counts.get(tenant, 0)
            if limit is not None and used >= limit:
                raise QuotaReached(
                    tenant, self.quota, limit, seconds_left_in_minute(now), f"{used} {what} this minute"
                )
            self._counts[tenant] = used + 1

    def used(self, tenant: str) -> int:
        """The count of ``tenant`` in the current minute."""
        now = self._clock()
        with self._lock:
            self._roll(now)
            return self._counts.get(tenant, 0)

    def _roll(self, now: datetime) -> None:
        window = minute_start(now)
        if window != self._window:
            self._window = window
            self._counts = {}
