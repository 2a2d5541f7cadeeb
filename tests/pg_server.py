"""A real PostgreSQL 15 for the tests: started once per session, in a temp directory, on a free
loopback port; each test takes a fresh schema of its database (``CREATE SCHEMA`` costs about a
millisecond, a new database tens of them).

As root, ``initdb`` and the server run as the ``postgres`` user (PostgreSQL refuses root), in a
directory that user owns. The server is stopped by its pid (``pg_ctl stop -m immediate``, then
``SIGKILL``) and its directory removed at the end of the session, or at exit if the session dies.

The fixture ``postgres_url`` (loaded by ``tests/conftest.py`` through ``pytest_plugins``) skips,
with the reason, only when the PostgreSQL binaries or the driver are missing; any other failure to
start is an error.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

BIN_DIR = Path(os.environ.get("MCP_V8_PG_BIN", "/usr/lib/postgresql/15/bin"))
USER = "mcp_v8"
_START_ATTEMPTS = 3
_READY_TIMEOUT = 30.0


def missing() -> str | None:
    """Why a server cannot be started here, or None."""
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (BIN_DIR / tool).is_file():
            return f"PostgreSQL binaries not found: no {BIN_DIR / tool}"
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as e:
        return f"psycopg / psycopg-pool not installed ({e}); see requirements-dev.txt"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run PostgreSQL as"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster in a temp directory. :meth:`start`, then :attr:`url`; :meth:`stop`."""

    def __init__(self) -> None:
        self.root: Path | None = None
        self.port = 0
        self.pid: int | None = None

    @property
    def data_dir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/postgres"

    def _as_server_user(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv

    def start(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mcp-v8-pg-"))
        atexit.register(self.stop)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        subprocess.run(
            self._as_server_user(
                [str(BIN_DIR / "initdb"), "-D", str(self.data_dir), "-U", USER, "-A", "trust"]
                + ["--no-sync", "-E", "UTF8", "--locale=C"]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        last_error = ""
        for _ in range(_START_ATTEMPTS):  # a port found free may be taken before the server binds it
            self.port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
                " -c synchronous_commit=off -c full_page_writes=off -c max_connections=400"
            )
            proc = subprocess.run(
                self._as_server_user(
                    [str(BIN_DIR / "pg_ctl"), "-D", str(self.data_dir), "-w", "-t", "60"]
                    + ["-l", str(self.root / "server.log"), "-o", options, "start"]
                ),
                capture_output=True,
                text=True,
                timeout=90,
            )
            if proc.returncode == 0:
                self.pid = self._read_pid()
                self._wait_ready()
                return
            last_error = proc.stderr + proc.stdout + self._log_tail()
        raise RuntimeError(f"PostgreSQL did not start: {last_error}")

    def _log_tail(self) -> str:
        assert self.root is not None
        with contextlib.suppress(OSError):
            return (self.root / "server.log").read_text(errors="replace")[-2000:]
        return ""

    def _read_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        return None

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + _READY_TIMEOUT
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=5) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        """Stops the server (by its pid) and removes its directory. Idempotent."""
        if self.root is None:
            return
        root, self.root = self.root, None
        if self.pid is not None:
            subprocess.run(
                self._as_server_user(
                    [str(BIN_DIR / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "stop"]
                ),
                capture_output=True,
                timeout=60,
            )
            deadline = time.monotonic() + 10
            while _alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if _alive(self.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
            self.pid = None
        shutil.rmtree(root, ignore_errors=True)

    # -- per test --------------------------------------------------------------------------------

    def create_schema(self, name: str) -> str:
        """Creates the schema ``name`` (if absent) and returns it."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{name}"')
        return name

    def create_database(self, name: str) -> str:
        """Creates a fresh database and returns its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url.rsplit("/", 1)[0] + f"/{name}"


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, left for a slow reaper to collect, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def schema_for(location: object) -> str:
    """A schema name for a test's location (a path): the same location, the same schema."""
    return "t_" + hashlib.sha1(str(location).encode()).hexdigest()[:20]


_server: PostgresServer | None = None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    global _server
    reason = missing()
    if reason is not None:
        pytest.skip(reason)
    server = PostgresServer()
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    _server = server
    try:
        yield server
    finally:
        _server = None
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a PostgreSQL server for this session (its ``postgres`` database, superuser)."""
    return postgres_server.url


def running_server() -> PostgresServer:
    """The session's server, for openers that take only a location (started by the fixture)."""
    if _server is None:
        raise RuntimeError("no PostgreSQL server: request the postgres_server fixture")
    return _server
