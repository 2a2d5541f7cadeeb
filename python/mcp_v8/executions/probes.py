"""The sandbox check (``mcp-v8 sandbox-check``): a worker, started as the server starts one,
raises its walls and then tries one forbidden thing; a wall holds when the attempt is refused
(an error, or the worker ended by the seccomp filter on the very call it tried).

Each probe runs in a worker process of its own (a probe that succeeds at ``execve`` or
``fork`` leaves nothing to run the next one). The worker writes one JSON line to its channel,
``{"held": bool, "detail": str}``, or is ended by the filter, which its report pipe says.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import select
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .pool import WorkerOptions, spawn_worker_process

PROBE_SECONDS = 60.0


@dataclass(frozen=True)
class Probe:
    name: str
    wall: str
    attempt: str
    syscalls: tuple[str, ...] = ()  # the calls the filter may end the probe for: held


@dataclass(frozen=True)
class ProbeResult:
    probe: Probe
    held: bool
    detail: str


PROBES = (
    Probe("read-outside", "Landlock", "read a file outside the worker's paths"),
    Probe("write-outside", "Landlock", "create a file outside the worker's paths"),
    Probe("other-environ", "Landlock", "read the server's /proc/<pid>/environ"),
    Probe("socket", "seccomp", "create a socket", ("socket",)),
    Probe("network", "network namespace", "see a network interface other than lo"),
    Probe("execve", "seccomp", "run a program (execve)", ("execve",)),
    Probe("fork", "seccomp", "start a process (fork)", ("clone", "fork")),
    Probe("ptrace", "seccomp", "ptrace", ("ptrace",)),
    Probe("raise-limit", "seccomp", "raise a resource limit", ("prlimit64", "setrlimit")),
    Probe("unshare", "seccomp", "create a namespace (unshare)", ("unshare",)),
    Probe("mount", "seccomp", "mount a filesystem", ("mount",)),
    Probe("signal-server", "seccomp + Landlock scope", "send a signal to the server", ("kill",)),
    Probe("capabilities", "capabilities", "hold a capability (effective, permitted, bounding, ambient)"),
    Probe("no-new-privs", "no_new_privs", "gain privileges through execve (NoNewPrivs: 0)"),
    Probe("seccomp", "seccomp", "run without a seccomp filter (Seccomp: 2)"),
    Probe("core-dumps", "limits", "dump core (RLIMIT_CORE hard limit above 0)"),
    Probe("data-limit", "limits", "allocate without an RLIMIT_DATA"),
    Probe("file-limit", "limits", "open descriptors without a cap (RLIMIT_NOFILE hard above 4096)"),
)
BY_NAME = {p.name: p for p in PROBES}


# -- in the worker ---------------------------------------------------------------------------


def _status() -> dict[str, str]:
    with open("/proc/self/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def _refused(action: Callable[[], object]) -> tuple[bool, str]:
    try:
        action()
    except OSError as e:
        return True, f"refused: {e.strerror or e}"
    except ValueError as e:  # resource.setrlimit's EPERM
        return True, f"refused: {e}"
    return False, "allowed"


def _libc_call(name: str, *args: object) -> tuple[bool, str]:
    libc = ctypes.CDLL(None, use_errno=True)
    result = getattr(libc, name)(*args)
    if result == -1:
        return True, f"refused: {os.strerror(ctypes.get_errno())}"
    return False, f"allowed ({name} returned {result})"


def _attempt(name: str, target: str, server: int) -> tuple[bool, str]:
    if name == "read-outside":
        return _refused(lambda: Path(target).read_bytes())
    if name == "write-outside":
        return _refused(lambda: Path(target).with_name("written-by-worker").write_bytes(b"x"))
    if name == "other-environ":
        return _refused(lambda: Path(f"/proc/{server}/environ").read_bytes())
    if name == "socket":
        return _refused(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close())
    if name == "network":
        try:
            lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
        except OSError as e:
            return True, f"refused: {e.strerror or e}"
        interfaces = sorted(line.split(":")[0].strip() for line in lines)
        return [i for i in interfaces if i != "lo"] == [], "interfaces: " + ", ".join(interfaces)
    if name == "execve":
        return _refused(lambda: os.execv("/bin/true", ["true"]))
    if name == "fork":
        try:
            pid = os.fork()
        except OSError as e:
            return True, f"refused: {e.strerror or e}"
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        return False, "allowed"
    if name == "ptrace":
        return _libc_call("ptrace", 0, 0, None, None)  # PTRACE_TRACEME: harmless when allowed
    if name == "raise-limit":
        soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
        new = (hard, hard) if soft < hard else (soft, hard + 1)
        return _refused(lambda: resource.setrlimit(resource.RLIMIT_CORE, new))
    if name == "unshare":
        return _libc_call("unshare", 0x10000000)  # CLONE_NEWUSER
    if name == "mount":  # a path that does not exist: allowed, it fails with ENOENT, harmlessly
        held, detail = _libc_call("mount", b"none", b"/nonexistent-mcp-v8-probe", b"tmpfs", 0, None)
        if held and "No such file" in detail:
            return False, "reached the kernel (ENOENT)"
        return held, detail
    if name == "signal-server":
        return _refused(lambda: os.kill(server, 0))
    status = _status()
    if name == "capabilities":
        caps = {k: status.get(k, "?") for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
        return all(set(v) <= {"0"} for v in caps.values()), " ".join(f"{k}={v}" for k, v in caps.items())
    if name == "no-new-privs":
        return status.get("NoNewPrivs") == "1", f"NoNewPrivs: {status.get('NoNewPrivs')}"
    if name == "seccomp":
        return status.get("Seccomp") == "2", f"Seccomp: {status.get('Seccomp')}"
    limit = {"core-dumps": resource.RLIMIT_CORE, "data-limit": resource.RLIMIT_DATA}.get(
        name, resource.RLIMIT_NOFILE
    )
    soft, hard = resource.getrlimit(limit)
    shown = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
    if name == "core-dumps":
        return hard == 0, f"hard limit {shown}"
    if name == "data-limit":
        return hard != resource.RLIM_INFINITY, f"hard limit {shown}"
    return hard != resource.RLIM_INFINITY and hard <= 4096, f"hard limit {shown}"


def run_probe(spec: str, fd: int) -> None:
    """In a worker whose walls are up: tries probe ``name`` (``spec`` is
    ``name=server_pid:target``) and writes the outcome to ``fd``."""
    name, _, rest = spec.partition("=")
    server, _, target = rest.partition(":")
    try:
        held, detail = _attempt(name, target, int(server))
    except Exception as e:  # a probe that cannot run says why
        held, detail = False, f"probe error: {type(e).__name__}: {e}"
    os.write(fd, json.dumps({"held": held, "detail": detail}).encode() + b"\n")
    os._exit(0)


# -- in the server ---------------------------------------------------------------------------


def _read_all(sock: socket.socket, seconds: float) -> bytes:
    deadline, parts = time.monotonic() + seconds, []
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not readable:
            break
        chunk = sock.recv(65536)
        if not chunk:
            break
        parts.append(chunk)
    return b"".join(parts)


def run_one(probe: Probe, mode: str, workdir: Path) -> ProbeResult:
    outside = workdir / "outside"
    outside.mkdir(exist_ok=True)
    secret = outside / "secret"
    secret.write_text("not for workers")
    options = WorkerOptions(sandbox=mode, max_data_mb=2048)
    parent, child = socket.socketpair()
    stderr_path = workdir / f"{probe.name}.stderr"
    try:
        with open(stderr_path, "wb") as stderr:
            process = spawn_worker_process(
                options, child, stderr, "--probe", f"{probe.name}={os.getpid()}:{secret}"
            )
        child.close()
        data = _read_all(parent, PROBE_SECONDS)
        try:
            code = process.wait(PROBE_SECONDS)
        except Exception:
            process.kill()
            code = process.wait()
        called = process.violation()
        process.close_report()
    finally:
        parent.close()
        child.close()
    if called is not None:
        if called in probe.syscalls:
            return ProbeResult(probe, True, f"worker ended by the filter on {called}")
        return ProbeResult(
            probe, False, f"probe error: ended by the filter on {called}, not on what it tried"
        )
    if data:
        try:
            report = json.loads(data.decode().splitlines()[0])
            return ProbeResult(probe, bool(report["held"]), str(report["detail"]))
        except (ValueError, KeyError, IndexError):
            return ProbeResult(probe, False, "probe error: an unreadable report")
    said = stderr_path.read_text(errors="replace").strip().splitlines()
    tail = f": {said[-1]}" if said else ""
    if probe.name == "execve" and code == 0 and not said:
        return ProbeResult(probe, False, "the program ran")
    return ProbeResult(probe, False, f"the worker ended without a report (exit code {code}){tail}")


def check(mode: str, names: list[str] | None = None) -> list[ProbeResult]:
    """Runs the probes (all, or ``names``) in workers of sandbox ``mode``."""
    probes = [BY_NAME[n] for n in names] if names else list(PROBES)
    with tempfile.TemporaryDirectory(prefix="mcp-v8-sandbox-check-") as tmp:
        return [run_one(p, mode, Path(tmp)) for p in probes]


def table(results: list[ProbeResult]) -> str:
    rows = [("wall", "probe", "result", "detail")] + [
        (r.probe.wall, r.probe.attempt, "held" if r.held else "NOT HELD", r.detail) for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}" for row in rows
    )


__all__ = ["PROBES", "Probe", "ProbeResult", "check", "run_one", "run_probe", "table"]
