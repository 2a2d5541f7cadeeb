"""Property-based fuzzing of a real server (Waitress, worker processes): malformed,
deeply nested and ill-typed request bodies, lone surrogate escapes in every string
field, random Content-Types, Origins and query strings. Every answer is a 2xx or a 4xx
with {"error": ...}, never a 5xx or a dropped connection, and every accepted execution
ends without crashing its worker."""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from .live_server import LiveServer
from .test_untrusted_sources import nested_sources, repeated_soup

ALLOWED_ORIGIN = "http://app.example:8080"
FOREIGN_ORIGINS = ["http://evil.example", "null", "http://app.example:8081", "https://app.example:8080", ""]
TERMINAL = {"completed", "failed", "cancelled", "timed_out"}
ZERO_ID = "00000000-0000-0000-0000-000000000000"
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


class Server:
    def __init__(self, live: LiveServer, known_id: str) -> None:
        self.live = live
        self.url = live.url
        self.known_id = known_id  # a completed execution, for the routes that take an id
        self.session = requests.Session()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    live = LiveServer(
        tmp_path_factory.mktemp("fuzz"),
        "--workers", "2", "--queue-limit", "64", "--default-timeout-secs", "2", "--max-timeout-secs", "2",
        "--max-heap-mb", "64", "--allowed-origins", ALLOWED_ORIGIN,
    ).start()  # fmt: skip
    try:
        resp = requests.post(live.url + "/api/exec", json={"code": "console.log('known'); 1"}, timeout=30)
        assert resp.status_code == 202, resp.text
        known = resp.json()["execution_id"]
        assert wait_terminal(live.url, known)["status"] == "completed"
        server = Server(live, known)
        yield server
        server.session.close()
    finally:
        live.stop()
    log = live.log.read_text(errors="replace")
    assert "internal error" not in log and "Traceback" not in log, log[-4000:]


def wait_terminal(url: str, eid: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120  # generous: a busy machine, two workers
    while True:
        resp = requests.get(f"{url}/api/executions/{eid}", params={"wait_ms": "10000"}, timeout=60)
        assert resp.status_code == 200, resp.text
        info: dict[str, Any] = resp.json()
        if info["status"] in TERMINAL:
            return info
        assert time.monotonic() < deadline, f"{eid} never finished: {info}"


# -- strategies ------------------------------------------------------------------------

lone_surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
# text that sometimes holds lone surrogates (json.dumps writes them as \uXXXX escapes)
texts = st.one_of(
    st.text(max_size=40),
    st.lists(st.one_of(st.characters(), lone_surrogates), max_size=20).map("".join),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**300), max_value=10**300),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=12,
)
codes = st.one_of(
    nested_sources(),  # every construct that nests, deep and unbalanced (up to the code limit and past it)
    repeated_soup,
    st.sampled_from(["1", "'x'", "console.log('hi'); [1, 2]", "var a = 1; a", "throw new Error('e')",
                     "const n: number = 1; n", "await 1", "({a: 1})", "  ", ""]),
    texts,
    json_values,
)  # fmt: skip
field_values = {
    "code": codes,
    "execution_timeout_secs": st.one_of(st.integers(-3, 3), json_values),
    "heap_memory_max_mb": st.one_of(st.integers(0, 80), json_values),
    "heap": st.one_of(st.text("0123456789abcdef", min_size=64, max_size=64), json_values),
    "session": st.one_of(texts, json_values),
    "tags": st.one_of(st.dictionaries(texts, texts, max_size=5), json_values),
    "snapshot": st.one_of(st.booleans(), json_values),
}
exec_objects = st.fixed_dictionaries(
    {"code": codes},
    optional={
        **{name: values for name, values in field_values.items() if name != "code"},
        "unknown": json_values,
        "Code": json_values,
    },
)

