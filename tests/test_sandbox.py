"""The walls around worker processes (executions/sandbox.py, the engine's src/sandbox/).

Every probe of ``mcp-v8 sandbox-check`` holds in the default mode, one test per wall, and the
same probes with the sandbox off show that each can fail. A default server's workers run
under seccomp with no_new_privs and see none of the server's secrets; a forbidden system call
fails its execution with ``sandbox violation: <name>`` and is counted in the stats."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from mcp_v8 import _engine
from mcp_v8.config import default_sandbox
from mcp_v8.executions import ExecutionManager
from mcp_v8.executions.pool import spawn_worker_process
from mcp_v8.executions.probes import BY_NAME, PROBES, run_one
from mcp_v8.executions.sandbox import worker_environment
from mcp_v8.executions.spec import ExecutionSpec, Limits
from mcp_v8.storage import (
    Catalogue,
    FileHeapStore,
    HeapSigner,
    LocalHeaps,
    SQLiteExecutionStore,
    SQLiteHeapIndex,
    SQLiteHeapTags,
    SQLiteOutputLog,
    open_database,
)

from .live_server import LiveServer, children
from .violating_worker import VIOLATE

ROOT = Path(__file__).resolve().parent.parent
SECRETS = {
    "MCP_V8_API_TOKEN": "token-f00dfeedc0ffee",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-8c1d2e3f4a5b",
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEY12345",
    "APP_DATABASE_PASSWORD": "pg-password-77aa88bb",
}


def test_the_default_mode_on_linux_is_require() -> None:
    assert default_sandbox() == "require"


@pytest.mark.parametrize("name", [p.name for p in PROBES])
def test_the_wall_holds_in_the_default_mode(name: str, tmp_path: Path) -> None:
    result = run_one(BY_NAME[name], default_sandbox(), tmp_path)
    assert result.held, result.detail


@pytest.mark.parametrize("name", [p.name for p in PROBES])
def test_the_probe_fails_with_the_sandbox_off(name: str, tmp_path: Path) -> None:
    # Without the walls each probe reaches what it tries: the probes can tell a held wall
    # from a missing one. (An unprivileged user holds no capability to start with.)
    result = run_one(BY_NAME[name], "off", tmp_path)
    expected_held = name == "capabilities" and os.geteuid() != 0
    assert result.held is expected_held, result.detail


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    return subprocess.run(
        [sys.executable, "-m", "mcp_v8", "sandbox-check", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def test_sandbox_check_exits_0_with_every_wall_held_and_1_with_the_sandbox_off() -> None:
    held = _cli()
    assert held.returncode == 0, held.stdout + held.stderr
    assert f"{len(PROBES)} of {len(PROBES)} walls held" in held.stdout
    assert "NOT HELD" not in held.stdout
    off = _cli("--sandbox", "off")
    assert off.returncode == 1
    assert f"0 of {len(PROBES)} walls held" in off.stdout or os.geteuid() != 0


def test_a_worker_keeps_only_the_allowed_environment() -> None:
    env = worker_environment({**SECRETS, "PYTHONPATH": "/p", "LANG": "C.UTF-8", "LC_ALL": "C", "TZ": "UTC"})
    assert env == {"PYTHONPATH": "/p", "LANG": "C.UTF-8", "LC_ALL": "C", "TZ": "UTC"}


def _status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


@pytest.fixture
def secret_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    live = LiveServer(tmp_path / "data", "--workers", "2").start()
    try:
        yield live
    finally:
        live.stop()


def test_every_worker_of_a_default_server_is_sandboxed_and_sees_no_secret(secret_server: LiveServer) -> None:
    assert secret_server.process is not None
    headers = {"Authorization": f"Bearer {SECRETS['MCP_V8_API_TOKEN']}"}
    # A live worker starts with its first session: one session, one live worker.
    live = requests.post(
        secret_server.url + "/api/exec",
        json={"code": "6 * 7", "session": "s", "live": True, "wait_ms": 30000},
        headers=headers,
        timeout=60,
    ).json()
    assert (live["status"], live["result"]) == ("completed", "42"), live
    workers = children(secret_server.process.pid)
    assert len(workers) == 2 + 1, workers  # --workers 2, and the live worker
    for pid in workers:
        status = _status(pid)
        assert status["Seccomp"].strip() == "2"
        assert status["NoNewPrivs"].strip() == "1"
        assert status["CapEff"].strip() == "0" * 16
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        for name, value in SECRETS.items():
            assert value.encode() not in environ, name
            assert value.encode() not in cmdline, name
            assert name.encode() not in environ, name
    stats = requests.get(secret_server.url + "/api/stats", headers=headers, timeout=10).json()
    sandbox = stats["sandbox"]
    assert sandbox["mode"] == "require"
    assert sandbox["walls"]["seccomp"] and sandbox["walls"]["capabilities"]
    assert sandbox["walls"]["landlock_abi"] > 0
    assert sandbox["walls"]["missing"] == []
    assert sandbox["violations"] == 0
    run = requests.post(
        secret_server.url + "/api/exec", json={"code": "6 * 7"}, headers=headers, timeout=10
    ).json()
    deadline = time.monotonic() + 60
    while True:
        info = requests.get(
            f"{secret_server.url}/api/executions/{run['execution_id']}", headers=headers, timeout=10
        ).json()
        if info["status"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert info["status"] == "completed" and info["result"] == "42"


class _Manager:
    """An execution manager on real stores whose workers are ``tests/violating_worker.py``."""

    def __init__(self, tmp_path: Path) -> None:
        self.database = open_database(tmp_path)
        self.executions = SQLiteExecutionStore(self.database)
        self.output = SQLiteOutputLog(self.database, max_output_bytes=1 << 20)
        heaps = FileHeapStore(tmp_path, durable=False)
        catalogue = Catalogue(
            SQLiteHeapIndex(self.database),
            SQLiteHeapTags(self.database),
            LocalHeaps(heaps),
            HeapSigner([b"the key of this test service"], trust_unsigned=False),
        )
        self.manager = ExecutionManager(
            executions=self.executions,
            output=self.output,
            catalogue=catalogue,
            data_dir=tmp_path,
            workers=1,
            queue_limit=4,
            spawn_worker=functools.partial(spawn_worker_process, module="tests.violating_worker"),
        )
        self.manager.start()

    def run(self, code: str) -> Any:
        limits = Limits(heap_limit_mb=64, timeout_secs=30, max_result_bytes=1 << 20, max_output_bytes=1 << 20)
        execution_id = self.manager.submit(ExecutionSpec(code=code, limits=limits, snapshot=False))
        self.manager.wait(execution_id, 120)
        return self.executions.get(execution_id)

    def close(self) -> None:
        self.manager.close()
        self.output.close()
        self.executions.close()
        self.database.close()


def test_a_forbidden_call_fails_the_execution_as_a_sandbox_violation_and_is_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(ROOT / "python")]))
    service = _Manager(tmp_path)
    try:
        record = service.run(VIOLATE)
        assert record.status == "failed"
        assert record.error == "sandbox violation: socket"
        stats = service.manager.stats()["sandbox"]
        assert stats["violations"] == 1
        assert stats["last_violation"]["syscall"] == "socket"
        assert stats["last_violation"]["execution_id"] == record.execution_id
        after = service.run("1 + 1")  # a new worker takes the next execution
        assert (after.status, after.result) == ("completed", "2")
    finally:
        service.close()


def test_syscall_numbers_are_named_for_both_architectures() -> None:
    assert _engine.syscall_name(41, "x86_64") == "socket"
    assert _engine.syscall_name(198, "aarch64") == "socket"
    assert _engine.syscall_name(59, "x86_64") == "execve"
    assert _engine.syscall_name(221, "aarch64") == "execve"
    assert _engine.syscall_name(100000) is None


def test_the_allow_list_has_no_process_network_or_privilege_call() -> None:
    allowed = set(_engine.sandbox_syscalls())
    forbidden = {"socket", "connect", "execve", "execveat", "fork", "vfork", "ptrace", "mount", "bpf"}
    forbidden |= {"setrlimit", "unshare", "setns", "kill", "process_vm_readv", "seccomp"}
    # Heaps come and go as descriptors: nothing in a directory is made, renamed or removed.
    forbidden |= {"mkdir", "mkdirat", "linkat", "renameat", "renameat2", "unlinkat", "fsync"}
    assert not allowed & forbidden
    assert "memfd_create" in allowed  # the heap a job produces goes back in a memfd
    assert {"clone", "prlimit64"} <= allowed  # with argument conditions (threads; reading a limit)


def test_entering_the_sandbox_after_a_thread_started_is_refused(tmp_path: Path) -> None:
    code = (
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(5,), daemon=True).start()\n"
        "from mcp_v8.executions import sandbox\n"
        "try:\n"
        "    sandbox.enter('require', [], -1, 0)\n"
        "except RuntimeError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT / "python")},
    )
    assert "before any thread starts: this process has 2 threads" in out.stdout, out.stdout + out.stderr


def test_the_workers_of_mcp_over_stdio_are_sandboxed_the_same(tmp_path: Path) -> None:
    # `mcp-v8 mcp` starts the same service, so the same pool and walls.
    env = {**os.environ, **SECRETS, "PYTHONPATH": str(ROOT / "python")}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mcp_v8",
            "mcp",
            "--data-dir",
            str(tmp_path),
            "--workers",
            "1",
            "--live-workers",
            "0",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 90
        statuses: list[dict[str, str]] = []
        while time.monotonic() < deadline:
            statuses = []
            for pid in children(server.pid):
                with contextlib.suppress(OSError):  # a worker that just ended
                    statuses.append(_status(pid))
            if len(statuses) == 1 and all(s["Seccomp"].strip() == "2" for s in statuses):
                break
            time.sleep(0.1)
        assert len(statuses) == 1, statuses  # the one worker (live workers start with a session)
        for status in statuses:
            assert status["Seccomp"].strip() == "2" and status["NoNewPrivs"].strip() == "1"
        for pid in children(server.pid):
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            assert not any(value.encode() in environ for value in SECRETS.values())
    finally:
        assert server.stdin is not None
        server.stdin.close()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# A kernel without Landlock, as far as the process can tell: a seccomp filter (inherited across
# execve) answers landlock_create_ruleset (444 on every architecture) with ENOSYS, then the
# command runs.
WITHOUT_LANDLOCK = """
import ctypes, os, struct, sys
program = b"".join(struct.pack("HBBI", *i) for i in (
    (0x20, 0, 0, 0),                      # load the call's number
    (0x15, 0, 1, 444),                    # landlock_create_ruleset?
    (0x06, 0, 0, 0x00050000 | 38),        # ERRNO(ENOSYS)
    (0x06, 0, 0, 0x7FFF0000),             # ALLOW
))
code = ctypes.create_string_buffer(program)
class Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.byref(Prog(4, ctypes.addressof(code))), 0, 0) == 0  # SECCOMP_MODE_FILTER
os.execv(sys.executable, [sys.executable, "-m", "mcp_v8", *sys.argv[1:]])
"""


def _without_landlock(*args: str) -> list[str]:
    return [sys.executable, "-c", WITHOUT_LANDLOCK, *args]


def test_require_refuses_to_start_without_landlock_and_names_it(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    check = subprocess.run(
        _without_landlock("sandbox-check"), capture_output=True, text=True, env=env, timeout=600
    )
    assert check.returncode == 1
    assert "sandbox required but not available: landlock filesystem rules" in check.stdout
    serve = subprocess.run(
        _without_landlock("serve", "--port", "1", "--data-dir", str(tmp_path), "--workers", "1"),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert serve.returncode == 2, serve.stderr
    assert "sandbox required but not available: landlock filesystem rules" in serve.stderr


def test_auto_runs_with_what_the_kernel_allows_and_says_what_is_missing(tmp_path: Path) -> None:
    from .live_server import free_port

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            _without_landlock("serve", "--port", str(port), "--data-dir", str(tmp_path / "d"), "--workers", "1",
                              "--sandbox", "auto"),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, log.read_text()
            try:
                stats = requests.get(url + "/api/stats", timeout=1).json()
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        walls = stats["sandbox"]["walls"]
        assert stats["sandbox"]["mode"] == "auto"
        assert walls["landlock_abi"] == 0 and walls["seccomp"] and walls["capabilities"]
        assert any("landlock" in m for m in walls["missing"]), walls
        assert "missing landlock" in log.read_text()  # logged at start
        worker = children(server.pid)[0]
        assert _status(worker)["Seccomp"].strip() == "2"
    finally:
        server.terminate()
        server.wait(30)


def test_python_opens_a_file_inside_the_sandbox_and_fcntl_is_limited_to_descriptor_flags() -> None:
    # CPython's traceback printer duplicates the source file's descriptor (F_DUPFD_CLOEXEC): a
    # worker printing a traceback must not die of that. Other fcntl commands trap.
    code = (
        "import fcntl, os, signal, sys\n"
        "from mcp_v8.executions import sandbox\n"
        "sandbox.enter('require', [], -1, 0)\n"
        "with open(sandbox.__file__, 'rb') as f:\n"
        "    print('read', len(f.read(10)), flush=True)\n"
        "fd = os.open('/dev/null', os.O_RDONLY)\n"
        "print('flags', fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC, flush=True)\n"
        "print('dup', fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 0) > fd, flush=True)\n"
        "fcntl.fcntl(fd, fcntl.F_SETFL, os.O_NONBLOCK)\n"
        "print('not reached', flush=True)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT / "python")},
    )
    assert out.stdout.splitlines() == ["read 10", "flags 1", "dup True"], out.stdout + out.stderr
    assert out.returncode == 128 + signal.SIGSYS, out.returncode  # the SIGSYS handler exits so
