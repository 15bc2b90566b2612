"""store_sqlite beyond the shared contract: durability, compaction, wake-up latency,
exclusive use of the file, and loading through kubecore's plugin machinery."""

from __future__ import annotations

import random
import sqlite3
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from kubecore_store_sqlite import SqliteStore
from kubecore_store_sqlite import store as store_module
from kubecore_store_sqlite.store import prefix_end

from kubecore import kernel, plugins
from kubecore.config import ConfigError
from kubecore.store import (
    Compacted,
    Conflict,
    EventType,
    KeyExists,
    KeyNotFound,
    KeyValue,
    StoreUnavailable,
    WatchEvent,
)

TIMEOUT = 10.0


async def take(events: AsyncIterator[WatchEvent], n: int) -> list[WatchEvent]:
    with trio.fail_after(TIMEOUT):
        return [await anext(events) for _ in range(n)]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "store.sqlite3"


async def test_state_and_revision_survive_reopening(db: Path) -> None:
    store = SqliteStore(db)
    a = await store.create("/registry/pods/default/a", b"a1")
    b = await store.create("/registry/pods/default/b", b"b1")
    a2 = await store.update(a.key, b"a2", a.mod_revision)
    await store.delete(b.key)
    await store.aclose()

    reopened = SqliteStore(db)
    try:
        assert await reopened.revision() == 4
        assert await reopened.get(a.key) == a2
        assert await reopened.get(b.key) is None
        items, revision = await reopened.list("/registry/")
        assert (items, revision) == ([a2], 4)
        c = await reopened.create("/registry/pods/default/c", b"c1")
        assert c.mod_revision == 5  # the counter continues, never restarts
        # History from before the restart is still there for watches.
        async with reopened.watch("/registry/", 0) as events:
            got = await take(events, 5)
        assert [(e.type, e.kv.key, e.revision) for e in got] == [
            (EventType.PUT, a.key, 1),
            (EventType.PUT, b.key, 2),
            (EventType.PUT, a.key, 3),
            (EventType.DELETE, b.key, 4),
            (EventType.PUT, c.key, 5),
        ]
    finally:
        await reopened.aclose()


async def test_nothing_is_created_until_first_use(db: Path) -> None:
    store = SqliteStore(db)
    assert not await trio.Path(db).exists()
    assert await store.revision() == 0
    assert await trio.Path(db).exists()
    await store.aclose()


async def test_history_beyond_retention_is_compacted(db: Path) -> None:
    store = SqliteStore(db, retain_revisions=5)
    try:
        written = [await store.create(f"/k/{i:02d}", b"x") for i in range(30)]
        current = written[-1].mod_revision
        assert current - store.compact_revision <= 5 + 1  # retention plus one batch
        async with store.watch("/k/", 0) as events:
            with pytest.raises(Compacted) as info:
                await take(events, 1)
        assert info.value.requested == 0
        assert info.value.compact_revision == store.compact_revision
        # The retained tail is complete.
        async with store.watch("/k/", current - 5) as events:
            got = await take(events, 5)
        assert [e.kv for e in got] == written[-5:]
    finally:
        await store.aclose()
    with sqlite3.connect(db) as conn:
        (rows,) = conn.execute("SELECT COUNT(*) FROM log").fetchone()
        (oldest,) = conn.execute("SELECT MIN(revision) FROM log").fetchone()
    assert rows <= 6 and oldest > current - 6


async def test_compaction_survives_reopening(db: Path) -> None:
    store = SqliteStore(db)
    written = [await store.create(f"/k/{i}", b"x") for i in range(6)]
    await store.compact(written[3].mod_revision)
    await store.aclose()
    reopened = SqliteStore(db)
    try:
        async with reopened.watch("/k/", 0) as events:
            with pytest.raises(Compacted):
                await take(events, 1)
        async with reopened.watch("/k/", written[2].mod_revision) as events:
            assert [e.kv for e in await take(events, 3)] == written[3:]
    finally:
        await reopened.aclose()


