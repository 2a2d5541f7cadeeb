"""Bad requests get a clear 4xx with {"error": ...} and create nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from falcon import testing

from mcp_v8.app import Service, create_app
from mcp_v8.config import Settings

HOST = {"Host": "127.0.0.1:3000"}
TOKEN = "tok-" + "x" * 20
AUTH = {**HOST, "Authorization": f"Bearer {TOKEN}"}
ZERO_ID = "00000000-0000-0000-0000-000000000000"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[testing.TestClient]:
    # routes and validation only: no worker is started, nothing reaches one
    service = Service(
        Settings(data_dir=tmp_path_factory.mktemp("bad"), workers=1, api_token=TOKEN, max_body_bytes=4096)
    )
    yield testing.TestClient(create_app(service=service))
    service.close()


BODIES = [
    ("not json", b"{code: 1}", 400),
    ("truncated json", b'{"code": "1"', 400),
    ("utf-16", '{"code": "1"}'.encode("utf-16"), 400),
    ("json string", b'"just a string"', 400),
    ("null", b"null", 400),
    ("huge float timeout", b'{"code": "1", "execution_timeout_secs": 1e400}', 400),
    ("negative timeout", b'{"code": "1", "execution_timeout_secs": -5}', 400),
    ("huge int heap", b'{"code": "1", "heap_memory_max_mb": 99999999999999999999999}', 400),
    ("float heap", b'{"code": "1", "heap_memory_max_mb": 64.0}', 400),
    ("nan", b'{"code": "1", "execution_timeout_secs": NaN}', 400),
    ("heap traversal", b'{"code": "1", "heap": "../../../../etc/passwd"}', 400),
    ("heap with newline", b'{"code": "1", "heap": "' + b"a" * 64 + b'\\n"}', 400),
    ("heap absolute", b'{"code": "1", "heap": "/' + b"a" * 63 + b'"}', 400),
    ("heap nul", b'{"code": "1", "heap": "' + b"a" * 63 + b'\\u0000"}', 400),
    ("unknown field", b'{"code": "1", "timeout": 5}', 400),
    ("nested tags", b'{"code": "1", "tags": {"a": {"b": "c"}}}', 400),
    (
        "too many tags",
        b'{"code": "1", "tags": {' + b",".join(b'"k%d": "v"' % i for i in range(65)) + b"}}",
        400,
    ),
    ("session object", b'{"code": "1", "session": {}}', 400),
    ("session nul", b'{"code": "1", "session": "a\\u0000b"}', 400),
    ("tag value nul", b'{"code": "1", "tags": {"k": "\\u0000"}}', 400),
    ("tag key nul", b'{"code": "1", "tags": {"\\u0000": "v"}}', 400),
    ("oversized body", b'{"code": "' + b"x" * 5000 + b'"}', 413),
]


@pytest.mark.parametrize(("name", "body", "status"), BODIES, ids=[b[0] for b in BODIES])
def test_bad_exec_bodies(client: testing.TestClient, name: str, body: bytes, status: int) -> None:
    resp = client.simulate_post("/api/exec", body=body, headers={**AUTH, "Content-Type": "application/json"})
    assert resp.status_code == status, resp.text
    if name.endswith(" nul"):
        assert "without NUL characters" in resp.json["error"] or name == "heap nul", resp.json
    assert set(resp.json) == {"error"} and resp.json["error"]
    assert client.simulate_get("/api/executions", headers=AUTH).json["executions"] == []


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/xml", "multipart/form-data; boundary=x", "application/json; charset=latin1"],
)
def test_wrong_content_types_still_parse_as_json_or_fail_cleanly(
    client: testing.TestClient, content_type: str
) -> None:
    resp = client.simulate_post("/api/exec", body="<xml/>", headers={**AUTH, "Content-Type": content_type})
    assert resp.status_code == 400 and "not valid JSON" in resp.json["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/executions/..%2F..%2Fetc%2Fpasswd",
        "/api/executions/%00",
        f"/api/executions/{ZERO_ID.upper()}",
        f"/api/executions/{ZERO_ID}%0A",
        "/api/executions/" + "a" * 5000,
        f"/api/executions/{ZERO_ID}/output",
        "/api/cli/..%2F..%2Fetc%2Fpasswd",
        "/api/cli/linux-x86_64%00",
        "/api/nothing-here",
    ],
)
def test_path_tricks_are_404(client: testing.TestClient, path: str) -> None:
    resp = client.simulate_get(path, headers=AUTH)
    assert resp.status_code == 404
    assert resp.json["error"]


def test_cancel_path_tricks(client: testing.TestClient) -> None:
    assert client.simulate_post("/api/executions/..%2F..%2Fx/cancel", headers=AUTH).status_code == 404


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ({"limit": "0"}, 400),
        ({"limit": "-1"}, 400),
        ({"limit": "1e3"}, 400),
        ({"limit": "99999999999999999999999"}, 400),
        ({"status": "done"}, 400),
        ({"bogus": "1"}, 400),
        ({"session": "s" * 257}, 400),
        ({"cursor": ""}, 400),
        ({"cursor": "not a cursor"}, 400),
        ({"cursor": "e30"}, 400),
    ],
)
def test_bad_list_queries(client: testing.TestClient, query: dict[str, str], status: int) -> None:
    resp = client.simulate_get("/api/executions", params=query, headers=AUTH)
    assert resp.status_code == status and resp.json["error"]


@pytest.mark.parametrize(
    "host",
    ["evil.example", "127.0.0.1.evil.example", "localhost.evil", "[::2]", "", "127.0.0.1:3000@evil.example"],
)
def test_hosts_outside_the_allowlist(client: testing.TestClient, host: str) -> None:
    resp = client.simulate_get("/api/version", headers={"Host": host})
    assert resp.status_code == 400 and "Host header" in resp.json["error"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost:8080", "LOCALHOST", "[::1]:3000"])
def test_hosts_inside_the_allowlist(client: testing.TestClient, host: str) -> None:
    assert client.simulate_get("/api/version", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"bearer  {TOKEN[:-1]}"],
)
def test_missing_or_wrong_tokens(client: testing.TestClient, authorization: str | None) -> None:
    headers = dict(HOST)
    if authorization is not None:
        headers["Authorization"] = authorization
    for method, path in [("GET", "/api/executions"), ("POST", "/api/exec"), ("GET", "/api/cli"),
                         ("POST", f"/api/executions/{ZERO_ID}/cancel")]:  # fmt: skip
        resp = client.simulate_request(method, path, headers=headers, json={"code": "1"})
        assert resp.status_code == 401, (method, path)
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert resp.json == {"error": "a valid bearer token is required"}
    assert client.simulate_get("/api/version", headers=headers).status_code == 200


def test_methods_not_allowed(client: testing.TestClient) -> None:
    resp = client.simulate_delete("/api/exec", headers=AUTH)
    assert resp.status_code == 405
    assert resp.json["error"]


def test_no_stack_traces_in_responses(client: testing.TestClient, tmp_path: Path) -> None:
    for resp in (
        client.simulate_post("/api/exec", body=b"\x00\xff", headers=AUTH),
        client.simulate_get("/api/executions/x/output", params={"line_offset": "a"}, headers=AUTH),
    ):
        assert "Traceback" not in resp.text and 'File "' not in resp.text
