"""fetch under an allowlist, against a real HTTP server on loopback started by the tests:
allowed, refused, redirected, oversized, counted, cancelled and timed-out requests, in plain
and snapshot runs, in live contexts and through the service's workers."""

from __future__ import annotations

import json
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from falcon import testing

from mcp_v8 import Control, Engine, _engine
from mcp_v8.app import create_app
from mcp_v8.config import Settings, from_env
from mcp_v8.executions import worker, worker_common
from mcp_v8.executions.live_slot import LiveSlot
from mcp_v8.executions.pool import WorkerOptions, WorkerProcess, WorkerSlot
from mcp_v8.executions.protocol import FETCH_ARGS_LIMIT, FetchCall, FetchReply, Job, decode, encode
from mcp_v8.executions.spec import ExecutionSpec, FetchPolicy, Limits

from .service_helpers import HOST, submit, wait

BIG = 64 * 1024


class Server:
    """Routes: /json, /echo, /headers (the request's headers as JSON), /status/N,
    /redirect?to=URL&code=N, /big, /drip (a byte every 50 ms for up to 60 s), /slow?s=N (the
    status line after N seconds), /hang (no answer), /stall (half the body, then nothing).
    ``dropped`` is set when the client of /drip, /hang or /stall went away; ``arrived`` once
    a request came."""

    def __init__(self) -> None:
        self.dropped = threading.Event()
        self.arrived = threading.Event()
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

            def _until_the_client_leaves(self) -> None:
                self.wfile.flush()
                self.connection.settimeout(120)
                try:
                    if self.connection.recv(1) == b"":
                        outer.dropped.set()
                except OSError:
                    outer.dropped.set()

            def _route(self) -> None:
                outer.requests.append(f"{self.command} {self.headers.get('Host')} {self.path}")
                outer.arrived.set()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path, _, query = self.path.partition("?")
                params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
                if path == "/json":
                    self._send(200, b'{"ok": true}', {"Content-Type": "application/json", "X-Test": "yes"})
                elif path == "/echo":
                    echo = {"method": self.command, "body": body.decode(), "x": self.headers.get("X-Custom")}
                    self._send(200, json.dumps(echo).encode(), {"Content-Type": "application/json"})
                elif path == "/headers":
                    got = {k.lower(): v for k, v in self.headers.items()}
                    self._send(200, json.dumps(got).encode(), {"Content-Type": "application/json"})
                elif path == "/slow":
                    time.sleep(float(params["s"]))
                    self._send(200, b"slow")
                elif path == "/hang":
                    self._until_the_client_leaves()
                elif path == "/stall":
                    self.send_response(200)
                    self.send_header("Content-Length", "100")
                    self.end_headers()
                    self.wfile.write(b"x" * 50)
                    self._until_the_client_leaves()
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
    assert got[3] == (
        f"fetch refused: {server.origin} redirected to {server.other_origin}, which is not an allowed "
        f"origin (allowed: {server.origin})"
    )
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


def test_a_request_body_larger_than_max_fetch_bytes_is_refused(server: Server) -> None:
    engine = Engine(allow_fetch=[server.origin], max_fetch_bytes=100)
    code = f"""
    Promise.all([100, 101].map(n => fetch('{server.origin}/status/200', {{method: 'POST', body: 'x'.repeat(n)}})
        .then(r => r.status, e => e.message)))
    """
    assert run(engine, code) == [
        200,
        "fetch refused: the request body is 101 bytes, more than 100 (max_fetch_bytes)",
    ]
    assert server.requests == [f"POST 127.0.0.1:{server.port} /status/200"]


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


def test_a_server_that_takes_seconds_to_answer_is_waited_for(server: Server) -> None:
    engine = Engine(allow_fetch=[server.origin])
    code = f"fetch('{server.origin}/slow?s=1').then(async r => [r.status, await r.text()])"
    assert run(engine, code, timeout=60) == [200, "slow"]
    with engine.context() as ctx:  # no timeout: the response timeout (300 s) bounds it
        assert ctx.eval(f"fetch('{server.origin}/slow?s=1').then(r => r.text())") == "slow"


