"""JWT bearer tokens verified against a JWKS (PyJWT): the keys are fetched from the JWKS URL,
kept for ``cache_secs``, and fetched again early when a token names a key id they lack (a
rotation), at most once per ``refetch_secs`` however many such tokens arrive; a JWKS that
cannot be fetched leaves the keys last fetched in use."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .config import JwtConfig

log = logging.getLogger("mcp_v8.auth")

FETCH_TIMEOUT_SECS = 5.0


class JwtRejected(Exception):
    """The token is not a valid JWT of this server; the message says why (for the client)."""


class KeysUnavailable(Exception):
    """No key could be fetched from the JWKS yet: nothing can be verified (a 503, not a 401)."""


def _jwt() -> Any:
    try:
        import jwt
    except ImportError as e:  # pragma: no cover - the extra is not installed
        raise ImportError(f"JWT bearer tokens need PyJWT: pip install 'mcp-v8[auth]' ({e})") from None
    return jwt


class JwksKeys:
    """The signing keys of one JWKS, by key id; fetched on first use. Thread-safe: one fetch at a
    time, the others wait for it and use what it fetched."""

    def __init__(
        self,
        url: str,
        *,
        cache_secs: float,
        refetch_secs: float,
        timeout: float = FETCH_TIMEOUT_SECS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        jwt = _jwt()
        self._client = jwt.PyJWKClient(url, cache_jwk_set=False, timeout=timeout)  # its fetch only
        self._url = url
        self._cache_secs = cache_secs
        self._refetch_secs = refetch_secs
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str | None, SigningKey] | None = None  # by key id; None: never fetched
        self._loaded_at = 0.0  # when the keys were fetched
        self._tried_at: float | None = None  # the last fetch, failed or not
        self._failure = ""  # why the last fetch failed
        self.fetches = 0  # fetches tried (for tests and logs)

    def key(self, kid: str | None) -> SigningKey:
        """The key of ``kid`` (without one: the JWKS's only key). Raises :class:`JwtRejected`
        when the JWKS has no such key, even after a refetch, and :class:`KeysUnavailable` when no
        JWKS was ever fetched."""
        keys = self._keys
        now = self._clock()
        if keys is None or now - self._loaded_at >= self._cache_secs:
            keys = self._refresh(stale=keys is not None)
        found = _match(keys, kid)
        if found is None:
            keys = self._refresh(unknown=kid)
            found = _match(keys, kid)
        if found is None:
            shown = "no kid" if kid is None else f"kid {kid[:64]!r}"
            raise JwtRejected(f"the token's signing key ({shown}) is not in the JWKS")
        return found

    def _refresh(self, *, stale: bool = False, unknown: str | None = None) -> dict[str | None, SigningKey]:
        """The keys after a fetch, when one is due: never fetched, past ``cache_secs`` (``stale``),
        or a key id unknown (``unknown``) and none tried within ``refetch_secs``. Otherwise, or
        when the fetch fails, the keys held."""
        with self._lock:
            now = self._clock()
            keys = self._keys
            recent = self._tried_at is not None and now - self._tried_at < self._refetch_secs
            if keys is None:
                if recent:  # the last try failed just now: no fetch per request while it is down
                    raise KeysUnavailable(f"the JWKS cannot be fetched: {self._failure}")
            else:
                if recent:
                    return keys  # fetched (or tried) just now, by this call's turn or another's
                if stale and now - self._loaded_at < self._cache_secs:
                    return keys  # another thread refreshed them while this one waited
                if unknown is not None and unknown in keys:
                    return keys
            self._tried_at = now
            self.fetches += 1
            try:
                fetched = self._fetch()
            except Exception as e:
                self._failure = str(e)[:200]
                if keys is None:
                    log.warning("the JWKS at %s cannot be fetched: %s", self._url, e)
                    raise KeysUnavailable(f"the JWKS cannot be fetched: {self._failure}") from None
                log.warning(
                    "the JWKS at %s cannot be fetched, keeping its keys from before: %s", self._url, e
                )
                return keys
            self._keys, self._loaded_at = fetched, now
            return fetched

    def _fetch(self) -> dict[str | None, SigningKey]:
        jwt = _jwt()
        data = self._client.fetch_data()
        declared = {k.get("kid"): k.get("alg") for k in data.get("keys", []) if isinstance(k, dict)}
        keys: dict[str | None, SigningKey] = {}
        for k in jwt.PyJWKSet.from_dict(data).keys:
            if getattr(k, "public_key_use", None) in (None, "sig"):
                keys[k.key_id] = SigningKey(k.key, declared.get(k.key_id))
        if not keys:
            raise ValueError("the JWKS has no signing key")
        return keys


class SigningKey:
    """A key of the JWKS, and the algorithm its JWK names (``alg``; None when it names none)."""

    __slots__ = ("algorithm", "key")

    def __init__(self, key: Any, algorithm: str | None) -> None:
        self.key = key
        self.algorithm = algorithm


def _match(keys: dict[str | None, SigningKey], kid: str | None) -> SigningKey | None:
    if kid is None:
        return next(iter(keys.values())) if len(keys) == 1 else None
    return keys.get(kid)


class JwtVerifier:
    """Checks a JWT against :class:`JwtConfig`: a key of the JWKS, an accepted algorithm, the
    issuer, the audience, expiry (``exp`` required) with a small leeway."""

    def __init__(self, config: JwtConfig, keys: JwksKeys | None = None) -> None:
        self.config = config
        self.keys = keys or JwksKeys(
            config.jwks_url, cache_secs=config.cache_secs, refetch_secs=config.refetch_secs
        )

    def claims(self, token: str) -> dict[str, Any]:
        """The verified claims of ``token``; :class:`JwtRejected` says why it is not valid."""
        jwt = _jwt()
        c = self.config
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise JwtRejected("the bearer token is not a valid token of this server") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in c.algorithms:
            raise JwtRejected(f"the token's algorithm {str(alg)[:20]!r} is not accepted")
        if kid is not None and not isinstance(kid, str):
            raise JwtRejected("the token's kid is not a string")
        key = self.keys.key(kid)
        if key.algorithm is not None and key.algorithm != alg:
            raise JwtRejected("the token's algorithm is not its key's")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=list(c.audience),
                issuer=c.issuer,
                leeway=c.leeway_secs,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise JwtRejected("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise JwtRejected("the token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise JwtRejected("the token's audience is not this server") from None
        except jwt.InvalidIssuerError:
            raise JwtRejected("the token's issuer is not trusted") from None
        except jwt.MissingRequiredClaimError as e:
            raise JwtRejected(f"the token has no {e.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise JwtRejected("the token's signature does not verify") from None
        except jwt.PyJWTError:
            raise JwtRejected("the bearer token is not a valid token of this server") from None
        return claims
