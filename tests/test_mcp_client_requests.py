"""Requests the stdio MCP server sends its client (mcp/client_requests.py), against a fake
client that answers from another thread: each way a request can end."""

from __future__ import annotations

import queue
import threading
from typing import Any

import pytest

from mcp_v8.mcp.client_requests import ClientRequestError, ClientRequests


class FakeClient:
    def __init__(self) -> None:
        self.sent: queue.Queue[dict[str, Any]] = queue.Queue()
        self.requests = ClientRequests(self.sent.put)

    def ask(self, **kwargs: Any) -> tuple[threading.Thread, dict[str, Any]]:
        """Sends a request from a thread; returns it and where its outcome lands."""
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["result"] = self.requests.request("elicitation/create", {"message": "ok?"}, **kwargs)
            except ClientRequestError as e:
                outcome["error"] = str(e)

        thread = threading.Thread(target=run)
        thread.start()
        return thread, outcome

    def next_sent(self) -> dict[str, Any]:
        return self.sent.get(timeout=30)


def test_a_request_gets_its_result() -> None:
    client = FakeClient()
    thread, outcome = client.ask(timeout=60)
    sent = client.next_sent()
    assert sent["method"] == "elicitation/create" and sent["id"].startswith("mcp-v8-")
    assert not client.requests.deliver(
        {"jsonrpc": "2.0", "id": "mcp-v8-999", "result": {}}
    )  # no such request
    assert client.requests.deliver({"jsonrpc": "2.0", "id": sent["id"], "result": {"action": "accept"}})
    thread.join(30)
    assert outcome == {"result": {"action": "accept"}}
    assert not client.requests.deliver({"jsonrpc": "2.0", "id": sent["id"], "result": {}})  # answered already


def test_two_requests_in_flight_get_their_own_results() -> None:
    client = FakeClient()
    first, first_outcome = client.ask(timeout=60)
    a = client.next_sent()
    second, second_outcome = client.ask(timeout=60)
    b = client.next_sent()
    assert a["id"] != b["id"]
    client.requests.deliver({"jsonrpc": "2.0", "id": b["id"], "result": {"n": 2}})
    client.requests.deliver({"jsonrpc": "2.0", "id": a["id"], "result": {"n": 1}})
    first.join(30)
    second.join(30)
    assert (first_outcome, second_outcome) == ({"result": {"n": 1}}, {"result": {"n": 2}})


@pytest.mark.parametrize(
    ("response", "says"),
    [
        (
            {"error": {"code": -32601, "message": "no elicitation here"}},
            "answered with an error: no elicitation here",
        ),
        ({"result": "yes"}, "result is not an object"),
    ],
)
def test_an_error_or_a_bad_result_is_an_error(response: dict[str, Any], says: str) -> None:
    client = FakeClient()
    thread, outcome = client.ask(timeout=60)
    sent = client.next_sent()
    client.requests.deliver({"jsonrpc": "2.0", "id": sent["id"], **response})
    thread.join(30)
    assert says in outcome["error"]


def test_no_answer_in_time() -> None:
    client = FakeClient()
    thread, outcome = client.ask(timeout=0.2)
    client.next_sent()
    thread.join(30)
    assert "no answer within 0.2 s" in outcome["error"]


def test_the_caller_cancels_and_the_session_ends() -> None:
    client = FakeClient()
    cancelled = threading.Event()
    thread, outcome = client.ask(timeout=60, cancelled=cancelled)
    client.next_sent()
    cancelled.set()
    thread.join(30)
    assert "cancelled" in outcome["error"]

    thread, outcome = client.ask(timeout=60)
    client.next_sent()
    client.requests.close()
    thread.join(30)
    assert "client is gone" in outcome["error"]
    with pytest.raises(ClientRequestError, match="client is gone"):
        client.requests.request("elicitation/create", {}, 60)
