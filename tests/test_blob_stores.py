"""Remote heap blob stores against real servers: one contract for PostgreSQL (``bytea``), S3
(SeaweedFS) and the node-local cache over each; then failures (server down or hung), and the cache's
own behaviour (verification, refetch, eviction)."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mcp_v8.storage.blobs import BlobStore, BlobStoreUnavailable
from mcp_v8.storage.heaps import HeapNotFound, InvalidHeapKey

from .pg_server import PostgresServer, schema_for
from .s3_server import S3Server

BACKENDS = ["postgres", "s3"]


def blob(size: int = 1000) -> tuple[str, bytes]:
    data = os.urandom(size)
    return hashlib.sha256(data).hexdigest(), data


def make_s3(server: S3Server, **kwargs: object) -> BlobStore:
    from mcp_v8.storage.blobs_s3 import S3BlobStore

    return S3BlobStore(
        f"s3://{server.bucket}/t-{uuid.uuid4().hex}",
        endpoint_url=server.endpoint,
        access_key_id=server.access_key,
        secret_access_key=server.secret_key,
        **kwargs,  # type: ignore[arg-type]
    )


def make_postgres(server: PostgresServer, location: str) -> BlobStore:
    from mcp_v8.storage.blobs_postgres import PostgresBlobStore

    return PostgresBlobStore(server.url, schema=server.create_schema(schema_for(location)), max_size=16)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    kind: str = request.param
    remote: BlobStore
    if kind.endswith("postgres"):
        remote = make_postgres(request.getfixturevalue("postgres_server"), request.node.nodeid)
    else:
        remote = make_s3(request.getfixturevalue("s3_server"))
    s = remote
    try:
        yield s
    finally:
        s.close()


# -- the contract ------------------------------------------------------------------------------------


def test_is_a_blob_store(store: BlobStore) -> None:
    assert isinstance(store, BlobStore)


def test_put_get_roundtrip(store: BlobStore) -> None:
    key, data = blob()
    assert store.put(key, data) is True
    assert store.get(key) == data
    assert isinstance(store.get(key), bytes)
    empty = hashlib.sha256(b"").hexdigest()
    assert store.put(empty, b"") is True
    assert store.get(empty) == b""


def test_put_is_create_only(store: BlobStore) -> None:
    key, data = blob()
    assert store.put(key, data) is True
    assert store.put(key, data) is False
    assert store.put(key, b"other bytes") is False  # never overwritten, whatever is sent
    assert store.get(key) == data


def test_created_before_lists_what_retention_may_remove(store: BlobStore) -> None:
    keys = set()
    for _ in range(3):
        key, data = blob()
        store.put(key, data)
        keys.add(key)
    now = datetime.now(timezone.utc)
    assert set(store.created_before(now + timedelta(minutes=5))) == keys  # this store's prefix/schema only
    assert store.created_before(now - timedelta(hours=1)) == []
    gone = keys.pop()
    store.delete(gone)
    assert set(store.created_before(now + timedelta(minutes=5))) == keys


def test_exists_and_delete(store: BlobStore) -> None:
    key, data = blob()
    assert store.exists(key) is False
    store.put(key, data)
    assert store.exists(key) is True
    assert store.delete(key) is True
    assert store.exists(key) is False
    assert store.delete(key) is False
    with pytest.raises(HeapNotFound):
        store.get(key)
    assert store.put(key, data) is True  # a deleted key can be created again
    assert store.get(key) == data


def test_get_missing_raises_heap_not_found(store: BlobStore) -> None:
    key, _ = blob()
    with pytest.raises(HeapNotFound):
        store.get(key)
    with pytest.raises(KeyError):  # HeapNotFound is a KeyError, as for the file store
        store.get(key)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "a" * 63,
        "a" * 65,
        "A" * 64,
        "g" * 64,
        "../" + "a" * 61,
        "a" * 63 + "\n",
        "a" * 32 + "\0" + "a" * 31,
        42,
        None,
    ],
)
def test_invalid_keys_are_refused(store: BlobStore, bad: object) -> None:
    for call in (
        lambda: store.put(bad, b"x"),  # type: ignore[arg-type]
        lambda: store.get(bad),  # type: ignore[arg-type]
        lambda: store.exists(bad),  # type: ignore[arg-type]
        lambda: store.delete(bad),  # type: ignore[arg-type]
    ):
        with pytest.raises(InvalidHeapKey):
            call()


def test_large_blob(store: BlobStore) -> None:
    key, data = blob(5 * 1024 * 1024 + 17)
    assert store.put(key, data) is True
    assert store.get(key) == data
    assert store.put(key, data) is False


def _race_puts(store: BlobStore, key: str, data: bytes, n: int) -> list[bool]:
    results: list[bool] = []
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def put() -> None:
        start.wait()
        try:
            results.append(store.put(key, data))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=put) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    return results


def test_concurrent_puts_of_one_key_create_it_once(store: BlobStore) -> None:
    for size in (10, 200_000):
        key, data = blob(size)
        assert sorted(_race_puts(store, key, data, 8)) == [False] * 7 + [True]
        assert store.get(key) == data


def test_concurrent_puts_of_different_keys(store: BlobStore) -> None:
    blobs = [blob(5000) for _ in range(24)]
    results: list[bool] = []
    lock = threading.Lock()

    def put(chunk: list[tuple[str, bytes]]) -> None:
        for key, data in chunk:
            r = store.put(key, data)
            with lock:
                results.append(r)

    threads = [threading.Thread(target=put, args=(blobs[i::6],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [True] * len(blobs)
    for key, data in blobs:
        assert store.get(key) == data


# -- failures ----------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_s3_server_down_raises_unavailable_quickly() -> None:
    pytest.importorskip("obstore")
    from mcp_v8.storage.blobs_s3 import S3BlobStore

    store = S3BlobStore(
        "s3://heaps/x",
        endpoint_url=f"http://127.0.0.1:{_closed_port()}",
        access_key_id="k",
        secret_access_key="s",
        timeout=2,
        connect_timeout=1,
        max_retries=1,
        retry_timeout=3,
    )
    key, data = blob()
    for call in (
        lambda: store.put(key, data),
        lambda: store.get(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
    ):
        t = time.monotonic()
        with pytest.raises(BlobStoreUnavailable, match="S3 .* failed"):
            call()
        assert time.monotonic() - t < 8


def test_s3_server_that_never_answers_raises_unavailable_within_the_timeouts() -> None:
    pytest.importorskip("obstore")
    from mcp_v8.storage.blobs_s3 import S3BlobStore

    with socket.socket() as listener:  # accepts connections (backlog), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        store = S3BlobStore(
            "s3://heaps/x",
            endpoint_url=f"http://127.0.0.1:{listener.getsockname()[1]}",
            access_key_id="k",
            secret_access_key="s",
            timeout=1,
            connect_timeout=1,
            max_retries=1,
            retry_timeout=2,
        )
        key, data = blob()
        for call in (lambda: store.put(key, data), lambda: store.get(key)):
            t = time.monotonic()
            with pytest.raises(BlobStoreUnavailable):
                call()
            assert time.monotonic() - t < 10


def test_s3_wrong_credentials_raise_unavailable(s3_server: S3Server) -> None:
    from mcp_v8.storage.blobs_s3 import S3BlobStore

    store = S3BlobStore(
        f"s3://{s3_server.bucket}/x",
        endpoint_url=s3_server.endpoint,
        access_key_id="nobody",
        secret_access_key="wrong",
    )
    key, data = blob()
    with pytest.raises(BlobStoreUnavailable):
        store.put(key, data)
    with pytest.raises(BlobStoreUnavailable):
        store.get(key)


def test_s3_url_is_parsed() -> None:
    pytest.importorskip("obstore")
    from mcp_v8.storage.blobs_s3 import parse_s3_url

    assert parse_s3_url("s3://bucket") == ("bucket", "")
    assert parse_s3_url("s3://bucket/a/b/") == ("bucket", "a/b")
    for bad in ("http://bucket/x", "s3:///x", "s3://b/x?y=1", "bucket/x"):
        with pytest.raises(ValueError):
            parse_s3_url(bad)


def test_s3_credentials_from_the_environment(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    from mcp_v8.storage.blobs_s3 import S3BlobStore

    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    store = S3BlobStore(f"s3://{s3_server.bucket}/env-{uuid.uuid4().hex}")
    key, data = blob()
    assert store.put(key, data) is True
    assert store.get(key) == data


def test_postgres_down_raises_unavailable_quickly() -> None:
    pytest.importorskip("psycopg_pool")
    from mcp_v8.storage.blobs_postgres import PostgresBlobStore

    t = time.monotonic()
    with pytest.raises(BlobStoreUnavailable, match="PostgreSQL"):
        PostgresBlobStore(f"postgresql://u@127.0.0.1:{_closed_port()}/db", timeout=2, connect_timeout=1)
    assert time.monotonic() - t < 8


def test_postgres_stores_size_and_reopens(
    postgres_server: PostgresServer, request: pytest.FixtureRequest
) -> None:
    import psycopg

    from mcp_v8.storage.blobs_postgres import PostgresBlobStore

    schema = postgres_server.create_schema(schema_for(request.node.nodeid))
    first = PostgresBlobStore(postgres_server.url, schema=schema)
    key, data = blob(1234)
    first.put(key, data)
    first.close()
    again = PostgresBlobStore(postgres_server.url, schema=schema)  # the table exists: kept as is
    try:
        assert again.get(key) == data
    finally:
        again.close()
    with psycopg.connect(postgres_server.url, options=f"-c search_path={schema}") as conn:
        row = conn.execute(
            "SELECT size, created_at IS NOT NULL FROM heap_blobs WHERE key = %s", (key,)
        ).fetchone()
    assert row == (1234, True)
