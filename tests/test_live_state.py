"""The live sessions' state machine (executions/live.py) against fakes, without V8 or processes:
submission order while records are written, the 409 of a heap for a session already queued or
live (also while its first step is still being recorded), a cancel in a session's queue, the
sessions a dead worker took with it, and eviction of the least recently used idle session."""

from __future__ import annotations

import dataclasses
import threading
import types
from collections.abc import Iterator
from typing import Any, Callable

import pytest

from mcp_v8.executions import ExecutionSpec, Limits
from mcp_v8.executions.live import LiveConflict, LiveSessions, NotLive
from mcp_v8.executions.live_slot import LiveSessionError
from mcp_v8.executions.protocol import Job, JobResult
from mcp_v8.principal import DEFAULT_TENANT
from mcp_v8.storage import HeapNotFound, Page
from mcp_v8.storage.live_holds import Holder

from .interleavings import HANG

LIMITS = Limits(heap_limit_mb=64, timeout_secs=5, max_result_bytes=1 << 20, max_output_bytes=1 << 20)


def spec(
    session: str,
    code: str = "1",
    heap: str | None = None,
    snapshot: bool = False,
    tenant: str = DEFAULT_TENANT,
) -> ExecutionSpec:
    return ExecutionSpec(
        code=code, limits=LIMITS, session=session, heap=heap, snapshot=snapshot, tenant=tenant
    )


class Labels:
    def labels(self, *args: Any) -> Labels:
        return self

    def observe(self, value: float) -> None:
        pass


class FakeHost:
    """The manager's side: records what ends how; ``record_gate`` (when set) holds a submit's
    record until the test releases it."""

    def __init__(self) -> None:
        self.finished: dict[str, JobResult] = {}
        self.done = threading.Condition()
        self.record_gate: dict[str, threading.Event] = {}
        self.recorded: list[str] = []
        self.heaps: dict[str, bytes] = {}
        self.owners: dict[str, set[str]] = {}  # heap -> the tenants it was recorded for
        self.log: list[tuple[str, str, str]] = []  # (tenant, session, heap) of recorded snapshots
        self.used: list[tuple[str, str]] = []  # (tenant, heap) of the heaps steps resumed
        self.disowned: set[tuple[str, str]] = set()  # (tenant, heap) the tenant no longer owns
        self.entries: list[tuple[str, Any]] = []  # (session, record) the test puts in the log
        self.specs: dict[str, ExecutionSpec | None] = {}  # the spec each end was recorded with
        self._catalogue = self
        self._executions = self
        self._output = type(
            "Output",
            (),
            {
                "create": lambda self, eid: None,
                "seal": lambda self, eid: None,
                "adopt": lambda self, eid: None,
            },
        )()
        self._owner = None
        self.waiters = self
        self.metrics = type("M", (), {"run_time": Labels()})()
        self._live: set[str] = set()

    # the catalogue
    def use(self, key: str, *, tenant: str = DEFAULT_TENANT) -> None:
        self.used.append((tenant, key))
        if (tenant, key) in self.disowned:
            raise HeapNotFound(key)

    def fetch(self, key: str) -> None: ...
    def open(self, key: str) -> bytes:
        return self.heaps[key]

    def add(
        self,
        key: str,
        envelope: bytes,
        session: str | None = None,
        tags: Any = None,
        tenant: str = DEFAULT_TENANT,
    ) -> None:
        self.heaps[key] = envelope
        self.owners.setdefault(key, set()).add(tenant)

    # the execution store and output log (snapshot records)
    def create(self, execution_id: str, **fields: Any) -> None:
        self._snap = (fields.get("tenant", DEFAULT_TENANT), fields["session"], fields["tags"])

    def finish(self, execution_id: str, status: str, **fields: Any) -> None:
        if fields.get("heap_out"):
            self.log.append((self._snap[0], self._snap[1], fields["heap_out"]))

    def session_log(
        self, session: str, limit: int, cursor: str | None = None, tenant: str | None = None
    ) -> Page[Any] | None:
        heaps = [
            types.SimpleNamespace(heap=heap, waiting_heap=None, status="completed", execution_id=str(i))
            for i, (of, name, heap) in enumerate(self.log)
            if name == session and tenant in (None, of)
        ] + [record for name, record in self.entries if name == session]
        return Page(heaps, None) if heaps else None

    # the waiters
    def accept(self, execution_id: str, tenant: str | None = None) -> None:
        self._live.add(execution_id)

    def forget(self, execution_id: str) -> None:
        self._live.discard(execution_id)

    def is_live(self, execution_id: str) -> bool:
        return execution_id in self._live

    # recording
    def _record(self, execution_id: str, spec: ExecutionSpec, owner: str | None) -> None:
        gate = self.record_gate.get(spec.code)
        if gate is not None:
            assert gate.wait(HANG)
        self.recorded.append(spec.code)

    def _finish(self, execution_id: str, result: JobResult, **kw: Any) -> bool:
        with self.done:
            self.finished.setdefault(execution_id, result)
            self.specs.setdefault(execution_id, kw.get("spec"))
            self._live.discard(execution_id)
            self.done.notify_all()
        return True

    def _record_failure(self, execution_id: str, error: str) -> None:
        self._finish(execution_id, JobResult(status="failed", error=error))

    def _output_written(self, execution_id: str, text: str) -> None: ...

    def _publish(self, execution_id: str, result: JobResult, spec: ExecutionSpec) -> JobResult:
        return result

    def wait(self, execution_id: str) -> JobResult:
        with self.done:
            assert self.done.wait_for(lambda: execution_id in self.finished, HANG), execution_id
            return self.finished[execution_id]


