"""Request validation comes from the contract (openapi.json) plus the server's bounds, with
messages that name the field and the rule. No V8, no server: these run in milliseconds."""

from __future__ import annotations

from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_v8.contract import BodyValidator, InvalidRequest, QueryValidator, compile_check, contract
from mcp_v8.storage.executions import ExecutionStatus
from mcp_v8.storage.heaps import HEAP_KEY_PATTERN

EXEC = contract()["components"]["schemas"]["ExecRequest"]["properties"]


@pytest.fixture(scope="module")
def body() -> BodyValidator:
    return BodyValidator(
        "ExecRequest",
        maxima={
            "execution_timeout_secs": 300,
            "heap_memory_max_mb": 1024,
            "max_tool_calls": 1000,
            "wall_timeout_secs": 900,
        },
    )


@pytest.mark.parametrize(
    ("request_body", "message"),
    [
        ([1], "the request body must be a JSON object"),
        ({}, "code is required"),
        ({"code": 5}, "code must be a string"),
        ({"code": ""}, "code must be a non-empty string"),
        ({"code": " \n\t"}, "code must be a non-empty string"),
        ({"code": "1", "timeout": 5, "zz": 1}, "unknown field(s): timeout, zz"),
        ({"code": "1", "execution_timeout_secs": 0}, "execution_timeout_secs must be between 1 and 300"),
        ({"code": "1", "execution_timeout_secs": 301}, "execution_timeout_secs must be between 1 and 300"),
        ({"code": "1", "execution_timeout_secs": 5.0}, "execution_timeout_secs must be an integer"),
        ({"code": "1", "execution_timeout_secs": True}, "execution_timeout_secs must be an integer"),
        ({"code": "1", "heap_memory_max_mb": 7}, f"heap_memory_max_mb must be between {EXEC['heap_memory_max_mb']['minimum']} and 1024"),
        ({"code": "1", "heap": "A" * 64}, "heap must be a 64-character lowercase hex key returned by an earlier execution"),
        ({"code": "1", "session": 7}, "session must be a string"),
        ({"code": "1", "snapshot": "yes"}, "snapshot must be true or false"),
        ({"code": "1", "snapshot": 1}, "snapshot must be true or false"),
        ({"code": "1", "session": "s" * 257}, "session must be at most 256 characters"),
        ({"code": "1", "tags": ["a"]}, "tags must be an object"),
        ({"code": "1", "tags": {"a": 1}}, 'tags["a"] must be a string'),
        ({"code": "1", "tags": {"a": "v" * 257}}, 'tags["a"] must be at most 256 characters'),
        ({"code": "1", "tags": {"k" * 257: "v"}}, "a key in tags must be at most 256 characters"),
        ({"code": "1", "tags": {str(i): "v" for i in range(65)}}, "tags must have at most 64 entries"),
    ],
)  # fmt: skip
def test_body_messages_name_the_field_and_the_rule(
    body: BodyValidator, request_body: Any, message: str
) -> None:
    with pytest.raises(InvalidRequest) as e:
        body.validate(request_body)
    assert str(e.value) == message


def test_valid_bodies_pass_unchanged(body: BodyValidator) -> None:
    request = {"code": "1", "execution_timeout_secs": 300, "heap_memory_max_mb": 8, "heap": "a" * 64,
               "session": "s", "tags": {"k": "v"}, "snapshot": False}  # fmt: skip
    assert body.validate(request) == request
    assert body.validate({"code": "1", "snapshot": None}) == {"code": "1", "snapshot": None}
    assert body.validate({"code": "1", "heap": None, "tags": None}) == {
        "code": "1",
        "heap": None,
        "tags": None,
    }


def test_server_bounds_apply_on_top_of_the_contract() -> None:
    tight = BodyValidator("ExecRequest", maxima={"execution_timeout_secs": 2})
    with pytest.raises(InvalidRequest, match="between 1 and 2"):
        tight.validate({"code": "1", "execution_timeout_secs": 3})
    # The contract itself is not changed by a validator's bounds.
    assert "maximum" not in EXEC["execution_timeout_secs"]


