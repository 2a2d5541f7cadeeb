"""The auth config (``--auth-config``): tenants, their API tokens (as SHA-256 hashes) and scopes,
their quotas and tool servers, and how JWT bearer tokens are verified (``jwt``, which flags may
complete or override). Checked whole at startup; every error names the field it is about.

The shape::

    {"tenants": {"acme": {"tokens": [{"name": "ci", "sha256": "<64 hex>", "scopes": ["run", "read"]}],
                          "quotas": {"concurrent_executions": 4, ...},
                          "tool_servers": ["calc"]}},
     "jwt": {"jwks_url": "https://idp.example/.well-known/jwks.json", "issuer": "https://idp.example/",
             "audience": "mcp-v8", "tenant_claim": "tenant", "scopes_claim": "scope"}}
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..principal import SCOPES, check_tenant_name

__all__ = [
    "JWT_ALGORITHMS",
    "NO_AUTH",
    "QUOTA_KEYS",
    "AuthConfig",
    "AuthConfigError",
    "JwtConfig",
    "TenantConfig",
    "TokenEntry",
    "build_auth",
    "hash_token",
    "load_auth_config",
    "parse_auth_config",
]

# The quotas a tenant may have; one absent is unlimited.
QUOTA_KEYS: tuple[str, ...] = (
    "concurrent_executions",
    "queued_executions",
    "live_sessions",
    "heap_bytes",
    "executions_per_minute",
    "tool_calls_per_minute",
)
# Asymmetric signatures only: a JWKS publishes public keys, and an HMAC "key" from it would be
# public too (the algorithm-confusion attack); "none" is never accepted.
JWT_ALGORITHMS: tuple[str, ...] = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_CLAIM = re.compile(r"[^\s]{1,128}")
_TOP_KEYS = {"tenants", "jwt"}
_TENANT_KEYS = {"tokens", "quotas", "tool_servers"}
_TOKEN_KEYS = {"name", "sha256", "scopes"}
_JWT_KEYS = {
    "jwks_url",
    "issuer",
    "audience",
    "tenant_claim",
    "scopes_claim",
    "cache_secs",
    "refetch_secs",
    "leeway_secs",
    "algorithms",
}
MAX_LEEWAY_SECS = 300


class FrozenMap(Mapping[str, Any]):
    """A read-only mapping that copies, deep-copies and pickles (a ``MappingProxyType`` does not),
    hashable when its values are."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] | None = None) -> None:
        self._items = dict(items or {})

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._items.items())))

    def __repr__(self) -> str:
        return f"FrozenMap({self._items!r})"

    def __getstate__(self) -> dict[str, Any]:
        return self._items

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._items = dict(state)


class AuthConfigError(ValueError):
    """The auth config is unreadable or malformed; the message names the field."""


