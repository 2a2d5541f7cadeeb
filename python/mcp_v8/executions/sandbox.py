"""The walls around a worker process: what the server asks for, and what the worker raised.

A worker raises them itself at the very start (:func:`enter`, before V8 or any thread starts;
the engine's ``sandbox_enter`` does the work): a network namespace without interfaces (in a
new user namespace where the kernel allows one), every capability dropped, resource limits
(no core dumps, a descriptor cap, ``RLIMIT_DATA`` above the heap cap), ``PR_SET_NO_NEW_PRIVS``,
Landlock (read-only: the interpreter, its libraries, the package, libnode and what V8 reads;
read-write: only the paths the server gives) and a seccomp allow-list. A forbidden system call
ends the worker and writes the call's number to a report pipe the server gave it; the server
names it (:func:`violation`) and fails the execution with ``sandbox violation: <name>``.

The worker starts with a clean environment (:func:`worker_environment`) and a command line
that holds no secret. Modes: ``require`` (the worker refuses to start unless seccomp, the
dropped capabilities and Landlock's filesystem rules all hold), ``auto`` (what the kernel
allows; what is missing is reported), ``off``.
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import SANDBOX_MODES as MODES
from ..config import default_sandbox as default_mode

VIOLATION_PREFIX = "sandbox violation: "
MAX_FILES = 256  # RLIMIT_NOFILE: the channel, the report pipe, heaps, Python's own
DATA_MARGIN_MB = 1024  # RLIMIT_DATA above the heap caps: the interpreter, V8's code and buffers


def data_limit_mb(max_heap_mb: int) -> int:
    """``RLIMIT_DATA`` for workers whose heap cap is at most ``max_heap_mb``: V8's heap and
    the snapshot buffers of the same size (serializer, envelope) fit, a runaway native
    allocation does not."""
    return 3 * max_heap_mb + DATA_MARGIN_MB


# The server's environment a worker keeps, each for a reason; nothing else reaches it (the API
# token, the database URL, AWS_* credentials, whatever else the server was started with).
ENV_ALLOWED = (
    "PYTHONPATH",  # where the mcp_v8 package is, for installs that use it
    "PYTHONHOME",  # a relocated interpreter finds its standard library
    "LD_LIBRARY_PATH",  # where libnode is, for installs that use it
    "LANG",  # the interpreter's text encoding for its standard streams
    "LANGUAGE",
    "TZ",  # scripts' Date and Intl see the server's time zone, as without the sandbox
    "TZDIR",  # where that zone's file is
)
ENV_ALLOWED_PREFIXES = ("LC_",)  # the locale, as LANG


def worker_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a worker starts with: ``ENV_ALLOWED`` (and ``LC_*``) of ``environ``."""
    environ = dict(os.environ if environ is None else environ)
    return {k: v for k, v in environ.items() if k in ENV_ALLOWED or k.startswith(ENV_ALLOWED_PREFIXES)}


@dataclass(frozen=True)
class Walls:
    """What a worker raised (its ``ready`` message says): ``missing`` names what it could not."""

    mode: str = "off"
    namespaces: str = ""  # "user+net", "net" or "" (none)
    capabilities: bool = False
    no_new_privs: bool = False
    landlock_abi: int = 0
    landlock_full: bool = False
    rlimits: bool = False
    seccomp: bool = False
    syscalls_allowed: int = 0
    missing: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "namespaces": self.namespaces,
            "capabilities": self.capabilities,
            "no_new_privs": self.no_new_privs,
            "landlock_abi": self.landlock_abi,
            "landlock_full": self.landlock_full,
            "rlimits": self.rlimits,
            "seccomp": self.seccomp,
            "syscalls_allowed": self.syscalls_allowed,
            "missing": list(self.missing),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Walls:
        return cls(**{**d, "missing": tuple(d["missing"])})


def _mapped_files() -> set[str]:
    """The files this process has mapped (the extension, libnode and the libraries they
    load): read-only, wherever they are installed."""
    found = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and parts[5].startswith("/"):
                    found.add(parts[5].rstrip("\n").removesuffix(" (deleted)"))
    except OSError:
        pass
    return found


def read_only_paths() -> list[str]:
    """What a worker reads while it runs: the interpreter's libraries and site-packages, the
    mcp_v8 package, the shared libraries mapped now (and those beside them), the system's
    libraries and data (``/usr``: ICU, time zones), and the few files of ``/etc``, ``/dev``,
    ``/proc`` and ``/sys`` that CPython, glibc and V8 read. Never the working directory."""
    paths = {
        sys.prefix,
        sys.base_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
        str(Path(__file__).resolve().parent.parent),  # the mcp_v8 package
        *(p for p in sysconfig.get_paths().values()),
        *site.getsitepackages(),
        *_mapped_files(),
        *{os.path.dirname(p) for p in _mapped_files()},
        "/usr",
        "/lib",
        "/lib64",
        "/etc/localtime",
        "/etc/ld.so.cache",
        "/dev/urandom",
        "/dev/random",
        "/proc/self",  # this process's own entries only (/proc/<pid> of this pid)
        "/sys/devices/system/cpu",  # how many CPUs (glibc's sysconf, V8's platform)
    }
    cwd = os.getcwd()
    pythonpath = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    paths.update(p for p in pythonpath if os.path.abspath(p) != cwd)
    return sorted(p for p in paths if p and p != "/" and os.path.exists(p))


def enter(mode: str, read_write: list[str], report_fd: int, max_data_mb: int) -> Walls:
    """Raises the walls of ``mode`` on this process (see the module); RuntimeError when
    ``require`` cannot have them all, or the process already has threads."""
    if mode == "off":
        return Walls()
    from .. import _engine

    raised = _engine.sandbox_enter(
        read_only=read_only_paths(),
        read_write=read_write + ["/dev/null"],
        report_fd=report_fd,
        max_files=MAX_FILES,
        max_data_bytes=max_data_mb << 20,
        require=mode == "require",
    )
    return Walls.from_dict({"mode": mode, **raised})


def violation(report_fd: int) -> str | None:
    """The system call a worker was ended for, read from its report pipe (None when it wrote
    nothing: it was not a violation)."""
    try:
        data = os.read(report_fd, 4)
    except (BlockingIOError, OSError):
        return None
    if len(data) != 4:
        return None
    from .. import _engine

    nr = int.from_bytes(data, sys.byteorder, signed=True)
    return _engine.syscall_name(nr) or f"system call {nr}"


__all__ = [
    "MODES",
    "VIOLATION_PREFIX",
    "Walls",
    "data_limit_mb",
    "default_mode",
    "enter",
    "read_only_paths",
    "violation",
    "worker_environment",
]
