"""The waiters room without V8: long-polls, the hand-off of the terminal record, wakes from other
processes, and the events between processes on one data directory (real unix datagrams).

A ``Store`` plays the execution store: records by id, every read counted, and a read that can be
parked, so a finish in "another process" is forced between a waiter's registration and its read,
or between its read and its wait. Every wait has a generous bound that only turns a hang into a
failure: a waiter that missed its wake returns None when its wait runs out, which the assertions
tell from the terminal record."""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp_v8.executions.siblings import SiblingEvents, address
from mcp_v8.executions.waiters import Waiters
from mcp_v8.storage import ExecutionRecord, Lease

HANG = 30.0  # seconds; only reached when the code under test is broken
WAIT = 10.0  # a long-poll's wait_ms, in seconds: shorter than HANG, far above any wake
ID = "0c6e3a3e-9d3b-4b8e-8f0e-3f1f1b7e6a01"
OTHER = "5b1f0a52-7c1e-4f7e-9a2b-6d2e7c9b1f02"


def record(execution_id: str, status: str) -> ExecutionRecord:
    return ExecutionRecord(
        execution_id=execution_id,
        status=status,  # type: ignore[arg-type]
        started_at="2030-01-01T00:00:00.000Z",
        completed_at=None if status == "running" else "2030-01-01T00:00:01.000Z",
        result=None,
        error=None,
        heap=None,
        session=None,
        tags=None,
        duration_ms=None,
    )


class Store:
    """Records as the store holds them; ``park`` holds the next read of an id after it looked."""

    def __init__(self) -> None:
        self.records: dict[str, ExecutionRecord] = {}
        self.reads: list[str] = []
        self.read_done: queue.Queue[str] = queue.Queue()
        self._parks: dict[str, tuple[threading.Event, threading.Event]] = {}

    def read(self, execution_id: str) -> ExecutionRecord | None:
        self.reads.append(execution_id)
        found = self.records.get(execution_id)
        park = self._parks.pop(execution_id, None)
        if park is not None:
            park[0].set()
            assert park[1].wait(HANG)
        self.read_done.put(execution_id)
        return found

    def park(self, execution_id: str) -> tuple[threading.Event, threading.Event]:
        park = self._parks[execution_id] = (threading.Event(), threading.Event())
        return park


class Waiting:
    """A long-poll in a thread; :meth:`answer` is what it returned."""

    def __init__(self, waiters: Waiters, execution_id: str, timeout: float = WAIT) -> None:
        self._answer: queue.Queue[Any] = queue.Queue()
        threading.Thread(
            target=lambda: self._answer.put(waiters.wait(execution_id, timeout)), daemon=True
        ).start()

    def answer(self) -> Any:
        return self._answer.get(timeout=HANG)


@pytest.fixture
def store() -> Store:
    return Store()


def make(store: Store, **kwargs: Any) -> tuple[Waiters, queue.Queue[str]]:
    """Waiters over ``store`` and the queue its ``_waiting`` hook reports registrations to."""
    waiters = Waiters(store.read, **kwargs)
    registered: queue.Queue[str] = queue.Queue()
    waiters._waiting = registered.put  # type: ignore[method-assign]
    return waiters, registered


def test_a_finish_hands_its_record_to_every_waiter_without_a_read(store: Store) -> None:
    waiters, registered = make(store)
    waiters.accept(ID)
    polls = [Waiting(waiters, ID) for _ in range(3)]
    assert [registered.get(timeout=HANG) for _ in polls] == [ID] * 3
    done = record(ID, "completed")
    waiters.finished(ID, done)
    assert [p.answer() for p in polls] == [done] * 3
    assert store.reads == [] and waiters.waiting() == 0 and not waiters.is_live(ID)


