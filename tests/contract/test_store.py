"""The Store contract (``kubecore/store.py``), checked against every store plugin.

Each test runs once per store (``store_kind``: sqlite, etcd) and works under its own
key prefix. Revisions are only compared relative to ones the test itself observed.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trio
import trio.testing

from kubecore.store import (
    Compacted,
    Conflict,
    EventType,
    KeyExists,
    KeyNotFound,
    KeyValue,
    Store,
    StoreUnavailable,
    WatchEvent,
)

# The ``compact`` fixture: history before the given revision is dropped.
Compact = Callable[[int], Awaitable[None]]
# Generous: etcd fsyncs every write, and CI machines are small.
EVENT_TIMEOUT = 10.0


async def take(events: AsyncIterator[WatchEvent], n: int) -> list[WatchEvent]:
    """The next ``n`` events, failing the test if they do not all come in time."""
    got: list[WatchEvent] = []
    with trio.fail_after(EVENT_TIMEOUT):
        while len(got) < n:
            got.append(await anext(events))
    return got


async def assert_next_is_only(
    store: Store, events: AsyncIterator[WatchEvent], key: str
) -> None:
    """Nothing is pending on ``events``: a fresh write is the very next event."""
    sentinel = await store.create(key, b"sentinel")
    (event,) = await take(events, 1)
    assert (event.type, event.kv.key, event.revision) == (EventType.PUT, key, sentinel.mod_revision)


def summary(events: list[WatchEvent]) -> list[tuple[str, str, bytes, int]]:
    return [(e.type.value, e.kv.key, e.kv.value, e.revision) for e in events]


# -- create / get / update / delete ----------------------------------------------------


async def test_create_then_get(store: Store, key_prefix: str) -> None:
    key = f"{key_prefix}pods/default/web"
    before = await store.revision()
    created = await store.create(key, b'{"id": "web"}')
    assert created == KeyValue(key, b'{"id": "web"}', created.mod_revision, created.mod_revision)
    assert created.mod_revision == before + 1
    assert await store.get(key) == created
    assert await store.revision() == created.mod_revision


async def test_get_missing_is_none(store: Store, key_prefix: str) -> None:
    assert await store.get(f"{key_prefix}nothing") is None


async def test_create_existing_raises_key_exists(store: Store, key_prefix: str) -> None:
    key = f"{key_prefix}a"
    first = await store.create(key, b"1")
    with pytest.raises(KeyExists) as info:
        await store.create(key, b"2")
    assert info.value.key == key
    assert await store.get(key) == first
    assert await store.revision() == first.mod_revision  # a failed write bumps nothing


async def test_update_is_compare_and_swap(store: Store, key_prefix: str) -> None:
    key = f"{key_prefix}a"
    created = await store.create(key, b"1")
    updated = await store.update(key, b"2", created.mod_revision)
    assert updated == KeyValue(key, b"2", created.create_revision, created.mod_revision + 1)
    assert await store.get(key) == updated

    with pytest.raises(Conflict) as info:
        await store.update(key, b"3", created.mod_revision)
    assert (info.value.key, info.value.expected, info.value.actual) == (
        key,
        created.mod_revision,
        updated.mod_revision,
    )
    assert await store.get(key) == updated
    assert await store.revision() == updated.mod_revision


async def test_update_missing_raises_key_not_found(store: Store, key_prefix: str) -> None:
    key = f"{key_prefix}ghost"
    with pytest.raises(KeyNotFound) as info:
        await store.update(key, b"x", 0)
    assert info.value.key == key
    with pytest.raises(KeyNotFound):
        await store.update(key, b"x", 1)
    assert await store.get(key) is None  # a CAS at revision 0 never creates


async def test_delete_returns_last_value(store: Store, key_prefix: str) -> None:
    key = f"{key_prefix}a"
    created = await store.create(key, b"1")
    updated = await store.update(key, b"2", created.mod_revision)
    deleted = await store.delete(key)
    assert deleted == KeyValue(key, b"2", created.create_revision, updated.mod_revision + 1)
    assert await store.get(key) is None
    assert await store.revision() == deleted.mod_revision
    with pytest.raises(KeyNotFound):
        await store.delete(key)


async def test_delete_at_expected_revision(store: Store, key_prefix: str) -> None:
    key = f"{key_prefix}a"
    created = await store.create(key, b"1")
    updated = await store.update(key, b"2", created.mod_revision)
    with pytest.raises(Conflict) as info:
        await store.delete(key, expected_revision=created.mod_revision)
    assert (info.value.expected, info.value.actual) == (created.mod_revision, updated.mod_revision)
    assert await store.get(key) == updated
    deleted = await store.delete(key, expected_revision=updated.mod_revision)
    assert deleted.value == b"2"
    with pytest.raises(KeyNotFound):
        await store.delete(key, expected_revision=deleted.mod_revision)


async def test_recreate_after_delete_has_new_create_revision(
    store: Store, key_prefix: str
) -> None:
    key = f"{key_prefix}a"
    first = await store.create(key, b"1")
    await store.delete(key)
    second = await store.create(key, b"2")
    assert second.create_revision == second.mod_revision == first.mod_revision + 2


async def test_values_are_opaque_bytes_and_keys_unicode(store: Store, key_prefix: str) -> None:
    key = f"{key_prefix}ns/caf\u00e9-\u6f22\u5b57"
    value = bytes(range(256)) + b"\x00\xff"
    await store.create(key, value)
    got = await store.get(key)
    assert got is not None and got.value == value and got.key == key
    items, _ = await store.list(f"{key_prefix}ns/")
    assert [(kv.key, kv.value) for kv in items] == [(key, value)]


async def test_every_write_bumps_the_revision_by_one(store: Store, key_prefix: str) -> None:
    start = await store.revision()
    a = await store.create(f"{key_prefix}a", b"1")
    b = await store.create(f"{key_prefix}b", b"1")
    a2 = await store.update(a.key, b"2", a.mod_revision)
    gone = await store.delete(b.key)
    assert [a.mod_revision, b.mod_revision, a2.mod_revision, gone.mod_revision] == [
        start + 1,
        start + 2,
        start + 3,
        start + 4,
    ]


# -- list ------------------------------------------------------------------------------------


async def test_list_by_prefix_sorted_with_revision(store: Store, key_prefix: str) -> None:
    names = ["web-2", "api", "web-1", "db", "web-10"]
    random.Random(7).shuffle(names)
    for name in names:
        await store.create(f"{key_prefix}pods/default/{name}", name.encode())
    await store.create(f"{key_prefix}pods/other/x", b"x")
    await store.create(f"{key_prefix}podsx/default/y", b"y")  # shares "pods" but not "pods/"
    last = await store.create(f"{key_prefix}services/specs/default/web", b"s")

    items, revision = await store.list(f"{key_prefix}pods/default/")
    assert [kv.key.rsplit("/", 1)[1] for kv in items] == sorted(names)
    assert [kv.value for kv in items] == [kv.key.rsplit("/", 1)[1].encode() for kv in items]
    assert all(kv.create_revision == kv.mod_revision for kv in items)
    assert revision == last.mod_revision == await store.revision()

    everything, _ = await store.list(f"{key_prefix}pods/")
    assert [kv.key for kv in everything] == sorted(
        [f"{key_prefix}pods/default/{n}" for n in names] + [f"{key_prefix}pods/other/x"]
    )
    all_keys, _ = await store.list("")
    assert [kv.key for kv in all_keys] == sorted(kv.key for kv in all_keys)
    assert len(all_keys) == len(names) + 3


async def test_list_empty_prefix_has_current_revision(store: Store, key_prefix: str) -> None:
    written = await store.create(f"{key_prefix}elsewhere", b"1")
    items, revision = await store.list(f"{key_prefix}nothing/")
    assert items == []
    assert revision == written.mod_revision


# -- watch -------------------------------------------------------------------------------


async def test_watch_from_revision_sees_exactly_later_events(
    store: Store, key_prefix: str
) -> None:
    p = f"{key_prefix}pods/"
    a = await store.create(f"{p}a", b"a1")
    await store.update(f"{p}a", b"a2", a.mod_revision)
    start = await store.create(f"{p}b", b"b1")

    # History: written before the watch opens, after its start revision.
    c = await store.create(f"{p}c", b"c1")
    a3 = await store.update(f"{p}a", b"a3", a.mod_revision + 1)
    async with store.watch(p, start.mod_revision) as events:
        first = await take(events, 2)
        # Live: written while the watch is open.
        gone = await store.delete(f"{p}b")
        await store.create(f"{key_prefix}services/x", b"not under the prefix")
        c2 = await store.update(f"{p}c", b"c2", c.mod_revision)
        second = await take(events, 2)
        await assert_next_is_only(store, events, f"{p}sentinel")

    assert summary(first + second) == [
        ("PUT", f"{p}c", b"c1", c.mod_revision),
        ("PUT", f"{p}a", b"a3", a3.mod_revision),
        ("DELETE", f"{p}b", b"b1", gone.mod_revision),
        ("PUT", f"{p}c", b"c2", c2.mod_revision),
    ]


async def test_watch_events_carry_revisions_and_previous_values(
    store: Store, key_prefix: str
) -> None:
    key = f"{key_prefix}a"
    start = await store.revision()
    async with store.watch(key_prefix, start) as events:
        created = await store.create(key, b"1")
        updated = await store.update(key, b"2", created.mod_revision)
        deleted = await store.delete(key)
        put1, put2, delete = await take(events, 3)

    assert put1 == WatchEvent(EventType.PUT, created, None)
    assert put1.revision == created.mod_revision
    assert put2.type is EventType.PUT and put2.kv == updated
    assert put2.prev == created
    # A DELETE carries the last value, stamped with the deletion's revision.
    assert delete.type is EventType.DELETE
    assert delete.kv == KeyValue(key, b"2", created.create_revision, deleted.mod_revision)
    assert delete.kv == deleted
    assert delete.revision == deleted.mod_revision
    assert delete.prev == updated  # the key as it was just before the deletion


async def test_watch_prefix_does_not_see_sibling_prefixes(store: Store, key_prefix: str) -> None:
    start = await store.revision()
    async with store.watch(f"{key_prefix}a/", start) as events:
        await store.create(f"{key_prefix}ab", b"sibling")
        await store.create(f"{key_prefix}b/x", b"other")
        mine = await store.create(f"{key_prefix}a/x", b"mine")
        (event,) = await take(events, 1)
        assert event.kv == mine
        await assert_next_is_only(store, events, f"{key_prefix}a/sentinel")


async def test_watch_with_slow_consumer_misses_and_repeats_nothing(
    store: Store, key_prefix: str
) -> None:
    count = 300  # more than any internal batch or buffer
    start = await store.revision()
    async with store.watch(key_prefix, start) as events:
        written = [await store.create(f"{key_prefix}k{i:04d}", b"%d" % i) for i in range(count)]
        # The consumer was not reading during the writes; now it reads slowly, with
        # more writes landing between its reads.
        got = await take(events, 10)
        more = [await store.update(kv.key, b"again", kv.mod_revision) for kv in written[:20]]
        got += await take(events, count - 10 + len(more))
        await assert_next_is_only(store, events, f"{key_prefix}sentinel")

    expected = [kv.mod_revision for kv in written + more]
    assert [e.revision for e in got] == expected
    assert [e.revision for e in got] == list(range(start + 1, start + count + len(more) + 1))


async def test_watch_from_list_revision_misses_nothing(store: Store, key_prefix: str) -> None:
    """The re-list pattern: list, watch from the list's revision, and the state rebuilt
    from both equals the final state, with writes racing the list all along."""
    p = f"{key_prefix}pods/"
    keys = [f"{p}{i}" for i in range(8)]
    listed = trio.Event()
    rng = random.Random(3)

    async def churn(count: int) -> None:
        for step in range(count):
            key = rng.choice(keys)
            current = await store.get(key)
            if current is None:
                await store.create(key, b"%d" % step)
            elif step % 3 == 0:
                await store.delete(key, current.mod_revision)
            else:
                await store.update(key, b"%d" % step, current.mod_revision)

    async with trio.open_nursery() as nursery:
        await churn(20)

        async def writer() -> None:
            await churn(40)
            await listed.wait()
            await churn(40)

        nursery.start_soon(writer)
        items, revision = await store.list(p)
        listed.set()

    state = {kv.key: kv.value for kv in items}
    final, final_revision = await store.list(p)
    async with store.watch(p, revision) as events:
        seen = revision
        while seen < final_revision:
            (event,) = await take(events, 1)
            assert event.revision > seen
            seen = event.revision
            if event.type is EventType.PUT:
                state[event.kv.key] = event.kv.value
            else:
                del state[event.kv.key]
    assert state == {kv.key: kv.value for kv in final}


async def test_two_concurrent_watchers_see_the_same_events(
    store: Store, key_prefix: str
) -> None:
    start = await store.revision()
    results: dict[str, list[WatchEvent]] = {}

    async def watcher(name: str, task_status: trio.TaskStatus[None]) -> None:
        async with store.watch(key_prefix, start) as events:
            task_status.started()
            results[name] = await take(events, 30)

    async with trio.open_nursery() as nursery:
        await nursery.start(watcher, "one")
        await nursery.start(watcher, "two")
        for i in range(15):
            kv = await store.create(f"{key_prefix}{i}", b"x")
            await store.update(kv.key, b"y", kv.mod_revision)

    assert summary(results["one"]) == summary(results["two"])
    assert [e.revision for e in results["one"]] == list(range(start + 1, start + 31))


async def test_watch_from_compacted_revision_raises(
    store: Store, compact: Compact, key_prefix: str
) -> None:
    start = await store.revision()
    written = [await store.create(f"{key_prefix}{i}", b"x") for i in range(6)]
    await compact(written[4].mod_revision)

    async with store.watch(key_prefix, start) as events:
        with pytest.raises(Compacted) as info, trio.fail_after(EVENT_TIMEOUT):
            await anext(events)
    assert info.value.requested == start
    assert info.value.compact_revision >= written[3].mod_revision

    # One revision before the compaction point still has everything after it.
    async with store.watch(key_prefix, written[3].mod_revision) as events:
        got = await take(events, 2)
    assert [e.kv for e in got] == written[4:]


async def test_closing_a_watch_releases_it(store: Store, key_prefix: str) -> None:
    start = await store.revision()
    for _ in range(20):
        async with store.watch(key_prefix, start) as events:
            pass
    async with store.watch(key_prefix, start) as events:
        await store.create(f"{key_prefix}a", b"1")
        await take(events, 1)
    # The iterator is finished once its context is closed.
    with pytest.raises(StopAsyncIteration):
        await anext(events)
    assert getattr(store, "active_watches", 0) == 0
    with trio.fail_after(EVENT_TIMEOUT):
        await store.aclose()


async def test_cancelling_a_blocked_watcher_releases_it(store: Store, key_prefix: str) -> None:
    start = await store.revision()

    async def idle_watcher() -> None:
        async with store.watch(key_prefix, start) as events:
            await anext(events)

    with trio.move_on_after(EVENT_TIMEOUT) as scope, trio.fail_after(EVENT_TIMEOUT * 2):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(idle_watcher)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    assert not scope.cancelled_caught
    assert getattr(store, "active_watches", 0) == 0
    # The store still works after the cancelled watch.
    assert (await store.create(f"{key_prefix}after", b"1")).mod_revision == start + 1


async def test_closing_the_store_ends_open_watches(
    store_factory: Callable[[], Store], key_prefix: str
) -> None:
    store = store_factory()
    start = await store.revision()
    try:
        async with store.watch(key_prefix, start) as events, trio.open_nursery() as nursery:
            nursery.start_soon(store.aclose)
            with pytest.raises(StoreUnavailable), trio.fail_after(EVENT_TIMEOUT):
                await anext(events)
    finally:
        await store.aclose()
    with pytest.raises(StoreUnavailable):
        await store.get(f"{key_prefix}a")
    await store.aclose()  # idempotent


# -- concurrency -----------------------------------------------------------------------------


async def test_only_one_of_concurrent_updates_wins(store: Store, key_prefix: str) -> None:
    key = f"{key_prefix}contended"
    base = await store.create(key, b"0")
    winners: list[KeyValue] = []
    conflicts: list[Conflict] = []

    async def contender(n: int) -> None:
        try:
            winners.append(await store.update(key, b"%d" % n, base.mod_revision))
        except Conflict as exc:
            conflicts.append(exc)

    async with trio.open_nursery() as nursery:
        for n in range(10):
            nursery.start_soon(contender, n)

    assert len(winners) == 1 and len(conflicts) == 9
    (winner,) = winners
    assert winner.mod_revision == base.mod_revision + 1
    assert all(c.actual == winner.mod_revision for c in conflicts)
    assert await store.get(key) == winner
    assert await store.revision() == winner.mod_revision


async def test_only_one_of_concurrent_creates_wins(store: Store, key_prefix: str) -> None:
    key = f"{key_prefix}claimed"
    outcomes: list[bool] = []

    async def claim(n: int) -> None:
        try:
            await store.create(key, b"%d" % n)
            outcomes.append(True)
        except KeyExists:
            outcomes.append(False)

    async with trio.open_nursery() as nursery:
        for n in range(10):
            nursery.start_soon(claim, n)
    assert sorted(outcomes) == [False] * 9 + [True]