# requests the server accepts: their executions must end without crashing a worker
snippets = st.sampled_from(
    ["1", "'x'", "console.log('hi'); [1, 2]", "var a = 1; a", "throw new Error('e')", "const n: number = 1; n",
     "await 1", "({a: 1})", "'\\u{1F600}'.length", "console.error('\\ud800')", "[1n]", "Symbol()", "'\\0'",
     "new Uint8Array(8)", "JSON.stringify({a: '\\udc00'})", "x", "}{", "a.b.c", "setTimeout(() => 1, 1)"]
)  # fmt: skip
valid_exec_objects = st.fixed_dictionaries(
    {"code": st.one_of(snippets, st.text(min_size=1, max_size=60))},
    optional={
        "execution_timeout_secs": st.integers(1, 2),
        "heap_memory_max_mb": st.integers(8, 64),
        "session": st.text(max_size=30),
        "tags": st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=4),
        "snapshot": st.one_of(st.booleans(), st.none()),
    },
)


def dump(value: Any, ascii_only: bool) -> bytes:
    """JSON text of ``value``: with escapes (lone surrogates as \\uXXXX), or raw, where a
    lone surrogate becomes bytes that are not UTF-8."""
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@st.composite
def nested_bodies(draw: st.DrawFn) -> bytes:
    depth = draw(st.one_of(st.integers(1, 100), st.integers(1, 100_000), st.just(100_000)))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'{"code":', b"}")]))
    inner = draw(st.sampled_from([b"1", b'"\\ud800"', b"[]", b""]))
    body = opener * depth + inner + closer * draw(st.sampled_from([depth, depth - 1, 0]))
    if draw(st.booleans()):
        body = (
            b'{"code": "1", "'
            + draw(st.sampled_from(list(field_values)).map(str.encode))
            + b'": '
            + body
            + b"}"
        )
    return body


@st.composite
def huge_numbers(draw: st.DrawFn) -> bytes:
    digits = b"9" * draw(st.integers(1, 20_000))
    number = draw(st.sampled_from([digits, b"-" + digits, b"1e" + digits[:7], b"0." + digits, b"1E-99999"]))
    field = draw(st.sampled_from(["execution_timeout_secs", "heap_memory_max_mb", "code", "session"]))
    return b'{"code": "1", "%s": %s}' % (field.encode(), number)


invalid_utf8 = st.sampled_from(
    [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\x80", b"\xfe\xff"]
)


@st.composite
def broken_utf8_bodies(draw: st.DrawFn) -> bytes:
    body = bytearray(dump(draw(exec_objects), ascii_only=False))
    at = draw(st.integers(0, len(body)))
    return bytes(body[:at] + draw(invalid_utf8) + body[at:])


bodies = st.one_of(
    valid_exec_objects.map(lambda v: dump(v, ascii_only=True)),
    valid_exec_objects.map(lambda v: dump(v, ascii_only=False)),
    exec_objects.map(lambda v: dump(v, ascii_only=True)),
    exec_objects.map(lambda v: dump(v, ascii_only=False)),
    json_values.map(lambda v: dump(v, ascii_only=True)),
    nested_bodies(),
    huge_numbers(),
    broken_utf8_bodies(),
    st.binary(max_size=512),
    st.sampled_from(
        [b"", b" ", b"{", b"}", b"null", b"NaN", b"[]", b"{}", b'{"code": "1",}', b"\xef\xbb\xbf{}"]
    ),
)
content_types = st.one_of(
    st.none(),
    st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded",
                     "multipart/form-data; boundary=x", "application/json; charset=utf-16", "*/*", ""]),
    # requests refuses header values with leading or trailing blanks
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(str.strip),
)  # fmt: skip
origins = st.one_of(st.none(), st.none(), st.just(ALLOWED_ORIGIN), st.sampled_from(FOREIGN_ORIGINS))


def percent(data: bytes) -> str:
    return urllib.parse.quote_from_bytes(data, safe="")


