"""The OpenAPI description: valid, complete against the HTTP contract, and its constraints bite."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

SPEC_PATH = Path(__file__).resolve().parents[1] / "openapi.json"
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}

CONTRACT_SCHEMAS = {
    "ApiError",
    "ApprovalRequest",
    "CancelResult",
    "CliAsset",
    "CliIndex",
    "ExecAccepted",
    "ExecRequest",
    "ExecutionInfo",
    "ExecutionList",
    "JsError",
    "LiveSessionHeap",
    "ExecutionSummary",
    "ExecutionOutput",
    "ExecutionToolCalls",
    "HeapDeleted",
    "HeapInfo",
    "HeapList",
    "HeapQuery",
    "HeapTagsPatch",
    "JsonRpcMessage",
    "JsonRpcResponse",
    "OutputQuery",
    "PendingToolCall",
    "QuotaUsage",
    "SessionList",
    "SessionLog",
    "SessionLogEntry",
    "SessionSummary",
    "Stats",
    "TenantUsage",
    "Tool",
    "ToolCallRecord",
    "ToolCallDecision",
    "ToolCatalogue",
    "ToolServer",
}
OPERATIONS = {
    ("get", "/api/cli"): ("listCliAssets", "CLI"),
    ("get", "/api/cli/{platform}"): ("downloadCli", "CLI"),
    ("post", "/api/exec"): ("submitExecution", "Executions"),
    ("get", "/api/executions"): ("listExecutions", "Executions"),
    ("get", "/api/executions/{id}"): ("getExecution", "Executions"),
    ("post", "/api/executions/{id}/cancel"): ("cancelExecution", "Executions"),
    ("post", "/api/executions/{id}/approve"): ("approveToolCalls", "Executions"),
    ("get", "/api/executions/{id}/output"): ("getExecutionOutput", "Executions"),
    ("get", "/api/executions/{id}/tool-calls"): ("getExecutionToolCalls", "Executions"),
    ("get", "/api/version"): ("getVersion", "Meta"),
    ("get", "/api/openapi.json"): ("getOpenApi", "Meta"),
    ("get", "/api/stats"): ("getStats", "Meta"),
    ("get", "/api/usage"): ("getUsage", "Meta"),
    ("get", "/metrics"): ("getMetrics", "Meta"),
    ("get", "/api/sessions"): ("listSessions", "Sessions"),
    ("get", "/api/sessions/log"): ("getSessionLog", "Sessions"),
    ("post", "/api/sessions/snapshot"): ("snapshotLiveSession", "Sessions"),
    ("delete", "/api/sessions/snapshot"): ("endLiveSession", "Sessions"),
    ("get", "/api/heaps/{key}"): ("getHeap", "Heaps"),
    ("delete", "/api/heaps/{key}"): ("deleteHeap", "Heaps"),
    ("patch", "/api/heaps/{key}/tags"): ("patchHeapTags", "Heaps"),
    ("post", "/api/heaps/query"): ("queryHeaps", "Heaps"),
    ("get", "/api/tools"): ("listTools", "Tools"),
    ("get", "/api/tools/declarations"): ("getToolDeclarations", "Tools"),
    ("post", "/mcp"): ("mcp", "MCP"),
    ("get", "/mcp"): ("mcpStream", "MCP"),
    ("delete", "/mcp"): ("mcpEndSession", "MCP"),
}
PUBLIC = {"/api/version", "/api/openapi.json"}  # no token needed, even when one is configured
APPROVER = {"/api/executions/{id}/approve"}  # the approver's token only


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    return loaded


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in HTTP_METHODS:
                yield method, path, op


def validator(spec: dict[str, Any], schema: dict[str, Any]) -> OAS31Validator:
    return OAS31Validator({**schema, "components": spec["components"]})


def schema_validator(spec: dict[str, Any], name: str) -> OAS31Validator:
    return validator(spec, {"$ref": f"#/components/schemas/{name}"})


def resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def test_spec_is_valid_openapi(spec: dict[str, Any]) -> None:
    validate(spec)
    assert spec["openapi"].startswith("3.")


def test_every_contract_schema_is_there(spec: dict[str, Any]) -> None:
    assert CONTRACT_SCHEMAS | {"VersionInfo"} == set(spec["components"]["schemas"])


def test_operations_ids_tags(spec: dict[str, Any]) -> None:
    found = {(method, path): op for method, path, op in operations(spec)}
    assert set(found) == set(OPERATIONS)
    for key, (operation_id, tag) in OPERATIONS.items():
        assert found[key]["operationId"] == operation_id
        assert found[key]["tags"] == [tag]
    assert {t["name"] for t in spec["tags"]} == {
        "CLI",
        "Executions",
        "Heaps",
        "Meta",
        "Sessions",
        "MCP",
        "Tools",
    }


def test_every_ref_resolves(spec: dict[str, Any]) -> None:
    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$ref":
                    yield v
                else:
                    yield from walk(v)
        elif isinstance(node, list):
            for v in node:
                yield from walk(v)

    refs = list(walk(spec))
    assert refs
    for ref in refs:
        resolve(spec, {"$ref": ref})  # raises KeyError when dangling


def test_security_everywhere_but_the_public_routes(spec: dict[str, Any]) -> None:
    assert spec["security"] == [{}, {"bearerAuth": []}]  # required only when a token is configured
    scheme = spec["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert all(f"GET {path}" in scheme["description"] for path in PUBLIC)
    for method, path, op in operations(spec):
        if path in PUBLIC:
            assert op["security"] == []
            assert "401" not in op["responses"]
        elif path in APPROVER:  # the approver token, or a principal with the approve scope
            assert op["security"] == [{"approverAuth": []}, {"bearerAuth": ["approve"]}]
            assert {"401", "403", "503"} <= set(op["responses"]), (method, path)
        else:  # a token when one is configured; its scope with principals (ROUTE_SCOPES)
            assert op["security"][0] == {} and list(op["security"][1]) == ["bearerAuth"], (method, path)
            assert {"401", "403", "503"} <= set(op["responses"]), (method, path)


def test_error_responses_use_api_error(spec: dict[str, Any]) -> None:
    for method, path, op in operations(spec):
        for code, response in op["responses"].items():
            response = resolve(spec, response)
            # A cancel's 400 is a CancelResult; MCP's 400 and 415 are JSON-RPC errors (the 400 only
            # where the message was read).
            mcp_error = path == "/mcp" and code in ("400", "415")
            exempt = (path.endswith("/cancel") and code == "400") or mcp_error
            if code.startswith(("4", "5")) and not exempt:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ApiError"}, (method, path, code)
    exec_responses = spec["paths"]["/api/exec"]["post"]["responses"]
    assert {"202", "400", "401", "404", "413", "429", "500", "503"} <= set(exec_responses)
    too_many = resolve(spec, exec_responses["429"])
    assert "Retry-After" in too_many["headers"]
    for path in ("/api/executions/{id}", "/api/executions/{id}/output", "/api/sessions/log"):
        op = next(iter(spec["paths"][path].values()))
        assert "404" in op["responses"]
    # A cancel is answered with a CancelResult only: an unknown id is a 400 with ok false.
    cancel = spec["paths"]["/api/executions/{id}/cancel"]["post"]["responses"]
    assert "404" not in cancel
    refs = resolve(spec, cancel["400"])["content"]["application/json"]["schema"]["anyOf"]
    assert {"$ref": "#/components/schemas/CancelResult"} in refs
    mcp = resolve(spec, spec["paths"]["/mcp"]["post"]["responses"]["400"])["content"]["application/json"]
    assert {"$ref": "#/components/schemas/ApiError"} in mcp["schema"]["anyOf"]  # Host refused


def test_examples_match_their_schemas(spec: dict[str, Any]) -> None:
    checked = 0
    for _method, _path, op in operations(spec):
        bodies = [op.get("requestBody", {})] + [resolve(spec, r) for r in op["responses"].values()]
        for body in bodies:
            for media in body.get("content", {}).values():
                if "example" in media:
                    validator(spec, media["schema"]).validate(media["example"])
                    checked += 1
    assert checked >= 8


GOOD_REQUESTS: list[dict[str, Any]] = [
    {"code": "1"},
    {
        "code": "x",
        "execution_timeout_secs": 1,
        "heap": "0" * 64,
        "heap_memory_max_mb": 8,
        "session": "s" * 256,
        "tags": {f"k{i}": "v" for i in range(64)},
    },
    {"code": "x", "execution_timeout_secs": None, "heap": None, "heap_memory_max_mb": None},
    {"code": "x", "session": None, "tags": None},
    {"code": "x", "snapshot": False},
    {"code": "x", "heap": "0" * 64, "snapshot": True},
    {"code": "x", "snapshot": None},
]
BAD_REQUESTS: list[dict[str, Any]] = [
    {},
    {"code": ""},
    {"code": 1},
    {"code": "x", "unknown": 1},
    {"code": "x", "execution_timeout_secs": 0},
    {"code": "x", "execution_timeout_secs": 1.5},
    {"code": "x", "execution_timeout_secs": "10"},
    {"code": "x", "heap_memory_max_mb": 7},
    {"code": "x", "heap": "A" * 64},
    {"code": "x", "heap": "0" * 63},
    {"code": "x", "heap": "../" + "0" * 61},
    {"code": "x", "heap": "0" * 64 + "\n"},
    {"code": "x", "tags": {"k": 1}},
    {"code": "x", "tags": {f"k{i}": "v" for i in range(65)}},
    {"code": "x", "tags": ["a"]},
    {"code": "x", "session": "s" * 257},
    {"code": "x", "snapshot": "false"},
    {"code": "x", "snapshot": 0},
]


@pytest.mark.parametrize("body", GOOD_REQUESTS)
def test_exec_request_accepts(spec: dict[str, Any], body: dict[str, Any]) -> None:
    schema_validator(spec, "ExecRequest").validate(body)


@pytest.mark.parametrize("body", BAD_REQUESTS, ids=[json.dumps(b)[:40] for b in BAD_REQUESTS])
def test_exec_request_rejects(spec: dict[str, Any], body: dict[str, Any]) -> None:
    assert not schema_validator(spec, "ExecRequest").is_valid(body)


def test_execution_info_shapes(spec: dict[str, Any]) -> None:
    v = schema_validator(spec, "ExecutionInfo")
    v.validate({"execution_id": "e1", "started_at": "2024-05-01T10:00:00.000Z", "status": "running"})
    v.validate(
        {
            "execution_id": "e1",
            "started_at": "2024-05-01T10:00:00.000Z",
            "completed_at": "2024-05-01T10:00:01.250Z",
            "status": "completed",
            "result": "[2,4]",
            "error": None,
            "heap": "a" * 64,
            "session": "s",
            "tags": {"k": "v"},
            "duration_ms": 1250.0,
        }
    )
    assert not v.is_valid({"execution_id": "e1", "started_at": "x", "status": "exploded"})
    props = spec["components"]["schemas"]["ExecutionInfo"]["properties"]
    assert set(props) == {
        "completed_at",
        "error",
        "execution_id",
        "heap",
        "result",
        "started_at",
        "status",
        "session",
        "tags",
        "duration_ms",
        "js_error",
        "pending_tool_calls",
        "approval_deadline",
        "trace_id",
        "tenant",  # an admin's answers only
    }
    assert "tenant" not in spec["components"]["schemas"]["ExecutionInfo"]["required"]
    thrown = {"name": "TypeError", "message": "bad", "stack": "TypeError: bad\n    at <input>:1:1", "line": 1}
    failed = {"execution_id": "e1", "started_at": "2024-05-01T10:00:00.000Z", "status": "failed"}
    v.validate({**failed, "error": thrown["stack"], "js_error": {**thrown, "column": 1}})
    v.validate({**failed, "error": "worker crashed: killed by signal SIGKILL", "js_error": None})
    assert not v.is_valid({**failed, "js_error": thrown})  # every field is there, null or not
    assert not v.is_valid({**failed, "js_error": "TypeError: bad"})
    items = spec["components"]["schemas"]["ExecutionList"]["properties"]["executions"]["items"]
    assert items == {"$ref": "#/components/schemas/ExecutionSummary"}


def test_output_schema_and_parameters(spec: dict[str, Any]) -> None:
    schema = spec["components"]["schemas"]["ExecutionOutput"]
    assert set(schema["required"]) == set(schema["properties"])  # every cursor field always filled
    op = spec["paths"]["/api/executions/{id}/output"]["get"]
    params = {p["name"]: p["schema"] for p in op["parameters"] if p["in"] == "query"}
    assert params["line_offset"]["default"] == 0
    assert (params["line_limit"]["default"], params["line_limit"]["maximum"]) == (1000, 10000)
    assert (params["byte_limit"]["default"], params["byte_limit"]["maximum"]) == (65536, 1048576)
    wait = spec["paths"]["/api/executions/{id}"]["get"]["parameters"][1]
    assert (wait["name"], wait["schema"]["minimum"], wait["schema"]["maximum"]) == ("wait_ms", 0, 30000)
    listing = {p["name"]: p["schema"] for p in spec["paths"]["/api/executions"]["get"]["parameters"]}
    assert (listing["limit"]["minimum"], listing["limit"]["maximum"], listing["limit"]["default"]) == (
        1,
        1000,
        100,
    )
    assert set(listing["status"]["enum"]) == {
        "running",
        "waiting",
        "completed",
        "failed",
        "cancelled",
        "timed_out",
    }


def test_paged_listings(spec: dict[str, Any]) -> None:
    """Every listing pages by an opaque cursor, with the same bounds, and says where the next page
    starts in a next_cursor that is always there (null on the last page)."""
    listings = {
        "/api/executions": ("ExecutionList", "executions"),
        "/api/sessions": ("SessionList", "sessions"),
        "/api/sessions/log": ("SessionLog", "executions"),
    }
    cursor_schema = None
    for path, (schema_name, items) in listings.items():
        op = spec["paths"][path]["get"]
        params = {p["name"]: p for p in op["parameters"]}
        assert params["limit"]["schema"] | {"format": "int64"} == {
            "type": "integer", "format": "int64", "minimum": 1, "maximum": 1000, "default": 100,
        }  # fmt: skip
        assert not params["cursor"]["required"]
        cursor_schema = cursor_schema or params["cursor"]["schema"]
        assert params["cursor"]["schema"] == cursor_schema, path
        body = spec["components"]["schemas"][schema_name]
        assert {items, "next_cursor"} <= set(body["required"])
        assert body["properties"]["next_cursor"]["type"] == ["string", "null"]
        assert body["properties"][items]["type"] == "array"
        assert {"400", "401", "403"} <= set(op["responses"])
    log = {p["name"]: p for p in spec["paths"]["/api/sessions/log"]["get"]["parameters"]}
    assert log["session"]["required"] is True and log["session"]["in"] == "query"
    by_session = {p["name"]: p for p in spec["paths"]["/api/executions"]["get"]["parameters"]}["session"]
    assert by_session["required"] is False
    no_nul = "^[^\\u0000]*$"  # names are stored as text, which holds no NUL in PostgreSQL
    assert (
        log["session"]["schema"]
        == by_session["schema"]
        == {"type": "string", "maxLength": 256, "pattern": no_nul}
    )
    session = spec["components"]["schemas"]["ExecRequest"]["properties"]["session"]
    assert (session["maxLength"], session["pattern"]) == (256, no_nul)


def test_session_schemas(spec: dict[str, Any]) -> None:
    summary = spec["components"]["schemas"]["SessionSummary"]
    # Every field always there, but the tenant (an admin's answers only).
    assert set(summary["required"]) == set(summary["properties"]) - {"tenant"}
    entry = spec["components"]["schemas"]["SessionLogEntry"]
    assert set(entry["required"]) == set(entry["properties"]) - {"tenant"} == {
        "execution_id", "status", "heap_in", "heap", "heap_stored", "tags", "started_at", "completed_at",
    }  # fmt: skip
    v = schema_validator(spec, "SessionList")
    example = spec["paths"]["/api/sessions"]["get"]["responses"]["200"]["content"]["application/json"][
        "example"
    ]
    v.validate(example)
    assert not v.is_valid({"sessions": []})  # next_cursor is always there
    assert not v.is_valid({"sessions": [{**example["sessions"][0], "executions": 0}], "next_cursor": None})
    log = schema_validator(spec, "SessionLog")
    log.validate(
        {
            "session": "a/b",
            "executions": [
                {"execution_id": "e1", "status": "completed", "heap_in": None, "heap": "a" * 64, "heap_stored": False,
                 "tags": {"k": "v"}, "started_at": "2024-05-01T10:00:00.000Z",
                 "completed_at": "2024-05-01T10:00:00.012Z"},
            ],
            "next_cursor": "eyJsaXN0Ijoic2Vzc2lvbi1sb2cifQ",
        }
    )  # fmt: skip
    assert not log.is_valid({"session": "a", "executions": [{"execution_id": "e1"}], "next_cursor": None})


def test_openapi_document_operation(spec: dict[str, Any]) -> None:
    op = spec["paths"]["/api/openapi.json"]["get"]
    assert op["security"] == [] and "401" not in op["responses"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["type"] == "object"


def test_cli_download(spec: dict[str, Any]) -> None:
    op = spec["paths"]["/api/cli/{platform}"]["get"]
    assert op["parameters"][0]["schema"]["enum"] == ["linux-x86_64", "linux-aarch64", "macos-aarch64"]
    ok = op["responses"]["200"]
    assert "application/octet-stream" in ok["content"]
    assert "Content-Disposition" in ok["headers"]


def test_version(spec: dict[str, Any]) -> None:
    v = schema_validator(spec, "VersionInfo")
    v.validate({"version": "0.1.0", "v8": "10.2.154.26-node.37", "jitless": False})
    assert not v.is_valid({"version": "0.1.0", "v8": "10.2.154.26-node.37"})
    assert not v.is_valid({"version": "0.1.0", "v8": "10.2.154.26-node.37", "jitless": "no"})


def test_forbidden_origin_documented_everywhere(spec: dict[str, Any]) -> None:
    forbidden = {"$ref": "#/components/responses/Forbidden"}
    for method, path, op in operations(spec):
        assert op["responses"].get("403") == forbidden, (method, path)
    assert "--allowed-origins" in resolve(spec, forbidden)["description"]


def test_stats(spec: dict[str, Any]) -> None:
    v = schema_validator(spec, "Stats")
    walls = {"mode": "require", "namespaces": "user+net", "capabilities": True, "no_new_privs": True,
             "landlock_abi": 7, "landlock_full": True, "rlimits": True, "seccomp": True, "syscalls_allowed": 50,
             "missing": []}  # fmt: skip
    sandbox = {"mode": "require", "walls": walls, "violations": 0, "last_violation": None}
    counters = {"uptime_secs": 1.5, "workers": 2, "workers_busy": 0, "queued": 0, "worker_crashes": 0,
                "worker_restarts": 0, "heaps_refused": 0, "sandbox": sandbox,
                "live": {"workers": 1, "sessions_per_worker": 1, "sessions": 0, "queued": 0}}  # fmt: skip
    v.validate({**counters, "last_worker_crash": None})
    violation = {"execution_id": "e2", "syscall": "socket", "at": "2024-05-01T10:00:00.000Z"}
    v.validate({**counters, "last_worker_crash": None, "sandbox": {**sandbox, "violations": 1,
                                                                   "last_violation": violation}})  # fmt: skip
    v.validate({**counters, "last_worker_crash": None, "sandbox": {**sandbox, "mode": "off", "walls": None}})
    assert not v.is_valid({**counters, "last_worker_crash": None, "sandbox": {**sandbox, "mode": "maybe"}})
    crash = {"execution_id": "e1", "reason": "killed by signal SIGKILL", "at": "2024-05-01T10:00:00.000Z"}
    v.validate({**counters, "worker_crashes": 1, "last_worker_crash": crash})
    assert not v.is_valid(counters)  # last_worker_crash is always there
    assert not v.is_valid({**counters, "last_worker_crash": {"reason": "x"}})
    assert not v.is_valid({**counters, "worker_crashes": -1, "last_worker_crash": None})
    op = spec["paths"]["/api/stats"]["get"]
    assert op["security"] == [{}, {"bearerAuth": ["read"]}] and "401" in op["responses"]


def test_metrics(spec: dict[str, Any]) -> None:
    op = spec["paths"]["/metrics"]["get"]
    assert (
        op["security"] == [{}, {"bearerAuth": ["admin"]}] and "401" in op["responses"]
    )  # unless --metrics-public
    assert "--metrics-public" in spec["components"]["securitySchemes"]["bearerAuth"]["description"]
    assert set(op["responses"]["200"]["content"]) == {"text/plain"}
    example = op["responses"]["200"]["content"]["text/plain"]["example"]
    names = {f.name for f in text_string_to_metric_families(example)}
    assert names == {"mcp_v8_executions_ended", "mcp_v8_workers_busy"}
