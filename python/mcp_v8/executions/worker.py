"""Worker process main: hosts one V8 engine and runs one execution at a time.

A reader thread receives jobs and cancels, so a cancel reaches a job that is queued in
the worker or running; a flusher thread sends console output in batches (at most
``FLUSH_SECONDS`` after a line, or at ``FLUSH_BYTES``), so a console flood costs a few
messages, not one per line; it sleeps while there is no output. Whatever V8 does to this
process (a fatal out-of-memory abort, a signal), the server sees the pipe close and fails
only this worker's execution.

The worker opens no store: the heap a job restores comes with its ``run`` as a read-only
descriptor of bytes the server verified, and the heap it produces (none when the job asks for
no snapshot) goes back with its ``done`` as a ``memfd`` (:mod:`.heap_fds`), which the server
checks and publishes. Everything else about a job comes with its spec (limits);
the command line names only the channel, the sandbox's mode and its limits (never a secret),
and the environment is the server's short allow-list (:func:`.sandbox.worker_environment`).
The walls (:mod:`.sandbox`) go up first, before V8 or any thread starts; the ``ready`` message
says which hold. The worker makes no connection: the calls of a script's ``fetch`` go to the
server as ``fetch`` messages (:class:`.worker_common.Fetches`), the server makes the requests under the fetch
policy of the spec it sent, and its ``fetch_reply`` answers them. The script's tool calls go
the same way (``tool_call``, :class:`.worker_common.Tools`): the server makes them, the worker holds no tool
credentials. What it sends fits the
channel's schema
(:mod:`.protocol`): output in chunks, error texts cut to their limit, and an outcome that
still cannot be sent is replaced by a failure that says why. The live sessions' contexts are
:mod:`.worker_live`'s; what jobs and steps share, :mod:`.worker_common`'s.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import os
import queue
import sys
import threading
from typing import Any

from ..engine import Engine, set_jitless
from ..errors import EngineError, SnapshotError
from . import sandbox
from .channel import Channel
from .heap_fds import HeapFdError, read_heap
from .protocol import (
    Cancel,
    Close,
    FetchReply,
    Job,
    JobResult,
    LiveCommand,
    Open,
    ProtocolError,
    Ready,
    Snapshot,
    Step,
    Stop,
    ToolReply,
)
from .worker_common import (
    HEAP_READ_LIMIT,
    ConsoleOutput,
    Fetches,
    Phases,
    ScriptClock,
    Tools,
    clock_verdict,
    engine_phases,
    outcome_result,
    phase,
    send_done,
)
from .worker_live import LiveSessions

# glibc's mallopt parameters, and what the worker sets them to (see _keep_freed_memory).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 8 << 20
TRIM_THRESHOLD_BYTES = 16 << 20


def _keep_freed_memory() -> bool:
    """Lets glibc keep memory freed by one execution for the next; returns whether it did.

    Every execution allocates and frees the same blob-sized buffers (V8's serializer and
    the snapshot it writes, the restored heap). With glibc's defaults those are mmap'd or
    given back to the kernel when freed, and fault back in, zeroed, on the next execution:
    about 500 page faults, a tenth of the CPU of a snapshot execution. Fixed thresholds
    keep them on the heap: blocks under ``MMAP_THRESHOLD_BYTES`` come from the heap, and up
    to ``TRIM_THRESHOLD_BYTES`` of free memory at its top stays mapped. Process-wide, so it
    is done here, in the worker's own process, and never by the engine library."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )


