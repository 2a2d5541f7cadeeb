"""Library tools' JSON Schemas from Python signatures and type hints (mcp_v8.tool_schemas), and
the declarations made of them (mcp_v8.tools.library)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional, TypedDict, Union

import jsonschema
import pytest

from mcp_v8.tool_schemas import input_schema, output_schema
from mcp_v8.tools.library import declarations_of


class Options(TypedDict):
    deep: bool
    limit: int


@dataclass
class Point:
    x: float
    y: float = 0.0
    tags: list[str] = field(default_factory=list)


def search(
    query: str,
    mode: Literal["fast", "exact"] = "fast",
    options: Optional[Options] = None,  # noqa: UP045 - typing.Union, beside X | None below
    ids: list[int] = [],  # noqa: B006 - a default, never mutated
    weights: dict[str, float] | None = None,
) -> list[Point]:
    """Searches the points."""
    return []


def anything(a, *args, b: Any = None, **kwargs):  # type: ignore[no-untyped-def]
    return a


def test_scalars_defaults_and_nesting() -> None:
    schema = input_schema(search)
    assert schema["required"] == ["query"] and schema["additionalProperties"] is False
    props = schema["properties"]
    assert props["query"] == {"type": "string"}
    assert props["mode"] == {"enum": ["fast", "exact"]}
    assert props["options"]["anyOf"][0]["required"] == ["deep", "limit"]
    assert props["options"]["anyOf"][1] == {"type": "null"}
    assert props["ids"] == {"type": "array", "items": {"type": "integer"}}
    assert props["weights"]["anyOf"][0] == {"type": "object", "additionalProperties": {"type": "number"}}
    point = output_schema(search)
    assert point is not None and point["items"]["required"] == ["x"]


@pytest.mark.parametrize(
    ("arguments", "valid"),
    [
        ({"query": "q"}, True),
        ({"query": "q", "mode": "exact", "options": {"deep": True, "limit": 3}, "ids": [1]}, True),
        ({"query": 1}, False),
        ({"query": "q", "mode": "slow"}, False),
        ({"query": "q", "options": {"deep": True}}, False),
        ({"query": "q", "ids": ["1"]}, False),
        ({"query": "q", "extra": 1}, False),
        ({}, False),
    ],
)
def test_the_schema_accepts_what_the_hints_allow(arguments: dict[str, Any], valid: bool) -> None:
    assert jsonschema.Draft202012Validator(input_schema(search)).is_valid(arguments) is valid


def test_no_hints_no_constraint_and_kwargs_leave_the_object_open() -> None:
    schema = input_schema(anything)
    assert schema["properties"] == {"a": {}, "b": {}} and schema["required"] == ["a"]
    assert "additionalProperties" not in schema
    assert output_schema(anything) is None
    # Positional-only parameters cannot be named in a script's one object of arguments.
    assert input_schema(len) == {"type": "object", "properties": {}, "additionalProperties": False}


def test_unions_and_tuples() -> None:
    def f(v: Union[int, str], pair: tuple[int, str], many: tuple[int, ...]) -> None: ...  # noqa: UP007

    props = input_schema(f)["properties"]
    assert props["v"] == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert props["pair"]["prefixItems"] == [{"type": "integer"}, {"type": "string"}]
    assert props["many"] == {"type": "array", "items": {"type": "integer"}}


def test_declarations_of_callables() -> None:
    text = declarations_of({"pts": {"search": search}})
    assert "/** Searches the points. */" in text
    assert 'mode?: "fast" | "exact";' in text
    assert "query: string;" in text
    assert text.startswith("// The tools of this script") and "declare class ToolDenied" in text
