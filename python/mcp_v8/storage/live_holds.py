"""Which server process holds a live session: the contract (:class:`LiveHolds`) the live sessions
(:mod:`mcp_v8.executions.live`) keep their sessions under, so that a session is live in one
process at a time.

Two kinds keep it:

- the processes on one data directory: a lock file a session
  (:class:`mcp_v8.executions.live_locks.SessionLocks`); a session held by another process is
  refused (409 naming it), since those processes cannot hand each other work;
- the nodes of one PostgreSQL database: a row a session, naming its node
  (:class:`.postgres.live_holds.PostgresLiveHolds`); a step for a session held by another node is
  queued for that node (:attr:`Holder.node`), and a session whose node was lost (its lease
  expired) is taken over by the next node that runs a step of it, which says what was lost.

A hold is per (tenant, session): two tenants' sessions of one name are two sessions.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import NamedTuple, Protocol, runtime_checkable

from ..principal import DEFAULT_TENANT

__all__ = ["Holder", "LiveHolds"]


class Holder(NamedTuple):
    """Who holds a session: said to a client (``said``), and the node its steps may be sent to
    (``node``; None where steps cannot be sent, e.g. another process on the data directory)."""

    said: str
    node: str | None = None


@runtime_checkable
class LiveHolds(Protocol):
    def acquire(self, session: str, tenant: str = DEFAULT_TENANT) -> Holder | None:
        """Takes the session for this process: None (taken, or already this process's), or who
        holds it. Taking over a session whose holder is gone (a lost node) succeeds; then
        :meth:`lost` says what was lost, once."""
        ...

    def lost(self, session: str, tenant: str = DEFAULT_TENANT) -> str | None:
        """Why the session's previous holder lost what it held, when :meth:`acquire` just took
        it over from one that was gone (once); else None."""
        ...

    def where(self, sessions: Collection[str], tenant: str = DEFAULT_TENANT) -> dict[str, tuple[str, str]]:
        """Of ``sessions``, those another node holds: the node and since when (ISO-8601). Empty
        where holders are not nodes."""
        ...

    def release(self, session: str, tenant: str = DEFAULT_TENANT) -> None:
        """This process no longer holds the session."""
        ...

    def release_all(self) -> None:
        """This process holds no session any more (it stops)."""
        ...
