"""What each tenant's scripts may do with the tool servers (:mod:`mcp_v8.quotas`): the servers
they may call (``tool_servers``) and how many calls they make per minute
(``tool_calls_per_minute``).

A job's :class:`~.tool_calls.ToolCalls` talks to the caller :meth:`TenantTools.caller` gives for
its execution's tenant: its catalogue holds only the servers the tenant may call, so a call to
another is refused as one to a server that does not exist (and the servers' list in the refusal
omits it); each call it makes is counted in the tenant's minute first, and one past the quota
fails in the script (``Error: tool call failed: ... quota tool_calls_per_minute ...``) reaching
no tool server. The count is this process's (:class:`~mcp_v8.quotas.MinuteCounter`): the calls
of every worker of the process, not those of other processes or nodes. An approved call
(:mod:`.approvals`) was counted when it was held.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Callable

from ..quotas import MinuteCounter, QuotaReached, QuotaSource
from .tool_caller import ToolCaller, ToolInfo, ToolUnavailable

__all__ = ["TenantTools"]


class TenantTools:
    """The tool policy of every tenant, shared by a manager's worker slots. ``on_refused`` hears
    of each call a quota refused (the metrics count it)."""

    def __init__(
        self,
        quotas: QuotaSource,
        *,
        on_refused: Callable[[QuotaReached], None] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._quotas = quotas
        self._on_refused = on_refused
        self.calls = MinuteCounter("tool_calls_per_minute", clock)

    def caller(self, inner: ToolCaller | None, tenant: str) -> ToolCaller | None:
        """``inner`` as the scripts of ``tenant`` may use it (None: no tool servers)."""
        return None if inner is None else _TenantCaller(inner, tenant, self)

    def take(self, tenant: str) -> None:
        """Counts one call of ``tenant`` this minute; :class:`QuotaReached` past its quota."""
        limit = self._quotas(tenant).tool_calls_per_minute
        try:
            self.calls.take(tenant, limit, "tool calls")
        except QuotaReached as e:
            if self._on_refused is not None:
                self._on_refused(e)
            raise

    def allowed(self, tenant: str, server: str) -> bool:
        return self._quotas(tenant).may_call(server)


class _TenantCaller:
    """A :class:`~.tool_caller.ToolCaller` for one tenant's scripts."""

    def __init__(self, inner: ToolCaller, tenant: str, policy: TenantTools) -> None:
        self._inner = inner
        self._tenant = tenant
        self._policy = policy

    def tools(self) -> Mapping[str, Mapping[str, ToolInfo]]:
        catalogue = self._inner.tools()
        return {s: t for s, t in catalogue.items() if self._policy.allowed(self._tenant, s)}

    def call(
        self, server: str, tool: str, arguments_json: str, deadline: float, abandoned: threading.Event
    ) -> Mapping[str, Any]:
        if not self._policy.allowed(self._tenant, server):  # the catalogue refused it already
            raise ToolUnavailable(f"no tool server {server!r}")
        try:
            self._policy.take(self._tenant)
        except QuotaReached as e:
            raise ToolUnavailable(str(e)) from None
        return self._inner.call(server, tool, arguments_json, deadline, abandoned)
