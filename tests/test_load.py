"""Load and leaks.

500 executions from 32 concurrent clients against a real server whose queue is small
enough to overflow: 50 are cancelled at random moments, 20 time out. Every accepted id
must reach exactly one terminal status, none lost or duplicated, and the bounded queue
must answer 429 (with Retry-After) instead of growing. Then the RSS of a worker after
5,000 executions must stay near its RSS after 500."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path

import requests

from .live_server import LiveServer, children

TOTAL, CLIENTS, CANCELS, TIMEOUTS = 500, 32, 50, 20


def test_500_executions_32_clients(tmp_path: Path) -> None:
    live = LiveServer(tmp_path, "--workers", "2", "--queue-limit", "8", "--threads", "48").start()
    rng = random.Random(6)
    plan = ["cancel"] * CANCELS + ["timeout"] * TIMEOUTS + ["plain"] * (TOTAL - CANCELS - TIMEOUTS)
    rng.shuffle(plan)
    lock = threading.Lock()
    accepted: dict[str, str] = {}
    rejected = Counter[int]()
    cancel_answers = Counter[int]()
    errors: list[str] = []

    def client(jobs: list[tuple[int, str]]) -> None:
        session = requests.Session()
        local = random.Random(rng.random())
        for n, kind in jobs:
            code = {"plain": f"console.log('job {n}'); {n}", "timeout": "while (true) {}",
                    "cancel": "console.log('spin'); while (true) {}"}[kind]  # fmt: skip
            body = {"code": code, "execution_timeout_secs": 1 if kind == "timeout" else 30}
            while True:
                resp = session.post(live.url + "/api/exec", json=body, timeout=30)
                if resp.status_code in (429, 503):
                    with lock:
                        rejected[resp.status_code] += 1
                    assert resp.json()["error"]
                    time.sleep(float(resp.headers.get("Retry-After", "1")) * local.random() * 0.2)
                    continue
                if resp.status_code != 202:
                    errors.append(f"{resp.status_code} {resp.text}")
                break
            eid = resp.json()["execution_id"]
            with lock:
                assert eid not in accepted, "duplicate id"
                accepted[eid] = kind
            if kind == "cancel":
                time.sleep(local.random() * 0.3)
                answer = session.post(f"{live.url}/api/executions/{eid}/cancel", timeout=30)
                with lock:
                    cancel_answers[answer.status_code] += 1

    try:
        jobs = list(enumerate(plan))
        threads = [threading.Thread(target=client, args=(jobs[i::CLIENTS],)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        assert not errors, errors[:5]
        assert len(accepted) == TOTAL
        assert rejected[429] > 0, "the queue bound never answered 429"
        assert cancel_answers[200] == CANCELS  # they spin until cancelled, so every cancel lands

        final: dict[str, dict[str, object]] = {}
        for eid in accepted:
            for _ in range(10):
                info = requests.get(
                    f"{live.url}/api/executions/{eid}", params={"wait_ms": 10000}, timeout=30
                ).json()
                if info["status"] != "running":
                    break
            final[eid] = info
        statuses = Counter(str(info["status"]) for info in final.values())
        by_kind = {
            kind: Counter(str(final[e]["status"]) for e, k in accepted.items() if k == kind)
            for kind in set(plan)
        }
        assert by_kind["plain"] == Counter({"completed": TOTAL - CANCELS - TIMEOUTS}), by_kind
        assert by_kind["cancel"] == Counter({"cancelled": CANCELS}), by_kind
        assert by_kind["timeout"] == Counter({"timed_out": TIMEOUTS}), by_kind
        assert sum(statuses.values()) == TOTAL
        for eid, kind in accepted.items():
            if kind == "plain":
                n = final[eid]["result"]
                out = requests.get(f"{live.url}/api/executions/{eid}/output", timeout=10).json()["data"]
                assert out == f"job {n}\n"
        listed = requests.get(f"{live.url}/api/executions", params={"limit": 1000}, timeout=30).json()[
            "executions"
        ]
        ids = [e["execution_id"] for e in listed]
        assert len(ids) == len(set(ids)) == TOTAL
        assert set(ids) == set(accepted)
    finally:
        live.stop()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_worker_rss_stays_flat_over_5000_executions(tmp_path: Path) -> None:
    live = LiveServer(tmp_path, "--workers", "1", "--live-workers", "0", "--threads", "16").start()
    try:
        assert live.process is not None
        (worker,) = children(live.process.pid)
        code = "var state = (globalThis.state || 0) + 1; const o = {list: Array.from({length: 100}, (_, i) => i)};" \
               "console.log('x'); JSON.stringify(o).length"  # fmt: skip

        def batch(count: int) -> None:
            def one(n: int) -> None:
                s = requests.Session()
                for _ in range(n):
                    eid = s.post(live.url + "/api/exec", json={"code": code}, timeout=30).json()[
                        "execution_id"
                    ]
                    info = s.get(
                        f"{live.url}/api/executions/{eid}", params={"wait_ms": 30000}, timeout=60
                    ).json()
                    assert info["status"] == "completed", info

            threads = [threading.Thread(target=one, args=(count // 4,)) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        batch(500)
        at_500 = rss_kb(worker)
        batch(4500)
        at_5000 = rss_kb(worker)
        print(f"worker RSS after 500: {at_500} kB, after 5000: {at_5000} kB")
        # stated bound: at most 10 % + 16 MB of growth over 4,500 more executions
        assert at_5000 <= at_500 * 1.10 + 16 * 1024, (at_500, at_5000)
    finally:
        live.stop()
