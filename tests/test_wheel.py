"""The wheel is self-contained. Built by scripts/build-wheel.sh, installed
with pip into a fresh venv, and run where no libnode is visible (the repository's
libnode prefix is hidden by a bind mount in a private mount namespace)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import requests

from .live_server import free_port

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = [ROOT / ".deps" / "libnode"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-wheel.sh"), str(out)],
        check=True,
        capture_output=True,
        timeout=1200,
    )
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1 and list(out.glob("*.tar.gz"))
    return wheels[0]


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    env_dir = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=300)
    subprocess.run([str(env_dir / "bin" / "pip"), "install", "-q", str(wheel)], check=True, timeout=600)
    return env_dir


def hidden(*command: str) -> list[str]:
    """``command`` in a mount namespace where the libnode prefix is an empty directory."""
    empty = Path(os.environ.get("TMPDIR", "/tmp")) / "mcp-v8-empty"
    empty.mkdir(exist_ok=True)
    mounts = " && ".join(f"mount --bind {empty} {p}" for p in HIDDEN if p.exists())
    script = (mounts + " && " if mounts else "") + 'exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *command]


def clean_env() -> dict[str, str]:
    return {
        k: v for k, v in os.environ.items() if not k.startswith(("MCP_V8_", "LD_", "PYTHON", "VIRTUAL_ENV"))
    }


def test_wheel_tag_and_contents(wheel: Path) -> None:
    assert wheel.name.startswith("mcp_v8-0.1.0-cp39-abi3-manylinux_")
    names = zipfile.ZipFile(wheel).namelist()
    assert "mcp_v8/_engine.abi3.so" in names
    assert any(n.startswith("mcp_v8.libs/libnode") for n in names)
    assert any(n.startswith("mcp_v8/cli_bin/mcp-v8-cli-") for n in names)


def test_hiding_works() -> None:
    assert shutil.which("unshare"), "util-linux unshare is needed to hide the libnode prefix"
    probe = subprocess.run(hidden("ls", str(HIDDEN[0])), capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout == ""  # the prefix is empty inside the namespace
    # and the development build, which links libnode from there, cannot load
    dev = subprocess.run(
        hidden(sys.executable, "-c", "import mcp_v8._engine"), capture_output=True, text=True, timeout=60
    )
    assert dev.returncode != 0 and "libnode.so.108" in dev.stderr


def test_engine_runs_from_the_wheel_without_libnode(venv: Path) -> None:
    code = "from mcp_v8 import Engine; import mcp_v8; print(mcp_v8.__file__); print(Engine().execute('[1,2].map(x => x*2)').result)"
    proc = subprocess.run(
        hidden(str(venv / "bin" / "python"), "-c", code),
        capture_output=True, text=True, timeout=120, env=clean_env(), cwd="/",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    location, result = proc.stdout.splitlines()
    assert location.startswith(str(venv))
    assert result == "[2,4]"


def test_serve_from_the_wheel_without_libnode(venv: Path, tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        hidden(str(venv / "bin" / "mcp-v8"), "serve", "--port", str(port), "--data-dir", str(tmp_path), "--workers", "1"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=clean_env(), cwd="/",
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                requests.get(url + "/api/version", timeout=1)
                break
            except requests.ConnectionError:
                assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
                assert time.monotonic() < deadline
                time.sleep(0.2)
        eid = requests.post(
            url + "/api/exec", json={"code": "console.log('wheel'); 6 * 7"}, timeout=10
        ).json()["execution_id"]
        info = requests.get(f"{url}/api/executions/{eid}", params={"wait_ms": 20000}, timeout=30).json()
        assert info["status"] == "completed" and json.loads(info["result"]) == 42
        cli = requests.get(f"{url}/api/cli", timeout=10).json()
        assert any(a["available"] for a in cli["assets"])
    finally:
        server.terminate()
        server.wait(30)