@pytest.mark.parametrize("route", ["/hang", "/stall"])
def test_cancel_stops_a_fetch_waiting_for_its_head_or_its_body(server: Server, route: str) -> None:
    engine = Engine(allow_fetch=[server.origin])
    control = Control()

    def cancel_once_it_waits() -> None:
        server.arrived.wait(30)
        time.sleep(0.3)  # into the wait for the head or the rest of the body
        control.cancel()

    threading.Thread(target=cancel_once_it_waits, daemon=True).start()
    outcome = engine.execute(
        f"fetch('{server.origin}{route}').then(r => r.text())", control=control, timeout=120
    )
    assert outcome.cancelled, (outcome.status, outcome.error)
    assert server.dropped.wait(20), "the request kept its connection after the cancel"


@pytest.mark.parametrize("route", ["/hang", "/stall"])
def test_a_timeout_stops_a_fetch_waiting_for_its_head_or_its_body(server: Server, route: str) -> None:
    engine = Engine(allow_fetch=[server.origin])
    outcome = engine.execute(f"fetch('{server.origin}{route}').then(r => r.text())", timeout=2)
    assert outcome.timed_out, (outcome.status, outcome.error)
    assert server.dropped.wait(20), "the request kept its connection after the timeout"


def test_a_live_context_run_ends_its_fetches(server: Server) -> None:
    engine = Engine(allow_fetch=[server.origin])
    with engine.context() as ctx:
        outcome = ctx.execute(f"fetch('{server.origin}/stall').then(r => r.text())", timeout=2)
        assert outcome.timed_out, (outcome.status, outcome.error)
        assert server.dropped.wait(20), "the request outlived its run"
        assert ctx.eval(f"fetch('{server.origin}/json').then(r => r.status)") == 200


def test_failures_say_what_happened_once(server: Server) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    engine = Engine(allow_fetch=[closed])
    got = run(engine, f"fetch('{closed}/').then(() => 'reached', e => [e.name, e.message])")
    assert got == ["TypeError", f"fetch failed: {closed} refused the connection"]


def test_scripts_may_not_set_framing_or_routing_headers(server: Server) -> None:
    engine = Engine(allow_fetch=[server.origin])
    for name in [
        "Host",
        "Content-Length",
        "Transfer-Encoding",
        "Connection",
        "Proxy-Authorization",
        "Upgrade",
    ]:
        code = f"fetch('{server.origin}/headers', {{headers: {{'{name}': 'x'}}}}).then(() => 'reached', e => [e.name, e.message])"
        got = run(engine, code)
        assert got[0] == "TypeError" and f'"{name.lower()}" header' in got[1], got
    assert server.requests == []
    code = f"""fetch('{server.origin}/headers', {{headers: {{Cookie: 'c=1', Origin: 'https://o.example', 'X-Host': 'h'}}}})
      .then(r => r.json())"""
    got = run(engine, code)
    assert (got["cookie"], got["origin"], got["x-host"]) == ("c=1", "https://o.example", "h")
    assert got["host"] == server.origin.removeprefix("http://")


def test_a_redirect_to_another_origin_drops_the_credentials(server: Server) -> None:
    other = Server()
    try:
        engine = Engine(allow_fetch=[server.origin, other.origin])
        sent = "{Authorization: 'Bearer t', Cookie: 'c=1', 'X-Kept': 'k'}"
        code = f"""
        (async () => {{
          const away = await fetch('{server.origin}/redirect?to={other.origin}/headers', {{headers: {sent}}});
          const home = await fetch('{server.origin}/redirect?to=%2Fheaders', {{headers: {sent}}});
          return [away.url, await away.json(), await home.json()];
        }})()
        """
        url, away, home = run(engine, code)
        assert url == f"{other.origin}/headers"
        assert "authorization" not in away and "cookie" not in away and away["x-kept"] == "k", away
        assert (home["authorization"], home["cookie"], home["x-kept"]) == ("Bearer t", "c=1", "k")
    finally:
        other.close()


