"""Who a request is: the principal of its bearer token, an API token of the auth config (by its
SHA-256, compared in constant time) or a JWT verified against the JWKS (:mod:`.jwks`)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from ..principal import DEFAULT_TENANT, SCOPES, Principal, check_tenant_name
from .config import AuthConfig, AuthConfigError, TokenEntry
from .jwks import JwtRejected, JwtVerifier, KeysUnavailable

__all__ = ["Authenticator", "KeysUnavailable", "Unauthenticated", "bearer_token", "stdio_principal"]

# What the local user of ``mcp-v8 mcp`` may do in its tenant (not ``admin``: stdio reads one tenant).
STDIO_SCOPES = frozenset({"run", "read", "cancel", "approve"})


class Unauthenticated(Exception):
    """No principal: no bearer token, or one this server does not know; the message says which
    (never the token)."""


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, None without one."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _scopes_of(value: Any) -> frozenset[str]:
    """The scopes a JWT claim grants: a space-separated string or an array of strings,
    intersected with :data:`SCOPES` (others are the identity provider's, ignored)."""
    if isinstance(value, str):
        given = value.split()
    elif isinstance(value, list):
        given = [v for v in value if isinstance(v, str)]
    else:
        given = []
    return frozenset(given) & frozenset(SCOPES)


class Authenticator:
    """The principal of a request's ``Authorization`` header, on a server with an auth config or
    a JWKS (:attr:`AuthConfig.enabled`)."""

    def __init__(self, auth: AuthConfig, verifier: JwtVerifier | None = None) -> None:
        self._auth = auth
        self._tokens: list[tuple[bytes, str, TokenEntry]] = [
            (bytes.fromhex(t.sha256), tenant.name, t)
            for tenant in (auth.tenants or {}).values()
            for t in tenant.tokens
        ]
        self._verifier = verifier if verifier is not None or auth.jwt is None else JwtVerifier(auth.jwt)

    @property
    def verifier(self) -> JwtVerifier | None:
        return self._verifier

    def principal(self, authorization: str | None) -> Principal:
        """The principal of the header; :class:`Unauthenticated` when there is none,
        :class:`KeysUnavailable` when a JWT cannot be checked for want of the JWKS."""
        token = bearer_token(authorization)
        if token is None:
            raise Unauthenticated("a valid bearer token is required")
        found = self._api_token(token)
        if found is not None:
            return found
        if self._verifier is not None and token.count(".") == 2:
            return self._from_jwt(token)
        raise Unauthenticated("the bearer token is not a valid token of this server")

    def _api_token(self, token: str) -> Principal | None:
        """The principal of an API token of the config: its SHA-256 compared with every token's,
        each in constant time and all of them always (no early exit)."""
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        found: tuple[str, TokenEntry] | None = None
        for stored, tenant, entry in self._tokens:
            if hmac.compare_digest(digest, stored) and found is None:
                found = (tenant, entry)
        if found is None:
            return None
        tenant, entry = found
        return Principal(tenant, entry.scopes, entry.name)

    def _from_jwt(self, token: str) -> Principal:
        assert self._verifier is not None
        try:
            claims = self._verifier.claims(token)
        except JwtRejected as e:
            raise Unauthenticated(str(e)) from None
        jwt = self._verifier.config
        tenant = claims.get(jwt.tenant_claim)
        if not isinstance(tenant, str):
            raise Unauthenticated(f"the token has no {jwt.tenant_claim!r} claim naming its tenant")
        try:
            check_tenant_name(tenant)
        except ValueError:
            raise Unauthenticated(f"the token's {jwt.tenant_claim!r} claim is not a tenant's name") from None
        if not self._auth.listed(tenant):
            raise Unauthenticated(f"the token's tenant {tenant!r} is not a tenant of this server")
        subject = claims.get("sub")
        return Principal(
            tenant, _scopes_of(claims.get(jwt.scopes_claim)), subject if isinstance(subject, str) else None
        )


def stdio_principal(auth: AuthConfig, tenant: str | None) -> Principal | None:
    """Whom ``mcp-v8 mcp`` acts for: the local user, with ``run``, ``read``, ``cancel`` and
    ``approve`` in ``tenant`` (which the auth config must list). Without an auth config: None
    (the single tenant, as before tenants), and ``tenant`` may only be the default one.
    :class:`AuthConfigError` says why not."""
    if not auth.enabled:
        if tenant not in (None, DEFAULT_TENANT):
            raise AuthConfigError(
                f"tenant {tenant!r} needs an auth_config listing it (without one there is one tenant, {DEFAULT_TENANT!r})"
            )
        return None
    if tenant is None:
        raise AuthConfigError("with an auth_config or a jwks_url, mcp needs --tenant: the tenant it acts for")
    if auth.tenants is None or tenant not in auth.tenants:
        raise AuthConfigError(f"tenant {tenant!r} is not a tenant of the auth_config")
    return Principal(tenant, STDIO_SCOPES, "stdio")
