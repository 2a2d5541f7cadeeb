"""The declarations of a library's tools (``Engine.execute(tools=...)``, ``Context(tools=...)``):
the same ``.d.ts`` a service serves for its tool servers, from the callables' signatures and
type hints (:mod:`mcp_v8.tool_schemas`), their docstrings as descriptions."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Callable

from ..tool_schemas import input_schema, output_schema
from .caller import ServerInfo, ToolInfo
from .catalogue import declarations

__all__ = ["catalogue_of", "declarations_of"]


def catalogue_of(tools: Mapping[str, Mapping[str, Callable[..., Any]]]) -> list[ServerInfo]:
    """The callables as a catalogue: one ready "server" per key, one tool per callable."""
    return [
        ServerInfo(
            name=server,
            transport="library",
            state="ready",
            last_error=None,
            tools=tuple(
                ToolInfo(
                    name=name,
                    description=inspect.getdoc(fn) or "",
                    input_schema=input_schema(fn),
                    output_schema=output_schema(fn),
                    annotations=None,
                    gated=False,
                )
                for name, fn in by_name.items()
            ),
        )
        for server, by_name in tools.items()
    ]


def declarations_of(tools: Mapping[str, Mapping[str, Callable[..., Any]]]) -> str:
    """The TypeScript declarations of ``tools`` for a script (or for a model writing one)."""
    return declarations(catalogue_of(tools), header="// The tools of this script (mcp_v8 library callables).")