def test_an_execution_of_another_process_is_read_once_when_it_is_over(store: Store) -> None:
    waiters, _ = make(store)
    store.records[ID] = done = record(ID, "failed")
    assert waiters.wait(ID, WAIT) == done
    assert waiters.wait(OTHER, WAIT) is None  # unknown: the caller answers 404
    assert store.reads == [ID, OTHER]
    waiters.accept(ID)  # live here and running: no read, the wait times out
    assert waiters.wait(ID, 0.01) is None and store.reads == [ID, OTHER]


def test_a_long_poll_for_a_tenant_never_waits_on_another_tenant_s_execution(store: Store) -> None:
    """Live here: the waiters know its tenant, so another tenant's long-poll returns at once
    without a read (the caller reads, and answers 404) and its own waits without one. Not live
    here, or live here with its tenant unknown: the one read says whose it is."""
    import dataclasses

    waiters, _ = make(store)
    waiters.accept(ID, "acme")
    assert waiters.wait(ID, WAIT, "beta") is None and store.reads == []
    assert waiters.wait(ID, 0.01, "acme") is None and store.reads == []  # its own: waited, timed out
    assert waiters.wait(ID, 0.01) is None and store.reads == []  # every tenant's (an admin)
    theirs = store.records[OTHER] = dataclasses.replace(record(OTHER, "running"), tenant="acme")
    assert waiters.wait(OTHER, WAIT, "beta") == theirs and store.reads == [OTHER]  # at once, read
    waiters.accept(OTHER)  # live here, its tenant not known (a decision's calls, made here)
    assert waiters.wait(OTHER, WAIT, "beta") == theirs and store.reads == [OTHER, OTHER]
    assert waiters.wait(OTHER, 0.01, "acme") is None and store.reads == [OTHER] * 3  # its own: waited


def test_a_finish_elsewhere_while_the_waiter_reads_is_not_missed(store: Store) -> None:
    """The waiter registered, read "running", and is parked before it waits: the other process
    writes the terminal record and its event arrives then. The waiter must not wait it out."""
    waiters, _ = make(store)
    store.records[ID] = record(ID, "running")
    looked, go_on = store.park(ID)
    poll = Waiting(waiters, ID)
    assert looked.wait(HANG)
    store.records[ID] = done = record(ID, "completed")
    waiters.wake(ID)
    go_on.set()
    assert poll.answer() == done
    assert store.reads == [ID, ID]


def test_a_wake_for_an_execution_still_running_keeps_the_waiter_waiting(store: Store) -> None:
    waiters, registered = make(store)
    store.records[ID] = record(ID, "running")
    poll = Waiting(waiters, ID)
    assert registered.get(timeout=HANG) == ID and store.read_done.get(timeout=HANG) == ID
    waiters.wake(ID)  # an event for an earlier attempt, or a reconnection's "look again"
    assert store.read_done.get(timeout=HANG) == ID  # it looked: still running
    store.records[ID] = done = record(ID, "cancelled")
    waiters.wake(ID)
    assert poll.answer() == done  # not None: it went on waiting after the first look


def test_a_wake_of_every_execution_reads_those_not_live_here_only(store: Store) -> None:
    waiters, registered = make(store)
    waiters.accept(ID)
    store.records[OTHER] = record(OTHER, "running")
    live, remote = Waiting(waiters, ID), Waiting(waiters, OTHER)
    assert {registered.get(timeout=HANG), registered.get(timeout=HANG)} == {ID, OTHER}
    store.records[OTHER] = remote_done = record(OTHER, "completed")
    waiters.wake(None)
    assert remote.answer() == remote_done
    done = record(ID, "completed")
    waiters.finished(ID, done)
    assert live.answer() == done
    assert ID not in store.reads


def test_a_lost_event_is_made_up_by_reading_again(store: Store) -> None:
    waiters, registered = make(store, recheck_secs=0.05)
    store.records[ID] = record(ID, "running")
    poll = Waiting(waiters, ID)
    assert registered.get(timeout=HANG) == ID
    store.records[ID] = done = record(ID, "timed_out")  # and no event ever comes
    assert poll.answer() == done


