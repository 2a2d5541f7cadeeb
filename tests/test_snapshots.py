"""Heap snapshots in checked envelopes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mcp_v8 import Engine, SnapshotError, _engine

STATE = """
var v = 1;
let l = 'let';
const c = {nested: [1, 2]};
class Counter { constructor() { this.n = 0; } inc() { return ++this.n; } }
const counter = new Counter();
const makeAdder = (k) => (x) => x + k;
const add5 = makeAdder(5);
const m = new Map([['k', 'v']]);
const s = new Set([1, 2, 3]);
const bytes = new Uint8Array([1, 2, 3]);
const re = /ab+c/gi;
const when = new Date(86400000);
let resolved = Promise.resolve(9);
function hoisted() { return 'fn'; }
'ready'
"""

READ = """
[v, l, c.nested, counter.inc(), add5(1), m.get('k'), [...s], Array.from(bytes), re.source + re.flags,
 when.getTime(), hoisted(), typeof Counter]
"""


def test_global_state_survives(engine: Engine) -> None:
    first = engine.execute(STATE, snapshot=True)
    assert first.completed, first.error
    assert first.snapshot is not None
    second = engine.execute(READ, heap=first.snapshot)
    assert json.loads(second.result or "") == [
        1, "let", [1, 2], 1, 6, "v", [1, 2, 3], [1, 2, 3], "ab+cgi", 86400000, "fn", "function"
    ]  # fmt: skip


def test_resolved_promise_survives(engine: Engine) -> None:
    first = engine.execute(STATE, snapshot=True)
    assert engine.execute("resolved", heap=first.snapshot).result == "9"


def test_chain_of_twenty_keeps_counting(engine: Engine) -> None:
    heap = engine.execute("var count = 0; count", snapshot=True).snapshot
    keys = set()
    for i in range(1, 21):
        outcome = engine.execute("count += 1", heap=heap, snapshot=True)
        assert outcome.result == str(i), outcome.error
        heap = outcome.snapshot
        keys.add(outcome.heap_key)
    assert len(keys) == 20


def test_key_is_sha256_of_payload_and_envelope_is_compressed(engine: Engine) -> None:
    outcome = engine.execute("1", snapshot=True)
    envelope = outcome.snapshot
    assert envelope is not None and outcome.heap_key is not None
    assert envelope.startswith(b"MCPV8SNP")
    assert outcome.heap_key == _engine.snapshot_key(envelope)
    n = envelope[44]  # layout documented in rust/engine/src/envelope.rs (format 2)
    assert envelope[45 : 45 + n].decode() == _engine.v8_version()
    digest, payload = envelope[53 + n : 85 + n], envelope[85 + n :]
    assert digest.hex() == outcome.heap_key
    assert hashlib.sha256(payload).hexdigest() == outcome.heap_key
    raw = outcome.snapshot_raw_bytes
    assert raw is not None
    assert len(envelope) <= 0.06 * raw, (len(envelope), raw)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b[:-1],
        lambda b: b[:40],
        lambda b: b[: len(b) // 2] + bytes([b[len(b) // 2] ^ 1]) + b[len(b) // 2 + 1 :],
        lambda b: b"XXXXXXXX" + b[8:],
        lambda b: b"",
        lambda b: b + b"extra",
    ],
    ids=["truncated-by-one", "header-only", "flipped-payload-byte", "bad-magic", "empty", "trailing-bytes"],
)
def test_corrupted_envelope_is_refused(engine: Engine, mutate: object) -> None:
    good = engine.execute("var kept = 1", snapshot=True).snapshot
    assert good is not None
    bad = mutate(good)  # type: ignore[operator]
    with pytest.raises(SnapshotError):
        engine.execute("kept", heap=bad)
    with pytest.raises(ValueError):
        _engine.snapshot_key(bad)
    assert engine.execute("kept", heap=good).result == "1"


def test_failed_execution_produces_no_snapshot_and_leaves_the_old_one_usable(engine: Engine) -> None:
    heap = engine.execute("var n = 1", snapshot=True).snapshot
    failed = engine.execute("n = 100; throw new Error('stop')", heap=heap, snapshot=True)
    assert failed.failed and failed.snapshot is None and failed.heap_key is None
    timed_out = engine.execute("n = 200; while (true) {}", heap=heap, snapshot=True, timeout=0.1)
    assert timed_out.timed_out and timed_out.snapshot is None
    assert engine.execute("n", heap=heap).result == "1"


def test_heap_without_snapshot_restores_but_returns_none(engine: Engine) -> None:
    heap = engine.execute("var n = 5", snapshot=True).snapshot
    outcome = engine.execute("n * 2", heap=heap)
    assert outcome.result == "10"
    assert outcome.snapshot is None


def test_webassembly_only_in_plain_runs(engine: Engine) -> None:
    assert engine.execute("typeof WebAssembly").result == '"object"'
    assert engine.execute("typeof WebAssembly", snapshot=True).result == '"undefined"'
    heap = engine.execute("var a = 1", snapshot=True).snapshot
    assert engine.execute("typeof WebAssembly", heap=heap).result == '"object"'


def test_pending_timers_do_not_survive(engine: Engine) -> None:
    first = engine.execute("var fired = 0; setTimeout(() => { fired++; }, 1); 'x'", snapshot=True)
    assert first.completed
    # the timer ran before the snapshot was taken; none is carried into the next run
    assert engine.execute("fired", heap=first.snapshot).result == "1"


def test_console_and_timers_work_after_restore(engine: Engine) -> None:
    heap = engine.execute("var a = {x: 1}", snapshot=True).snapshot
    outcome = engine.execute(
        "console.log('restored', a.x); new Promise(r => setTimeout(() => r(a.x + 1), 5))", heap=heap
    )
    assert outcome.result == "2"
    assert outcome.console == [("log", "restored 1")]


def test_envelopes_of_the_previous_format_keep_restoring(engine: Engine) -> None:
    # A heap the previous release stored (envelope format 1), resumed by this one.
    fixture = Path(__file__).parent / "fixtures" / "datadir-v1" / "data" / "heaps"
    (old,) = [p for p in fixture.glob("*/*") if not p.name.endswith(".json")]
    envelope = old.read_bytes()
    assert int.from_bytes(envelope[8:10], "little") == 1
    outcome = engine.execute("counter += 1; [counter, note]", heap=envelope, snapshot=True)
    assert outcome.result == '[42,"fixture"]'
    # What this engine stores is the current format, against the shipped dictionary.
    assert outcome.snapshot is not None
    assert int.from_bytes(outcome.snapshot[8:10], "little") == _engine.SNAPSHOT_FORMAT_VERSION == 2
    assert outcome.snapshot_raw_bytes is not None
    assert len(outcome.snapshot) <= 0.06 * outcome.snapshot_raw_bytes


def test_heaps_stored_before_the_reference_list_grew_keep_restoring(engine: Engine) -> None:
    # Stored by the engine as of commit 8fc0805, whose host functions were the first seven of
    # cpp/external_refs.inc; the list has grown since (exposed functions of live contexts).
    envelope = (Path(__file__).parent / "fixtures" / "heaps" / "format2-8fc0805.snap").read_bytes()
    outcome = engine.execute(
        "[bump(), p.x, p instanceof Point, typeof setTimeout]", heap=envelope, snapshot=True
    )
    assert outcome.result == '[42,3,true,"function"]'
    assert outcome.snapshot is not None
    assert engine.execute("counter", heap=outcome.snapshot).result == "42"
