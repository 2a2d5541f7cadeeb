"""Approval through the person behind an MCP client: when a ``run_js`` run waits on calls of
gated tools and the client declared the elicitation capability (stdio only: ``/mcp`` answers
JSON and cannot send a request), each pending call is put to the person
(``elicitation/create``: the call's server, tool and arguments; a yes or no and a reason), the
answers are the run's decisions, and the call follows the run on (it may wait again).

A person who dismisses the question (``cancel``), a client that does not answer within
``--approval-timeout-secs`` or fails the request, and a decision made elsewhere first leave the
run as it is: ``run_js`` returns it ``waiting`` with its pending calls, as without elicitation,
for the approver to decide (``POST /api/executions/{id}/approve``, ``approve_tool_calls``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from ..operations import Conflict, NotFound, Operations
from .client_requests import ClientRequestError

log = logging.getLogger("mcp_v8.mcp")

__all__ = ["QUESTION_SCHEMA", "ask_until_decided", "question"]

ARGUMENTS_SHOWN = 2000  # characters of a call's arguments the question shows

# Elicitation asks for a flat object of primitive fields (the MCP specification's rule).
QUESTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "approve": {
            "type": "boolean",
            "title": "Approve this call",
            "description": "Yes: the server makes the call and the script gets its result. No: the call throws ToolDenied.",
        },
        "reason": {
            "type": "string",
            "title": "Reason",
            "description": "Why not (the script's ToolDenied carries it).",
        },
    },
    "required": ["approve"],
}


def question(execution_id: str, call: dict[str, Any]) -> dict[str, Any]:
    """The ``elicitation/create`` params for one pending call."""
    arguments = json.dumps(call["arguments"], ensure_ascii=False)
    if len(arguments) > ARGUMENTS_SHOWN:
        arguments = arguments[:ARGUMENTS_SHOWN] + "..."
    message = (
        f"A script (execution {execution_id}) asks to call {call['server']}.{call['tool']} "
        f"with {arguments}. This tool needs your approval."
    )
    return {"message": message, "requestedSchema": QUESTION_SCHEMA}


def _decision(call_id: int, answer: dict[str, Any]) -> dict[str, Any] | None:
    """The decision an elicitation result gives; None when the person gave none (dismissed)."""
    action = answer.get("action")
    if action == "decline":
        return {"call_id": call_id, "approved": False, "reason": "declined by the user"}
    if action != "accept":
        return None
    content = answer.get("content")
    content = content if isinstance(content, dict) else {}
    if content.get("approve") is True:
        return {"call_id": call_id, "approved": True}
    reason = content.get("reason")
    reason = reason.strip()[:1000] if isinstance(reason, str) and reason.strip() else "denied by the user"
    return {"call_id": call_id, "approved": False, "reason": reason}


def ask_until_decided(
    ops: Operations,
    info: dict[str, Any],
    elicit: Callable[[dict[str, Any], float], dict[str, Any]],
    follow: Callable[[str], dict[str, Any]],
) -> dict[str, Any]:
    """While the run ``info`` waits on gated calls: asks the person about each, decides, and
    follows it on with ``follow(execution_id)``; returns the run as it then is."""
    timeout = float(ops.settings.approval_timeout_secs)
    while info["status"] == "waiting" and info.get("pending_tool_calls"):
        execution_id = info["execution_id"]
        decisions = []
        for call in info["pending_tool_calls"]:
            try:
                answer = elicit(question(execution_id, call), timeout)
            except ClientRequestError as e:
                log.info("execution %s waits for the approver: %s", execution_id, e)
                return ops.get(execution_id)
            decision = _decision(call["call_id"], answer)
            if decision is None:  # dismissed: the approver decides
                return ops.get(execution_id)
            decisions.append(decision)
        try:
            ops.approve(execution_id, {"decisions": decisions})
        except (Conflict, NotFound):  # decided elsewhere, cancelled or expired meanwhile
            return ops.get(execution_id)
        info = follow(execution_id)
    return info
