"""JSON Schemas of Python callables, from their signatures and type hints: the ``inputSchema``
(and ``outputSchema``) a library tool (``Engine.execute(tools=...)``) is checked and declared
with, as a tool server's would be.

Hints map as JSON Schema spells them: ``str``, ``int``, ``float``, ``bool``, ``None``;
``list[T]``/``tuple``/``set`` as arrays; ``dict[str, T]`` and ``Mapping`` as objects;
``Optional``/``Union``/``X | Y`` as ``anyOf``; ``Literal`` as ``enum``; a ``TypedDict`` or a
dataclass as an object of its fields; ``Any``, a missing hint or anything else as no
constraint. A parameter with a default is not required; ``*args`` and ``**kwargs`` leave the
object open (``additionalProperties``) rather than being properties.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Mapping
from typing import Any, Callable

__all__ = ["input_schema", "output_schema"]

_SCALARS: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
}
_ARRAYS = (list, tuple, set, frozenset)
_MAX_DEPTH = 8
_UNION_TYPE = getattr(types, "UnionType", None)  # X | Y, Python 3.10 and later


def _is_typeddict(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, dict) and hasattr(hint, "__total__")


def _hints(obj: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(obj)
    except Exception:  # a forward reference that resolves nowhere: those hints say nothing
        return {}


def _of(hint: Any, depth: int = 0) -> dict[str, Any]:
    if depth > _MAX_DEPTH or hint is Any or hint is inspect.Parameter.empty:
        return {}
    if hint in _SCALARS:
        return dict(_SCALARS[hint])
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return _of(args[0], depth + 1)
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin is typing.Union or (_UNION_TYPE is not None and origin is _UNION_TYPE):
        return {"anyOf": [_of(a, depth + 1) for a in args]}
    if hint in _ARRAYS or origin in _ARRAYS:
        if origin is tuple and args and args[-1] is not Ellipsis:
            items = [_of(a, depth + 1) for a in args]
            return {"type": "array", "prefixItems": items, "minItems": len(items), "maxItems": len(items)}
        return {"type": "array", "items": _of(args[0], depth + 1)} if args else {"type": "array"}
    if hint in (dict, Mapping) or origin in (dict, Mapping):
        if len(args) == 2:
            return {"type": "object", "additionalProperties": _of(args[1], depth + 1)}
        return {"type": "object"}
    if _is_typeddict(hint):
        fields = _hints(hint)
        required = sorted(getattr(hint, "__required_keys__", fields))
        return _object({name: _of(h, depth + 1) for name, h in fields.items()}, required, False)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        fields = _hints(hint)
        props, required = {}, []
        for f in dataclasses.fields(hint):
            props[f.name] = _of(fields.get(f.name, Any), depth + 1)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                required.append(f.name)
        return _object(props, required, False)
    return {}


def _object(props: dict[str, Any], required: list[str], open_: bool) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    if not open_:
        schema["additionalProperties"] = False
    return schema


def input_schema(fn: Callable[..., Any]) -> dict[str, Any]:
    """The schema of the keyword arguments ``fn`` takes (a callable without a signature: any
    object)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return {"type": "object"}
    hints = _hints(fn)
    props: dict[str, Any] = {}
    required: list[str] = []
    open_ = False
    for name, p in signature.parameters.items():
        if p.kind is p.VAR_KEYWORD:
            open_ = True
            continue
        if p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY):
            continue  # a script's arguments are one object: these cannot be passed by name
        props[name] = _of(hints.get(name, p.annotation))
        if p.default is p.empty:
            required.append(name)
    return _object(props, required, open_)


def output_schema(fn: Callable[..., Any]) -> dict[str, Any] | None:
    """The schema of what ``fn`` returns, or None when its hint says nothing."""
    return _of(_hints(fn).get("return", Any)) or None