query_parts = st.one_of(
    st.sampled_from(
        [
            "limit",
            "status",
            "wait_ms",
            "line_offset",
            "line_limit",
            "byte_offset",
            "byte_limit",
            "session",
            "cursor",
        ]
    ),
    st.text(max_size=10),
).map(lambda s: percent(s.encode()))
query_values = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(["0", "1", "30000", "running", "completed", "1e3", "", "-0", " 1", "0x10", "e30", "a/b"]),
    st.text(max_size=10),
).map(lambda s: percent(s.encode()))
raw_query_bytes = st.one_of(invalid_utf8, st.binary(max_size=8), st.just(b"\xed\xa0\x80")).map(percent)
query_strings = st.lists(
    st.tuples(st.one_of(query_parts, raw_query_bytes), st.one_of(query_values, raw_query_bytes, st.just(""))),
    max_size=4,
).map(lambda pairs: "&".join(f"{k}={v}" if v else k for k, v in pairs))


# -- the checks --------------------------------------------------------------------------


def check(server: Server, method: str, path: str, query: str, body: bytes | None, content_type: str | None,
          origin: str | None) -> requests.Response:  # fmt: skip
    headers = {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if origin is not None:
        headers["Origin"] = origin
    url = server.url + path + (f"?{query}" if query else "")
    # a refused or dropped connection raises here and fails the example
    resp = server.session.request(method, url, data=body, headers=headers, timeout=60)
    assert resp.status_code < 500, (method, path, query, resp.status_code, resp.text[:500])
    if origin is not None:  # the allowlist comes from --allowed-origins
        assert (resp.status_code == 403) == (origin != ALLOWED_ORIGIN), (
            origin,
            resp.status_code,
            resp.text[:500],
        )
    if resp.status_code >= 400:
        error = resp.json()
        assert isinstance(error, dict) and isinstance(error.get("error"), str) and error["error"], resp.text
    assert server.live.process is not None and server.live.process.poll() is None, "the server died"
    event(f"{method} {resp.status_code}")  # shown by --hypothesis-show-statistics
    return resp


@given(body=bodies, content_type=content_types, origin=origins)
@FUZZ
def test_fuzz_exec(server: Server, body: bytes, content_type: str | None, origin: str | None) -> None:
    resp = check(server, "POST", "/api/exec", "", body, content_type, origin)
    assert resp.status_code in (202, 400, 403, 404, 413, 429), (resp.status_code, resp.text[:500])
    if resp.status_code == 202:
        info = wait_terminal(server.url, resp.json()["execution_id"])
        assert not str(info["error"] or "").startswith("worker crashed"), (body[:500], info)


@st.composite
def any_requests(draw: st.DrawFn, known_id: str) -> tuple[str, str]:
    eid = draw(
        st.one_of(
            st.just(known_id), st.just(ZERO_ID), st.text(max_size=12).map(lambda s: percent(s.encode()))
        )
    )
    return draw(
        st.sampled_from(
            [
                ("POST", "/api/exec"),
                ("POST", f"/api/executions/{eid}/cancel"),
                ("GET", "/api/executions"),
                ("GET", f"/api/executions/{eid}"),
                ("GET", f"/api/executions/{eid}/output"),
                ("GET", "/api/version"),
                ("GET", "/api/openapi.json"),
                ("GET", "/api/stats"),
                ("GET", "/api/sessions"),
                ("GET", "/api/sessions/log"),
                ("GET", "/api/cli"),
                ("GET", f"/api/cli/{eid}"),
                ("GET", "/api/" + eid),
                ("PUT", "/api/exec"),
                ("DELETE", f"/api/executions/{eid}"),
            ]
        )
    )


@given(data=st.data(), query=query_strings, body=st.one_of(st.none(), bodies), origin=origins,
       content_type=content_types)  # fmt: skip
@FUZZ
def test_fuzz_every_route(
    server: Server,
    data: st.DataObject,
    query: str,
    body: bytes | None,
    origin: str | None,
    content_type: str | None,
) -> None:
    method, path = data.draw(any_requests(server.known_id), label="route")
    resp = check(server, method, path, query, body, content_type, origin)
    if resp.status_code == 202:
        info = wait_terminal(server.url, resp.json()["execution_id"])
        assert not str(info["error"] or "").startswith("worker crashed"), info
