"""Signed heaps through the service, with real worker processes: a heap another deployment signed
is refused before any worker receives it, heaps of earlier releases keep working on a single node,
the key is generated once per data directory, and it never reaches a worker."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from falcon import testing

from mcp_v8 import _engine
from mcp_v8.app import DataDirError, Service, create_app
from mcp_v8.config import Settings
from mcp_v8.storage import FileHeapStore
from mcp_v8.storage.heap_signing import KEY_FILENAME

from .service_helpers import HOST, submit, wait

FIXTURES = Path(__file__).parent / "fixtures"
KEY = "the signing key of this test deployment"


@pytest.fixture
def services() -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in started:
        service.close()


def start(services: list[Service], data_dir: Path, **settings: object) -> tuple[Service, testing.TestClient]:
    service = Service(Settings(data_dir=data_dir, workers=1, **settings)).start()  # type: ignore[arg-type]
    services.append(service)
    return service, testing.TestClient(create_app(service=service))


def stats(client: testing.TestClient) -> dict[str, object]:
    return client.simulate_get("/api/stats", headers=HOST).json  # type: ignore[no-any-return]


def test_a_heap_copied_from_a_deployment_with_another_key_is_refused_before_restore(
    tmp_path: Path, services: list[Service]
) -> None:
    ours, client = start(services, tmp_path / "ours", heap_signing_key=(KEY,))
    theirs, their_client = start(
        services, tmp_path / "theirs", heap_signing_key=("another deployment's key",)
    )
    made = wait(their_client, submit(their_client, "var secret = 'theirs'; secret"))
    key = made["heap"]
    # Copied as someone who can write both stores would: the blob and its index row, signature and all.
    blob = theirs.heaps.get(key)
    found, signature = theirs.stores.heap_index.signature(key)
    assert found and signature is not None
    ours.heaps.put(key, blob)
    ours.stores.heap_index.add(key, size=len(blob), session=None, tags=None, signature=signature)
    restarts = stats(client)["worker_restarts"]
    resp = client.simulate_post("/api/exec", json={"code": "secret", "heap": key}, headers=HOST)
    assert resp.status_code == 400 and resp.json == {"error": f"heap {key} is not signed by this deployment"}
    assert stats(client)["heaps_refused"] == 1 and stats(client)["worker_restarts"] == restarts
    # The dispatcher checks again (what a worker receives is what it verified): a heap whose
    # signature is replaced once accepted fails without reaching the worker.
    mine = wait(client, submit(client, "var mine = 1; mine"))["heap"]
    ours.stores.heap_index.add(mine, size=1, session=None, tags=None, signature=signature)
    refused = ours.manager._run(ours.manager._slots[0], _queued(mine))  # type: ignore[attr-defined]
    assert (refused.status, refused.error) == ("failed", f"heap {mine} is not signed by this deployment")
    assert stats(client)["heaps_refused"] == 2


def _queued(heap: str) -> object:
    from mcp_v8.executions.manager import _Queued
    from mcp_v8.executions.spec import ExecutionSpec, Limits

    limits = Limits(heap_limit_mb=64, timeout_secs=10, max_result_bytes=1 << 20, max_output_bytes=1 << 20)
    return _Queued("refused-at-dispatch", ExecutionSpec(code="1", limits=limits, heap=heap))


def test_heaps_of_earlier_releases_resume_on_a_single_node_and_are_signed_then(
    tmp_path: Path, services: list[Service]
) -> None:
    """A data directory of the first release (its heap in envelope format 1), and a heap of
    format 2 stored before the reference list grew: both indexed without a signature when the
    directory is opened, trusted by the node whose directory it is, signed on their first use."""
    data = tmp_path / "data"
    shutil.copytree(FIXTURES / "datadir-v1" / "data", data)
    format2 = (FIXTURES / "heaps" / "format2-8fc0805.snap").read_bytes()
    format2_key = _engine.snapshot_key(format2)
    FileHeapStore(data).put(format2_key, format2)
    service, client = start(services, data)
    (v1_key,) = [p.parent.name + p.name for p in (data / "heaps").glob("aa/*") if p.suffix != ".json"]
    for key, code, result in ((v1_key, "counter += 1; [counter, note]", '[42,"fixture"]'),
                              (format2_key, "[bump(), p.x]", "[42,3]")):  # fmt: skip
        assert service.stores.heap_index.signature(key) == (True, None)
        done = wait(client, submit(client, code, heap=key))
        assert (done["status"], done["result"]) == ("completed", result), done
        assert service.stores.heap_index.signature(key)[1] is not None
    assert stats(client)["heaps_refused"] == 0


def test_a_single_node_generates_its_key_once_in_its_data_directory(
    tmp_path: Path, services: list[Service]
) -> None:
    data = tmp_path / "data"
    first, client = start(services, data)
    path = data / KEY_FILENAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    generated = path.read_bytes()
    key = wait(client, submit(client, "var kept = 'across restarts'; kept"))["heap"]
    services.remove(first)
    first.close()
    _, again = start(services, data)
    assert path.read_bytes() == generated
    done = wait(again, submit(again, "kept", heap=key))
    assert (done["status"], done["result"]) == ("completed", '"across restarts"')


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / KEY_FILENAME).write_text("a key that others can read\n")
    os.chmod(data / KEY_FILENAME, 0o644)
    with pytest.raises(DataDirError, match="is readable by others"):
        Service(Settings(data_dir=data, workers=1))


def test_the_signing_key_never_reaches_a_worker(
    tmp_path: Path, services: list[Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCP_V8_HEAP_SIGNING_KEY", KEY)
    key_file = tmp_path / "keys"
    key_file.write_text("# the key file's key\nthe key of the key file, second\n")
    service, client = start(
        services, tmp_path / "data", heap_signing_key=(KEY,), heap_signing_key_file=key_file
    )
    assert wait(client, submit(client, "1"))["status"] == "completed"
    pid = service.manager._slots[0]._process.pid  # type: ignore[attr-defined, union-attr]
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    for secret in (KEY, "the key of the key file", str(key_file)):
        assert secret.encode() not in environ and secret.encode() not in cmdline
    assert b"MCP_V8_HEAP_SIGNING_KEY" not in environ
