"""Principals: who a request is and what it may do (:mod:`mcp_v8.principal` is the vocabulary).

``config``: the auth config (``--auth-config``: tenants, their hashed API tokens, scopes, quotas
and tool servers; the JWT settings), checked at startup. ``jwks``: JWTs verified against a JWKS.
``principals``: the principal of a bearer token. ``scopes``: what each route and MCP tool needs.
"""

from .config import (
    NO_AUTH,
    QUOTA_KEYS,
    AuthConfig,
    AuthConfigError,
    JwtConfig,
    TenantConfig,
    TokenEntry,
    build_auth,
    hash_token,
    load_auth_config,
    parse_auth_config,
)
from .jwks import JwksKeys, JwtRejected, JwtVerifier, KeysUnavailable
from .principals import Authenticator, Unauthenticated, bearer_token, stdio_principal
from .scopes import ANY, PUBLIC, ROUTE_SCOPES, TOOL_SCOPES, lacks, route_scope

__all__ = [
    "ANY",
    "NO_AUTH",
    "PUBLIC",
    "QUOTA_KEYS",
    "ROUTE_SCOPES",
    "TOOL_SCOPES",
    "AuthConfig",
    "AuthConfigError",
    "Authenticator",
    "JwksKeys",
    "JwtConfig",
    "JwtRejected",
    "JwtVerifier",
    "KeysUnavailable",
    "TenantConfig",
    "TokenEntry",
    "Unauthenticated",
    "bearer_token",
    "build_auth",
    "hash_token",
    "lacks",
    "load_auth_config",
    "parse_auth_config",
    "route_scope",
    "stdio_principal",
]
