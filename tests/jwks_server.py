"""A JWKS server on loopback for the tests (http.server), and JWTs signed by PyJWT with keys made
by ``cryptography``: the server serves the public keys it is given, counts its fetches, and can
swap its keys (rotation) or fail (an identity provider that is down)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://idp.test/"
AUDIENCE = "mcp-v8-tests"


@dataclass
class Key:
    kid: str
    private: Any
    alg: str

    @classmethod
    def ec(cls, kid: str) -> Key:
        return cls(kid, ec.generate_private_key(ec.SECP256R1()), "ES256")

    @classmethod
    def rsa(cls, kid: str) -> Key:
        return cls(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")

    def jwk(self) -> dict[str, Any]:
        algorithm = ECAlgorithm if self.alg.startswith("ES") else RSAAlgorithm
        public: dict[str, Any] = algorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**public, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        return jwt.encode(claims, self.private, algorithm=self.alg, headers={"kid": self.kid, **header})


def claims(tenant: str | None = "acme", scope: Any = "run read", **extra: Any) -> dict[str, Any]:
    """The claims of a valid token (valid for 5 minutes), with ``extra`` on top."""
    now = int(time.time())
    out: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "iat": now, "exp": now + 300}
    if tenant is not None:
        out["tenant"] = tenant
    if scope is not None:
        out["scope"] = scope
    return {**out, **extra}


class JwksServer:
    def __init__(self, keys: list[Key]) -> None:
        self.keys = keys
        self.fetches = 0
        self.failing = False
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                with server._lock:
                    server.fetches += 1
                    failing, body = server.failing, json.dumps({"keys": [k.jwk() for k in server.keys]})
                if failing:
                    self.send_response(500)
                    self.end_headers()
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}/jwks.json"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def swap(self, keys: list[Key]) -> None:
        with self._lock:
            self.keys = keys

    def start(self) -> JwksServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


@contextmanager
def jwks_server(keys: list[Key]) -> Iterator[JwksServer]:
    server = JwksServer(keys).start()
    try:
        yield server
    finally:
        server.close()