def _run(
    engine: Engine,
    job: Job,
    control: Any,
    output: ConsoleOutput,
    relay: Any = None,
    tool_relay: Any = None,
    clock: ScriptClock | None = None,
    phases: Phases | None = None,
) -> tuple[JobResult, bytes | None]:
    """Runs ``job``: its result, and the envelope of the heap it produced (when ``result.heap``).
    With a ``clock`` (the job's wall limit is above its timeout) the engine runs under the wall
    limit and the clock enforces the timeout."""
    spec, limits = job.spec, job.spec.limits
    envelope = None
    if job.heap_fd is not None:
        try:
            with phase(phases, "heap_read"):
                envelope = read_heap(job.heap_fd, HEAP_READ_LIMIT)
        except HeapFdError as e:
            return JobResult(status="failed", error=f"cannot restore heap: the server sent {e}"), None
        finally:
            os.close(job.heap_fd)
    try:
        with phase(phases, "execute"):
            outcome = engine.execute(
                spec.code,
                heap=envelope,
                snapshot=spec.snapshot,
                heap_limit_mb=limits.heap_limit_mb,
                timeout=limits.timeout_secs if clock is None else limits.wall_secs,
                language=spec.language,
                filename=spec.filename,
                on_console=output.write,
                control=control,
                max_result_bytes=limits.max_result_bytes,
                fetch_relay=relay,
                tool_relay=tool_relay,
            )
            engine_phases(phases, outcome)
    except SnapshotError as e:
        return JobResult(status="failed", error=f"cannot restore heap: {e}"), None
    finally:
        if clock is not None:
            clock.stop()
    timed_out = clock_verdict(outcome, limits, clock)
    if timed_out is not None:
        return timed_out, None
    heap, heap_size, heap_bytes = None, None, None
    if (
        spec.snapshot
        and outcome.status in ("completed", "suspended")
        and outcome.snapshot is not None
        and outcome.heap_key is not None
    ):
        heap_bytes = outcome.snapshot
        heap, heap_size = outcome.heap_key, len(heap_bytes)
    if outcome.status == "suspended":  # it waits only on held calls: paused in its heap
        if heap is None:  # the server holds no call of an execution without a snapshot
            error = "the script waits on tool calls held for approval, but it has no heap to pause in"
            return JobResult(status="failed", error=error, duration_ms=outcome.duration_ms), None
        paused = JobResult(status="waiting", heap=heap, heap_size=heap_size, duration_ms=outcome.duration_ms)
        return paused, heap_bytes
    return outcome_result(outcome, heap, heap_size), heap_bytes


