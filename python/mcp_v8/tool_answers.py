"""What a script's tool call is answered with (``tool_reply``, then web.js), as JSON text,
one of:

- ``{"value": v}``: the result. ``v`` is the tool's ``structuredContent`` when it has one;
  else its content: one block gives one value, several an array of them, none ``null``. A
  text block is its text, parsed as JSON only when that is an object or an array (a tool's
  ``"123"`` stays the string ``"123"``); any other block (image, audio, resource, resource
  link) is the block itself, an object with its ``type``.
- ``{"error": {"name", "message", ...}}``: the script's promise is rejected. ``ToolError``
  (``content``: the tool's blocks) for a result with ``isError``; ``ToolDenied`` (``reason``);
  otherwise a ``TypeError`` (the call was refused: bad arguments, unknown tool, a limit) or an
  ``Error`` (it failed: timeout, tool server unavailable).
- ``{"held": true}``: the call stays pending in the script's heap (a gated call), to be
  settled later by its call id.

Used by the service (:mod:`mcp_v8.executions.tool_calls`) and the library
(:mod:`mcp_v8.local_tools`) alike.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["ANSWER_LIMIT", "error_answer", "held_answer", "result_answer"]

ANSWER_LIMIT = 16 << 20  # the largest answer (JSON bytes) the service carries; its per-call cap is below


def _block(block: Any) -> Any:
    if isinstance(block, Mapping) and block.get("type") == "text" and isinstance(block.get("text"), str):
        text = block["text"]
        stripped = text.lstrip()
        if stripped[:1] in ("{", "["):
            try:
                parsed = json.loads(text)
            except ValueError:
                return text
            if isinstance(parsed, (dict, list)):
                return parsed
        return text
    return block


def result_answer(server: str, tool: str, result: Mapping[str, Any]) -> str:
    """The answer for the ``CallToolResult`` ``result``."""
    content = result.get("content") or []
    if not isinstance(content, list):
        content = []
    if result.get("isError"):
        texts = [b["text"] for b in content if isinstance(b, Mapping) and isinstance(b.get("text"), str)]
        message = "\n".join(texts) or f"{server}.{tool} failed"
        return error_answer("ToolError", message, content=content)
    structured = result.get("structuredContent")
    if structured is not None:
        return json.dumps({"value": structured})
    values = [_block(b) for b in content]
    value = None if not values else values[0] if len(values) == 1 else values
    return json.dumps({"value": value})


def error_answer(name: str, message: str, **details: Any) -> str:
    """The answer that rejects the script's promise with an error ``name``."""
    return json.dumps({"error": {"name": name, "message": message, **details}})


def held_answer() -> str:
    return json.dumps({"held": True})