PAUSED_HEAP = "ab" * 32


class FakeSlot:
    """A live worker: its sessions are names; a step runs ``on_step`` (the test's) and returns
    its code as the result; ``die()`` loses every session at the next step."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.held: dict[str, str | None] = {}  # session -> the heap it was opened from
        self.steps: list[tuple[str, str]] = []
        self.on_step: Callable[[str, str], None] = lambda session, code: None
        self._lost: dict[str, str] = {}
        self.dead = False
        self.closed: list[str] = []

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def cancel(self, execution_id: str) -> None: ...
    def end_tool_calls(self, execution_id: str) -> None: ...

    def sessions(self) -> frozenset[str]:
        return frozenset(self.held)

    def lost(self) -> dict[str, str]:
        lost, self._lost = self._lost, {}
        return lost

    def open(
        self, session: str, heap_limit_mb: int, heap: str | None = None, heap_fd: int | None = None
    ) -> None:
        self.held[session] = heap

    def step(self, job: Job, session: str, on_output: Callable[[str], None]) -> JobResult:
        if self.dead:
            self._lost.update({name: "its worker process ended" for name in self.held})
            self.held.clear()
            self.dead = False
            return JobResult(status="failed", error=f"the session {session!r} is not live in this worker")
        self.on_step(session, job.spec.code)
        self.steps.append((session, job.spec.code))
        if job.spec.code == "pause":  # a gated call: the worker snapshots and ends the context
            self.held.pop(session)
            return JobResult(status="waiting", heap=PAUSED_HEAP, session_ended="paused")
        return JobResult(status="completed", result=job.spec.code)

    def snapshot(self, session: str) -> tuple[str, bytes]:
        if session not in self.held:
            raise LiveSessionError("not live")
        key = f"{len(self.closed) + len(self.steps):064x}"
        return key, b"heap of " + session.encode()

    def close(self, session: str, snapshot: bool = True) -> tuple[str, bytes] | None:
        made = self.snapshot(session) if snapshot else None
        self.held.pop(session, None)
        self.closed.append(session)
        return made


@pytest.fixture
def host() -> FakeHost:
    return FakeHost()


@pytest.fixture
def slot() -> FakeSlot:
    return FakeSlot(0)


@pytest.fixture
def live(host: FakeHost, slot: FakeSlot) -> Iterator[LiveSessions]:
    sessions = LiveSessions(host, [slot], sessions_per_worker=1, snapshot_secs=3600, idle_secs=3600)  # type: ignore[arg-type, list-item]
    sessions.start()
    yield sessions
    sessions.close(join_timeout=HANG)


def test_a_step_waits_behind_an_earlier_one_whose_record_is_still_written(
    live: LiveSessions, host: FakeHost, slot: FakeSlot
) -> None:
    host.record_gate["first"] = threading.Event()
    ids: list[str] = []
    first = threading.Thread(target=lambda: ids.append(live.submit(spec("s", "first"))))
    first.start()
    deadline = threading.Event()
    while not live.stats()["queued"]:  # the first took its place, its record not yet written
        deadline.wait(0.001)
    second = live.submit(spec("s", "second"))
    assert slot.steps == []  # the second is recorded, but waits behind the first
    host.record_gate["first"].set()
    first.join(HANG)
    assert host.wait(second).result == "second" and host.wait(ids[0]).result == "first"
    assert slot.steps == [("s", "first"), ("s", "second")]


def test_a_heap_for_a_session_queued_or_live_is_a_conflict(live: LiveSessions, host: FakeHost) -> None:
    host.record_gate["first"] = threading.Event()
    threading.Thread(target=lambda: live.submit(spec("s", "first"))).start()
    while not live.stats()["queued"]:
        threading.Event().wait(0.001)
    with pytest.raises(LiveConflict, match="'s' is already queued to become live"):
        live.submit(spec("s", heap="a" * 64))
    host.record_gate["first"].set()
    while live.status("s") is None or live.stats()["queued"]:
        threading.Event().wait(0.001)
    with pytest.raises(LiveConflict, match="'s' is already live since"):
        live.submit(spec("s", heap="a" * 64))
    assert live.submit(spec("other", heap=None))  # another session is another matter


def test_a_cancel_takes_a_step_out_of_its_sessions_queue(
    live: LiveSessions, host: FakeHost, slot: FakeSlot
) -> None:
    running, release = threading.Event(), threading.Event()

    def hold(session: str, code: str) -> None:
        if code == "hold":
            running.set()
            assert release.wait(HANG)

    slot.on_step = hold
    held = live.submit(spec("s", "hold"))
    assert running.wait(HANG)
    queued = live.submit(spec("s", "queued"))
    assert live.take(queued) is None  # unqueued: the caller records it cancelled
    assert live.take(held) is slot  # running there: the caller cancels it there
    release.set()
    host.wait(held)
    after = live.submit(spec("s", "after"))
    host.wait(after)
    assert slot.steps == [("s", "hold"), ("s", "after")]


def test_the_sessions_a_dead_worker_took_say_so_at_their_next_step(host: FakeHost, slot: FakeSlot) -> None:
    live = LiveSessions(host, [slot], sessions_per_worker=2, snapshot_secs=3600, idle_secs=3600)  # type: ignore[arg-type, list-item]
    live.start()
    try:
        host.wait(live.submit(spec("a", "var a")))
        made = host.wait(live.submit(spec("b", "var b")))
        assert made.status == "completed"
        assert live.end("b") is not None  # b's heap, recorded
        (_, _, b_heap) = host.log[-1]
        host.wait(live.submit(spec("b", "again")))  # live again, from that heap
        assert slot.held["b"] == b_heap
        slot.dead = True
        crashed = host.wait(live.submit(spec("a", "a step")))
        assert crashed.status == "failed" and "was lost with its worker" in crashed.error  # type: ignore[operator]
        assert "resumes from the base context" in crashed.error  # type: ignore[operator]
        told = host.wait(live.submit(spec("b", "b step")))
        assert told.status == "failed", told
        assert "was lost (its worker process ended)" in told.error and b_heap in told.error  # type: ignore[operator]
        resumed = host.wait(live.submit(spec("b", "b again")))
        assert resumed.status == "completed" and slot.held["b"] == b_heap  # from the heap it named
        assert ("b", "b step") not in slot.steps  # the step that reported the loss did not run
    finally:
        live.close(join_timeout=HANG)


def test_room_is_made_by_the_least_recently_used_idle_session(host: FakeHost, slot: FakeSlot) -> None:
    live = LiveSessions(host, [slot], sessions_per_worker=2, snapshot_secs=3600, idle_secs=3600)  # type: ignore[arg-type, list-item]
    live.start()
    try:
        host.wait(live.submit(spec("a", "1")))
        host.wait(live.submit(spec("b", "1")))
        host.wait(live.submit(spec("a", "2")))  # b is now the least recently used
        host.wait(live.submit(spec("c", "1")))
        assert slot.closed == ["b"] and set(slot.held) == {"a", "c"}
        assert [session for _, session, _ in host.log] == ["b"]  # its heap recorded for its next step
    finally:
        live.close(join_timeout=HANG)
    assert sorted(slot.closed) == ["a", "b", "c"]  # a graceful close ends every live session
    assert sorted(session for _, session, _ in host.log) == ["a", "b", "c"]


def test_a_paused_step_ends_its_context_and_the_session_goes_on_from_its_resume(
    live: LiveSessions, host: FakeHost, slot: FakeSlot
) -> None:
    host.wait(live.submit(spec("s", "var a")))
    paused = live.submit(spec("s", "pause"))
    assert host.wait(paused).status == "waiting"
    resume_spec = host.specs[paused]
    assert resume_spec is not None and resume_spec.snapshot  # its resume makes the heap to go on from
    assert slot.sessions() == frozenset()  # the context ended with the pause
    record = types.SimpleNamespace(execution_id=paused, heap=None, waiting_heap=PAUSED_HEAP, status="waiting")
    host.entries.append(("s", record))
    for status in ("waiting", "running"):  # waiting for a decision, then resumed and running
        record.status = status
        early = host.wait(live.submit(spec("s", "early")))
        assert early.status == "failed" and paused in (early.error or ""), early
    assert ("s", "early") not in slot.steps  # nothing ran from before the pause
    resumed = "cd" * 32
    host.heaps[resumed] = b"heap of the resume"
    record.status, record.heap = "completed", resumed
    after = host.wait(live.submit(spec("s", "after")))
    assert after.status == "completed" and slot.held["s"] == resumed
    # A pause that ends without a heap (cancelled) leaves the session as it was when it paused.
    again = live.submit(spec("s", "pause"))
    assert host.wait(again).status == "waiting"
    host.heaps[PAUSED_HEAP] = b"heap of the pause"
    host.entries.append(
        (
            "s",
            types.SimpleNamespace(
                execution_id=again, heap=None, waiting_heap=PAUSED_HEAP, status="cancelled"
            ),
        )
    )
    assert host.wait(live.submit(spec("s", "on"))).status == "completed" and slot.held["s"] == PAUSED_HEAP


def of(tenant: str, session: str, code: str = "1") -> ExecutionSpec:
    return dataclasses.replace(spec(session, code), tenant=tenant)


def names(keys: Any) -> set[str]:
    """The session names of a fake worker's keys (whatever their tenants)."""
    return {key.split("\x00")[-1] for key in keys}


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = threading.Event()
    for _ in range(int(HANG / 0.001)):
        if condition():
            return
        deadline.wait(0.001)
    raise AssertionError("never came to pass")


