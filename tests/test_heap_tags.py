"""The registry's tags of heap snapshots (``heap_tags``): merge patches, first-wins records,
the tag query's order and paging, and what retention keeps."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_v8.storage import HeapTagLimit, InvalidCursor, SQLiteHeapTags, merge_patch, open_database

from .pg_server import schema_for


def key(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.database)])
def tags(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLiteHeapTags]:
    """The heap tags of a fresh SQLite file, or of a fresh PostgreSQL schema (the same methods)."""
    if request.param == "postgres":
        from mcp_v8.storage.postgres import PostgresHeapTags, open_postgres

        server = request.getfixturevalue("postgres_server")
        pg = open_postgres(server.url, schema=server.create_schema(schema_for(tmp_path)))
        yield PostgresHeapTags(pg)  # type: ignore[misc]
        pg.close()
        return
    db = open_database(tmp_path)
    yield SQLiteHeapTags(db)
    db.close()


def test_merge_patch_sets_removes_and_keeps() -> None:
    assert merge_patch({"a": "1", "b": "2"}, {"a": "x", "b": None, "c": "3", "gone": None}) == {
        "a": "x",
        "c": "3",
    }
    assert merge_patch({}, {}) == {}
    with pytest.raises(HeapTagLimit, match="at most 64 tags"):
        merge_patch({f"k{i}": "v" for i in range(64)}, {"one-more": "v"})
    assert len(merge_patch({f"k{i}": "v" for i in range(64)}, {"k0": None, "new": "v"})) == 64
    with pytest.raises(HeapTagLimit, match="256 characters"):
        merge_patch({}, {"k": "v" * 257})
    with pytest.raises(HeapTagLimit, match="256 characters"):
        merge_patch({}, {"k" * 257: "v"})
    with pytest.raises(HeapTagLimit, match="string or null"):
        merge_patch({}, {"k": 1})


def test_record_is_first_wins_and_patch_starts_from_the_base(tags: SQLiteHeapTags) -> None:
    assert tags.get(key(1)) is None
    tags.record(key(1), {"a": "1"}, "2024-01-01T00:00:00.000Z")
    tags.record(key(1), {"a": "2"}, "2024-01-02T00:00:00.000Z")
    assert tags.get(key(1)) == {"a": "1"}
    # A row exists: the base (the blob's meta) is not used.
    assert tags.patch(key(1), {"b": "2"}, base={"z": "z"}, created_at="2024-01-01T00:00:00.000Z") == {
        "a": "1",
        "b": "2",
    }
    # No row: the patch applies to the base.
    assert tags.patch(
        key(2), {"b": None}, base={"b": "1", "c": "3"}, created_at="2024-01-01T00:00:00.000Z"
    ) == {"c": "3"}
    with pytest.raises(HeapTagLimit):
        tags.patch(key(2), {"c": "x" * 300}, base=None, created_at="2024-01-01T00:00:00.000Z")
    assert tags.get(key(2)) == {"c": "3"}  # a refused patch changes nothing
    tags.patch(key(3), {}, base=None, created_at="2024-01-01T00:00:00.000Z")
    assert tags.get(key(3)) == {}
    assert tags.tagged() == {key(1), key(2)}  # an emptied heap is not kept by retention
    assert tags.delete(key(1)) and not tags.delete(key(1))
    assert tags.get(key(1)) is None


def test_query_matches_every_pair_newest_first_by_pages(tags: SQLiteHeapTags) -> None:
    for n in range(7):
        tags.record(
            key(n),
            {"team": "x" if n % 2 else "y", "n": str(n), 'odd "key"': "yes"},
            f"2024-01-0{1 + n // 2}T00:00:00.000Z",  # pairs share a creation time
        )
    page = tags.query({"team": "x"}, 100)
    assert [k for k, _ in page.items] == [key(5), key(3), key(1)] and page.next_cursor is None
    assert page.items[0][1]["n"] == "5"
    assert [k for k, _ in tags.query({"team": "x", "n": "3"}, 10).items] == [key(3)]
    assert tags.query({"team": "x", "n": "2"}, 10).items == []
    everything = [k for k, _ in tags.query({'odd "key"': "yes"}, 100).items]
    expected = sorted(
        (key(n) for n in range(7)),
        key=lambda k: (f"2024-01-0{1 + [key(n) for n in range(7)].index(k) // 2}", k),
        reverse=True,
    )
    assert everything == expected
    paged: list[str] = []
    cursor = None
    while True:
        page = tags.query({'odd "key"': "yes"}, 2, cursor=cursor)
        paged += [k for k, _ in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert paged == expected
    with pytest.raises(InvalidCursor):
        tags.query({"team": "x"}, 2, cursor="bm90LWEtY3Vyc29y")


def test_each_tenant_has_its_own_tags_of_a_heap(tags: SQLiteHeapTags) -> None:
    """Rows keyed by tenant and heap: a record, patch, query and delete of one tenant never touch
    another's tags of the same heap; a delete for every tenant (None) removes them all."""
    at = "2024-01-01T00:00:00.000Z"
    tags.record(key(1), {"team": "a"}, at, tenant="acme")
    tags.record(key(1), {"team": "b"}, at, tenant="beta")  # first wins per tenant
    assert tags.get(key(1), tenant="acme") == {"team": "a"} and tags.get(key(1), tenant="beta") == {
        "team": "b"
    }
    assert tags.get(key(1)) is None  # the default tenant has none
    assert tags.patch(key(1), {"x": "1"}, base=None, created_at=at, tenant="acme") == {"team": "a", "x": "1"}
    assert tags.get(key(1), tenant="beta") == {"team": "b"}
    assert [k for k, _ in tags.query({"team": "a"}, 10, tenant="acme").items] == [key(1)]
    assert tags.query({"team": "a"}, 10, tenant="beta").items == []
    assert tags.query({"team": "b"}, 10).items == []
    cursor = tags.query({}, 1, tenant="acme").next_cursor
    assert cursor is None  # one heap of acme's
    tags.record(key(2), {"team": "a"}, "2024-01-02T00:00:00.000Z", tenant="acme")
    cursor = tags.query({}, 1, tenant="acme").next_cursor
    assert cursor is not None  # acme's cursor, given to beta's query: beta's rows after that place only
    assert tags.query({}, 10, cursor=cursor, tenant="beta").items == [(key(1), {"team": "b"})]
    assert tags.delete(key(1), tenant="acme") and tags.get(key(1), tenant="beta") == {"team": "b"}
    assert tags.tagged() == {key(1), key(2)}  # beta's still keeps key(1) from retention
    assert tags.delete(key(2), tenant=None) and not tags.delete(key(2), tenant="acme")
