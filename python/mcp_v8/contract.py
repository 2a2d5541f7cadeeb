"""The HTTP contract, ``openapi.json`` (shipped in this package), as request validators.

Request bodies and query parameters are checked against the schemas of the contract, with
the server's configured bounds (largest timeout, heap) applied on top, so the contract and
the checks cannot drift apart. Failures are :class:`InvalidRequest` with a message that
names the field and the rule (``execution_timeout_secs must be between 1 and 300``); the
validators know nothing of HTTP, so any door (the REST resources, MCP tools) can use them.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError

CONTRACT_PATH = Path(__file__).with_name("openapi.json")

# -- values every door checks before anything else reads them --------------------------------

# JSON's \uXXXX escapes can spell half of a surrogate pair alone ("\ud800"): valid JSON,
# but not Unicode text, and no UTF-8 encoder (worker pipe, SQLite, heap sidecar, V8)
# accepts it. A paired escape is decoded to one code point, so any surrogate left in a
# parsed str is a lone one.
LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")
# Request bodies of this API nest two levels deep (an object holding ``tags``); deeper
# ones are refused before any stage walks them recursively.
MAX_BODY_DEPTH = 64


def too_deep(whole: str) -> str:
    return f"{whole} nests too deeply (more than {MAX_BODY_DEPTH} levels of arrays and objects)"


TOO_DEEP = too_deep("the request body")


def text_problem(field: str, text: str) -> str | None:
    """Why ``text`` is not valid Unicode (a lone surrogate), naming ``field``; None when it is."""
    match = LONE_SURROGATE.search(text)
    if match is None:
        return None
    return (
        f"{field} contains a lone surrogate (\\u{ord(match.group()):04x} at character {match.start()}); "
        "text must be valid Unicode"
    )


def _shown(key: str) -> str:
    return json.dumps(key if len(key) <= 40 else key[:40] + "...")


def json_value_problem(value: Any, whole: str = "the request body") -> str | None:
    """Walks a parsed JSON value without recursion: every str (object keys included) must be
    valid Unicode, and arrays and objects nest at most ``MAX_BODY_DEPTH`` levels. Returns
    what is wrong, None when nothing is. Fields are named as a client wrote them: ``code``,
    ``tags["owner"]``, ``a key in tags``; ``whole`` names the value itself."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        node, name, depth = stack.pop()
        if isinstance(node, str):
            problem = text_problem(name or whole, node)
            if problem is not None:
                return problem
        elif isinstance(node, (dict, list)):
            if depth >= MAX_BODY_DEPTH:
                return too_deep(whole)
            if isinstance(node, dict):
                for key, item in node.items():
                    problem = text_problem(f"a key in {name}" if name else "a field name", key)
                    if problem is not None:
                        return problem
                    stack.append((item, f"{name}[{_shown(key)}]" if name else key, depth + 1))
            else:
                stack.extend((item, f"{name or whole}[{i}]", depth + 1) for i, item in enumerate(node))
    return None


# What a pattern of the contract asks for, in words.
_PATTERNS = {
    "^[0-9a-f]{64}$": "a 64-character lowercase hex key returned by an earlier execution",
    "\\S": "a non-empty string",
    "^[A-Za-z0-9_-]+$": "the next_cursor of an earlier page",
    "^[^\\u0000]*$": "text without NUL characters (U+0000)",
}
_TYPE_WORDS = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "object": "an object",
    "array": "an array",
}


def _is_integer(checker: Any, instance: Any) -> bool:
    # JSON Schema counts 64.0 as an integer; a request that sends it means a float.
    return isinstance(instance, int) and not isinstance(instance, bool)


Validator = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)


class InvalidRequest(ValueError):
    """A request that breaks the contract; the message says which field and which rule."""


@functools.cache
def contract_bytes() -> bytes:
    """``openapi.json`` as shipped, read once: what :func:`contract` parses, so what the server
    serves (``GET /api/openapi.json``) is the very document its validators were built from."""
    return CONTRACT_PATH.read_bytes()


@functools.cache
def contract() -> dict[str, Any]:
    """The parsed ``openapi.json``."""
    loaded: dict[str, Any] = json.loads(contract_bytes().decode("utf-8"))
    return loaded


def schema(name: str) -> dict[str, Any]:
    """A copy of ``components.schemas[name]``, references resolved."""
    resolved: dict[str, Any] = _resolve(copy.deepcopy(contract()["components"]["schemas"][name]))
    return resolved


def _resolve(node: Any) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            return schema(ref.rsplit("/", 1)[1])
        return {k: _resolve(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v) for v in node]
    return node


def _field(path: Iterable[Any]) -> str:
    parts = list(path)
    if not parts:
        return "the request body"
    name = str(parts[0])
    for p in parts[1:]:
        name += f"[{p}]" if isinstance(p, int) else f"[{json.dumps(p)}]"
    return name


