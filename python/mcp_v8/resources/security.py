"""The door's middleware: what every request passes before any route does work.

- :class:`SecurityMiddleware`: the Host and Origin allowlists (DNS rebinding, pages of other
  origins), the request's principal (:mod:`mcp_v8.principal`: a bearer token of a tenant, a
  JWT, or the single tenant's API token) and the scope its route needs
  (:data:`mcp_v8.auth.ROUTE_SCOPES`), the request body's limit;
- :class:`QueryParamsMiddleware`: query parameters valid Unicode, and only those the route takes.
"""

from __future__ import annotations

import hmac
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import falcon

from ..auth import (
    ANY,
    PUBLIC,
    Authenticator,
    KeysUnavailable,
    Unauthenticated,
    bearer_token,
    lacks,
    route_scope,
)
from ..config import Settings, normalize_origin, origin_allowlist
from ..principal import DEFAULT_TENANT, Principal, single_tenant
from .validation import check_query

__all__ = [
    "APPROVER_ROUTE",
    "MCP_ROUTE",
    "METRICS_ROUTE",
    "PUBLIC_ROUTES",
    "QueryParamsMiddleware",
    "RefusalLog",
    "SecurityMiddleware",
]

log = logging.getLogger("mcp_v8.auth")

# Routes that need no token: the version, and the contract (public anyway, as it ships in the
# package, and what tells a client that the other routes may need a token).
PUBLIC_ROUTES = frozenset({"/api/version", "/api/openapi.json"})
METRICS_ROUTE = "/metrics"  # public too with --metrics-public
# The one route of the approver's credential (--approver-token), which takes no other.
APPROVER_ROUTE = re.compile(r"/api/executions/[^/]*/approve/?")
MCP_ROUTE = "/mcp"  # the approver's token opens it too, to its own tools

_HOST = re.compile(r"(\[[0-9a-fA-F:.]+\]|[^\[\]:@/\s]+)(?::[0-9]{1,5})?")


def _host_name(header: str) -> str | None:
    """The host part of a Host header (``name``, ``name:port``, ``[v6]:port``), or
    None when the header is not of that shape."""
    match = _HOST.fullmatch(header.strip())
    return match.group(1).lower() if match else None


