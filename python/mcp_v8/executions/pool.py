"""Worker processes seen from the server: start, run a job, cancel, kill, replace.

Each ``WorkerSlot`` owns one process, by default a fresh interpreter running
``python -m mcp_v8.executions.worker`` (never a fork of a process that runs threads and
V8, and no re-import of the server's main module), connected by a socketpair.
``run`` sends a job and relays the worker's messages until the job is done. The engine
enforces timeouts and cancels inside the worker; the slot is the backstop: a worker
that has not answered ``GRACE_SECONDS`` after its deadline or after a cancel is killed,
and a worker that dies (V8's fatal out-of-memory abort, a signal) fails only its job.
Either way the slot starts a new process for the next job. The slot reports both to its
owner: ``on_crash(execution_id, reason)`` when the process died under a job,
``on_restart()`` when a replacement process is ready. A worker raises its sandbox's walls
first (:mod:`.sandbox`) and starts with a clean environment; one that the sandbox ended for a
forbidden system call fails its job with ``sandbox violation: <call>`` and is reported with
``on_violation(execution_id, call)`` instead of ``on_crash``.

``run`` (a dispatcher thread) and ``cancel`` (any thread) hand a job over under one
lock: ``run`` checks for a cancel and sends the job in one step, and ``cancel`` looks
for the running job and sends its cancel in one step. A cancel is therefore either seen
by ``run`` before the job is sent (the job is then never sent) or sent after the job,
and a worker never sees a cancel before the job it is for.

After ``run`` returns (or raises), its worker is either idle and in step with the slot
(it sent the job's ``done`` and nothing else) or killed, so a job is never handed to a
process still busy with an older one. Anything else that goes wrong while a job is
relayed kills the worker and fails only that job: ``on_output`` raising (the output log
refusing a write, a log pruned under its execution), a message that is not the job's
next one (for another execution, or of the wrong kind), anything the channel refuses
(:class:`~.protocol.ProtocolError`: unreadable, of an unknown kind or version, malformed,
over its kind's limit, a frame too long or truncated), a job the worker stops taking
(``SEND_SECONDS``), a heap descriptor that is not a heap this engine restores or whose key is
not the one the worker claims (:mod:`.heap_fds`), or a ``BaseException`` (re-raised after the
kill). The next job starts
a new process. A job that cannot be encoded for the channel (:class:`~.protocol.Undeliverable`)
is never sent: it fails and the worker, which saw nothing of it, takes the next one.

The worker makes no connection: its job's ``fetch`` calls are handed to the job's
:class:`~.fetches.Fetches`, which makes them under the spec's policy off the relay's thread and
is ended (its requests in flight return at once, their replies dropped) when the job is done,
cancelled, or past its timeout. Its tool calls go the same way to the job's
:class:`~.tool_calls.ToolCalls`, made by the slot's :class:`~.tool_caller.ToolCaller` (none:
every call is refused) under the spec's limits and the server's bound on the tool calls in flight
(the slot's ``tool_gate``, shared by the slots), and abandoned at the same moments; each call's
record goes to ``on_tool_record(execution_id, record)``, which must not wait. A job that snapshots has its calls
of gated tools held (:mod:`.tool_calls`); when the worker says the script paused on them
(``done`` with status ``waiting``), the slot checks the calls it names against those the job's
``ToolCalls`` held and answers with its own record of them, and the job's count of calls.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Protocol

from .. import _engine
from ..storage import TerminalStatus
from .channel import Channel
from .fetches import SERVER_GATE, Fetches, FetchGate
from .gate import Gate
from .heap_fds import HeapFdError, heap_size_cap, read_heap
from .protocol import (
    FRAME_SECONDS,
    Cancel,
    Done,
    Ended,
    FetchCall,
    Job,
    JobResult,
    Message,
    Output,
    ProtocolError,
    Ready,
    Spans,
    Step,
    Stop,
    ToolCall,
    Undeliverable,
    WorkerSpan,
    encode,
    heap_fd,
)
from .sandbox import VIOLATION_PREFIX, Walls, default_mode, violation, worker_environment
from .spec import Limits
from .tenant_tools import TenantTools
from .tool_caller import ToolCaller
from .tool_calls import ToolCallRecord, ToolCalls

if TYPE_CHECKING:  # a worker imports this package: it needs none of the metrics library
    from ..metrics import Metrics
    from ..tracing import Tracing

log = logging.getLogger(__name__)

GRACE_SECONDS = 3.0
# A job's deadline also allows for what happens before its timeout clock starts in the
# worker (restoring its heap).
START_ALLOWANCE_SECONDS = 1.0
START_TIMEOUT_SECONDS = 60.0
SEND_SECONDS = 30.0  # a worker that takes no message for this long is out of step


class WorkerStartError(RuntimeError):
    pass


class _RelayFailed(Exception):
    """The relay of a job cannot go on with this worker: it is killed and the job fails."""


@dataclass(frozen=True)
class WorkerOptions:
    """What every worker process is started with (all else comes with each job's spec; heaps
    come as descriptors with their messages: a worker opens no store)."""

    sandbox: str = field(default_factory=default_mode)  # require, auto or off (:mod:`.sandbox`)
    max_data_mb: int = 0  # the workers' RLIMIT_DATA (0: unchanged)
    jitless: bool = False  # V8 without its JIT compilers (process-wide: a worker's setting)
    warm_heap_mb: int = 0  # prepare each next isolate while idle, first with this heap cap (0: off)
    trace: bool = False  # each job's spans sent before its done (traces on: mcp_v8.tracing)


class WorkerProcess(Protocol):
    """What a slot needs of its process (a ``subprocess.Popen`` is one)."""

    def poll(self) -> int | None: ...

    def kill(self) -> None: ...

    def wait(self, timeout: float | None = None) -> int: ...


SpawnWorker = Callable[[WorkerOptions, socket.socket, BinaryIO], WorkerProcess]
"""Starts a worker process that speaks the protocol on the given socket (which it
inherits) and writes its standard error to the given file."""


class SandboxedWorker(subprocess.Popen):  # type: ignore[type-arg]
    """A worker process with the read end of its report pipe: the system call that ended it,
    when a sandbox violation did (:func:`.sandbox.violation`)."""

    report_fd: int = -1

    def violation(self) -> str | None:
        if self.report_fd < 0:
            return None
        return violation(self.report_fd)

    def close_report(self) -> None:
        if self.report_fd >= 0:
            os.close(self.report_fd)
            self.report_fd = -1


def spawn_worker_process(
    options: WorkerOptions,
    sock: socket.socket,
    stderr: BinaryIO,
    *extra: str,
    module: str = "mcp_v8.executions.worker",
) -> SandboxedWorker:
    """Starts ``python -m mcp_v8.executions.worker`` with a clean environment
    (:func:`.sandbox.worker_environment`) and a report pipe for sandbox violations; ``extra``
    arguments are the sandbox check's, and ``module`` is another worker main for tests."""
    report_r, report_w = os.pipe()
    os.set_blocking(report_r, False)
    args = [
        sys.executable,
        "-m",
        module,
        "--fd",
        str(sock.fileno()),
        "--sandbox",
        options.sandbox,
        "--report-fd",
        str(report_w),
        "--max-data-mb",
        str(options.max_data_mb),
        *(["--jitless"] if options.jitless else []),
        *(["--warm-heap-mb", str(options.warm_heap_mb)] if options.warm_heap_mb else []),
        *(["--trace"] if options.trace else []),
        *extra,
    ]
    try:
        process = SandboxedWorker(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            pass_fds=(sock.fileno(), report_w),
            env=worker_environment(),
            start_new_session=True,  # a Ctrl-C aimed at the server is the server's to handle
        )
    except BaseException:
        os.close(report_r)
        raise
    finally:
        os.close(report_w)
    process.report_fd = report_r
    return process


