"""The live sessions of the nodes sharing one PostgreSQL database: one row a session in
``live_sessions`` (tenant, session, node, since), kept by :class:`PostgresLiveHolds` under the
:class:`~..live_holds.LiveHolds` contract.

A node takes a session with one ``INSERT ... ON CONFLICT DO NOTHING``; when another node holds it,
the row says which, and whether that node is alive (its lease in ``nodes`` not expired). A
session of a node that is gone is taken over in one conditional ``UPDATE`` (of two nodes taking it
over at once, one wins; the other finds it held). Rows of a node go when it releases them (the
session stops being live there, or the node stops); a lost node's rows stay until a node takes
the session over, so the step that does says what was lost.
"""

from __future__ import annotations

import threading
from collections.abc import Collection

from ...principal import DEFAULT_TENANT
from ..live_holds import Holder
from .database import PostgresDatabase

__all__ = ["PostgresLiveHolds"]

_ALIVE = "EXISTS (SELECT 1 FROM nodes WHERE id = live_sessions.node AND lease_until > now())"
_SINCE = "to_char(since AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"


class PostgresLiveHolds:
    """The sessions ``node`` holds, among the nodes of ``database``."""

    def __init__(self, database: PostgresDatabase, node: str) -> None:
        self._db = database
        self._node = node
        self._lock = threading.Lock()
        self._lost: dict[tuple[str, str], str] = {}

    def acquire(self, session: str, tenant: str = DEFAULT_TENANT) -> Holder | None:
        key = {"tenant": tenant, "session": session, "node": self._node}
        for _ in range(3):  # a row that goes between the two statements: look again
            rows = self._db.run(
                "INSERT INTO live_sessions (tenant, session, node) VALUES (:tenant, :session, :node)"
                " ON CONFLICT (tenant, session) DO NOTHING RETURNING node",
                key,
            )
            if rows:
                return None
            rows = self._db.run(
                f"SELECT node, {_ALIVE}, {_SINCE} FROM live_sessions WHERE tenant = :tenant AND session = :session",
                key,
            )
            if not rows:
                continue
            node, alive, since = str(rows[0][0]), bool(rows[0][1]), str(rows[0][2])
            if node == self._node:
                return None
            if alive:
                return Holder(f"node {node} (live there since {since})", node)
            taken = self._db.run(
                "UPDATE live_sessions SET node = :node, since = now()"
                f" WHERE tenant = :tenant AND session = :session AND node = :was AND NOT {_ALIVE}"
                " RETURNING node",
                {**key, "was": node},
            )
            if taken:
                with self._lock:
                    self._lost[(tenant, session)] = f"its node {node} was lost (its lease expired)"
                return None
        return Holder("another node (it changed hands while this one looked)")

    def lost(self, session: str, tenant: str = DEFAULT_TENANT) -> str | None:
        with self._lock:
            return self._lost.pop((tenant, session), None)

    def where(self, sessions: Collection[str], tenant: str = DEFAULT_TENANT) -> dict[str, tuple[str, str]]:
        if not sessions:
            return {}
        rows = self._db.run(
            f"SELECT session, node, {_SINCE} FROM live_sessions WHERE tenant = :tenant"
            f" AND session = ANY(:sessions) AND node <> :node AND {_ALIVE}",
            {"tenant": tenant, "sessions": list(sessions), "node": self._node},
        )
        return {str(r[0]): (str(r[1]), str(r[2])) for r in rows}

    def release(self, session: str, tenant: str = DEFAULT_TENANT) -> None:
        with self._lock:
            self._lost.pop((tenant, session), None)
        self._db.run(
            "DELETE FROM live_sessions WHERE tenant = :tenant AND session = :session AND node = :node",
            {"tenant": tenant, "session": session, "node": self._node},
        )

    def release_all(self) -> None:
        with self._lock:
            self._lost.clear()
        self._db.run("DELETE FROM live_sessions WHERE node = :node", {"node": self._node})