def test_sessions_of_different_tenants_never_share_a_live_worker(host: FakeHost) -> None:
    slots = [FakeSlot(0), FakeSlot(1)]
    live = LiveSessions(host, slots, sessions_per_worker=2, snapshot_secs=3600, idle_secs=3600)  # type: ignore[arg-type, list-item]
    live.start()
    try:
        host.wait(live.submit(of("a", "a1")))
        (first,) = [s for s in slots if s.held]
        other = slots[1 - first.index]
        host.wait(live.submit(of("b", "b1")))  # room beside a1, but not a's tenant: the other worker
        assert names(first.held) == {"a1"} and names(other.held) == {"b1"}
        host.wait(live.submit(of("a", "a2")))  # a's second session joins a's worker
        host.wait(live.submit(of("b", "b2")))
        assert names(first.held) == {"a1", "a2"} and names(other.held) == {"b1", "b2"}
        assert first.closed == other.closed == []  # nothing evicted while there was room
    finally:
        live.close(join_timeout=HANG)


def test_a_tenants_session_takes_a_worker_by_evicting_only_idle_sessions_of_another(host: FakeHost) -> None:
    slot = FakeSlot(0)
    live = LiveSessions(host, [slot], sessions_per_worker=2, snapshot_secs=3600, idle_secs=3600)  # type: ignore[arg-type, list-item]
    live.start()
    running, release = threading.Event(), threading.Event()

    def hold(session: str, code: str) -> None:
        if code == "hold":
            running.set()
            assert release.wait(HANG)

    slot.on_step = hold
    try:
        host.wait(live.submit(of("a", "a1")))
        held = live.submit(of("a", "a2", "hold"))
        assert running.wait(HANG)
        waiting = live.submit(of("b", "b1"))  # a2 is busy: b waits for the worker
        assert waiting not in host.finished and names(slot.held) == {"a1", "a2"}
        release.set()
        host.wait(held)
        assert host.wait(waiting).result == "1"  # both of a's idle sessions evicted for it
        assert sorted(names(slot.closed)) == ["a1", "a2"] and names(slot.held) == {"b1"}
        wait_until(lambda: live.status("a1", tenant="a") is None and live.status("a2", tenant="a") is None)
        assert host.wait(live.submit(of("a", "a1", "back"))).result == "back"  # and back again
        assert names(slot.held) == {"a1"} and "b1" in names(slot.closed)
    finally:
        release.set()
        live.close(join_timeout=HANG)


