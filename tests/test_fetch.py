"""fetch under an allowlist, against a real HTTP server on loopback started by the tests:
allowed, refused, redirected, oversized, counted, cancelled and timed-out requests, in plain
and snapshot runs, in live contexts and through the service's workers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from falcon import testing

from mcp_v8 import Control, Engine
from mcp_v8.app import create_app
from mcp_v8.config import Settings, from_env

from .service_helpers import submit, wait

BIG = 64 * 1024


class Server:
    """Routes: /json, /echo, /status/N, /redirect?to=URL&code=N, /big, /drip (a byte every
    50 ms for up to 60 s; ``dropped`` is set when the client went away)."""

    def __init__(self) -> None:
        self.dropped = threading.Event()
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _route(self) -> None:
                outer.requests.append(f"{self.command} {self.headers.get('Host')} {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path, _, query = self.path.partition("?")
                params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
                if path == "/json":
                    self._send(200, b'{"ok": true}', {"Content-Type": "application/json", "X-Test": "yes"})
                elif path == "/echo":
                    echo = {"method": self.command, "body": body.decode(), "x": self.headers.get("X-Custom")}
                    self._send(200, json.dumps(echo).encode(), {"Content-Type": "application/json"})
                elif path.startswith("/status/"):
                    self._send(int(path.rsplit("/", 1)[1]), b"status body")
                elif path == "/redirect":
                    from urllib.parse import unquote

                    self._send(int(params.get("code", "302")), b"", {"Location": unquote(params["to"])})
                elif path == "/loop":
                    self._send(302, b"", {"Location": "/loop"})
                elif path == "/big":
                    self._send(200, b"x" * BIG)
                elif path == "/drip":
                    self.send_response(200)
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    try:
                        for _ in range(1200):
                            self.wfile.write(b"x")
                            self.wfile.flush()
                            time.sleep(0.05)
                    except OSError:
                        outer.dropped.set()
                else:
                    self._send(404, b"no such route")

            do_GET = do_POST = do_PUT = do_HEAD = _route

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        # The same server under another origin (another host name): not allowed unless named.
        self.other_origin = f"http://localhost:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


def run(engine: Engine, code: str, **kwargs: Any) -> Any:
    outcome = engine.execute(code, **kwargs)
    assert outcome.completed, outcome.error
    return json.loads(outcome.result or "null")


def test_fetch_is_off_by_default(engine: Engine, server: Server) -> None:
    got = run(engine, f"fetch('{server.origin}/json').then(() => 'reached', e => [e.name, e.message])")
    assert got[0] == "TypeError" and "fetch is off" in got[1]
    assert server.requests == []


def test_allowed_origin_get_and_post(server: Server) -> None:
    engine = Engine(allow_fetch=[server.origin])
    code = f"""
    (async () => {{
      const r = await fetch('{server.origin}/json');
      const posted = await fetch(new Request('{server.origin}/echo', {{
        method: 'POST', body: 'payload', headers: {{'X-Custom': 'c'}}}}));
      const missing = await fetch('{server.origin}/status/404');
      const head = await fetch('{server.origin}/json', {{method: 'HEAD'}});
      return [r.status, r.ok, r.headers.get('x-test'), r.url, r.redirected, await r.json(),
              await posted.json(), missing.status, missing.ok, await missing.text(), await head.text()];
    }})()
    """
    assert run(engine, code) == [
        200, True, "yes", f"{server.origin}/json", False, {"ok": True},
        {"method": "POST", "body": "payload", "x": "c"}, 404, False, "status body", "",
    ]  # fmt: skip


def test_other_origins_are_refused_naming_the_rule(server: Server) -> None:
    engine = Engine(allow_fetch=[server.origin])
    for url in [
        server.other_origin + "/json",
        f"http://127.0.0.1:{server.port + 1}/json",
        "https://example.com/",
    ]:
        got = run(engine, f"fetch('{url}').then(() => 'reached', e => [e.name, e.message])")
        assert got[0] == "TypeError", url
        assert "is not an allowed origin" in got[1] and server.origin in got[1], got
    assert server.requests == []
    with pytest.raises(ValueError, match="without a path"):
        Engine(allow_fetch=[server.origin + "/path"])


def test_redirects(server: Server) -> None:
    engine = Engine(allow_fetch=[server.origin])
    same = f"{server.origin}/redirect?to=%2Fjson"
    away = f"{server.origin}/redirect?to={server.other_origin}/json"
    code = f"""
    (async () => {{
      const followed = await fetch('{same}');
      const refused = await fetch('{away}').then(() => 'reached', e => e.message);
      const manual = await fetch('{same}', {{redirect: 'manual'}});
      const error = await fetch('{same}', {{redirect: 'error'}}).then(() => 'reached', e => e.name);
      const seeOther = await fetch('{server.origin}/redirect?to=%2Fecho&code=303', {{method: 'POST', body: 'b'}});
      return [followed.status, followed.redirected, followed.url, refused, manual.status,
              manual.headers.get('location'), error, (await seeOther.json()).method];
    }})()
    """
    got = run(engine, code)
    assert got[:3] == [200, True, f"{server.origin}/json"]
    assert "redirect to http://localhost" in got[3] and "not an allowed origin" in got[3]
    assert got[4:] == [302, "/json", "TypeError", "GET"]
    loop = run(engine, f"fetch('{server.origin}/loop').then(() => 'reached', e => e.message)")
    assert "more than 20 redirects" in loop
    assert not any(r.split()[1].startswith("localhost") for r in server.requests)  # never followed


def test_oversized_bodies_and_too_many_requests(server: Server) -> None:
    engine = Engine(allow_fetch=[server.origin], max_fetch_bytes=BIG - 1, max_fetch_requests=2)
    got = run(engine, f"fetch('{server.origin}/big').then(r => r.text(), e => e.message)")
    assert "larger than 65535 bytes" in got
    code = f"""
    (async () => {{
      const out = [];
      for (let i = 0; i < 3; i++) out.push(await fetch('{server.origin}/json').then(r => r.status, e => e.message));
      return out;
    }})()
    """
    got = run(engine, code)
    assert got[:2] == [200, 200] and "more than 2 requests in one execution" in got[2]
    # The count is per execution.
    assert run(engine, f"fetch('{server.origin}/json').then(r => r.status)") == 200


def test_a_fetch_in_flight_stops_on_cancel(server: Server) -> None:
    engine = Engine(allow_fetch=[server.origin])
    control = Control()
    threading.Timer(0.5, control.cancel).start()
    outcome = engine.execute(
        f"fetch('{server.origin}/drip').then(r => r.text())", control=control, timeout=60
    )
    assert outcome.cancelled
    assert server.dropped.wait(20), "the request kept reading after its execution was cancelled"


def test_a_fetch_in_flight_stops_on_timeout(server: Server) -> None:
    engine = Engine(allow_fetch=[server.origin])
    outcome = engine.execute(f"fetch('{server.origin}/drip').then(r => r.text())", timeout=0.5)
    assert outcome.timed_out
    assert server.dropped.wait(20), "the request kept reading after its execution timed out"


def test_abort_signal_rejects_the_fetch(server: Server) -> None:
    engine = Engine(allow_fetch=[server.origin])
    code = f"""
    (async () => {{
      const c = new AbortController();
      setTimeout(() => c.abort(), 100);
      const early = await fetch('{server.origin}/json', {{signal: AbortSignal.abort()}}).then(() => 'reached', e => e.name);
      const late = await fetch('{server.origin}/drip', {{signal: c.signal}}).then(() => 'reached', e => e.name);
      return [early, late];
    }})()
    """
    assert run(engine, code, timeout=30) == ["AbortError", "AbortError"]


def test_snapshot_runs_and_live_contexts_fetch_too(server: Server) -> None:
    engine = Engine(allow_fetch=[server.origin])
    outcome = engine.execute(
        f"var got = await fetch('{server.origin}/json').then(r => r.json()); got", snapshot=True
    )
    assert outcome.completed and outcome.result == '{"ok":true}' and outcome.snapshot is not None
    assert run(engine, "got.ok", heap=outcome.snapshot) is True
    with engine.context() as ctx:
        assert ctx.eval(f"fetch('{server.origin}/json').then(r => r.status)") == 200
        assert "is not an allowed origin" in ctx.eval(
            f"fetch('{server.other_origin}/').catch(e => e.message)"
        )
    with Engine().context() as off:
        assert "fetch is off" in off.eval(f"fetch('{server.origin}/json').catch(e => e.message)")


def test_the_service_allows_what_its_settings_allow(server: Server, tmp_path: Path) -> None:
    assert from_env({"MCP_V8_ALLOW_FETCH": f"{server.origin}, https://a.example"}).allow_fetch == (
        server.origin,
        "https://a.example",
    )
    for bad in ["ftp://x", "https://h/path", "nonsense"]:
        with pytest.raises(ValueError, match="MCP_V8_ALLOW_FETCH"):
            from_env({"MCP_V8_ALLOW_FETCH": bad})
    with pytest.raises(ValueError, match="only http and https"):
        Settings(data_dir=tmp_path, allow_fetch=("ftp://x",))
    app = create_app(
        Settings(data_dir=tmp_path, workers=1, allow_fetch=(server.origin,), max_fetch_requests=1)
    )
    c = testing.TestClient(app)
    try:
        done = wait(c, submit(c, f"fetch('{server.origin}/json').then(r => r.json())"))
        assert done["status"] == "completed" and json.loads(done["result"]) == {"ok": True}, done
        code = f"Promise.allSettled([fetch('{server.origin}/json'), fetch('{server.origin}/json')]).then(r => r.map(x => x.status))"
        done = wait(c, submit(c, code))
        assert sorted(json.loads(done["result"])) == ["fulfilled", "rejected"], done
        done = wait(c, submit(c, f"fetch('{server.other_origin}/json').catch(e => e.message)"))
        assert "is not an allowed origin" in json.loads(done["result"])
    finally:
        app.service.close()