async def test_watch_on_a_quiet_prefix_keeps_up_with_compaction(db: Path) -> None:
    """A watcher whose prefix sees no writes still advances past compacted history."""
    store = SqliteStore(db, retain_revisions=5)
    try:
        async with store.watch("/quiet/", 0) as events, trio.open_nursery() as nursery:
            got: list[WatchEvent] = []

            async def consume() -> None:
                got.extend(await take(events, 1))

            nursery.start_soon(consume)
            for i in range(40):
                await store.create(f"/busy/{i}", b"x")
                await trio.testing.wait_all_tasks_blocked()
            assert store.compact_revision > 20
            mine = await store.create("/quiet/one", b"1")
        assert [e.kv for e in got] == [mine]
    finally:
        await store.aclose()


async def test_watch_wakes_within_milliseconds_of_a_write(db: Path) -> None:
    store = SqliteStore(db, synchronous="normal")
    delays: list[float] = []
    try:
        async with store.watch("/w/", await store.revision()) as events:

            async def consume(received: trio.Event) -> None:
                await anext(events)
                received.set()

            for i in range(30):
                received = trio.Event()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(consume, received)
                    await trio.testing.wait_all_tasks_blocked()
                    await store.create(f"/w/{i}", b"x")
                    written_at = time.perf_counter()
                    with trio.fail_after(TIMEOUT):
                        await received.wait()
                    delays.append(time.perf_counter() - written_at)
    finally:
        await store.aclose()
    # A polling watcher would show its poll interval here.
    assert statistics.median(delays) < 0.01, delays
    assert max(delays) < 0.1, delays


async def test_an_idle_watch_does_not_touch_the_database(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteStore(db)
    reads = 0
    original = store._log_tx

    def counting(*args: object, **kwargs: object) -> tuple[list[WatchEvent], int]:
        nonlocal reads
        reads += 1
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "_log_tx", counting)
    try:
        async with store.watch("/idle/", 0) as events, trio.open_nursery() as nursery:
            await store.create("/idle/first", b"1")
            await take(events, 1)  # the watcher has read the log and caught up
            nursery.start_soon(take, events, 1)
            await trio.testing.wait_all_tasks_blocked()
            before = reads
            # Every task stays blocked for this long only if nothing wakes to poll.
            await trio.testing.wait_all_tasks_blocked(cushion=0.3)
            assert reads == before
            await store.create("/idle/x", b"1")
    finally:
        await store.aclose()


async def test_every_write_wakes_its_watchers_without_a_later_write(db: Path) -> None:
    """A missed wake-up would leave a change waiting for the next write (there is no
    poll to rescue it): here no next write comes until every watcher has the change,
    whatever the interleaving of the watchers' reads, the write and the consumers."""
    store = SqliteStore(db)
    rng = random.Random(5)
    try:
        async with store.watch("/a/", 0) as a, store.watch("/", 0) as b, \
                store.watch("/a/x", 0) as c:
            for i in range(150):
                got: list[tuple[int, str]] = []

                async def consume(index: int, events: AsyncIterator[WatchEvent],
                                  delay: int, got: list[tuple[int, str]]) -> None:
                    for _ in range(delay):  # arrive before, during or after the commit
                        await trio.lowlevel.checkpoint()
                    (event,) = await take(events, 1)
                    got.append((index, event.kv.key))

                async def read(delay: int) -> None:  # shares the write's trip or not
                    for _ in range(delay):
                        await trio.lowlevel.checkpoint()
                    await store.get("/a/x0")

                async with trio.open_nursery() as nursery:
                    for index, events in enumerate((a, b, c)):
                        nursery.start_soon(consume, index, events, rng.randrange(6), got)
                    nursery.start_soon(read, rng.randrange(3))
                    for _ in range(rng.randrange(3)):
                        await trio.lowlevel.checkpoint()
                    await store.create(f"/a/x{i}", b"v")
                assert sorted(got) == [(0, f"/a/x{i}"), (1, f"/a/x{i}"), (2, f"/a/x{i}")]
    finally:
        await store.aclose()


