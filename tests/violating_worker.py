"""A worker main for tests only: the real worker (walls and all), except that a job whose code
is ``VIOLATE`` calls ``socket()`` in the worker's own process, which no script can do. Started by
tests through ``spawn_worker_process(module=...)``; the server never starts it."""

from __future__ import annotations

import socket
from typing import Any

from mcp_v8.executions import worker
from mcp_v8.executions.protocol import JobResult

VIOLATE = "/* call socket() in the worker */"
_run = worker._run


def _violating_run(engine: Any, job: Any, *args: Any) -> tuple[JobResult, bytes | None]:
    if job.spec.code == VIOLATE:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    return _run(engine, job, *args)


worker._run = _violating_run

if __name__ == "__main__":
    worker.main()