def test_servers_see_the_engine_as_the_user_agent_unless_the_script_names_one(server: Server) -> None:
    engine = Engine(allow_fetch=[server.origin])
    code = f"""
    (async () => [
      (await (await fetch('{server.origin}/headers')).json())['user-agent'],
      (await (await fetch('{server.origin}/headers', {{headers: {{'User-Agent': 'mine/1'}}}})).json())['user-agent'],
    ])()
    """
    default, own = run(engine, code)
    assert default.startswith("mcp-v8/") and own == "mine/1"


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


def test_the_service_cancels_and_times_out_a_waiting_fetch_without_killing_its_worker(
    server: Server, tmp_path: Path
) -> None:
    app = create_app(Settings(data_dir=tmp_path, workers=1, allow_fetch=(server.origin,)))
    c = testing.TestClient(app)
    try:
        code = f"fetch('{server.origin}/hang').then(r => r.text())"
        execution = submit(c, code, execution_timeout_secs=120)
        assert server.arrived.wait(60), "the fetch never reached the server"
        assert c.simulate_post(f"/api/executions/{execution}/cancel", headers=HOST).json["ok"] is True
        done = wait(c, execution)
        assert done["status"] == "cancelled" and "killed" not in (done.get("error") or ""), done
        assert server.dropped.wait(20), "the request outlived its execution"
        server.dropped.clear()
        done = wait(
            c, submit(c, f"fetch('{server.origin}/stall').then(r => r.text())", execution_timeout_secs=2)
        )
        assert done["status"] == "timed_out" and "killed" not in (done.get("error") or ""), done
        assert server.dropped.wait(20), "the request outlived its execution"
        stats = c.simulate_get("/api/stats", headers=HOST).json
        assert (stats["worker_crashes"], stats["worker_restarts"]) == (0, 0), stats
        done = wait(c, submit(c, f"fetch('{server.origin}/slow?s=1').then(r => r.text())"))
        assert done["status"] == "completed" and json.loads(done["result"]) == "slow", done
    finally:
        app.service.close()


# -- the worker makes no connection: the server makes its requests -------------------------


def spawn_without_network(options: WorkerOptions, sock: socket.socket, stderr: BinaryIO) -> WorkerProcess:
    """A worker in a network namespace of its own (``unshare -rn``), where no interface is up:
    a connection it made itself could reach nothing, the loopback server of these tests
    included."""
    args = [*UNSHARE, sys.executable, "-m", "mcp_v8.executions.worker"]
    args += ["--fd", str(sock.fileno())]
    return subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        pass_fds=(sock.fileno(),),
        start_new_session=True,
    )


UNSHARE = ["unshare", "--user", "--map-root-user", "--net"]


def cut_probe(server: Server) -> None:
    """The wall holds: from inside it, the test's server cannot be reached."""
    probe = f"import socket; socket.create_connection(('127.0.0.1', {server.port}), timeout=5)"
    reached = subprocess.run([*UNSHARE, sys.executable, "-c", probe], capture_output=True, timeout=60)
    assert reached.returncode != 0 and b"unreachable" in reached.stderr, reached


@pytest.fixture
def cut_slot(tmp_path: Path, server: Server) -> Iterator[WorkerSlot]:
    cut_probe(server)
    slot = WorkerSlot(0, tmp_path, WorkerOptions(), spawn=spawn_without_network)
    slot.start()
    yield slot
    slot.stop()


def job(execution_id: str, code: str, server: Server, timeout: float = 60.0) -> Job:
    limits = Limits(
        heap_limit_mb=64, timeout_secs=timeout, max_result_bytes=1 << 20, max_output_bytes=1 << 20
    )
    fetch = FetchPolicy((server.origin,), 1 << 20, 5)
    return Job(execution_id, ExecutionSpec(code=code, limits=limits, snapshot=False, fetch=fetch))