def test_an_execution_cancelled_elsewhere_while_live_here_is_answered_when_its_event_comes(
    store: Store,
) -> None:
    """Another process wrote the terminal status of an execution that still runs here: its
    event makes the waiter read it rather than wait for this process's worker."""
    waiters, registered = make(store)
    waiters.accept(ID)
    poll = Waiting(waiters, ID)
    assert registered.get(timeout=HANG) == ID
    store.records[ID] = done = record(ID, "cancelled")
    waiters.wake(ID)
    assert poll.answer() == done


def test_an_event_about_an_execution_live_here_is_told_to_whoever_runs_it(store: Store) -> None:
    """The hook that stops a script cancelled in another process hears of events about
    executions live here only, once each, outside the waiters' lock (it reads the store)."""
    told: list[str] = []
    waiters = Waiters(store.read, ended_elsewhere=lambda e: told.append(e) or waiters.waiting())
    waiters.accept(ID)
    waiters.wake(OTHER)  # not live here: only its waiters read again
    waiters.wake(None)  # events may have been lost: says nothing of one execution
    assert told == []
    waiters.wake(ID)
    assert told == [ID]
    waiters.finished(ID, record(ID, "cancelled"))
    waiters.wake(ID)  # no longer live here
    assert told == [ID]


def test_followers_hear_the_output_then_the_end(store: Store) -> None:
    waiters, _ = make(store)
    heard: list[str | None] = []
    waiters.follow(OTHER, heard.append)  # not live here: told at once it is over
    assert heard == [None]
    waiters.accept(ID)
    stop = waiters.follow(ID, heard.append)
    waiters.output(ID, "one\n")
    waiters.finished(ID, record(ID, "completed"))
    waiters.output(ID, "late\n")
    assert heard == [None, "one\n", None]
    stop()


# -- between processes on one data directory ---------------------------------------------------------


@pytest.fixture
def siblings(tmp_path: Path, store: Store) -> Iterator[Callable[..., tuple[Waiters, Any]]]:
    made: list[tuple[Waiters, Lease]] = []

    def sibling(**kwargs: Any) -> tuple[Waiters, Any]:
        lease = Lease(tmp_path)
        events = SiblingEvents(lease)
        waiters, registered = make(store, events=events, **kwargs)
        waiters.start()
        made.append((waiters, lease))
        return waiters, registered

    yield sibling
    for waiters, lease in made:
        waiters.close()
        lease.close()


def test_a_finish_in_one_process_wakes_the_waiters_of_another(
    siblings: Callable[..., tuple[Waiters, Any]], store: Store
) -> None:
    (a, _), (b, b_registered) = siblings(), siblings()  # b never re-reads on its own
    store.records[ID] = record(ID, "running")
    a.accept(ID)
    poll = Waiting(b, ID)
    assert b_registered.get(timeout=HANG) == ID
    store.records[ID] = done = record(ID, "completed")
    a.finished(ID, done)
    a.announce(ID)
    assert poll.answer() == done


def test_what_is_not_an_execution_id_wakes_nobody(
    siblings: Callable[..., tuple[Waiters, Any]], store: Store, tmp_path: Path
) -> None:
    (b, registered) = siblings()
    store.records[ID] = record(ID, "running")
    poll = Waiting(b, ID)
    assert registered.get(timeout=HANG) == ID
    lease = next(p.stem for p in (tmp_path / "leases").glob("*.lock"))
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        for junk in (b"", b"x" * 5000, ID.upper().encode(), b"../" + ID.encode(), b"\xff" * 36):
            s.sendto(junk, address(lease))
        store.records[ID] = done = record(ID, "completed")
        s.sendto(ID.encode(), address(lease))  # the listener survived the junk
    assert poll.answer() == done
    assert store.reads == [ID, ID]  # the junk made no waiter look