class SecurityMiddleware:
    """Host allowlist (DNS rebinding), Origin allowlist (cross-origin requests from
    browsers), the request's principal (its bearer token) and the scope its route needs
    (:data:`mcp_v8.auth.ROUTE_SCOPES`), request body limit; all before any route does work.

    With an auth config or a JWKS (``settings.auth.enabled``), every route but the public ones
    needs the principal of a tenant's token or of a JWT (401 without), and each route its scope
    (403). Without, the server has one tenant: the API token (or none) acts for it with every
    scope but ``approve``, which is the approver token's (``--approver-token``)."""

    def __init__(self, settings: Settings) -> None:
        self._hosts = {h.lower() for h in settings.allowed_hosts}
        self._any_host = "*" in self._hosts
        self._origins = origin_allowlist(settings.allowed_origins)
        self._any_origin = "*" in self._origins
        self._token = settings.api_token
        self._approver = settings.approver_token
        # Without an auth config there is one tenant: the API token (or no token) acts for it
        # with every scope but approve, the approver token reads and approves.
        self._everyone = single_tenant("api-token" if settings.api_token is not None else None)
        self._approving = Principal(DEFAULT_TENANT, frozenset({"read", "approve"}), "approver-token")
        self._authenticator = Authenticator(settings.auth) if settings.auth.enabled else None
        self.refusals = RefusalLog()
        self._max_body = settings.max_body_bytes
        self._metrics_public = settings.metrics_public
        self._public = PUBLIC_ROUTES | ({METRICS_ROUTE} if settings.metrics_public else set())
        # A scraper names the server by its address: /metrics skips the Host check when it is
        # authenticated (a token is required) or public by choice; without a token, the Host
        # check is what keeps a web page (DNS rebinding) from reading it, and it stays.
        authenticated = settings.api_token is not None or self._authenticator is not None
        self._any_host_for = {METRICS_ROUTE} if settings.metrics_public or authenticated else set()

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if (
            not self._any_host
            and req.path not in self._any_host_for
            and _host_name(req.get_header("Host") or "") not in self._hosts
        ):
            raise falcon.HTTPBadRequest(description="Host header not allowed by this server's allowlist")
        # A web page can send a "simple" request (a POST of text/plain, which this API
        # parses as JSON) to any server without a CORS preflight; browsers always say
        # where it came from in Origin. Clients outside browsers send no Origin.
        origin = req.get_header("Origin")
        if origin is not None and not self._any_origin and normalize_origin(origin) not in self._origins:
            shown = origin if len(origin) <= 100 else origin[:100] + "..."
            raise falcon.HTTPForbidden(
                description=f"Origin {shown!r} is not allowed by this server's allowlist (--allowed-origins)"
            )
        if self._authenticator is not None:
            req.context.principal = None if req.path in self._public else self._principal(req)
        else:
            self._single_tenant(req)
        length = req.content_length
        if length is not None and length > self._max_body:
            raise falcon.HTTPContentTooLarge(
                description=f"request body is larger than {self._max_body} bytes"
            )

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, params: Any
    ) -> None:
        """With principals, the scope the route needs, from the one table; a responder the table
        lacks is refused to everyone (a route added without its scope serves nobody). A server
        of one tenant has its tokens' rules instead (:meth:`_single_tenant`)."""
        if resource is None or self._authenticator is None:
            return  # 404, or one tenant
        scope = route_scope(req.method, req.uri_template)
        if scope is None:
            if hasattr(resource, f"on_{req.method.lower()}"):
                raise falcon.HTTPForbidden(description="no scope allows this route")
            return  # 405, or the default OPTIONS
        if scope == PUBLIC or (req.path == METRICS_ROUTE and self._metrics_public):
            return
        principal: Principal | None = req.context.get("principal")
        if principal is None:  # a route the table and PUBLIC_ROUTES disagree on: refused
            raise _unauthorized("a valid bearer token is required")
        if scope != ANY and not principal.may(scope):
            raise falcon.HTTPForbidden(description=lacks(scope))

    def _principal(self, req: falcon.Request) -> Principal:
        """The principal of the request's bearer token (a tenant's API token, or a JWT): 401
        without one, 503 while the JWKS cannot be fetched."""
        assert self._authenticator is not None
        try:
            return self._authenticator.principal(req.get_header("Authorization"))
        except Unauthenticated as e:
            invalid = bearer_token(req.get_header("Authorization")) is not None
            if invalid:  # a token was sent and refused: the operator hears of it (never the token)
                self.refusals.refused(f"{req.method} {req.path}", str(e))
            raise _unauthorized(str(e), invalid=invalid) from None
        except KeysUnavailable as e:
            raise falcon.HTTPServiceUnavailable(description=str(e), retry_after=5) from None

    def _single_tenant(self, req: falcon.Request) -> None:
        """The request's principal on a server of one tenant: the API token's (or anyone's
        without one), or the approver token's on the approve route and /mcp."""
        req.context.principal = self._everyone
        if APPROVER_ROUTE.fullmatch(req.path):
            self._check_approver(req)
            req.context.principal = self._approving
        elif req.path == MCP_ROUTE and self._approver is not None and _bearer_is(req, self._approver):
            req.context.approver = True  # the approver's MCP tools, and only them
            req.context.principal = self._approving
        elif self._token is not None and req.path not in self._public and not _bearer_is(req, self._token):
            raise _unauthorized("a valid bearer token is required")

    def _check_approver(self, req: falcon.Request) -> None:
        """The approver's token, and only it: no bearer token is 401; the API token is known but
        may not approve (403); on a server without an approver token nobody approves (403);
        another token is 401."""
        if self._approver is not None and _bearer_is(req, self._approver):
            return
        scheme, _, given = (req.get_header("Authorization") or "").partition(" ")
        unauthorized = falcon.HTTPUnauthorized(
            description="the approver's bearer token is required",
            challenges=['Bearer realm="mcp-v8-approver"'],
        )
        if scheme.lower() != "bearer" or not given.strip():
            raise unauthorized
        if self._token is not None and _bearer_is(req, self._token):
            raise falcon.HTTPForbidden(
                description="the API token cannot approve tool calls: the approver token (--approver-token) is required"
            )
        if self._approver is None:
            raise falcon.HTTPForbidden(description="this server has no --approver-token: nobody can approve")
        raise unauthorized


class RefusalLog:
    """Logs refused bearer tokens (the route and why, never the token) as WARNING lines, at most
    one every ``interval`` seconds: a flood of bad tokens is one line a second, each saying how
    many were refused since the one before."""

    def __init__(self, interval: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: float | None = None
        self._unsaid = 0

    def refused(self, route: str, why: str) -> None:
        with self._lock:
            now = self._clock()
            if self._last is not None and now - self._last < self._interval:
                self._unsaid += 1
                return
            unsaid, self._unsaid, self._last = self._unsaid, 0, now
        more = f" (and {unsaid} more refused since the last line)" if unsaid else ""
        log.warning("refused a bearer token on %s: %s%s", route, why, more)


def _unauthorized(description: str, *, invalid: bool = False) -> falcon.HTTPUnauthorized:
    """401 with the bearer challenge (RFC 6750: ``error="invalid_token"`` when a token was sent)."""
    challenge = 'Bearer realm="mcp-v8"' + (', error="invalid_token"' if invalid else "")
    return falcon.HTTPUnauthorized(description=description, challenges=[challenge])


def _bearer_is(req: falcon.Request, token: str) -> bool:
    """Whether the request's bearer token is ``token`` (compared in constant time)."""
    header = req.get_header("Authorization") or ""
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


class QueryParamsMiddleware:
    """Query parameters must be valid Unicode on every route, and unknown ones are a
    client mistake (400), as unknown body fields are. Each resource lists the ones it
    takes in ``QUERY_PARAMS``."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        check_query(req)

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, params: Any
    ) -> None:
        allowed: frozenset[str] = getattr(resource, "QUERY_PARAMS", frozenset())
        unknown = sorted(set(req.params) - allowed)
        if unknown:
            shown = ", ".join(repr(u[:40]) for u in unknown[:5])
            raise falcon.HTTPBadRequest(description=f"unknown query parameter(s): {shown}")