def test_a_worker_without_network_fetches_through_the_server(cut_slot: WorkerSlot, server: Server) -> None:
    code = f"""
    (async () => {{
        const got = await (await fetch('{server.origin}/json')).json();
        const posted = await (await fetch('{server.origin}/echo', {{method: 'POST', body: 'hello'}})).json();
        const refused = await fetch('{server.other_origin}/json').catch(e => e.message);
        return [got, posted.body, refused];
    }})()
    """
    result = cut_slot.run(job("a", code, server), lambda text: None)
    assert result.status == "completed", result
    got, posted, refused = json.loads(result.result or "null")
    assert got == {"ok": True} and posted == "hello" and "is not an allowed origin" in refused
    # The policy is the spec's, counted on the server: 5 requests, then refusals.
    code = f"Promise.allSettled([...Array(7)].map(() => fetch('{server.origin}/json'))).then(r => r.map(x => x.status))"
    result = cut_slot.run(job("b", code, server), lambda text: None)
    assert sorted(json.loads(result.result or "null")) == ["fulfilled"] * 5 + ["rejected"] * 2, result


def test_a_live_step_in_a_worker_without_network_fetches_through_the_server(
    tmp_path: Path, server: Server
) -> None:
    cut_probe(server)
    slot = LiveSlot(0, tmp_path, WorkerOptions(), spawn=spawn_without_network)
    slot.start()
    try:
        slot.open("s", 64)
        code = f"""
            var got = await (await fetch('{server.origin}/json')).json();
            const posted = await (await fetch('{server.origin}/echo', {{method: 'POST', body: 'hello'}})).json();
            const refused = await fetch('{server.other_origin}/json').catch(e => e.message);
            [got, posted.body, refused]
        """
        result = slot.step(job("a", code, server), "s", lambda text: None)
        assert result.status == "completed", result
        got, posted, refused = json.loads(result.result or "null")
        assert got == {"ok": True} and posted == "hello" and "is not an allowed origin" in refused
        # The policy is the step's, counted on the server for each step: 5 requests, then refusals.
        code = f"Promise.allSettled([...Array(7)].map(() => fetch('{server.origin}/json'))).then(r => r.map(x => x.status))"
        for step in ("b", "c"):
            result = slot.step(job(step, code, server), "s", lambda text: None)
            assert sorted(json.loads(result.result or "null")) == ["fulfilled"] * 5 + ["rejected"] * 2, result
        assert slot.step(job("d", "got.ok", server), "s", lambda text: None).result == "true"  # still live
    finally:
        slot.stop()


def test_the_service_relays_a_live_steps_fetch_under_its_settings(server: Server, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, workers=1, live_workers=1, allow_fetch=(server.origin,), max_fetch_bytes=BIG - 1
    )
    app = create_app(settings)
    c = testing.TestClient(app)
    try:
        code = f"var got = await (await fetch('{server.origin}/json')).json(); got.ok"
        done = wait(c, submit(c, code, session="s", live=True))
        assert (done["status"], done["result"]) == ("completed", "true"), done
        done = wait(
            c,
            submit(
                c,
                f"await fetch('{server.origin}/big').then(r => r.text(), e => e.message)",
                session="s",
                live=True,
            ),
        )
        assert "larger than 65535 bytes" in json.loads(done["result"]), done
        done = wait(
            c,
            submit(
                c, f"await fetch('{server.other_origin}/json').catch(e => e.message)", session="s", live=True
            ),
        )
        assert "is not an allowed origin" in json.loads(done["result"]), done
    finally:
        app.service.close()
    off = create_app(Settings(data_dir=tmp_path / "off", workers=1, live_workers=1))
    c = testing.TestClient(off)
    try:  # no --allow-fetch: refused as in a one-off execution
        done = wait(
            c, submit(c, f"await fetch('{server.origin}/json').catch(e => e.message)", session="s", live=True)
        )
        assert "fetch is off" in json.loads(done["result"]), done
    finally:
        off.service.close()