def _violation(process: WorkerProcess | None) -> str | None:
    """The system call a dead worker was ended for (None: not a sandbox violation)."""
    return process.violation() if isinstance(process, SandboxedWorker) else None


@dataclass
class _Running:
    execution_id: str
    fetches: Fetches
    tools: ToolCalls
    # When the job's script started (with the allowance for its start: restoring its heap), its
    # own time (its timeout; time spent waiting on tool calls is not counted) and its wall
    # deadline (waits on tools included), all after the allowance.
    started: float
    timeout: float
    wall_deadline: float
    grace: float
    cancel_deadline: float | None = None
    spans: tuple[WorkerSpan, ...] | None = None  # what the worker's ``spans`` said, once
    session: str | None = None  # a live step's session
    ended: str | None = None  # why the worker said the step ended its session's context

    @property
    def fetch_deadline(self) -> float:
        """When the job's time has passed in the worker: its own time, moved on by the time it
        waited on tool calls, or its wall limit. Its fetches and tool calls end then."""
        return min(self.wall_deadline, self.started + self.timeout + self.tools.waited())

    @property
    def deadline(self) -> float:
        """Past it the worker is killed: it has not answered within a grace after the job's time."""
        return self.fetch_deadline + self.grace

    def limit(self, cancel_deadline: float | None) -> float:
        """The backstop's deadline, given the cancel's (read under the slot's lock; this reads
        the job's tool calls, under their own lock, and is called without the slot's)."""
        if cancel_deadline is None:
            return self.deadline
        return min(self.deadline, cancel_deadline)


