"""Why a submit was refused (the doors answer 429 and 503)."""

from __future__ import annotations

__all__ = ["QueueFull", "ShuttingDown"]


class QueueFull(Exception):
    """The bounded queue is full; the client should retry later."""


class ShuttingDown(Exception):
    """The server is stopping and accepts no new executions."""