def test_query_parameters_from_the_contract() -> None:
    listing = QueryValidator("/api/executions", "get")
    assert listing.names == {"limit", "status", "session", "cursor"}
    assert listing.validate({}) == {"limit": 100, "status": None, "session": None, "cursor": None}
    assert listing.validate({"limit": "7", "status": "failed", "session": "a/b ü", "cursor": "e30"}) == {
        "limit": 7,
        "status": "failed",
        "session": "a/b ü",
        "cursor": "e30",
    }
    assert listing.validate({"session": ""})["session"] == ""  # the empty string names a session
    for raw, message in [
        ({"limit": "x"}, "limit must be an integer"),
        ({"limit": "1.5"}, "limit must be an integer"),
        ({"limit": "0"}, "limit must be between 1 and 1000"),
        ({"limit": ["1", "2"]}, "limit must be given once"),
        (
            {"status": "done"},
            "status must be one of running, waiting, completed, failed, cancelled, timed_out",
        ),
        ({"session": "s" * 257}, "session must be at most 256 characters"),
        ({"session": ["a", "b"]}, "session must be given once"),
        ({"cursor": ""}, "cursor must be the next_cursor of an earlier page"),
        ({"cursor": "a+b/c="}, "cursor must be the next_cursor of an earlier page"),
        ({"cursor": "a" * 4097}, "cursor must be at most 4096 characters"),
    ]:
        with pytest.raises(InvalidRequest) as e:
            listing.validate(raw)
        assert str(e.value) == message
    log = QueryValidator("/api/sessions/log", "get")
    assert log.names == {"session", "limit", "cursor"}
    with pytest.raises(InvalidRequest, match="^session is required$"):
        log.validate({"limit": "5"})
    assert log.validate({"session": "a/b"}) == {"session": "a/b", "limit": 100, "cursor": None}
    assert QueryValidator("/api/sessions", "get").validate({}) == {"limit": 100, "cursor": None}
    output = QueryValidator("/api/executions/{id}/output", "get")
    assert output.validate({"byte_offset": "12"})["byte_offset"] == 12
    with pytest.raises(InvalidRequest, match="byte_offset must be between 0 and"):
        output.validate({"byte_offset": "9" * 25})


def test_the_contract_and_the_code_define_the_same_statuses_and_keys() -> None:
    schemas = contract()["components"]["schemas"]
    assert schemas["ExecutionInfo"]["properties"]["status"]["enum"] == list(get_args(ExecutionStatus))
    listing = QueryValidator("/api/executions", "get")
    assert listing.validate({"status": "timed_out"})["status"] == "timed_out"
    assert schemas["ExecRequest"]["properties"]["heap"]["pattern"] == f"^{HEAP_KEY_PATTERN}$"


# JSON values around every rule of ExecRequest: the edges of each bound, both kinds of
# number, booleans (which Python counts as integers), lone and repeated keys.
_edges = st.sampled_from([0, 1, 7, 8, 63, 64, 65, 256, 257, 300, 301, 1024, 1025, 30000, 30001, -1, 10**12])
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    _edges,
    st.integers(),
    _edges.map(float),
    st.floats(allow_nan=False),
    st.sampled_from(["", " ", "\n\t", "1", "a" * 64, "0" * 64, "A" * 64, "x" * 256, "x" * 257]),
    st.text(max_size=8),
)
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=300), inner, max_size=3)
    ),
    max_leaves=8,
)
_tags = st.one_of(
    _json,
    st.dictionaries(
        st.sampled_from(["k", "x" * 256, "x" * 257]), st.one_of(_scalars, st.text(max_size=300)), max_size=3
    ),
    st.dictionaries(st.text(max_size=3), st.just("v"), min_size=64, max_size=66),
    st.none(),
    st.just({"k": "v"}),
)
_numbers = st.one_of(st.none(), _edges, _edges.map(float), st.booleans())
_near = {  # values each field mostly takes: valid or just past a rule
    "code": st.sampled_from(["1", " ", "", "x", "\n1"]),
    "execution_timeout_secs": _numbers,
    "heap_memory_max_mb": _numbers,
    "max_tool_calls": _numbers,
    "wall_timeout_secs": _numbers,
    "wait_ms": _numbers,
    "heap": st.sampled_from([None, "a" * 64, "0" * 64, "A" * 64, "a" * 63, "a" * 65]),
    "session": st.one_of(st.none(), st.text(max_size=4), st.sampled_from(["x" * 256, "x" * 257])),
    "snapshot": st.sampled_from([None, True, False, 0, 1]),
    "live": st.sampled_from([None, True, False, 0, 1, "true"]),
    "tags": _tags,
}
assert set(_near) == set(EXEC), "a field of ExecRequest without values to test"
_fields = {name: st.one_of(_near[name], _near[name], _json) for name in EXEC}
_bodies = st.one_of(
    _json,
    st.fixed_dictionaries({"code": st.just("1")}, optional={k: v for k, v in _near.items() if k != "code"}),
    st.fixed_dictionaries(
        {"code": _fields["code"]}, optional={k: v for k, v in _fields.items() if k != "code"}
    ),
    st.fixed_dictionaries({}, optional={**_fields, "extra": _json}),
)