def test_cancel_and_timeout_end_the_servers_request_for_a_worker_without_network(
    cut_slot: WorkerSlot, server: Server
) -> None:
    code = f"fetch('{server.origin}/hang').then(r => r.text())"
    ended: list[Any] = []
    running = threading.Thread(target=lambda: ended.append(cut_slot.run(job("a", code, server, 120), print)))
    running.start()
    assert server.arrived.wait(60), "the fetch never reached the server"
    cut_slot.cancel("a")
    assert server.dropped.wait(20), "the request outlived its execution"
    running.join(60)
    assert ended[0].status == "cancelled" and "killed" not in (ended[0].error or ""), ended
    server.dropped.clear()
    code = f"fetch('{server.origin}/stall').then(r => r.text())"
    result = cut_slot.run(job("b", code, server, timeout=2), lambda text: None)
    assert result.status == "timed_out" and "killed" not in (result.error or ""), result
    assert server.dropped.wait(20), "the request outlived its execution"
    assert cut_slot.alive()  # one worker throughout: nothing killed it


def test_the_workers_relay_forwards_each_call_and_drops_replies_once_its_job_is_over(
    server: Server, tmp_path: Path
) -> None:
    calls: queue.Queue[Any] = queue.Queue()

    def send(message: FetchCall) -> None:  # through the channel's encoding, as the worker sends
        calls.put(decode(encode(message)[4:], "worker"))

    fetches = worker_common.Fetches(send)
    run = _engine.FetchRun([server.origin])  # the server's side, played by this test

    def answer() -> None:
        while (call := calls.get()) is not None:
            assert run.admit() is None
            ok, head, body = run.perform(call.args, call.body)
            assert fetches.deliver(
                FetchReply(call.execution_id, call.call_id, ok, head, body if ok else None)
            )

    answering = threading.Thread(target=answer)
    answering.start()
    code = f"""
    (async () => [
        await (await fetch('{server.origin}/json')).json(),
        await fetch('{server.origin}/?' + 'x'.repeat({FETCH_ARGS_LIMIT})).catch(e => e.message),
    ])()
    """
    limits = Limits(heap_limit_mb=64, timeout_secs=60, max_result_bytes=1 << 20, max_output_bytes=1 << 20)
    spec = ExecutionSpec(code=code, limits=limits, snapshot=False)  # no policy: the worker needs none
    output = worker_common.ConsoleOutput(lambda message: None, 1 << 20)
    relay = fetches.start("e")
    try:
        result, _ = worker._run(Engine(), Job("e", spec), None, output, relay)
    finally:
        fetches.finish("e")
        calls.put(None)
        answering.join(60)
    assert result.status == "completed", result
    got, too_long = json.loads(result.result or "null")
    assert got == {"ok": True}
    # A call the channel cannot carry fails in the worker, which goes on.
    assert too_long.startswith("fetch refused: a 'fetch' message cannot be sent: fetch.args is ")
    assert server.requests == [f"GET 127.0.0.1:{server.port} /json"]
    late = FetchReply("e", 1, True, '{"status": 200}', b"late")
    assert not fetches.deliver(late)  # its job is over: dropped
    assert not relay.reply(1, True, '{"status": 200}', b"late")  # and its run, which took it
    relay_of_next = fetches.start("f")
    assert not fetches.deliver(late) and not relay_of_next.reply(
        1, True, "{}", b""
    )  # not "f"'s, and "f" has no run yet


def test_a_live_context_relays_fetch_only_to_a_dispatch_and_never_with_its_own_policy() -> None:
    with pytest.raises(ValueError, match="fetch_to_dispatch needs a dispatch"):
        _engine.LiveContext(fetch_to_dispatch=True)
    with pytest.raises(ValueError, match="fetch_to_dispatch needs a dispatch"):
        _engine.LiveContext(fetch_to_dispatch=True, dispatch=print, allow_fetch=["http://127.0.0.1:1"])
