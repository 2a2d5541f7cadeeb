"""Worker processes seen from the server: start, run a job, cancel, kill, replace.

Each ``WorkerSlot`` owns one process, a fresh interpreter running
``python -m mcp_v8.executions.worker`` (never a fork of a process that runs threads and
V8, and no re-import of the server's main module), connected by a socketpair.
``run`` sends a job and relays the worker's messages until
the job is done. The engine enforces timeouts and cancels inside the worker; the slot
is the backstop: a worker that has not answered ``GRACE_SECONDS`` after its deadline
or after a cancel is killed, and a worker that dies (V8's fatal out-of-memory abort, a
signal) fails only its job. Either way the slot starts a new process for the next job.
The slot reports both to its owner: ``on_crash(execution_id, reason)`` when the process
died under a job, ``on_restart()`` when a replacement process is ready.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..storage import TerminalStatus
from .protocol import Channel, Job, JobResult

GRACE_SECONDS = 3.0
START_TIMEOUT_SECONDS = 60.0


class WorkerStartError(RuntimeError):
    pass


@dataclass
class _Running:
    execution_id: str
    deadline: float
    cancel_deadline: float | None = None


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "no exit status"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class WorkerSlot:
    def __init__(
        self,
        index: int,
        log_dir: Path,
        max_output_bytes: int,
        *,
        on_crash: Callable[[str, str], None] | None = None,
        on_restart: Callable[[], None] | None = None,
    ) -> None:
        self.index = index
        self._stderr_path = log_dir / f"worker-{index}.stderr"
        self._max_output_bytes = max_output_bytes
        self._on_crash = on_crash
        self._on_restart = on_restart
        self._started_once = False
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Channel | None = None
        self._running: _Running | None = None
        self._early_cancel: str | None = None
        self.pid: int | None = None

    # -- process lifecycle -------------------------------------------------------
    def start(self) -> None:
        self.kill()
        parent, child = socket.socketpair()
        self._stderr_path.write_bytes(b"")
        with open(self._stderr_path, "ab") as stderr:  # O_APPEND: the file is truncated per job
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mcp_v8.executions.worker",
                    "--fd",
                    str(child.fileno()),
                    "--max-output-bytes",
                    str(self._max_output_bytes),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                pass_fds=(child.fileno(),),
                start_new_session=True,  # a Ctrl-C aimed at the server is the server's to handle
            )
        child.close()
        conn = Channel(parent)
        self._process, self._conn = process, conn
        if not conn.poll(START_TIMEOUT_SECONDS):
            self.kill()
            raise WorkerStartError(f"worker {self.index} did not start: {self._stderr_tail()}")
        try:
            message = conn.recv()
        except EOFError as e:
            self.kill()
            raise WorkerStartError(f"worker {self.index} died at start: {self._stderr_tail()}") from e
        assert message[0] == "ready"
        self.pid = message[1]
        if self._started_once and self._on_restart is not None:
            self._on_restart()
        self._started_once = True

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait(10)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._send(("stop",))
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(2)
        self.kill()

    def _stderr_tail(self, limit: int = 2000) -> str:
        try:
            data = self._stderr_path.read_bytes()[-limit:]
        except OSError:
            return ""
        lines = [line.strip() for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
        # V8's fatal errors look like "# Fatal javascript OOM in ..." after a "#" banner.
        meaningful = [line.lstrip("# ").strip() for line in lines if line.strip("# ")]
        return meaningful[-1] if meaningful else ""

    def _send(self, message: Any) -> None:
        if self._conn is None:
            raise OSError("worker not started")
        self._conn.send(message)

    # -- jobs ---------------------------------------------------------------------
    def cancel(self, execution_id: str) -> None:
        running = self._running
        if running is None or running.execution_id != execution_id:
            self._early_cancel = execution_id  # assigned to this slot, not yet sent
            return
        running.cancel_deadline = time.monotonic() + GRACE_SECONDS
        with contextlib.suppress(OSError):
            self._send(("cancel", execution_id))

    def run(self, job: Job, on_output: Callable[[str], None]) -> JobResult:
        """Runs ``job`` and returns its result; never raises for what the job did."""
        if not self.alive():
            self.start()
        assert self._conn is not None
        self._stderr_path.write_bytes(b"")
        self._running = _Running(job.execution_id, time.monotonic() + job.timeout_secs + GRACE_SECONDS + 1.0)
        try:
            self._send(job)
            if self._early_cancel == job.execution_id:
                self.cancel(job.execution_id)
            while True:
                running = self._running
                limit = (
                    running.deadline
                    if running.cancel_deadline is None
                    else min(running.deadline, running.cancel_deadline)
                )
                wait = max(0.0, limit - time.monotonic())
                if not self._conn.poll(min(wait, 1.0)):
                    if time.monotonic() >= limit:
                        cancelled = running.cancel_deadline is not None
                        self.kill()
                        how: TerminalStatus = "cancelled" if cancelled else "timed_out"
                        reason = "cancel" if cancelled else f"its {job.timeout_secs:g} s timeout"
                        return JobResult(
                            status=how, error=f"worker did not stop after {reason} and was killed"
                        )
                    continue
                message = self._conn.recv()
                kind = message[0]
                if kind == "output" and message[1] == job.execution_id:
                    on_output(message[2])
                elif kind == "done" and message[1] == job.execution_id:
                    return message[2]  # type: ignore[no-any-return]
        except (EOFError, OSError):
            assert self._process is not None
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(5)
            tail = self._stderr_tail()
            reason = _describe_exit(self._process.poll()) + (f" ({tail})" if tail else "")
            if self._on_crash is not None:
                self._on_crash(job.execution_id, reason)
            return JobResult(status="failed", error=f"worker crashed: {reason}")
        finally:
            self._running = None
            self._early_cancel = None


def worker_log_dir(data_dir: Path) -> Path:
    path = data_dir / "workers"
    path.mkdir(parents=True, exist_ok=True)
    return path


__all__ = ["GRACE_SECONDS", "WorkerSlot", "WorkerStartError", "worker_log_dir"]
