"""The service with a call counter on ``SQLiteExecutionStore.get`` (the record read behind every status check),
served in this process on 127.0.0.1 and driven by benches/loadgen.py at several concurrencies: how
many record reads one execution costs as the number of waiting long-polls grows.

Run by the harness as its own process; prints one JSON object.
usage: python benches/counted_server.py [--concurrency 1,4,16,64] [--seconds 5] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from server import free_port, run_loadgen
from waitress.server import create_server

from mcp_v8.app import Service, create_app
from mcp_v8.config import Settings
from mcp_v8.storage import SQLiteExecutionStore


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concurrency", default="1,4,16,64")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    levels = [int(x) for x in args.concurrency.split(",")]

    calls = {"get": 0}
    lock = threading.Lock()
    original = SQLiteExecutionStore.get

    def counted(self: SQLiteExecutionStore, execution_id: str) -> Any:
        with lock:
            calls["get"] += 1
        return original(self, execution_id)

    SQLiteExecutionStore.get = counted  # type: ignore[method-assign]

    port = free_port()
    threads = 2 * max(levels) + 32  # enough for every long-poll: count reads, not thread waits
    data_dir = Path(tempfile.mkdtemp(prefix="mcp-v8-bench-counted-"))
    settings = Settings(
        host="127.0.0.1", port=port, data_dir=data_dir, workers=args.workers, queue_limit=4 * max(levels)
    )
    service = Service(settings).start()
    server = create_server(create_app(service=service), host="127.0.0.1", port=port, threads=threads)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    rows = []
    try:
        url = f"http://127.0.0.1:{port}"
        run_loadgen(url, timeout=60, concurrency=args.workers, seconds=1.0)  # warm-up
        for c in levels:
            with lock:
                calls["get"] = 0
            result = run_loadgen(url, timeout=args.seconds + 120, concurrency=c, seconds=args.seconds)
            with lock:
                gets = calls["get"]
            finished = max(1, result["finished"])
            rows.append(
                {
                    "concurrency": c,
                    "throughput_per_s": result["throughput_per_s"],
                    "errors": result["errors"],
                    "record_gets_per_execution": gets / finished,
                    "http_requests_per_execution": result["http_requests"] / finished,
                }
            )
    finally:
        server.close()
        service.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    json.dump({"http_threads": threads, "workers": args.workers, "rows": rows}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