@settings(max_examples=400, deadline=None)
@given(candidate=_bodies)
def test_the_fast_check_accepts_exactly_what_the_schema_validator_accepts(
    body: BodyValidator, candidate: Any
) -> None:
    assert body._check is not None, "the request schema uses a keyword the fast check lacks"
    accepted_by_schema = next(body._validator.iter_errors(candidate), None) is None
    assert body._check(candidate) is accepted_by_schema


def test_the_fast_check_declines_schemas_it_does_not_know() -> None:
    assert compile_check({"type": "object", "oneOf": [{"required": ["a"]}]}) is None
    assert compile_check({"enum": [1, 2]}) is None
    check = compile_check({"type": ["integer", "null"], "minimum": 1})
    assert check is not None and [check(v) for v in (1, 0, None, True, 1.0, "1")] == [
        True,
        False,
        True,
        False,
        False,
        False,
    ]


_QUERIES = [
    QueryValidator(path, method)
    for path, item in contract()["paths"].items()
    for method, op in item.items()
    if any(p["in"] == "query" for p in op.get("parameters", []))
]


@settings(max_examples=300, deadline=None)
@given(
    value=st.one_of(
        _scalars,
        st.sampled_from(["running", "completed", "done", "RUNNING", "e30", "e30\n", "a=", "-_", "x" * 4097]),
        st.from_regex(r"[A-Za-z0-9_-]{0,8}\n?", fullmatch=True),
    )
)
def test_query_checks_accept_exactly_what_the_schema_validators_accept(value: Any) -> None:
    assert _QUERIES, "the contract has query parameters"
    for query in _QUERIES:
        for name, check in query._checks.items():
            assert check is not None, f"{name}: a keyword the fast check lacks"
            accepted = next(query._validators[name].iter_errors(value), None) is None
            assert check(value) is accepted, (name, value)


_HEAP_BODIES = ("HeapQuery", "HeapTagsPatch")
_tag_values = st.one_of(st.none(), _scalars, st.text(max_size=300))
_heap_bodies = st.one_of(
    _json,
    st.dictionaries(st.sampled_from(["k", "x" * 256, "x" * 257]), _tag_values, max_size=3),
    st.fixed_dictionaries(
        {"tags": st.one_of(_tags, st.just({}))},
        optional={
            "limit": _numbers,
            "cursor": st.sampled_from(["", "e30", "a=", "x" * 4097]),
            "extra": _json,
        },
    ),
)


@settings(max_examples=300, deadline=None)
@given(candidate=_heap_bodies)
def test_the_fast_check_of_the_heap_bodies_agrees_with_the_schema_validator(candidate: Any) -> None:
    for name in _HEAP_BODIES:
        validator = BodyValidator(name)
        assert validator._check is not None, f"{name} uses a keyword the fast check lacks"
        accepted_by_schema = next(validator._validator.iter_errors(candidate), None) is None
        assert validator._check(candidate) is accepted_by_schema, (name, candidate)


def test_a_merge_patch_may_remove_tags_with_null() -> None:
    patch = BodyValidator("HeapTagsPatch")
    assert patch.validate({"a": None, "b": "v"}) == {"a": None, "b": "v"}
    with pytest.raises(InvalidRequest, match="must be a string"):
        patch.validate({"a": 1})
    with pytest.raises(InvalidRequest, match="^tags must have at least 1 entry$"):
        BodyValidator("HeapQuery").validate({"tags": {}})