def _limit_passed(limits: Limits, running: _Running) -> str:
    """Which of the job's limits passed: its timeout, or its wall limit (which came first)."""
    if limits.wall_secs > limits.timeout_secs and running.wall_deadline <= running.fetch_deadline:
        return f"its {limits.wall_secs:g} s wall limit (wall_timeout_secs)"
    return f"its {limits.timeout_secs:g} s timeout"


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "no exit status"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _describe_message(message: Message) -> str:
    """A short description of an unexpected message (never its payload)."""
    execution_id = getattr(message, "execution_id", None)
    about = f" about {execution_id[:80]!r}" if execution_id is not None else ""
    return f"a {message.KIND!r} message{about}"


class WorkerSlot:
    def __init__(
        self,
        index: int,
        log_dir: Path,
        options: WorkerOptions,
        *,
        spawn: SpawnWorker = spawn_worker_process,
        grace_seconds: float = GRACE_SECONDS,
        start_allowance_seconds: float = START_ALLOWANCE_SECONDS,
        frame_seconds: float = FRAME_SECONDS,
        send_seconds: float = SEND_SECONDS,
        on_crash: Callable[[str, str], None] | None = None,
        on_restart: Callable[[], None] | None = None,
        on_violation: Callable[[str, str], None] | None = None,
        fetch_gate: FetchGate = SERVER_GATE,
        tool_caller: ToolCaller | None = None,
        metrics: Metrics | None = None,
        tool_gate: Gate | None = None,
        on_tool_record: Callable[[str, ToolCallRecord], None] | None = None,
        tracing: Tracing | None = None,
        tenant_tools: TenantTools | None = None,
    ) -> None:
        """``tracing`` (traces on, with ``options.trace``) hears of each fetch and tool call.
        ``tenant_tools``: what each tenant's scripts may do with ``tool_caller``
        (:mod:`.tenant_tools`; None: anything)."""
        self.index = index
        self._tenant_tools = tenant_tools
        self._tracing = tracing if tracing is not None and tracing.enabled else None
        self._metrics = metrics
        self._tool_caller = tool_caller
        self._tool_gate = tool_gate
        self._on_tool_record = on_tool_record
        self._stderr_path = log_dir / f"worker-{index}.stderr"
        self._options = options
        self._spawn = spawn
        self._grace = grace_seconds
        self._start_allowance = start_allowance_seconds
        self._frame_seconds = frame_seconds
        self._send_seconds = send_seconds
        self._on_crash = on_crash
        self._on_restart = on_restart
        self._on_violation = on_violation
        self._walls: Walls | None = None  # what the current worker's ready said (under _lock)
        self._fetch_gate = fetch_gate
        self._started_once = False
        self._process: WorkerProcess | None = None
        self._conn: Channel | None = None
        # The hand-off between run() and cancel(): _running (the job sent to the worker)
        # and _cancelled (a cancel for the job assigned to this slot that run() has not
        # sent yet) are read and written under this lock only.
        self._lock = threading.Lock()
        self._running: _Running | None = None
        self._cancelled: str | None = None
        # cancel() wakes run()'s wait for the worker, so the cancel's deadline counts at once.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    def _handoff(self, point: str) -> None:
        """Called with the lock held at each hand-off point: ``"run:checked"`` (``run`` has
        looked for a cancel and not yet sent the job) and ``"cancel:checked"`` (``cancel``
        has looked for the running job and not yet acted). Does nothing; a test overrides
        it to park a thread there."""

    # -- process lifecycle -------------------------------------------------------
    def start(self) -> None:
        self.kill()
        parent, child = socket.socketpair()
        self._stderr_path.write_bytes(b"")
        try:
            with open(self._stderr_path, "ab") as stderr:  # O_APPEND: the file is truncated per job
                process = self._spawn(self._options, child, stderr)
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        conn = Channel(
            parent, peer="worker", frame_seconds=self._frame_seconds, send_seconds=self._send_seconds
        )
        self._process, self._conn = process, conn
        if not conn.poll(START_TIMEOUT_SECONDS):
            self.kill()
            raise WorkerStartError(f"worker {self.index} did not start: {self._stderr_tail()}")
        try:
            message = conn.recv()
        except (EOFError, OSError) as e:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)
            called = _violation(process)
            self.kill()
            if called is not None:
                raise WorkerStartError(f"worker {self.index}: {VIOLATION_PREFIX}{called} at start") from e
            raise WorkerStartError(f"worker {self.index} died at start: {self._stderr_tail()}") from e
        except ProtocolError as e:
            self.kill()
            raise WorkerStartError(f"worker {self.index} sent {e} instead of ready") from None
        except BaseException:
            self.kill()
            raise
        if not isinstance(message, Ready):
            self.kill()
            raise WorkerStartError(f"worker {self.index} said {_describe_message(message)} instead of ready")
        with self._lock:
            self._walls = message.sandbox
        if self._started_once and self._on_restart is not None:
            self._on_restart()
        self._started_once = True

    @property
    def walls(self) -> Walls | None:
        """The walls the current worker raised, as its ``ready`` said (None before one started);
        read by other threads (the stats)."""
        with self._lock:
            return self._walls

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait(10)
            if isinstance(self._process, SandboxedWorker):
                self._process.close_report()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._send(Stop())
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(2)
        self.kill()
        self._wake_r.close()
        self._wake_w.close()

    def _clear_stderr(self) -> None:
        """Empties the worker's standard error file, so a crash report names what this job
        printed; a stat when it is already empty (the usual case) instead of a rewrite."""
        with contextlib.suppress(OSError):
            if os.stat(self._stderr_path).st_size:
                self._stderr_path.write_bytes(b"")

    def _stderr_tail(self, limit: int = 2000) -> str:
        try:
            data = self._stderr_path.read_bytes()[-limit:]
        except OSError:
            return ""
        lines = [line.strip() for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
        # V8's fatal errors look like "# Fatal javascript OOM in ..." after a "#" banner.
        meaningful = [line.lstrip("# ").strip() for line in lines if line.strip("# ")]
        return meaningful[-1] if meaningful else ""

    def _send(self, message: Message) -> None:
        conn = self._conn
        if conn is None:
            raise OSError("worker not started")
        conn.send(message)

    # -- jobs ---------------------------------------------------------------------
    def cancel(self, execution_id: str) -> None:
        """Cancels ``execution_id``, running or assigned to this slot and not yet run."""
        with self._lock:
            running = self._running
            self._handoff("cancel:checked")
            if running is None or running.execution_id != execution_id:
                self._cancelled = execution_id  # run() sees it before sending the job
                return
            if running.cancel_deadline is not None:
                return  # already cancelled
            running.cancel_deadline = time.monotonic() + self._grace
            with contextlib.suppress(OSError):
                self._send(Cancel(execution_id))
        running.fetches.end()  # its requests in flight return now, answering nobody
        running.tools.end()  # and its tool calls in flight are abandoned
        self._wake()

    def end_tool_calls(self, execution_id: str) -> None:
        """Abandons the tool calls in flight of ``execution_id`` when it runs here (a cancel does
        so before its status is recorded, so that the records of those calls are written first)."""
        with self._lock:
            running = self._running
        if running is not None and running.execution_id == execution_id:
            running.tools.end()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _tool_recorded(self, execution_id: str, record: ToolCallRecord) -> None:
        """A tool call of ``execution_id`` ended: counted, and its record handed on."""
        if self._metrics is not None:
            self._metrics.tool_call(record.outcome)
        if self._on_tool_record is not None:
            self._on_tool_record(execution_id, record)
        if self._tracing is not None:
            end = time.time_ns()
            attributes = {
                "tool.server": record.server,
                "tool.name": record.tool,
                "tool.outcome": record.outcome,
            }
            self._tracing.record(
                execution_id, "tool_call", end - int(record.duration_ms * 1e6), end, attributes
            )

    def _fetch_span(self, execution_id: str) -> Callable[[int, int, dict[str, Any]], None] | None:
        """What records the span of each fetch of ``execution_id`` (None: traces are off)."""
        tracing = self._tracing
        if tracing is None:
            return None
        return lambda start, end, attributes: tracing.record(execution_id, "fetch", start, end, attributes)

    def _fetch_lost(self, reason: str) -> None:
        self._wake()  # the relay finds the reason on the job's Fetches

    def run(self, job: Job, on_output: Callable[[str], None], *, session: str | None = None) -> JobResult:
        """Runs ``job`` and returns its result; never raises for what the job did. When it
        returns, the worker is idle and in step, or killed (see the module's docstring).
        ``job.heap_fd`` (the heap to restore) stays the caller's. With a ``session``, the job is
        a step in that session's live context in the worker (sent as ``step``: no heap is
        restored; a call held for a decision pauses it in its context's heap, which ends the
        context)."""
        try:
            message: Message = job if session is None else Step(job.execution_id, session, job.spec)
            frame, fd = encode(message), heap_fd(message)
        except Undeliverable as e:  # nothing sent: the worker stays as it is
            with self._lock:
                if self._cancelled == job.execution_id:
                    self._cancelled = None
            return JobResult(status="failed", error=f"the execution could not be sent to a worker: {e}")
        if not self.alive():
            self.start()
        conn = self._conn
        assert conn is not None
        self._clear_stderr()
        metrics = self._metrics
        fetches = Fetches(
            job.execution_id,
            job.spec.fetch,
            conn.send,
            gate=self._fetch_gate,
            on_lost=self._fetch_lost,
            on_outcome=None if metrics is None else lambda outcome: metrics.fetch_calls.labels(outcome).inc(),
            on_span=self._fetch_span(job.execution_id),
        )
        caller = self._tool_caller
        if self._tenant_tools is not None:
            caller = self._tenant_tools.caller(caller, job.spec.tenant)
        tools = ToolCalls(
            job.execution_id,
            caller,
            conn.send,
            limits=job.spec.tools,
            on_lost=self._fetch_lost,
            gate=self._tool_gate,
            on_record=functools.partial(self._tool_recorded, job.execution_id),
            hold=job.spec.snapshot or session is not None,  # a live step pauses in its context's heap
            made=job.tool_calls_made,
        )
        try:
            with self._lock:
                cancelled = self._cancelled == job.execution_id
                self._cancelled = None
                self._handoff("run:checked")
                if cancelled:
                    return JobResult(status="cancelled", error="execution cancelled")
                # The wall limit bounds everything the job does here: the script's own time
                # (its timeout, enforced in the worker) and its waits on tools and fetches. A
                # tool call's deadline is never past it.
                limits = job.spec.limits
                started = time.monotonic() + self._start_allowance
                wall_deadline = started + limits.wall_secs
                tools.bound(wall_deadline)
                running = self._running = _Running(
                    job.execution_id,
                    fetches,
                    tools,
                    started,
                    limits.timeout_secs,
                    wall_deadline,
                    self._grace,
                    session=session,
                )
                try:
                    conn.send_frame(frame, fd)
                except TimeoutError as e:  # part of the frame may be out: the stream is lost
                    raise _RelayFailed(str(e)) from None
            result = self._paused(self._relay(job, running, conn, on_output), tools)
            if running.spans is not None:
                result = dataclasses.replace(result, spans=running.spans)
            if running.ended is not None:
                result = dataclasses.replace(result, session_ended=running.ended)
            return result
        except (EOFError, OSError):
            return self._crashed(job)
        except _RelayFailed as e:
            log.warning("worker %d stopped under execution %s: %s", self.index, job.execution_id, e)
            self.kill()
            return JobResult(status="failed", error=str(e))
        except Exception as e:  # the worker is out of step with this slot: never give it another job
            log.exception("worker %d stopped under execution %s", self.index, job.execution_id)
            self.kill()
            return JobResult(
                status="failed", error=f"internal error relaying the worker: {type(e).__name__}: {e}"
            )
        except BaseException:
            self.kill()
            raise
        finally:
            fetches.end()
            tools.end()
            if fetches.lost is not None or tools.lost is not None:  # a reply went out in part
                self.kill()
            with self._lock:
                self._running = None

    def _relay(
        self, job: Job, running: _Running, conn: Channel, on_output: Callable[[str], None]
    ) -> JobResult:
        """Relays the worker's messages about ``job`` until it is done or the backstop
        kills the worker. Raises ``_RelayFailed`` when the relay cannot go on."""
        while True:
            with self._lock:
                cancel_deadline = running.cancel_deadline
            limit = running.limit(cancel_deadline)
            cancelled = cancel_deadline is not None
            lost = running.fetches.lost or running.tools.lost
            if lost is not None:
                raise _RelayFailed(lost)
            now = time.monotonic()
            if now >= running.fetch_deadline:
                running.fetches.end()  # the job's timeout has passed: so have its fetches
                running.tools.end()  # and its tool calls
            wait = limit if running.fetches.ended else min(limit, running.fetch_deadline)
            # While a tool call is in flight the job's deadline moves on with the clock: look
            # again a little later, not at once.
            floor = 0.05 if running.tools.busy else 0.0
            conn_fd, wake_fd = conn.fileno(), self._wake_r.fileno()
            try:
                readable, _, _ = select.select([conn_fd, wake_fd], [], [], max(floor, wait - now))
            except ValueError:  # stop() closed the sockets under this job
                raise OSError("worker connection closed") from None
            if wake_fd in readable:
                with contextlib.suppress(BlockingIOError):
                    self._wake_r.recv(4096)
            if conn_fd in readable:
                try:
                    message = conn.recv()
                except ProtocolError as e:  # the stream cannot be trusted past it
                    raise _RelayFailed(f"worker sent {e}") from None
                mine = getattr(message, "execution_id", None) == job.execution_id
                if isinstance(message, Done) and message.heap_fd is not None:
                    try:  # read once, then closed on every path
                        cap = heap_size_cap(job.spec.limits.heap_limit_mb)
                        envelope = read_heap(message.heap_fd, cap) if mine else None
                    except HeapFdError as e:
                        raise _RelayFailed(f"worker sent {e}") from None
                    finally:
                        os.close(message.heap_fd)
                    if envelope is not None:
                        return self._checked_heap(message.result, envelope)
                if mine and isinstance(message, Output):
                    try:
                        on_output(message.text)
                    except Exception as e:
                        raise _RelayFailed(
                            f"console output could not be stored: {type(e).__name__}: {e}"
                        ) from e
                elif mine and isinstance(message, FetchCall):
                    running.fetches.submit(message)
                elif mine and isinstance(message, ToolCall):
                    running.tools.submit(message)
                elif mine and isinstance(message, Done):
                    return message.result
                elif mine and isinstance(message, Spans) and self._options.trace and running.spans is None:
                    running.spans = message.spans
                elif (
                    isinstance(message, Ended)
                    and running.session is not None
                    and message.session == running.session
                ):
                    running.ended = message.reason
                else:
                    raise _RelayFailed(
                        f"worker sent {_describe_message(message)} while running {job.execution_id}"
                    )
            elif time.monotonic() >= limit:  # nothing from the worker by its limit
                self.kill()
                how: TerminalStatus = "cancelled" if cancelled else "timed_out"
                reason = "cancel" if cancelled else _limit_passed(job.spec.limits, running)
                return JobResult(status=how, error=f"worker did not stop after {reason} and was killed")

    @staticmethod
    def _paused(result: JobResult, tools: ToolCalls) -> JobResult:
        """``result``; when the worker says the script paused, with the calls this server held
        for it (never the worker's word for them) and the job's count of calls, or a failure
        when the pause is not one this server can resume."""
        if result.status != "waiting":
            return result
        held = tools.held()
        named = sorted(c.call_id for c in result.pending_tool_calls)
        error = None
        if result.heap is None or result.envelope is None:
            error = "the worker paused the script without its heap"
        elif not held or named != [c.call_id for c in held]:
            error = "the worker paused the script on tool calls this server did not hold"
        if error is not None:
            return JobResult(status="failed", error=error, duration_ms=result.duration_ms)
        return dataclasses.replace(result, pending_tool_calls=held, tool_calls_made=tools.count)

    @staticmethod
    def _checked_heap(result: JobResult, envelope: bytes) -> JobResult:
        """``result`` with the heap the worker sent, checked as the engine checks a heap before V8
        sees a byte, under the key the server computed (never the worker's)."""
        try:
            key = _engine.snapshot_key(envelope)
        except Exception as e:  # the engine's SnapshotError: what is wrong with the envelope
            raise _RelayFailed(f"worker sent a heap that is not a valid snapshot: {e}") from None
        if key != result.heap:
            raise _RelayFailed(f"worker sent heap {key} as {result.heap}")
        return dataclasses.replace(result, heap=key, heap_size=len(envelope), envelope=envelope)

    def _crashed(self, job: Job) -> JobResult:
        """The connection to the worker broke under ``job``: it died, or is killed now."""
        assert self._process is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(5)
        code = self._process.poll()
        called = _violation(self._process)
        self.kill()  # a process whose connection broke is never given another job
        if called is not None:
            if self._on_violation is not None:
                self._on_violation(job.execution_id, called)
            return JobResult(status="failed", error=VIOLATION_PREFIX + called)
        tail = self._stderr_tail()
        reason = _describe_exit(code) + (f" ({tail})" if tail else "")
        if self._on_crash is not None:
            self._on_crash(job.execution_id, reason)
        return JobResult(status="failed", error=f"worker crashed: {reason}")


def worker_log_dir(data_dir: Path) -> Path:
    path = data_dir / "workers"
    path.mkdir(parents=True, exist_ok=True)
    return path


__all__ = [
    "GRACE_SECONDS",
    "SEND_SECONDS",
    "SandboxedWorker",
    "SpawnWorker",
    "WorkerOptions",
    "WorkerProcess",
    "WorkerSlot",
    "WorkerStartError",
    "spawn_worker_process",
    "worker_log_dir",
]
