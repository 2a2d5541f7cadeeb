"""Principals without V8 (mcp_v8/auth): the auth config and its errors naming the field, the
settings it cannot be combined with, hash-token, JWTs against a JWKS server on loopback
(valid, expired, wrong audience or issuer, a key not in the JWKS, a rotated key, an unlisted
tenant, the bound on refetches, a JWKS that is down), and the tables of the scopes each route
and MCP tool needs, held to openapi.json and to the tools."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import pickle
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import falcon
import pytest
from falcon import testing

from mcp_v8 import cli
from mcp_v8.auth import (
    NO_AUTH,
    QUOTA_KEYS,
    ROUTE_SCOPES,
    TOOL_SCOPES,
    AuthConfigError,
    Authenticator,
    JwksKeys,
    JwtVerifier,
    KeysUnavailable,
    Unauthenticated,
    hash_token,
    parse_auth_config,
    stdio_principal,
)
from mcp_v8.auth.scopes import ANY, PUBLIC
from mcp_v8.config import Settings, from_env
from mcp_v8.mcp.tools import build_approver_tools, build_tools
from mcp_v8.principal import DEFAULT_TENANT, SCOPES, Principal
from mcp_v8.resources.security import RefusalLog, SecurityMiddleware

from .jwks_server import AUDIENCE, ISSUER, Key, claims, jwks_server

SPEC = Path(__file__).resolve().parent.parent / "python" / "mcp_v8" / "openapi.json"
HTTP_METHODS = {"get", "post", "put", "patch", "delete"}

CI, READER = "ci-token-0123456789", "reader-token-0123456789"


def tenants(**extra: Any) -> dict[str, Any]:
    return {
        "tenants": {
            "acme": {
                "tokens": [
                    {"name": "ci", "sha256": hash_token(CI), "scopes": ["run", "read", "cancel"]},
                    {"name": "reader", "sha256": hash_token(READER).upper(), "scopes": ["read"]},
                ],
                "quotas": {"concurrent_executions": 4, "heap_bytes": 1 << 30},
            },
            "beta": {"tokens": [], "quotas": {}},
        },
        **extra,
    }


def write(tmp_path: Path, data: Any) -> Path:
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "auth.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


# -- the auth config -----------------------------------------------------------------------


def with_servers(data: dict[str, Any], servers: Any) -> dict[str, Any]:
    data["tenants"]["acme"]["tool_servers"] = servers
    return data


def test_the_config_parsed() -> None:
    auth = parse_auth_config(with_servers(tenants(), ["calc"]))
    assert auth.enabled and auth.jwt is None and set(auth.tenants or {}) == {"acme", "beta"}
    acme = auth.tenant("acme")
    assert [t.name for t in acme.tokens] == ["ci", "reader"]
    assert acme.tokens[1].sha256 == hash_token(READER)  # upper-case hex is read as lower
    assert acme.tokens[0].scopes == {"run", "read", "cancel"}
    assert dict(acme.quotas) == {"concurrent_executions": 4, "heap_bytes": 1 << 30}
    assert acme.quota("concurrent_executions") == 4 and acme.quota("live_sessions") is None
    with pytest.raises(KeyError):
        acme.quota("cpu")
    assert acme.tool_servers == {"calc"} and acme.may_use("calc") and not acme.may_use("gh")
    beta = auth.tenant("beta")
    assert beta.tool_servers is None and beta.may_use("anything") and dict(beta.quotas) == {}
    with pytest.raises(TypeError):
        acme.quotas["live_sessions"] = 1  # type: ignore[index]
    assert copy.deepcopy(auth) == auth and pickle.loads(pickle.dumps(auth)) == auth  # as settings are
    assert hash(acme) == hash(copy.deepcopy(acme))
    # A tenant not listed (one tenant, or a JWT's when none are listed): unlimited.
    assert auth.listed("acme") and not auth.listed("gamma")
    assert dict(NO_AUTH.tenant(DEFAULT_TENANT).quotas) == {} and NO_AUTH.tenant("x").tool_servers is None
    assert not NO_AUTH.enabled and NO_AUTH.listed("anyone")
    assert set(QUOTA_KEYS) == {
        "concurrent_executions",
        "queued_executions",
        "live_sessions",
        "heap_bytes",
        "executions_per_minute",
        "tool_calls_per_minute",
    }


def _token(**fields: Any) -> dict[str, Any]:
    return {
        "tenants": {"acme": {"tokens": [{"name": "ci", "sha256": "a" * 64, "scopes": ["run"], **fields}]}}
    }


JWT_OK = {"jwks_url": "https://idp.test/jwks", "issuer": ISSUER, "audience": AUDIENCE}


@pytest.mark.parametrize(
    ("data", "names"),
    [
        ([], ": expected an object"),
        ({}, "expected tenants, jwt or both"),
        ({"users": {}}, "users: unknown field"),
        ({"tenants": []}, "tenants: expected an object of tenants"),
        ({"tenants": {}}, "tenants: expected an object of tenants"),
        ({"tenants": {"Acme": {"tokens": []}}}, "tenants.Acme: a tenant's name is"),
        ({"tenants": {"acme": []}}, "tenants.acme: expected an object"),
        ({"tenants": {"acme": {"token": []}}}, "tenants.acme.token: unknown field"),
        ({"tenants": {"acme": {"tokens": {}}}}, "tenants.acme.tokens: expected an array"),
        (
            {"tenants": {"acme": {"tokens": [{"sha256": "a" * 64, "scopes": ["run"]}]}}},
            "tokens[0].name: required",
        ),
        (_token(name="a b"), "tenants.acme.tokens[0].name: 1 to 64"),
        (_token(sha256="secret-token"), "tenants.acme.tokens[0].sha256: expected the SHA-256"),
        (_token(scopes=[]), "tenants.acme.tokens[0].scopes: expected a non-empty array"),
        (_token(scopes=["run", "write"]), "tenants.acme.tokens[0].scopes[1]: 'write' is not a scope"),
        (_token(token="x"), "tenants.acme.tokens[0].token: unknown field"),
        (
            {"tenants": {"acme": {"tokens": [_token()["tenants"]["acme"]["tokens"][0]] * 2}}},
            "tenants.acme.tokens[1].name: 'ci' is the name of another token",
        ),
        (
            {
                "tenants": {
                    "acme": {"tokens": [{"name": "a", "sha256": "b" * 64, "scopes": ["run"]}]},
                    "beta": {"tokens": [{"name": "b", "sha256": "B" * 64, "scopes": ["read"]}]},
                }
            },
            "tenants.beta.tokens[0].sha256: the same token as tenants.acme.tokens[0]",
        ),
        ({"tenants": {"acme": {"tokens": []}}}, "tenants: no tenant has a token, and there is no jwt"),
        (
            {"tenants": {"acme": {"quotas": {"cpu": 1}}}, "jwt": JWT_OK},
            "tenants.acme.quotas.cpu: unknown quota",
        ),
        (
            {"tenants": {"acme": {"quotas": {"live_sessions": -1}}}, "jwt": JWT_OK},
            "tenants.acme.quotas.live_sessions: expected an integer",
        ),
        (
            {"tenants": {"acme": {"quotas": {"heap_bytes": True}}}, "jwt": JWT_OK},
            "tenants.acme.quotas.heap_bytes: expected an integer",
        ),
        (
            {"tenants": {"acme": {"tool_servers": "calc"}}, "jwt": JWT_OK},
            'tenants.acme.tool_servers: expected "*" or an array',
        ),
        ({"jwt": {"issuer": ISSUER, "audience": AUDIENCE}}, "jwt.jwks_url (or --jwks-url): required"),
        (
            {"jwt": {"jwks_url": "https://x/j", "audience": AUDIENCE}},
            "jwt.issuer (or --jwt-issuer): required",
        ),
        (
            {"jwt": {"jwks_url": "https://x/j", "issuer": ISSUER}},
            "jwt.audience (or --jwt-audience): required",
        ),
        ({"jwt": {**JWT_OK, "jwks_url": "http://idp.test/jwks"}}, "jwt.jwks_url: expected an https:// URL"),
        ({"jwt": {**JWT_OK, "jwks_url": "ftp://idp.test/jwks"}}, "jwt.jwks_url: expected an https:// URL"),
        ({"jwt": {**JWT_OK, "audience": []}}, "jwt.audience: expected a non-empty string"),
        ({"jwt": {**JWT_OK, "audience": ["a", 1]}}, "jwt.audience[1]: expected a non-empty string"),
        ({"jwt": {**JWT_OK, "tenant_claim": "a b"}}, "jwt.tenant_claim: a claim's name"),
        ({"jwt": {**JWT_OK, "leeway_secs": 3600}}, "jwt.leeway_secs: at most 300"),
        ({"jwt": {**JWT_OK, "cache_secs": 0}}, "jwt.cache_secs: expected an integer of at least 1"),
        ({"jwt": {**JWT_OK, "algorithms": ["HS256"]}}, "jwt.algorithms[0]: 'HS256' is not accepted"),
        ({"jwt": {**JWT_OK, "algorithms": ["none"]}}, "jwt.algorithms[0]: 'none' is not accepted"),
        ({"jwt": {**JWT_OK, "key": "x"}}, "jwt.key: unknown field"),
    ],
)
def test_config_errors_name_the_field(data: Any, names: str) -> None:
    with pytest.raises(AuthConfigError) as e:
        parse_auth_config(data)
    assert names in str(e.value)


def test_jwt_settings_from_the_file_and_the_flags(tmp_path: Path) -> None:
    auth = parse_auth_config({"jwt": {**JWT_OK, "audience": ["a", "b"], "scopes_claim": "scp"}})
    assert auth.tenants is None and auth.jwt is not None  # no list: a JWT may name any tenant
    assert (auth.jwt.audience, auth.jwt.scopes_claim, auth.jwt.tenant_claim) == (("a", "b"), "scp", "tenant")
    assert "HS256" not in auth.jwt.algorithms and auth.jwt.leeway_secs == 30
    # The flags complete and override the file's section; alone, they are the JWT settings.
    path = write(tmp_path, tenants(jwt={"jwks_url": "https://idp.test/jwks", "issuer": "old"}))
    s = Settings(auth_config=path, jwt_issuer=ISSUER, jwt_audience=AUDIENCE, jwt_tenant_claim="org")
    assert s.auth.jwt is not None and (s.auth.jwt.issuer, s.auth.jwt.tenant_claim) == (ISSUER, "org")
    assert s.auth.jwt.audience == (AUDIENCE,) and s.auth.tenant("acme").quota("concurrent_executions") == 4
    flags = Settings(jwks_url="http://127.0.0.1:9/jwks", jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    assert flags.auth.enabled and flags.auth.tenants is None
    env = from_env(
        {"MCP_V8_AUTH_CONFIG": str(path), "MCP_V8_JWT_AUDIENCE": AUDIENCE, "MCP_V8_JWT_ISSUER": ISSUER}
    )
    assert env.auth_config == path and env.auth.jwt is not None and env.auth.jwt.issuer == ISSUER


def test_settings_errors(tmp_path: Path) -> None:
    path = write(tmp_path, tenants())
    for name in ("api_token", "approver_token"):
        with pytest.raises(ValueError, match=f"{name} cannot be used with auth_config"):
            Settings(auth_config=path, **{name: "some-token-0123456789"})
        with pytest.raises(ValueError, match=f"{name} cannot be used with jwks_url"):
            Settings(
                jwks_url="https://idp.test/j", jwt_issuer=ISSUER, jwt_audience=AUDIENCE, **{name: "t" * 20}
            )
    with pytest.raises(ValueError, match=r"auth_config: .*auth.json: tenants.acme.tokens\[0\].sha256"):
        Settings(auth_config=write(tmp_path, _token(sha256="x")))
    with pytest.raises(ValueError, match="auth_config: cannot read"):
        Settings(auth_config=tmp_path / "missing.json")
    with pytest.raises(ValueError, match="is not JSON"):
        Settings(auth_config=write(tmp_path, "{"))
    with pytest.raises(ValueError, match=r"jwks_url: jwt.issuer \(or --jwt-issuer\): required"):
        Settings(jwks_url="https://idp.test/j", jwt_audience=AUDIENCE)
    with pytest.raises(ValueError, match=r"jwt.jwks_url \(or --jwks-url\): required"):
        Settings(jwt_issuer=ISSUER)
    path = write(tmp_path, with_servers(tenants(), ["calc"]))
    with pytest.raises(ValueError, match="tool_servers names tool servers, but there is no tools_config"):
        Settings(auth_config=path)
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps({"mcpServers": {"calc": {"command": "calc"}, "gh": {"command": "gh"}}}))
    assert Settings(auth_config=path, tools_config=tools).auth.tenant("acme").tool_servers == {"calc"}
    data = with_servers(tenants(), ["calc", "jira"])
    with pytest.raises(
        ValueError, match="tenants.acme.tool_servers: 'jira' is not a server of the tools_config"
    ):
        Settings(auth_config=write(tmp_path / "sub", data), tools_config=tools)
    # Gated tools need no approver token with principals: the approve scope decides.
    tools.write_text(json.dumps({"mcpServers": {"calc": {"command": "calc", "approve": "*"}}}))
    assert Settings(auth_config=path, tools_config=tools).approver_token is None
    with pytest.raises(ValueError, match="no approver_token is set"):
        Settings(tools_config=tools)
    with pytest.raises(ValueError, match="a tenant's name"):
        Settings(tenant="Not A Tenant")


def test_the_cli_refuses_a_token_beside_the_auth_config(tmp_path: Path) -> None:
    path = write(tmp_path, tenants())
    data = tmp_path / "data"
    with pytest.raises(SystemExit) as e:
        cli.main(["serve", "--data-dir", str(data), "--api-token", "t" * 20, "--auth-config", str(path)])
    assert "api_token cannot be used with auth_config" in str(e.value)
    assert not data.exists()  # refused before anything started


def test_hash_token(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for given in ("s3cr3t-token\n", "s3cr3t-token", "s3cr3t-token\r\n"):
        monkeypatch.setattr(sys, "stdin", io.StringIO(given))
        assert cli.main(["hash-token"]) == 0
        assert capsys.readouterr().out == hashlib.sha256(b"s3cr3t-token").hexdigest() + "\n"
    for given in ("", "\n", " padded \n"):
        monkeypatch.setattr(sys, "stdin", io.StringIO(given))
        assert cli.main(["hash-token"]) == 2
        assert capsys.readouterr().out == ""
    # As operators run it: a pipe into the installed command.
    done = subprocess.run(
        [sys.executable, "-m", "mcp_v8", "hash-token"], input=b"t0ken\n", capture_output=True, check=True
    )
    assert done.stdout.decode().strip() == hashlib.sha256(b"t0ken").hexdigest()


def test_stdio_acts_for_a_configured_tenant(tmp_path: Path) -> None:
    auth = parse_auth_config(tenants())
    assert stdio_principal(auth, "acme") == Principal(
        "acme", frozenset({"run", "read", "cancel", "approve"}), "stdio"
    )
    with pytest.raises(AuthConfigError, match="mcp needs --tenant"):
        stdio_principal(auth, None)
    with pytest.raises(AuthConfigError, match="'gamma' is not a tenant of the auth_config"):
        stdio_principal(auth, "gamma")
    assert stdio_principal(NO_AUTH, None) is None and stdio_principal(NO_AUTH, DEFAULT_TENANT) is None
    with pytest.raises(AuthConfigError, match="needs an auth_config"):
        stdio_principal(NO_AUTH, "acme")
    # The command refuses before it starts anything, on standard error.
    done = subprocess.run(
        [sys.executable, "-m", "mcp_v8", "mcp", "--auth-config", str(write(tmp_path, tenants()))],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        env={"MCP_V8_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin", **_pythonpath()},
        timeout=60,
    )
    assert done.returncode == 2 and b"mcp needs --tenant" in done.stderr and done.stdout == b""


def _pythonpath() -> dict[str, str]:
    import os

    return {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}


# -- API tokens ------------------------------------------------------------------------------


def test_api_tokens_give_their_tenant_and_scopes() -> None:
    auth = Authenticator(parse_auth_config(tenants()))
    assert auth.principal(f"Bearer {CI}") == Principal("acme", frozenset({"run", "read", "cancel"}), "ci")
    assert auth.principal(f"bearer   {READER} ") == Principal("acme", frozenset({"read"}), "reader")
    for header in (None, "", "Bearer", "Basic abc", f"Token {CI}", f"Bearer {CI}x", "Bearer a.b.c"):
        with pytest.raises(Unauthenticated):
            auth.principal(header)


# -- JWTs against a JWKS on loopback ---------------------------------------------------------


def _jwt_auth(url: str, *, listed: bool = True, **jwt: Any) -> Authenticator:
    data: dict[str, Any] = {"jwt": {"jwks_url": url, "issuer": ISSUER, "audience": AUDIENCE, **jwt}}
    if listed:
        data["tenants"] = {"acme": {}, "beta": {}}
    return Authenticator(parse_auth_config(data))


def _refused(auth: Authenticator, token: str) -> str:
    with pytest.raises(Unauthenticated) as e:
        auth.principal(f"Bearer {token}")
    return str(e.value)


def test_jwts_verified_against_the_jwks() -> None:
    key, rsa_key, stranger = Key.ec("k1"), Key.rsa("r1"), Key.ec("k1")  # the stranger reuses a kid
    with jwks_server([key, rsa_key]) as idp:
        auth = _jwt_auth(idp.url)
        assert auth.principal(f"Bearer {key.sign(claims())}") == Principal(
            "acme", frozenset({"run", "read"}), "user-1"
        )
        got = auth.principal(f"Bearer {rsa_key.sign(claims('beta', ['cancel', 'openid', 'admin']))}")
        assert got == Principal("beta", frozenset({"cancel", "admin"}), "user-1")  # others ignored
        assert auth.principal(f"Bearer {key.sign(claims(scope=None))}").scopes == frozenset()
        assert idp.fetches == 1  # the keys are kept
        now = int(time.time())
        assert "expired" in _refused(auth, key.sign(claims(exp=now - 120)))
        assert auth.principal(f"Bearer {key.sign(claims(exp=now - 5))}").tenant == "acme"  # leeway
        assert "audience" in _refused(auth, key.sign(claims(aud="another-service")))
        assert "issuer" in _refused(auth, key.sign(claims(iss="https://evil.test/")))
        assert "'exp'" in _refused(auth, key.sign({k: v for k, v in claims().items() if k != "exp"}))
        assert "not valid yet" in _refused(auth, key.sign(claims(nbf=now + 3600)))
        assert "signature does not verify" in _refused(auth, stranger.sign(claims()))
        assert "algorithm is not its key's" in _refused(auth, Key("r1", key.private, "ES256").sign(claims()))
        assert "no 'tenant' claim" in _refused(auth, key.sign(claims(tenant=None)))
        assert "not a tenant's name" in _refused(auth, key.sign(claims(tenant="../Acme")))
        assert "'gamma' is not a tenant of this server" in _refused(auth, key.sign(claims("gamma")))
        hs = __import__("jwt").encode(claims(), "s" * 32, algorithm="HS256", headers={"kid": "k1"})
        assert "algorithm 'HS256' is not accepted" in _refused(auth, hs)
        assert "not a valid token" in _refused(auth, "not.a.jwt")
        # Without a list of tenants, a JWT may name any tenant.
        open_auth = _jwt_auth(idp.url, listed=False)
        assert open_auth.principal(f"Bearer {key.sign(claims('gamma'))}").tenant == "gamma"


def test_a_rotated_key_is_fetched_and_refetches_are_bounded() -> None:
    old, new, unknown = Key.ec("old"), Key.ec("new"), Key.ec("unknown")
    with jwks_server([old]) as idp:
        auth = _jwt_auth(idp.url, refetch_secs=0)
        assert auth.principal(f"Bearer {old.sign(claims())}").tenant == "acme"
        idp.swap([new])  # the identity provider rotates its key
        assert auth.principal(f"Bearer {new.sign(claims())}").tenant == "acme"
        assert idp.fetches == 2  # fetched again for the kid it lacked
        assert "kid 'old'" in _refused(auth, old.sign(claims()))  # gone from the JWKS: refused
    with jwks_server([old]) as idp:
        auth = _jwt_auth(idp.url, refetch_secs=3600)
        assert auth.principal(f"Bearer {old.sign(claims())}").tenant == "acme"
        for _ in range(20):  # tokens naming kids the JWKS lacks make no more fetches
            assert "is not in the JWKS" in _refused(auth, unknown.sign(claims()))
        assert idp.fetches == 1  # none within refetch_secs of the last, whatever comes


def test_the_keys_expire_after_cache_secs_and_survive_a_jwks_outage() -> None:
    key = Key.ec("k")
    clock = [1000.0]
    with jwks_server([key]) as idp:
        keys = JwksKeys(idp.url, cache_secs=300, refetch_secs=10, clock=lambda: clock[0])
        verifier = JwtVerifier(parse_auth_config({"jwt": {**JWT_OK, "jwks_url": idp.url}}).jwt, keys)  # type: ignore[arg-type]
        auth = Authenticator(parse_auth_config({"jwt": {**JWT_OK, "jwks_url": idp.url}}), verifier)
        token = f"Bearer {key.sign(claims())}"
        assert auth.principal(token).tenant == "acme" and idp.fetches == 1
        clock[0] += 299
        auth.principal(token)
        assert idp.fetches == 1
        clock[0] += 2  # past cache_secs: fetched again
        auth.principal(token)
        assert idp.fetches == 2
        idp.failing = True
        clock[0] += 301
        assert auth.principal(token).tenant == "acme"  # the keys from before stay in use
        assert idp.fetches == 3
        auth.principal(token)
        assert idp.fetches == 3  # and the next try waits refetch_secs
        clock[0] += 11
        auth.principal(token)
        assert idp.fetches == 4
    with jwks_server([key]) as idp:
        idp.failing = True
        keys = JwksKeys(idp.url, cache_secs=300, refetch_secs=10, clock=lambda: clock[0])
        auth = Authenticator(
            parse_auth_config({"jwt": {**JWT_OK, "jwks_url": idp.url}}), JwtVerifier(verifier.config, keys)
        )
        for _ in range(5):
            with pytest.raises(
                KeysUnavailable, match="HTTP Error 500"
            ):  # nothing to verify with: not the client's fault
                auth.principal(token)
        assert idp.fetches == 1  # no fetch per request while it is down
        idp.failing = False
        clock[0] += 10
        assert auth.principal(token).tenant == "acme" and idp.fetches == 2


# -- the middleware ----------------------------------------------------------------------------


class _Echo:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal: Principal | None = req.context.principal
        resp.media = (
            None if principal is None else {"tenant": principal.tenant, "scopes": sorted(principal.scopes)}
        )


def _app(settings: Settings) -> testing.TestClient:
    app = falcon.App(middleware=[SecurityMiddleware(settings)])
    app.req_options.strip_url_path_trailing_slash = True
    app.set_error_serializer(lambda req, resp, exc: setattr(resp, "media", {"error": exc.description}))
    app.add_route("/api/executions", _Echo())  # read
    app.add_route("/api/version", _Echo())  # public
    app.add_route("/metrics", _Echo())  # admin
    app.add_route("/api/unlisted", _Echo())  # no scope in the table: nobody's
    return testing.TestClient(app, headers={"Host": "127.0.0.1"})


def test_the_middleware_with_principals(tmp_path: Path) -> None:
    key = Key.ec("k")
    with jwks_server([key]) as idp:
        settings = Settings(
            auth_config=write(tmp_path, tenants()), jwks_url=idp.url, jwt_issuer=ISSUER, jwt_audience=AUDIENCE
        )
        client = _app(settings)
        resp = client.simulate_get("/api/executions")
        assert resp.status_code == 401 and resp.json == {"error": "a valid bearer token is required"}
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="mcp-v8"'
        resp = client.simulate_get("/api/executions", headers={"Authorization": "Bearer nope"})
        assert resp.status_code == 401 and 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
        ok = client.simulate_get("/api/executions", headers={"Authorization": f"Bearer {READER}"})
        assert ok.status_code == 200 and ok.json == {"tenant": "acme", "scopes": ["read"]}
        jwt_ok = client.simulate_get(
            "/api/executions", headers={"Authorization": f"Bearer {key.sign(claims('beta'))}"}
        )
        assert jwt_ok.json == {"tenant": "beta", "scopes": ["read", "run"]}
        expired = key.sign(claims(exp=int(time.time()) - 600))
        resp = client.simulate_get("/api/executions", headers={"Authorization": f"Bearer {expired}"})
        assert resp.status_code == 401 and resp.json == {"error": "the token has expired"}
        assert client.simulate_get("/api/version").json is None  # public: no principal
        resp = client.simulate_get("/metrics", headers={"Authorization": f"Bearer {READER}"})
        assert resp.status_code == 403 and resp.json == {"error": "this token lacks the 'admin' scope"}
        resp = client.simulate_get("/api/unlisted", headers={"Authorization": f"Bearer {CI}"})
        assert resp.status_code == 403 and resp.json == {"error": "no scope allows this route"}
        assert (
            client.simulate_post("/api/executions", headers={"Authorization": f"Bearer {CI}"}).status_code
            == 405
        )
        assert client.simulate_get("/nowhere", headers={"Authorization": f"Bearer {CI}"}).status_code == 404
        assert client.simulate_get("/nowhere").status_code == 401  # who asks comes first
    public = _app(Settings(auth_config=write(tmp_path, tenants()), metrics_public=True))
    assert public.simulate_get("/metrics", headers={"Host": "10.0.0.1"}).status_code == 200
    down = Settings(jwks_url="http://127.0.0.1:9/jwks", jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    resp = _app(down).simulate_get(
        "/api/executions", headers={"Authorization": f"Bearer {key.sign(claims())}"}
    )
    assert resp.status_code == 503 and "JWKS cannot be fetched" in resp.json["error"]


def test_refused_tokens_are_logged_without_the_token_at_most_a_line_a_second(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    middleware = SecurityMiddleware(Settings(auth_config=write(tmp_path, tenants())))
    now = [100.0]
    middleware.refusals = RefusalLog(clock=lambda: now[0])
    app = falcon.App(middleware=[middleware])
    app.add_route("/api/executions", _Echo())
    client = testing.TestClient(app, headers={"Host": "127.0.0.1"})
    secret = "a-guessed-token-that-must-not-reach-the-log"
    with caplog.at_level(logging.WARNING, logger="mcp_v8.auth"):
        assert client.simulate_get("/api/executions").status_code == 401  # no token: not a refusal
        for _ in range(3):
            resp = client.simulate_get("/api/executions", headers={"Authorization": f"Bearer {secret}"})
            assert resp.status_code == 401
        now[0] += 1.5
        client.simulate_get("/api/executions", headers={"Authorization": f"Bearer {secret}"})
    lines = [r.getMessage() for r in caplog.records if r.name == "mcp_v8.auth"]
    assert len(lines) == 2, lines
    assert lines[0].startswith("refused a bearer token on GET /api/executions: ") and "more" not in lines[0]
    assert lines[1].endswith("(and 2 more refused since the last line)")
    assert all(secret not in line for line in lines)


# -- the tables ------------------------------------------------------------------------------


def test_every_route_of_the_contract_has_its_scope() -> None:
    """Fails when a route is added to openapi.json without its entry in ROUTE_SCOPES."""
    spec = json.loads(SPEC.read_text())
    found = {
        (method.upper(), path): op
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in HTTP_METHODS
    }
    missing = sorted(set(found) - set(ROUTE_SCOPES))
    assert not missing, f"routes without a scope in mcp_v8/auth/scopes.py: {missing}"
    for key, op in found.items():  # the contract names the scope the table has
        scope = ROUTE_SCOPES[key]
        assert scope in (*SCOPES, ANY, PUBLIC), key
        if scope == PUBLIC:
            assert op["security"] == [] and "401" not in op["responses"], key
            continue
        named = next(s["bearerAuth"] for s in op["security"] if "bearerAuth" in s)
        assert named == ([] if scope == ANY else [scope]), key
        assert {"401", "403"} <= set(op["responses"]), key


def test_every_tool_has_its_scope() -> None:
    settings = Settings()
    ops: Any = SimpleNamespace(settings=settings, tools=object(), tool_servers=lambda: [])
    names = set(build_tools(ops)) | set(build_approver_tools(ops))
    assert names == set(TOOL_SCOPES)
    assert all(scope in SCOPES for scope in TOOL_SCOPES.values())
    assert TOOL_SCOPES["approve_tool_calls"] == "approve" and TOOL_SCOPES["cancel_execution"] == "cancel"
