"""Who a request acts for: a tenant, and what it may do there.

Every object the service keeps (an execution, its output, a session, a live session, a heap's
ownership and its tags) belongs to one tenant; a request is answered for its principal's tenant
only, and objects of other tenants are indistinguishable from ones that do not exist. A server
without an auth config has one tenant, :data:`DEFAULT_TENANT`, and every request with the API
token (or on a server without one) acts for it with every scope.

Scopes:

- ``run``: submit executions, resume heaps, snapshot and end live sessions;
- ``read``: read executions, output, sessions, heaps and usage;
- ``cancel``: cancel executions;
- ``approve``: decide the tool calls an execution waits on;
- ``admin``: read across tenants (listings, stats and records of every tenant), beside its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "DEFAULT_TENANT",
    "SCOPES",
    "TENANT_PATTERN",
    "Principal",
    "check_tenant_name",
    "single_tenant",
]

DEFAULT_TENANT = "default"  # the tenant of a server without an auth config, and of data from before tenants
SCOPES: tuple[str, ...] = ("run", "read", "cancel", "approve", "admin")
TENANT_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


def check_tenant_name(name: str) -> str:
    """``name`` when it is a tenant's name (1 to 64 of ``a-z0-9_.-``, starting with a letter or a
    digit); raises ValueError otherwise."""
    if not isinstance(name, str) or TENANT_PATTERN.fullmatch(name) is None:
        raise ValueError(f"a tenant's name is 1 to 64 characters of a-z, 0-9, '_', '.', '-': {name!r}")
    return name


@dataclass(frozen=True)
class Principal:
    """A request's tenant, its scopes, and what authenticated it (``subject``: the token's name or
    the JWT's ``sub``; for logs, never for decisions)."""

    tenant: str
    scopes: frozenset[str]
    subject: str | None = None

    def __post_init__(self) -> None:
        check_tenant_name(self.tenant)
        unknown = set(self.scopes) - set(SCOPES)
        if unknown:
            raise ValueError(f"unknown scopes: {sorted(unknown)}")

    def may(self, scope: str) -> bool:
        """Whether it holds ``scope``."""
        return scope in self.scopes

    @property
    def sees_all(self) -> bool:
        """Whether it reads across tenants (the ``admin`` scope)."""
        return "admin" in self.scopes

    @property
    def tenant_filter(self) -> str | None:
        """The tenant its reads are limited to; None: every tenant (``admin``)."""
        return None if self.sees_all else self.tenant


def single_tenant(subject: str | None = None) -> Principal:
    """The principal of every request on a server without an auth config: the default tenant,
    every scope but ``approve`` (which stays the approver token's, ``--approver-token``)."""
    return Principal(DEFAULT_TENANT, frozenset(SCOPES) - {"approve"}, subject)