def _types(types: Any) -> str:
    listed = [t for t in ([types] if isinstance(types, str) else types) if t != "null"]
    return " or ".join(_TYPE_WORDS.get(t, t) for t in listed)


def _bounds(field: str, sub: Mapping[str, Any]) -> str:
    low, high = sub.get("minimum"), sub.get("maximum")
    if low is not None and high is not None:
        return f"{field} must be between {low} and {high}"
    if low is not None:
        return f"{field} must be at least {low}"
    return f"{field} must be at most {high}"


def _message(error: ValidationError) -> str:
    field = _field(error.absolute_path)
    sub = error.schema if isinstance(error.schema, Mapping) else {}
    keyword = error.validator
    instance: Any = error.instance
    rule: Any = error.validator_value
    if keyword == "type":
        if not error.absolute_path:
            return f"the request body must be a JSON {_types(error.validator_value).removeprefix('an ')}"
        return f"{field} must be {_types(error.validator_value)}"
    if keyword == "additionalProperties" and error.validator_value is False:
        known = set(sub.get("properties", {}))
        unknown = sorted(k for k in instance if k not in known)
        where = "" if not error.absolute_path else f" in {field}"
        return f"unknown field(s){where}: {', '.join(u[:40] for u in unknown[:10])}"
    if keyword == "required":
        return f"{error.message.split()[0].strip(chr(39))} is required"
    if keyword in ("minimum", "maximum"):
        return _bounds(field, sub)
    if keyword == "enum":
        return f"{field} must be one of {', '.join(map(str, rule))}"
    if keyword in ("minLength", "pattern") and (sub.get("pattern") in _PATTERNS or sub.get("minLength") == 1):
        where = f"a key in {field}" if "propertyNames" in error.schema_path else field
        return f"{where} must be {_PATTERNS.get(sub.get('pattern', ''), 'a non-empty string')}"
    if keyword == "maxLength":
        if "propertyNames" in error.schema_path:
            return f"a key in {field} must be at most {error.validator_value} characters"
        return f"{field} must be at most {error.validator_value} characters"
    if keyword == "maxProperties":
        return f"{field} must have at most {error.validator_value} entries"
    if keyword == "minProperties":
        n = error.validator_value
        return f"{field} must have at least {n} {'entry' if n == 1 else 'entries'}"
    return f"{field}: {error.message}"


def _first(errors: Iterable[ValidationError]) -> ValidationError | None:
    """The error to report: the outermost, and among those the first by field name, so the
    answer to one request is always the same."""
    ranked = sorted(errors, key=lambda e: (len(e.absolute_path), [str(p) for p in e.absolute_path]))
    return ranked[0] if ranked else None


Check = Callable[[Any], bool]

# Keywords that only annotate: they never make an instance invalid (formats are not asserted).
_ANNOTATIONS = frozenset({"description", "format", "default", "example", "examples", "title", "deprecated"})
_IS_TYPE: dict[str, Check] = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


def compile_check(node: Mapping[str, Any]) -> Check | None:
    """A plain function telling whether an instance is valid against ``node``, for the
    keywords the contract's request schemas use (None when ``node`` uses another). It
    answers exactly as :data:`Validator` does, and much faster; the validator still
    explains a refusal."""
    checks: list[Check] = []
    for keyword, rule in node.items():
        if keyword in _ANNOTATIONS:
            continue
        check = _keyword_check(keyword, rule, node)
        if check is None:
            return None
        checks.append(check)
    return lambda v: all(check(v) for check in checks)


def _keyword_check(keyword: str, rule: Any, node: Mapping[str, Any]) -> Check | None:
    number = _IS_TYPE["number"]
    if keyword == "type":
        types = [_IS_TYPE[t] for t in ([rule] if isinstance(rule, str) else rule)]
        return lambda v: any(t(v) for t in types)
    if keyword == "enum":
        if not all(isinstance(e, str) for e in rule):
            return None
        allowed = frozenset(rule)
        return lambda v: isinstance(v, str) and v in allowed
    if keyword == "minimum":
        return lambda v: not number(v) or v >= rule
    if keyword == "maximum":
        return lambda v: not number(v) or v <= rule
    if keyword == "minLength":
        return lambda v: not isinstance(v, str) or len(v) >= rule
    if keyword == "maxLength":
        return lambda v: not isinstance(v, str) or len(v) <= rule
    if keyword == "pattern":
        search = re.compile(rule).search
        return lambda v: not isinstance(v, str) or search(v) is not None
    if keyword == "required":
        return lambda v: not isinstance(v, dict) or all(k in v for k in rule)
    if keyword == "maxProperties":
        return lambda v: not isinstance(v, dict) or len(v) <= rule
    if keyword == "minProperties":
        return lambda v: not isinstance(v, dict) or len(v) >= rule
    if keyword == "propertyNames":
        names = compile_check(rule)
        return None if names is None else (lambda v: not isinstance(v, dict) or all(names(k) for k in v))
    if keyword == "properties":
        props = {k: compile_check(sub) for k, sub in rule.items()}
        if any(c is None for c in props.values()):
            return None
        return lambda v: not isinstance(v, dict) or all(props[k](x) for k, x in v.items() if k in props)  # type: ignore[misc]
    if keyword == "additionalProperties":
        known = frozenset(node.get("properties", {}))
        if rule is False:
            return lambda v: not isinstance(v, dict) or all(k in known for k in v)
        extra = compile_check(rule) if isinstance(rule, Mapping) else None
        if extra is None:
            return None
        return lambda v: not isinstance(v, dict) or all(extra(x) for k, x in v.items() if k not in known)
    return None


