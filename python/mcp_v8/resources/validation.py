"""Request validation helpers: every client mistake becomes a 4xx with {"error": ...}."""

from __future__ import annotations

import json
from typing import Any

import falcon

from ..contract import TOO_DEEP, InvalidRequest, QueryValidator, json_value_problem, text_problem


def bad_request(message: str) -> falcon.HTTPError:
    return falcon.HTTPBadRequest(description=message)


def check_text(field: str, text: str) -> str:
    """``text`` when it is valid Unicode; a 400 naming ``field`` when it holds a lone
    surrogate."""
    problem = text_problem(field, text)
    if problem is not None:
        raise bad_request(problem)
    return text


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