def test_two_tenants_sessions_of_one_name_are_two_live_sessions(host: FakeHost, slot: FakeSlot) -> None:
    """Steps, snapshots, status and ends of tenant acme's session ``s`` never reach the default
    tenant's ``s``: each has its own context (in a worker of its own: tenants never share one), its
    own snapshots recorded for it."""
    second = FakeSlot(1)
    live = LiveSessions(host, [slot, second], sessions_per_worker=2, snapshot_secs=3600, idle_secs=3600)  # type: ignore[arg-type, list-item]
    live.start()
    try:
        mine = host.wait(live.submit(spec("s", "mine")))
        assert mine.result == "mine"
        with pytest.raises(NotLive):  # acme has no live session s yet
            live.snapshot("s", tenant="acme")
        assert live.status("s", tenant="acme") is None and live.status("s") is not None
        theirs = host.wait(live.submit(spec("s", "theirs", tenant="acme")))
        assert theirs.result == "theirs"
        # Two contexts, two workers (whichever dispatcher took the first session).
        (home,) = [worker for worker in (slot, second) if "s" in worker.held]
        away = second if home is slot else slot
        assert set(home.held) == {"s"} and len(away.held) == 1
        (acme_key,) = away.held
        assert home.steps == [("s", "mine")] and away.steps == [(acme_key, "theirs")]
        heap = live.snapshot("s", tenant="acme")
        assert host.log == [("acme", "s", heap)] and host.owners[heap] == {"acme"}
        assert live.end("s", tenant="acme") == heap
        assert live.status("s", tenant="acme") is None and live.status("s") is not None
        with pytest.raises(NotLive):
            live.end("s", tenant="acme")
        # acme's next step resumes from acme's snapshot, found in acme's log only
        host.wait(live.submit(spec("s", "again", tenant="acme")))
        assert away.held[acme_key] == heap and home.held["s"] is None
        live.submit(spec("other", heap="b" * 64, tenant="acme"))
        # A heap is resumed as its tenant's: the session's latest too, when it reopens from it.
        assert host.used == [("acme", heap), ("acme", "b" * 64)]
    finally:
        live.close(join_timeout=HANG)