def hash_token(token: str) -> str:
    """The SHA-256 hex of a token, as the auth config stores it (``mcp-v8 hash-token``)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TokenEntry:
    """One API token of a tenant: its name (the principal's subject), the SHA-256 hex of the
    token, and its scopes."""

    name: str
    sha256: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class TenantConfig:
    """A tenant's settings. ``quotas``: a limit by name (keys among :data:`QUOTA_KEYS`; an absent
    one is unlimited); ``tool_servers``: the tool servers of ``--tools-config`` its scripts may
    call (None: every one)."""

    name: str
    tokens: tuple[TokenEntry, ...] = ()
    quotas: Mapping[str, int] = field(default_factory=FrozenMap)
    tool_servers: frozenset[str] | None = None

    def quota(self, key: str) -> int | None:
        """The limit ``key`` (one of :data:`QUOTA_KEYS`), None when unlimited."""
        if key not in QUOTA_KEYS:
            raise KeyError(key)
        return self.quotas.get(key)

    def may_use(self, server: str) -> bool:
        """Whether its scripts may call the tools of ``server``."""
        return self.tool_servers is None or server in self.tool_servers


@dataclass(frozen=True)
class JwtConfig:
    """How JWT bearer tokens are verified: signed by a key of the JWKS at ``jwks_url`` (fetched,
    kept ``cache_secs``, fetched again at most every ``refetch_secs`` for a key id it lacks),
    ``iss`` equal to ``issuer``, ``aud`` holding one of ``audience``, unexpired (``exp`` required,
    ``leeway_secs`` of clock skew); the tenant in claim ``tenant_claim``, scopes in
    ``scopes_claim`` (space-separated, or a list)."""

    jwks_url: str
    issuer: str
    audience: tuple[str, ...]
    tenant_claim: str = "tenant"
    scopes_claim: str = "scope"
    cache_secs: int = 300
    refetch_secs: int = 10
    leeway_secs: int = 30
    algorithms: tuple[str, ...] = JWT_ALGORITHMS


@dataclass(frozen=True)
class AuthConfig:
    """The principals a server knows: the tenants of the auth config (None when it lists none:
    a valid JWT may then name any tenant), and how JWTs are verified (None: no JWTs). Neither:
    the server has one tenant and the ``--api-token`` (:attr:`enabled` is false)."""

    tenants: Mapping[str, TenantConfig] | None = None
    jwt: JwtConfig | None = None

    @property
    def enabled(self) -> bool:
        """Whether requests authenticate as principals of tenants (an auth config or a JWKS)."""
        return self.tenants is not None or self.jwt is not None

    def listed(self, tenant: str) -> bool:
        """Whether a principal of ``tenant`` may exist: listed, or any tenant when none are."""
        return self.tenants is None or tenant in self.tenants

    def tenant(self, name: str) -> TenantConfig:
        """The settings of tenant ``name``: the configured ones, else unlimited (the tenant of a
        server without an auth config, or one a JWT names when no tenants are listed)."""
        if self.tenants is not None and name in self.tenants:
            return self.tenants[name]
        return TenantConfig(name)


# -- parsing ---------------------------------------------------------------------------------


def _object(value: Any, where: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise AuthConfigError(f"{where}: expected an object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        at = f"{where}.{unknown[0]}" if where else unknown[0]
        raise AuthConfigError(f"{at}: unknown field (allowed: {', '.join(sorted(allowed))})")
    return value


def _int(value: Any, where: str, minimum: int = 0, maximum: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise AuthConfigError(f"{where}: expected an integer of at least {minimum}")
    if maximum is not None and value > maximum:
        raise AuthConfigError(f"{where}: at most {maximum}")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AuthConfigError(f"{where}: expected a non-empty string")
    return value


def _scopes(value: Any, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not value:
        raise AuthConfigError(f"{where}: expected a non-empty array of scopes ({', '.join(SCOPES)})")
    for i, scope in enumerate(value):
        if scope not in SCOPES:
            raise AuthConfigError(f"{where}[{i}]: {scope!r} is not a scope ({', '.join(SCOPES)})")
    return frozenset(value)


def _token(raw: Any, where: str) -> TokenEntry:
    raw = _object(raw, where, _TOKEN_KEYS)
    for key in ("name", "sha256", "scopes"):
        if key not in raw:
            raise AuthConfigError(f"{where}.{key}: required")
    name = raw["name"]
    if not isinstance(name, str) or not _TOKEN_NAME.fullmatch(name):
        raise AuthConfigError(
            f"{where}.name: 1 to 64 of letters, digits, '_', '.', '-', starting with a letter or a digit"
        )
    digest = raw["sha256"]
    if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest.lower()):
        raise AuthConfigError(
            f"{where}.sha256: expected the SHA-256 of the token, 64 hex characters (mcp-v8 hash-token)"
        )
    return TokenEntry(name, digest.lower(), _scopes(raw["scopes"], f"{where}.scopes"))


def _quotas(raw: Any, where: str) -> Mapping[str, int]:
    if not isinstance(raw, dict):
        raise AuthConfigError(f"{where}: expected an object")
    for key in raw:
        if key not in QUOTA_KEYS:
            raise AuthConfigError(f"{where}.{key}: unknown quota (known: {', '.join(QUOTA_KEYS)})")
    return FrozenMap({key: _int(raw[key], f"{where}.{key}") for key in QUOTA_KEYS if key in raw})


def _tool_servers(raw: Any, where: str) -> frozenset[str] | None:
    if raw == "*":
        return None
    if not isinstance(raw, list) or not all(isinstance(s, str) and s for s in raw):
        raise AuthConfigError(f'{where}: expected "*" or an array of tool server names')
    return frozenset(raw)


def _tenant(name: str, raw: Any) -> TenantConfig:
    where = f"tenants.{name}"
    try:
        check_tenant_name(name)
    except ValueError as e:
        raise AuthConfigError(f"{where}: {e}") from None
    raw = _object(raw, where, _TENANT_KEYS)
    tokens_raw = raw.get("tokens", [])
    if not isinstance(tokens_raw, list):
        raise AuthConfigError(f"{where}.tokens: expected an array")
    tokens = tuple(_token(t, f"{where}.tokens[{i}]") for i, t in enumerate(tokens_raw))
    names = [t.name for t in tokens]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise AuthConfigError(f"{where}.tokens[{i}].name: {n!r} is the name of another token")
    return TenantConfig(
        name=name,
        tokens=tokens,
        quotas=_quotas(raw.get("quotas", {}), f"{where}.quotas"),
        tool_servers=_tool_servers(raw.get("tool_servers", "*"), f"{where}.tool_servers"),
    )


def _jwt_fields(raw: Any) -> dict[str, Any]:
    """The ``jwt`` section's fields, each checked; what is missing may come from flags."""
    raw = _object(raw, "jwt", _JWT_KEYS)
    out: dict[str, Any] = {}
    for key in ("jwks_url", "issuer", "tenant_claim", "scopes_claim"):
        if key in raw:
            out[key] = _string(raw[key], f"jwt.{key}")
    if "audience" in raw:
        aud = raw["audience"]
        if isinstance(aud, list) and aud:
            out["audience"] = tuple(_string(a, f"jwt.audience[{i}]") for i, a in enumerate(aud))
        else:
            out["audience"] = (_string(aud, "jwt.audience"),)
    if "cache_secs" in raw:
        out["cache_secs"] = _int(raw["cache_secs"], "jwt.cache_secs", 1)
    if "refetch_secs" in raw:
        out["refetch_secs"] = _int(raw["refetch_secs"], "jwt.refetch_secs", 0)
    if "leeway_secs" in raw:
        out["leeway_secs"] = _int(raw["leeway_secs"], "jwt.leeway_secs", 0, MAX_LEEWAY_SECS)
    if "algorithms" in raw:
        algs = raw["algorithms"]
        if not isinstance(algs, list) or not algs:
            raise AuthConfigError("jwt.algorithms: expected a non-empty array")
        for i, alg in enumerate(algs):
            if alg not in JWT_ALGORITHMS:
                raise AuthConfigError(
                    f"jwt.algorithms[{i}]: {alg!r} is not accepted (asymmetric only: {', '.join(JWT_ALGORITHMS)})"
                )
        out["algorithms"] = tuple(algs)
    return out