def _prepare_next(engine: Engine, last: Job | None, heap_limit_mb: int, jobs: queue.SimpleQueue[Any]) -> None:
    """Makes the isolate of the next job while this worker is idle (a warm isolate), so that a
    job that restores no heap and makes no snapshot starts without creating one. Its heap cap is
    the last such job's (``last``), else ``heap_limit_mb`` (the server's default); one that is
    held already stays (a job of another kind left it). Done on this thread, the one that runs
    the jobs (V8 binds an isolate to the thread that makes it), and not while a job waits: that
    one runs now, in an isolate of its own."""
    stateless = last is not None and last.spec.heap is None and not last.spec.snapshot
    if last is not None and stateless:
        heap_limit_mb = last.spec.limits.heap_limit_mb
    held = engine.prepared()
    if held is not None and (not stateless or held["heap_limit_mb"] == heap_limit_mb):
        return
    if not jobs.empty():
        return
    try:
        engine.prepare(heap_limit_mb=heap_limit_mb)
    except EngineError as e:  # the next job makes its own
        print(f"mcp-v8 worker: could not prepare an isolate: {e}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="mcp-v8 worker process (started by the server)")
    parser.add_argument("--fd", type=int, required=True, help="inherited socket to the server")
    parser.add_argument("--sandbox", choices=sandbox.MODES, default="off", help="the walls to raise first")
    parser.add_argument("--report-fd", type=int, default=-1, help="where a sandbox violation is reported")
    parser.add_argument("--max-data-mb", type=int, default=0, help="RLIMIT_DATA (0: unchanged)")
    parser.add_argument("--jitless", action="store_true", help="V8 without its JIT compilers")
    parser.add_argument("--probe", help="sandbox-check: try this forbidden thing instead of serving")
    parser.add_argument(
        "--warm-heap-mb", type=int, default=0, help="prepare each next isolate with this heap cap (0: none)"
    )
    parser.add_argument("--trace", action="store_true", help="send the spans of each job before its done")
    args = parser.parse_args(argv)
    try:  # first, before V8 or any thread starts
        walls = sandbox.enter(args.sandbox, [], args.report_fd, args.max_data_mb)
    except RuntimeError as e:
        print(f"mcp-v8 worker: {e}", file=sys.stderr, flush=True)
        sys.exit(3)
    if args.probe is not None:
        from .probes import run_probe

        run_probe(args.probe, args.fd)
        return
    _keep_freed_memory()
    set_jitless(args.jitless)  # before V8 starts: its flags are the process's
    serve(
        Channel.from_fd(args.fd, peer="server"), walls=walls, warm_heap_mb=args.warm_heap_mb, trace=args.trace
    )


def serve(
    conn: Channel, walls: sandbox.Walls | None = None, warm_heap_mb: int = 0, trace: bool = False
) -> None:
    """Runs the jobs the server sends on ``conn``. ``warm_heap_mb`` (0: off): while idle, the
    worker prepares the isolate of its next job (:func:`_prepare_next`), first with this cap.
    ``trace``: each job's spans are sent before its ``done``."""
    from .. import _engine

    # Fetch is the server's: every job's calls go through its relay, whatever its policy.
    engine = Engine(keep_console=False)  # output streams to the server through on_console
    engine.execute("1")  # initialise V8 before saying ready
    fetches = Fetches(conn.send)
    tools = Tools(conn.send)
    jobs: queue.SimpleQueue[Job | LiveCommand | None] = queue.SimpleQueue()
    controls: dict[str, Any] = {}  # the server sends a cancel only after its job
    controls_lock = threading.Lock()

    def reader() -> None:
        try:
            while True:
                message = conn.recv()
                if isinstance(message, (Job, Step)):
                    with controls_lock:
                        controls[message.execution_id] = _engine.Control()
                    jobs.put(message)
                elif isinstance(message, (Open, Snapshot, Close)):
                    jobs.put(message)  # in order with the steps
                elif isinstance(message, Cancel):
                    with controls_lock:
                        known = controls.get(message.execution_id)
                    if known is not None:  # else its job is already done
                        known.cancel()
                elif isinstance(message, FetchReply):
                    fetches.deliver(message)
                elif isinstance(message, ToolReply):
                    tools.deliver(message)
                elif isinstance(message, Stop):
                    jobs.put(None)
                    return
        except (EOFError, OSError):
            os._exit(0)  # the server is gone: nothing to report to
        except ProtocolError as e:  # the server's stream is lost: it sees this worker end
            print(f"mcp-v8 worker: the server sent {e}", file=sys.stderr, flush=True)
            os._exit(2)

    output = ConsoleOutput(conn.send, 0)
    threading.Thread(target=reader, daemon=True, name="mcp-v8-reader").start()
    threading.Thread(target=output.run_flusher, daemon=True, name="mcp-v8-flusher").start()
    if warm_heap_mb:
        _prepare_next(engine, None, warm_heap_mb, jobs)
    conn.send(Ready(walls or sandbox.Walls()))
    live = LiveSessions(conn, output, tools, fetches)
    while True:
        job = jobs.get()
        if job is None:
            live.close_all()
            return
        if not isinstance(job, Job):
            if isinstance(job, Step):
                with controls_lock:
                    step_control = controls[job.execution_id]
                live.step(job, step_control)
                with controls_lock:
                    controls.pop(job.execution_id, None)
            else:
                live.command(job)
            continue
        with controls_lock:
            control = controls[job.execution_id]
        output.start(job.execution_id, job.spec.limits.max_output_bytes)
        relay = fetches.start(job.execution_id)
        limits = job.spec.limits
        clock = ScriptClock(limits.timeout_secs, control) if limits.wall_secs > limits.timeout_secs else None
        tool_relay = tools.start(job.execution_id, clock)
        phases = Phases() if trace else None
        try:
            result, envelope = _run(engine, job, control, output, relay, tool_relay, clock, phases)
        finally:
            fetches.finish(job.execution_id)
            held = tools.finish(job.execution_id)
        if result.status == "waiting":
            result = dataclasses.replace(result, pending_tool_calls=held)
        output.flush()
        with controls_lock:
            controls.pop(job.execution_id, None)
        send_done(conn, job.execution_id, result, envelope, phases)
        if warm_heap_mb:
            _prepare_next(engine, job, warm_heap_mb, jobs)


if __name__ == "__main__":
    main()