def test_a_session_does_not_reopen_from_a_heap_its_tenant_no_longer_owns(
    host: FakeHost, slot: FakeSlot
) -> None:
    """Its latest heap, deleted by its tenant (the bytes another tenant still owns): the next
    step fails saying so, as for a heap that is gone, and never restores it."""
    live = LiveSessions(host, [slot], sessions_per_worker=2, snapshot_secs=3600, idle_secs=3600)  # type: ignore[arg-type, list-item]
    live.start()
    try:
        host.wait(live.submit(spec("s", "first", tenant="acme")))
        heap = live.end("s", tenant="acme")
        assert heap is not None
        host.disowned.add(("acme", heap))
        failed = host.wait(live.submit(spec("s", "again", tenant="acme")))
        assert (
            failed.status == "failed"
            and failed.error == f"heap {heap} not found: session 's' cannot resume from it"
        )
        assert ("again" not in [code for _, code in slot.steps]) and heap not in slot.held.values()
    finally:
        live.close(join_timeout=HANG)


class HeldElsewhere:
    """Holds: every session is held by node ``n2`` (its steps go there)."""

    def __init__(self) -> None:
        self.forwarded: list[tuple[str, str]] = []

    def acquire(self, session: str, tenant: str = DEFAULT_TENANT) -> Holder | None:
        return Holder("node n2 (live there since then)", "n2")

    def lost(self, session: str, tenant: str = DEFAULT_TENANT) -> str | None:
        return None

    def where(self, sessions: Any, tenant: str = DEFAULT_TENANT) -> dict[str, tuple[str, str]]:
        return {name: ("n2", "then") for name in sessions}

    def release(self, session: str, tenant: str = DEFAULT_TENANT) -> None: ...
    def release_all(self) -> None: ...


def test_a_step_for_a_session_another_node_holds_is_forwarded_there_and_fails_if_it_moved_on(
    host: FakeHost, slot: FakeSlot
) -> None:
    holds = HeldElsewhere()
    forwarded: list[tuple[str, str, str]] = []
    live = LiveSessions(
        host,  # type: ignore[arg-type]
        [slot],  # type: ignore[list-item]
        locks=holds,
        forward=lambda eid, spec, node: forwarded.append((eid, spec.code, node)),
    )
    live.start()
    try:
        sent = live.submit(spec("s", "there"))
        assert forwarded == [(sent, "there", "n2")] and host.recorded == []  # recorded by forward, not here
        assert live.statuses([(DEFAULT_TENANT, "s")]) == {
            (DEFAULT_TENANT, "s"): {"node": "n2", "since": "then"}
        }
        # A step this node claimed for a session that has moved on meanwhile: it fails saying so.
        host.accept("claimed")
        live.adopt("claimed", spec("s", "late"))
        failed = host.wait("claimed")
        assert failed.status == "failed" and "is live elsewhere: node n2" in (failed.error or ""), failed
        assert slot.steps == []
    finally:
        live.close(join_timeout=HANG)
