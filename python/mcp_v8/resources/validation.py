"""Request validation helpers: every client mistake becomes a 4xx with {"error": ...}."""

from __future__ import annotations

import json
import re
from typing import Any

import falcon

from ..contract import InvalidRequest, QueryValidator

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


def bad_request(message: str) -> falcon.HTTPError:
    return falcon.HTTPBadRequest(description=message)


def text_problem(field: str, text: str) -> str | None:
    """Why ``text`` is not valid Unicode (a lone surrogate), naming ``field``; None when it is."""
    match = LONE_SURROGATE.search(text)
    if match is None:
        return None
    return (
        f"{field} contains a lone surrogate (\\u{ord(match.group()):04x} at character {match.start()}); "
        "text must be valid Unicode"
    )


def check_text(field: str, text: str) -> str:
    """``text`` when it is valid Unicode; a 400 naming ``field`` when it holds a lone
    surrogate."""
    problem = text_problem(field, text)
    if problem is not None:
        raise bad_request(problem)
    return text


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


def check_json_value(value: Any) -> None:
    """A 400 saying what :func:`json_value_problem` finds wrong with a parsed body."""
    problem = json_value_problem(value)
    if problem is not None:
        raise bad_request(problem)


def check_query(req: falcon.Request) -> None:
    """Query parameter names and values must be valid Unicode, as body strings must."""
    for key, value in req.params.items():
        check_text("a query parameter name", key)
        for item in value if isinstance(value, list) else [value]:
            check_text(f"query parameter {key}", item)


def query_params(validator: QueryValidator, req: falcon.Request) -> dict[str, Any]:
    """The query parameters of ``req`` as ``validator`` (the operation's, from the contract)
    converts and defaults them; a 400 naming the parameter and the rule otherwise."""
    try:
        return validator.validate(req.params)
    except InvalidRequest as e:
        raise bad_request(str(e)) from None


def read_json_body(req: falcon.Request, max_bytes: int) -> Any:
    """The request body parsed as JSON, whatever Content-Type the client sent
    (``curl -d`` sends a form type), checked by ``check_json_value``: what it returns
    holds only strs every later stage can encode as UTF-8."""
    raw = req.bounded_stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise falcon.HTTPContentTooLarge(description=f"request body is larger than {max_bytes} bytes")
    if not raw.strip():
        raise bad_request("the request body is empty; send a JSON object")
    try:
        value = json.loads(raw.decode("utf-8"))  # RFC 8259: JSON between systems is UTF-8
    except RecursionError:  # the parser recurses once per level of nesting
        raise bad_request(TOO_DEEP) from None
    except (UnicodeDecodeError, ValueError) as e:
        raise bad_request(f"the request body is not valid JSON (UTF-8): {e}") from None
    check_json_value(value)
    return value
