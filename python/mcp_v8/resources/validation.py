"""Request validation helpers: every client mistake becomes a 4xx with {"error": ...}."""

from __future__ import annotations

import json
import re
from typing import Any

import falcon

HEAP_KEY = re.compile(r"[0-9a-f]{64}")
EXECUTION_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def bad_request(message: str) -> falcon.HTTPError:
    return falcon.HTTPBadRequest(description=message)


def optional_int(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"{name} must be an integer")
    if not low <= value <= high:
        raise bad_request(f"{name} must be between {low} and {high}")
    return value


def query_int(req: falcon.Request, name: str, low: int, high: int, default: int | None) -> int | None:
    raw = req.get_param(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise bad_request(f"{name} must be between {low} and {high}")
    return value


def execution_id(value: str) -> str:
    """Unknown ids are 404, never 400: an id that cannot exist is simply not found."""
    if not EXECUTION_ID.fullmatch(value):
        raise falcon.HTTPNotFound(description=f"execution {value[:80]!r} not found")
    return value


def read_json_body(req: falcon.Request, max_bytes: int) -> Any:
    """The request body parsed as JSON, whatever Content-Type the client sent
    (``curl -d`` sends a form type)."""
    raw = req.bounded_stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise falcon.HTTPContentTooLarge(description=f"request body is larger than {max_bytes} bytes")
    if not raw.strip():
        raise bad_request("the request body is empty; send a JSON object")
    try:
        return json.loads(raw.decode("utf-8"))  # RFC 8259: JSON between systems is UTF-8
    except (UnicodeDecodeError, ValueError) as e:
        raise bad_request(f"the request body is not valid JSON (UTF-8): {e}") from None