class SchemaValidator:
    """Validates a parsed JSON value against ``schema`` (a JSON Schema built from the
    contract's): the fast predicate first, the validator only to word a refusal."""

    def __init__(self, schema: dict[str, Any]) -> None:
        Validator.check_schema(schema)
        self.schema = schema
        self._validator = Validator(schema)
        self._check = compile_check(schema)

    def validate(self, body: Any) -> dict[str, Any]:
        if self._check is not None and self._check(body):
            return body  # type: ignore[no-any-return]
        error = _first(self._validator.iter_errors(body))
        if error is not None:
            raise InvalidRequest(_message(error))
        assert isinstance(body, dict)
        return body


class BodyValidator(SchemaValidator):
    """Validates a parsed JSON body against ``components.schemas[name]``; ``maxima`` sets
    the server's upper bounds on top of the contract's (``{"execution_timeout_secs": 300}``)."""

    def __init__(self, name: str, maxima: Mapping[str, int] | None = None) -> None:
        body = schema(name)
        for prop, high in (maxima or {}).items():
            body["properties"][prop]["maximum"] = high
        super().__init__(body)


def parameters(path: str, method: str) -> dict[str, dict[str, Any]]:
    """The schemas of an operation's parameters (path and query), by name, references resolved."""
    operation = contract()["paths"][path][method.lower()]
    return {p["name"]: _resolve(p["schema"]) for p in operation.get("parameters", [])}


class QueryValidator:
    """The query parameters of one operation of the contract (``GET /api/executions``):
    their names, and their values converted to the declared types, checked, and defaulted."""

    def __init__(self, path: str, method: str) -> None:
        operation = contract()["paths"][path][method.lower()]
        query = [p for p in operation.get("parameters", []) if p["in"] == "query"]
        self._params = {p["name"]: _resolve(p["schema"]) for p in query}
        self._required = frozenset(p["name"] for p in query if p.get("required"))
        self.names = frozenset(self._params)
        self._validators = {name: Validator(s) for name, s in self._params.items()}
        self._checks = {name: compile_check(s) for name, s in self._params.items()}

    def validate(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """``raw``: the query as parsed (a value, or a list for a repeated name). Returns
        every declared parameter: the given value converted, else the default (or None).
        A required parameter that is absent is refused; one given empty (``?name=``) is
        the empty string, which its schema accepts or not."""
        values: dict[str, Any] = {}
        for name, sub in self._params.items():
            given = raw.get(name)
            if given is None:
                if name in self._required:
                    raise InvalidRequest(f"{name} is required")
                values[name] = sub.get("default")
                continue
            if isinstance(given, list):
                raise InvalidRequest(f"{name} must be given once")
            value: Any = given
            if sub.get("type") == "integer":
                if not re.fullmatch(r"[+-]?[0-9]{1,30}", given.strip()):
                    raise InvalidRequest(f"{name} must be an integer")
                value = int(given)
            elif sub.get("type") == "boolean":
                if given not in ("true", "false"):
                    raise InvalidRequest(f"{name} must be true or false")
                value = given == "true"
            check = self._checks[name]
            if check is not None and check(value):
                values[name] = value
                continue
            error = _first(self._validators[name].iter_errors(value))
            if error is not None:
                raise InvalidRequest(_query_message(name, sub, error))
            values[name] = value
        return values


def _query_message(name: str, sub: Mapping[str, Any], error: ValidationError) -> str:
    """What is wrong with the value of the query parameter ``name``, in words."""
    keyword = error.validator
    if keyword in ("minimum", "maximum"):
        return _bounds(name, sub)
    if keyword == "enum":
        return f"{name} must be one of {', '.join(map(str, sub['enum']))}"
    if keyword in ("minLength", "pattern") and sub.get("pattern") in _PATTERNS:
        return f"{name} must be {_PATTERNS[sub['pattern']]}"
    if keyword == "minLength":
        return f"{name} must be at least {error.validator_value} characters"
    if keyword == "maxLength":
        return f"{name} must be at most {error.validator_value} characters"
    return f"{name}: {error.message}"
