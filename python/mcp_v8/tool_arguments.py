"""A tool call's arguments, checked against the tool's ``inputSchema`` before anything is
sent: an :class:`ArgumentsError` names the field (the script gets it as a ``TypeError``).
Schemas are JSON Schema (the draft their ``$schema`` names, 2020-12 by default); a ``$ref``
resolves within the schema only, nothing is fetched.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

import jsonschema
import jsonschema.exceptions

__all__ = ["ArgumentsError", "check_arguments"]


class ArgumentsError(ValueError):
    """Arguments a tool's schema refuses; the message names the field."""


def _where(error: jsonschema.exceptions.ValidationError) -> str:
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return f"arguments{path}"


def check_arguments(server: str, tool: str, arguments_json: str, schema: Mapping[str, Any]) -> None:
    """Raises :class:`ArgumentsError` unless ``arguments_json`` is an object ``schema`` accepts."""
    name = f"{server}.{tool}"
    try:
        arguments = json.loads(arguments_json)
    except ValueError:
        raise ArgumentsError(f"{name}: the arguments are not JSON") from None
    if not isinstance(arguments, dict):
        raise ArgumentsError(f"{name}: the arguments must be an object")
    try:
        text = json.dumps(schema, separators=(",", ":"))  # its own key order: errors come in that order
    except (TypeError, ValueError):
        raise ArgumentsError(f"{name}: the tool's inputSchema is not JSON") from None
    validator = _validator(text)
    if validator is None:
        raise ArgumentsError(f"{name}: the tool's inputSchema is not a valid JSON Schema")
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
    except Exception as e:  # a $ref that resolves nowhere (nothing is fetched), a bad pattern
        raise ArgumentsError(f"{name}: the tool's inputSchema cannot be used ({type(e).__name__})") from None
    if error is not None:
        raise ArgumentsError(f"{name}: {_where(error)}: {error.message}")


@functools.lru_cache(maxsize=512)
def _validator(schema_text: str) -> Any:
    """The validator of a schema (by its JSON text), None when the schema is not
    valid: checking a schema against its meta-schema costs about a millisecond, so each
    tool's is checked once, not at every call. Validators are used from several threads;
    they keep no state between validations."""
    schema = json.loads(schema_text)
    try:
        validator_class = jsonschema.validators.validator_for(schema)
        validator_class.check_schema(schema)
    except jsonschema.exceptions.SchemaError:
        return None
    return validator_class(schema)