def check_jwks_url(url: str, where: str) -> str:
    """``url`` when it is an https:// URL (http:// only to a loopback address)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname:
        host = parts.hostname
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if loopback:
            return url
    raise AuthConfigError(f"{where}: expected an https:// URL (http:// only on a loopback address)")


def _jwt(fields: dict[str, Any]) -> JwtConfig:
    """The JWT settings from the file's fields and the flags', once both are merged."""
    for key, flag in (("jwks_url", "--jwks-url"), ("issuer", "--jwt-issuer"), ("audience", "--jwt-audience")):
        if key not in fields:
            raise AuthConfigError(f"jwt.{key} (or {flag}): required to verify JWTs")
    check_jwks_url(fields["jwks_url"], "jwt.jwks_url")
    for key in ("tenant_claim", "scopes_claim"):
        if key in fields and not _CLAIM.fullmatch(fields[key]):
            raise AuthConfigError(f"jwt.{key}: a claim's name, without spaces")
    return JwtConfig(**fields)


def parse_auth_config(data: Any, jwt_flags: Mapping[str, Any] | None = None) -> AuthConfig:
    """The auth config of a decoded file (None: no file), completed by the ``jwt_flags`` (the
    JwtConfig fields the command line gives, which win over the file's);
    :class:`AuthConfigError` names the bad field."""
    flags = {k: v for k, v in (jwt_flags or {}).items() if v is not None}
    tenants: dict[str, TenantConfig] | None = None
    jwt_fields: dict[str, Any] = {}
    if data is not None:
        data = _object(data, "", _TOP_KEYS)
        if not data:
            raise AuthConfigError("expected tenants, jwt or both")
        if "tenants" in data:
            raw_tenants = data["tenants"]
            if not isinstance(raw_tenants, dict) or not raw_tenants:
                raise AuthConfigError("tenants: expected an object of tenants by name (at least one)")
            tenants = {name: _tenant(name, raw) for name, raw in raw_tenants.items()}
        if "jwt" in data:
            jwt_fields = _jwt_fields(data["jwt"])
    if isinstance(flags.get("audience"), str):
        flags["audience"] = (flags["audience"],)
    jwt_fields.update(flags)
    jwt = _jwt(jwt_fields) if jwt_fields else None
    if tenants is not None:
        seen: dict[str, str] = {}
        for tenant in tenants.values():
            for i, token in enumerate(tenant.tokens):
                other = seen.get(token.sha256)
                if other is not None:
                    raise AuthConfigError(
                        f"tenants.{tenant.name}.tokens[{i}].sha256: the same token as {other}: a token "
                        "is one tenant's"
                    )
                seen[token.sha256] = f"tenants.{tenant.name}.tokens[{i}]"
        if jwt is None and not seen:
            raise AuthConfigError("tenants: no tenant has a token, and there is no jwt: nobody could sign in")
    return AuthConfig(None if tenants is None else FrozenMap(tenants), jwt)


def load_auth_config(path: Path | None, jwt_flags: Mapping[str, Any] | None = None) -> AuthConfig:
    """The auth config at ``path`` (None: none, the flags alone), checked;
    :class:`AuthConfigError` says what is wrong and where."""
    if path is None:
        return parse_auth_config(None, jwt_flags)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise AuthConfigError(f"cannot read {path}: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise AuthConfigError(f"{path} is not JSON: {e}") from None
    try:
        return parse_auth_config(data, jwt_flags)
    except AuthConfigError as e:
        raise AuthConfigError(f"{path}: {e}") from None


def build_auth(
    path: Path | None,
    *,
    jwks_url: str | None = None,
    issuer: str | None = None,
    audience: str | None = None,
    tenant_claim: str | None = None,
) -> AuthConfig:
    """The server's :class:`AuthConfig` from ``--auth-config`` and the JWT flags (which win)."""
    flags = {"jwks_url": jwks_url, "issuer": issuer, "audience": audience, "tenant_claim": tenant_claim}
    return load_auth_config(path, flags)


NO_AUTH = AuthConfig()
"""A server without an auth config or a JWKS: one tenant, ``DEFAULT_TENANT``."""