async def test_a_watch_behind_the_remembered_changes_reads_the_log(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recent changes are served from memory, older ones from the log: a watcher that
    starts behind what memory holds gets every change once, in order, across the
    seam."""
    monkeypatch.setattr(store_module, "RECENT_CHANGES", 4)
    store = SqliteStore(db)
    try:
        written = [await store.create(f"/k/{i:02d}", b"x") for i in range(12)]
        async with store.watch("/k/", 2) as events:
            got = await take(events, 10)
            more = await store.create("/k/late", b"y")
            got += await take(events, 1)
        assert [e.revision for e in got] == [kv.mod_revision for kv in [*written[2:], more]]
    finally:
        await store.aclose()


async def test_concurrent_calls_share_trips_but_keep_their_own_outcomes(db: Path) -> None:
    store = SqliteStore(db)
    outcomes: dict[int, str] = {}
    try:
        await store.create("/taken", b"0")

        async def create(i: int) -> None:
            key = "/taken" if i % 3 == 0 else f"/free/{i}"
            try:
                await store.create(key, str(i).encode())
                outcomes[i] = "created"
            except KeyExists:
                outcomes[i] = "exists"

        async with trio.open_nursery() as nursery:
            for i in range(30):
                nursery.start_soon(create, i)
        assert outcomes == {i: "exists" if i % 3 == 0 else "created" for i in range(30)}
        items, revision = await store.list("/free/")
        assert len(items) == 20 and revision == 21
        # One revision per successful write, none lost or repeated.
        assert sorted(kv.mod_revision for kv in items) == list(range(2, 22))
    finally:
        await store.aclose()


async def test_a_second_user_of_the_file_is_refused(db: Path) -> None:
    first = SqliteStore(db)
    await first.create("/a", b"1")
    second = SqliteStore(db, busy_timeout=0.2)
    try:
        with pytest.raises(StoreUnavailable, match="another process"):
            await second.get("/a")
    finally:
        await second.aclose()
        await first.aclose()
    # Once the first one is closed, the file opens again.
    third = SqliteStore(db)
    try:
        assert await third.get("/a") == KeyValue("/a", b"1", 1, 1)
    finally:
        await third.aclose()


def test_prefix_end() -> None:
    assert prefix_end("") is None
    assert prefix_end("/registry/pods/") == "/registry/pods0"
    assert prefix_end("a\U0010ffff") == "b"
    assert prefix_end("\U0010ffff") is None
    assert prefix_end("a\ud7ff") == "a\ue000"


# -- as a kubecore plugin --------------------------------------------------------------


def test_plugin_default_path_is_in_the_data_dir(tmp_path: Path) -> None:
    loaded = plugins.load(["store_sqlite"])
    ctx = kernel.prepare({"kubecore": {"data_dir": str(tmp_path)}}, loaded)
    store = ctx.hook.kubecore_store(ctx=ctx)
    assert isinstance(store, SqliteStore)
    assert store.path == tmp_path / "store.sqlite3"
    assert store.retain_revisions == 10000


def test_plugin_config_keys(tmp_path: Path) -> None:
    loaded = plugins.load(["store_sqlite"])
    raw = {"store_sqlite": {"path": str(tmp_path / "x.db"), "retain_revisions": 50}}
    ctx = kernel.prepare(raw, loaded)
    store = ctx.hook.kubecore_store(ctx=ctx)
    assert (store.path, store.retain_revisions) == (tmp_path / "x.db", 50)
    with pytest.raises(ConfigError, match=r"store_sqlite\.retain_revisions"):
        kernel.prepare({"store_sqlite": {"retain_revisions": 0}}, loaded)
    with pytest.raises(ConfigError, match=r"store_sqlite\.nope: unknown key"):
        kernel.prepare({"store_sqlite": {"nope": 1}}, loaded)


@pytest.mark.parametrize(
    "selection", [["store_sqlite", "store_etcd"], ["store_etcd", "store_sqlite"]]
)
def test_an_explicitly_loaded_etcd_store_wins(tmp_path: Path, selection: list[str]) -> None:
    loaded = plugins.load(selection)
    ctx = kernel.prepare({"kubecore": {"data_dir": str(tmp_path)}}, loaded)
    store = ctx.hook.kubecore_store(ctx=ctx)
    assert store.name == "store_etcd"  # constructing it does not connect


async def test_calls_queued_on_a_closing_store_each_get_unavailable(db: Path) -> None:
    store = SqliteStore(db)
    await store.create("/a", b"1")
    errors: list[BaseException] = []

    async def get() -> None:
        try:
            await store.get("/a")
        except StoreUnavailable as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        await store.aclose()
        for _ in range(5):
            nursery.start_soon(get)
    assert len(errors) == 5 and len({id(e) for e in errors}) == 5


async def _in_file(store: SqliteStore, prefix: str) -> list[KeyValue]:
    """What the file itself holds under ``prefix``, read in the database thread."""
    items, _ = await store._run(lambda conn: store._list_tx(conn, prefix))
    return items


async def test_reads_come_from_memory_and_match_the_file(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = ["/a/z", "/a/\u00e9", "/a/\U0001f600", "/a/b/c", "/a", "/ab", "/b/1", "/a/\x7f"]
    first = SqliteStore(db)
    try:
        for key in keys:
            await first.create(key, key.encode())
        updated = await first.update("/a/z", b"new", 1)
        deleted = await first.delete("/ab")
    finally:
        await first.aclose()

    store = SqliteStore(db)  # the copy in memory is loaded from the file
    try:
        await store.create("/a/y", b"after reopening")
        trips = 0
        original = store._trip

        async def counting(batch: list[object]) -> None:
            nonlocal trips
            trips += 1
            await original(batch)  # type: ignore[arg-type]

        monkeypatch.setattr(store, "_trip", counting)
        listed = {prefix: await store.list(prefix) for prefix in ("", "/a", "/a/", "/b/", "/c")}
        got = {key: await store.get(key) for key in [*keys, "/a/y", "/none"]}
        assert trips == 0
        monkeypatch.undo()

        for prefix, (items, revision) in listed.items():
            assert items == await _in_file(store, prefix), prefix
            assert revision == deleted.mod_revision + 1
        assert [kv.key for kv in listed["/a/"][0]] == sorted(
            ["/a/z", "/a/\u00e9", "/a/\U0001f600", "/a/b/c", "/a/y", "/a/\x7f"])
        assert got["/a/z"] == updated and got["/ab"] is None and got["/none"] is None
        assert got["/a/y"] == KeyValue("/a/y", b"after reopening", 11, 11)
    finally:
        await store.aclose()


async def test_a_list_during_a_write_claims_no_revision_it_does_not_hold(db: Path) -> None:
    store = SqliteStore(db)
    try:
        await store.create("/k/a", b"1")
        seen: list[tuple[tuple[str, ...], int]] = []

        written = trio.Event()

        async def write() -> None:
            await store.create("/k/b", b"2")
            written.set()

        async def look() -> None:
            items, revision = await store.list("/k/")
            seen.append((tuple(kv.key for kv in items), revision))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(write)
            while not written.is_set():  # before and while the write is in the thread
                await look()  # a checkpoint: the write proceeds meanwhile
        await look()
        assert seen[0] == (("/k/a",), 1) and seen[-1] == (("/k/a", "/k/b"), 2)
        assert set(seen) <= {(("/k/a",), 1), (("/k/a", "/k/b"), 2)}
    finally:
        await store.aclose()


# -- one transaction per trip ------------------------------------------------------------


class _Recording:
    """Stands in for the store's connection: records every statement and raises
    ``sqlite3.OperationalError`` on those ``fail(sql, params)`` picks."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.statements: list[str] = []
        self.fail: Callable[[str, Sequence[object]], bool] = lambda sql, params: False

    def execute(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
        self.statements.append(sql)
        if self.fail(sql, params):
            raise sqlite3.OperationalError("disk I/O error")
        return self._conn.execute(sql, params)

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    def close(self) -> None:
        self._conn.close()

    def count(self, start: str) -> int:
        return sum(1 for sql in self.statements if sql.startswith(start))


async def _recorded(store: SqliteStore) -> _Recording:
    """Opens ``store`` and puts a recording connection in place of its own."""
    await store.revision()
    assert store._conn is not None
    recording = _Recording(store._conn)
    store._conn = recording  # type: ignore[assignment]
    return recording


async def _in_one_trip(
    store: SqliteStore, *calls: Callable[[], Awaitable[object]]
) -> list[object]:
    """Each call's result or exception. The calls queue up, in this order, while the
    test holds the store's lock, and then run together: checked to be one trip."""
    results: list[object] = [None] * len(calls)
    sizes: list[int] = []
    original = store._trip

    async def recording(batch: list[Any]) -> None:
        sizes.append(len(batch))
        await original(batch)

    async def run(index: int, call: Callable[[], Awaitable[object]]) -> None:
        try:
            results[index] = await call()
        except Exception as exc:
            results[index] = exc

    store._trip = recording  # type: ignore[method-assign]
    try:
        async with trio.open_nursery() as nursery, store._lock:
            for index, call in enumerate(calls):
                nursery.start_soon(run, index, call)
                await trio.testing.wait_all_tasks_blocked()  # queued, waits for the lock
    finally:
        del store._trip
    assert sizes == [len(calls)]
    return results


def _file_log(db: Path) -> list[tuple[int, str, str]]:
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT revision, key, type FROM log ORDER BY revision").fetchall()
    return [(int(r), str(k), str(t)) for r, k, t in rows]


async def test_a_trip_commits_once_and_a_failing_write_fails_alone(db: Path) -> None:
    store = SqliteStore(db)
    try:
        a = await store.create("/k/a", b"a1")
        b = await store.create("/k/b", b"b1")
        d = await store.create("/k/d", b"d1")
        recording = await _recorded(store)
        async with store.watch("/k/", d.mod_revision) as events:
            results = await _in_one_trip(
                store,
                lambda: store.update(a.key, b"a2", a.mod_revision),
                lambda: store.update(b.key, b"b2", 99),  # a conflict
                lambda: store.create(a.key, b"again"),  # exists
                lambda: store.update(a.key, b"a3", 4),  # sees the trip's own write
                lambda: store.delete(d.key, d.mod_revision),
                lambda: store.update(d.key, b"d2", d.mod_revision),  # deleted just before
                lambda: store.create("/k/e", b"e1"),
                store.revision,
            )
            got = await take(events, 4)
        assert results[0] == KeyValue(a.key, b"a2", 1, 4)
        assert isinstance(results[1], Conflict)
        assert isinstance(results[2], KeyExists)
        assert results[3] == KeyValue(a.key, b"a3", 1, 5)
        assert results[4] == KeyValue(d.key, b"d1", 3, 6)
        assert isinstance(results[5], KeyNotFound)
        assert results[6] == KeyValue("/k/e", b"e1", 7, 7)
        assert results[7] == 7
        assert [(e.type, e.kv.key, e.revision) for e in got] == [
            (EventType.PUT, a.key, 4),
            (EventType.PUT, a.key, 5),
            (EventType.DELETE, d.key, 6),
            (EventType.PUT, "/k/e", 7),
        ]
        # One transaction, one write of the counter, for the whole trip.
        assert recording.count("BEGIN") == 1 and recording.count("COMMIT") == 1
        assert recording.count("UPDATE meta SET value = ? WHERE name = 'revision'") == 1
        assert recording.count("SAVEPOINT") == 7 and recording.count("ROLLBACK TO") == 3
        assert await store.get(b.key) == b
    finally:
        await store.aclose()
    reopened = SqliteStore(db)
    try:
        assert await reopened.revision() == 7
        items, _ = await reopened.list("/k/")
        assert [(kv.key, kv.value, kv.mod_revision) for kv in items] == [
            (a.key, b"a3", 5), (b.key, b"b1", 2), ("/k/e", b"e1", 7)]
    finally:
        await reopened.aclose()
    assert [r for r, _, _ in _file_log(db)] == list(range(1, 8))


async def test_a_database_error_in_one_write_undoes_only_that_write(db: Path) -> None:
    store = SqliteStore(db)
    try:
        a, b, c = [await store.create(f"/k/{n}", b"1") for n in "abc"]
        recording = await _recorded(store)
        # b's row in ``kv`` is already changed when its log row fails.
        recording.fail = lambda sql, params: sql.startswith("INSERT INTO log") and (
            params[1] == b.key)
        results = await _in_one_trip(
            store,
            lambda: store.update(a.key, b"2", a.mod_revision),
            lambda: store.update(b.key, b"2", b.mod_revision),
            lambda: store.update(c.key, b"2", c.mod_revision),
        )
        assert isinstance(results[1], StoreUnavailable)
        assert [results[0], results[2]] == [
            KeyValue(a.key, b"2", 1, 4), KeyValue(c.key, b"2", 3, 5)]  # no gap
        assert await _in_file(store, "/k/") == [results[0], b, results[2]]
        assert await store.get(b.key) == b
    finally:
        await store.aclose()
    assert _file_log(db) == [(1, a.key, "PUT"), (2, b.key, "PUT"), (3, c.key, "PUT"),
                             (4, a.key, "PUT"), (5, c.key, "PUT")]


async def test_a_failed_commit_publishes_nothing_and_keeps_the_revision(db: Path) -> None:
    # Two more writes would compact (retention 5, batches of 1): that must not stick.
    store = SqliteStore(db, retain_revisions=5)
    try:
        written = [await store.create(f"/k/{i}", b"1") for i in range(6)]
        recording = await _recorded(store)
        recording.fail = lambda sql, params: sql == "COMMIT"
        async with store.watch("/k/", 6) as events:
            results = await _in_one_trip(
                store,
                store.revision,  # before the transaction: its answer stands
                lambda: store.create("/k/new", b"1"),
                lambda: store.update(written[0].key, b"2", 1),
                lambda: store.create(written[1].key, b"2"),  # fails anyway
                store.revision,  # saw the uncommitted writes
            )
            assert results[0] == 6
            assert all(isinstance(r, StoreUnavailable) for r in results[1:]), results
            assert recording.statements.count("ROLLBACK") == 1
            assert store.compact_revision == 0
            assert await store.revision() == 6
            assert await store.get("/k/new") is None
            assert await store.get(written[0].key) == written[0]
            assert await _in_file(store, "/k/") == written
            recording.fail = lambda sql, params: False
            later = await store.create("/k/later", b"1")
            assert later.mod_revision == 7
            assert store.compact_revision == 2  # from 7, where the failed trip said 3
            (event,) = await take(events, 1)  # nothing from the failed trip before it
            assert event.kv == later
    finally:
        await store.aclose()
    assert [r for r, _, _ in _file_log(db)] == list(range(3, 8))
    reopened = SqliteStore(db)
    try:
        assert await reopened.revision() == 7
    finally:
        await reopened.aclose()


async def test_a_write_that_cannot_be_undone_alone_fails_its_whole_transaction(
    db: Path,
) -> None:
    store = SqliteStore(db)
    try:
        a, b, c = [await store.create(f"/k/{n}", b"1") for n in "abc"]
        recording = await _recorded(store)
        recording.fail = lambda sql, params: sql.startswith("ROLLBACK TO")
        async with store.watch("/k/", 3) as events:
            results = await _in_one_trip(
                store,
                lambda: store.update(a.key, b"2", a.mod_revision),
                lambda: store.update(b.key, b"2", 99),  # its savepoint cannot roll back
                lambda: store.update(c.key, b"2", c.mod_revision),  # a new transaction
            )
            assert isinstance(results[0], StoreUnavailable)
            assert isinstance(results[1], StoreUnavailable)
            assert results[2] == KeyValue(c.key, b"2", 3, 4)
            (event,) = await take(events, 1)
            assert event.kv == results[2]
        assert recording.count("BEGIN") == 2 and recording.count("COMMIT") == 1
        assert await _in_file(store, "/k/") == [a, b, results[2]]
    finally:
        await store.aclose()
