"""The embedded store: one SQLite file with etcd-like revisions, a change log and watches.

Layout (one file, WAL journal):

- ``meta``: ``revision`` (the store's single counter), ``compact_revision`` (the newest
  revision whose change-log row was removed) and ``schema``.
- ``kv``: the current keys with their ``create_revision`` and ``mod_revision``.
- ``log``: one row per revision (``PUT`` or ``DELETE``), written in the same
  transaction as the change it records, so history and state never disagree.

Every SQLite call runs in a worker thread (``trio.to_thread.run_sync``) on one
connection guarded by a FIFO ``trio.Lock``, which also keeps writes in call order.
Calls that queue up while another is in the thread go together in the next trip, in
call order, and the trip's writes share one transaction: each write in a savepoint of
its own (one that fails undoes only itself), the counter in ``meta`` and the
compaction check once, then one COMMIT. A trip to the thread and a COMMIT cost more
than a small write, and concurrent writers then share them. Outcomes are delivered,
and changes published, only once the COMMIT succeeded.

Watches read the changes after their position from memory (the most recent committed
changes are kept there, in revision order) or, when they are further behind, from the
log; then they wait on a ``trio.Event`` that each commit sets and replaces. The event
is taken before reading, so a commit that lands between the read and the wait still
wakes the watcher: a change is delivered as soon as it commits, without polling.
Notifications are in-process: the file is opened in exclusive locking mode so that a
second process cannot write behind this one's watchers.

Reads (``get``, ``list``) are answered from memory, without a trip: the file being
this process's alone, a copy of every current key is loaded when it opens and kept
current by the trio thread after each trip, together with the revision it is at (a
list never claims a revision whose change it does not hold). A read while a write is
in the thread sees the state before it, as it would had it run first. The copy costs
the size of the current values once more in memory.
"""

from __future__ import annotations

import bisect
import itertools
import sqlite3
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import outcome
import trio

from kubecore.log import get_logger
from kubecore.store import (
    Compacted,
    Conflict,
    EventType,
    KeyExists,
    KeyNotFound,
    KeyValue,
    StoreError,
    StoreUnavailable,
    WatchEvent,
)

T = TypeVar("T")

log = get_logger("kubecore.store_sqlite")

SCHEMA_VERSION = 1
#: Change-log rows a watcher reads per round trip to the database thread.
WATCH_BATCH = 256
#: Most recent committed changes kept in memory for watchers (at most
#: ``retain_revisions`` of them): a watcher this close to the head reads no database.
RECENT_CHANGES = 4096

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES
    ('schema', 1), ('revision', 0), ('compact_revision', 0);
CREATE TABLE IF NOT EXISTS kv (
    key             TEXT PRIMARY KEY,
    value           BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    mod_revision    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log (
    revision          INTEGER PRIMARY KEY,
    key               TEXT NOT NULL,
    type              TEXT NOT NULL CHECK (type IN ('PUT', 'DELETE')),
    value             BLOB NOT NULL,
    create_revision   INTEGER NOT NULL,
    prev_value        BLOB,
    prev_mod_revision INTEGER
);
"""


def prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix``, or
    ``None`` when there is none (empty prefix). SQLite compares TEXT as UTF-8 bytes,
    which orders like code points, so incrementing the last code point works."""
    chars = list(prefix)
    while chars:
        code = ord(chars[-1]) + 1
        if code == 0xD800:  # surrogates cannot be encoded; skip over them
            code = 0xE000
        if code <= 0x10FFFF:
            chars[-1] = chr(code)
            return "".join(chars)
        chars.pop()
    return None


def _prefix_clause(prefix: str) -> tuple[str, tuple[str, ...]]:
    end = prefix_end(prefix)
    if not prefix:
        return "1", ()
    if end is None:
        return "key >= ?", (prefix,)
    return "key >= ? AND key < ?", (prefix, end)


@dataclass(eq=False)
class _Call(Generic[T]):
    """One queued database call and, once it ran, its outcome."""

    fn: Callable[[sqlite3.Connection], T]
    write: bool
    result: outcome.Outcome[T] | None = field(default=None)


@dataclass(frozen=True)
class _Undo:
    """What the trip's open transaction puts back if it does not commit."""

    revision: int
    compact_revision: int
    changes: int  # how many of ``_trip_changes`` were there when it began


class SqliteStore:
    """A :class:`kubecore.store.Store` in one SQLite file.

    Nothing is opened until the first operation (which creates the file and its parent
    directories). State and the revision counter survive reopening the file. Change
    history older than ``retain_revisions`` revisions is compacted; a watch from before
    the compaction point raises :class:`~kubecore.store.Compacted`.
    """

    name = "store_sqlite"

    def __init__(
        self,
        path: Path,
        *,
        retain_revisions: int = 10000,
        synchronous: Literal["full", "normal"] = "normal",
        busy_timeout: float = 5.0,
    ) -> None:
        if retain_revisions < 1:
            raise ValueError("retain_revisions must be at least 1")
        self.path = path
        self.retain_revisions = retain_revisions
        # Compaction deletes history in batches rather than one row per write.
        self._compact_batch = max(1, retain_revisions // 10)
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout
        self._lock = trio.Lock()
        self._conn: sqlite3.Connection | None = None
        self._revision = 0
        self._compact_revision = 0
        self._changed = trio.Event()
        self._closed = False
        self._watches = 0
        self._queue: list[_Call[Any]] = []
        # Changes written by the trip in progress (worker thread only), kept only if
        # its transaction commits, then moved to ``_recent`` by the trio thread, which
        # alone reads and changes ``_recent``.
        self._trip_changes: list[WatchEvent] = []
        # Set while the trip's transaction is open (worker thread only).
        self._undo: _Undo | None = None
        self._recent: deque[WatchEvent] = deque(maxlen=min(RECENT_CHANGES, retain_revisions))
        self._recent_upto = 0  # the newest revision in memory (or the revision at open)
        # Every current key, once the file is open; changed by the trio thread only
        # (the worker builds it while opening, before anything reads it).
        self._kv: dict[str, KeyValue] | None = None
        self._keys: list[str] = []  # the keys of ``_kv``, sorted (as SQLite orders them)

    # -- introspection -------------------------------------------------------------

    @property
    def compact_revision(self) -> int:
        """The newest revision whose history is gone (0 before the first compaction)."""
        return self._compact_revision

    @property
    def active_watches(self) -> int:
        """Watch contexts currently open on this store."""
        return self._watches

    # -- plumbing --------------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        """Run ``fn(connection)`` in a worker thread, one call at a time, in call order.

        Whoever holds the lock runs every call queued so far in one trip to the thread
        (a caller whose call already ran just takes its outcome). SQLite errors become
        :class:`StoreUnavailable` (locked, I/O) or :class:`StoreError`; a trip that
        wrote wakes every watcher. A caller cancelled while its call waits in the queue
        takes it out; once the call has started it completes (and counts) regardless."""
        call: _Call[T] = _Call(fn, write)
        self._queue.append(call)
        try:
            async with self._lock:
                if call.result is None:
                    batch, self._queue = self._queue, []
                    await self._trip(batch)
        except BaseException:
            if call.result is None and call in self._queue:
                self._queue.remove(call)
            raise
        assert call.result is not None
        return call.result.unwrap()

    async def _trip(self, batch: list[_Call[Any]]) -> None:
        """Run ``batch`` in one trip to the worker thread, then publish its changes."""
        if self._closed:
            for call in batch:  # an outcome is unwrapped once: one each
                call.result = outcome.Error(StoreUnavailable(f"store {self.path} is closed"))
            return
        try:
            await trio.to_thread.run_sync(self._run_batch, batch)
        finally:
            for call in batch:  # the thread stopped short (it never should): say so
                if call.result is None:
                    call.result = outcome.Error(StoreError(f"{self.path}: call interrupted"))
            changes, self._trip_changes = self._trip_changes, []
            if changes:
                self._remember(changes)
            if any(call.write for call in batch):
                self._notify()

    def _run_batch(self, batch: list[_Call[Any]]) -> None:
        """Worker thread: each call in order, its outcome (or mapped error) recorded;
        the calls that write share one transaction, committed after the last call.

        The first write begins the transaction (:meth:`_transaction`); the calls that
        run from then on, reads included, see the trip's earlier writes. An outcome
        stands only once the transaction committed: when it is lost instead (COMMIT
        fails, or SQLite gives it up after an error), every call that ran inside it
        gets that error and the trip's changes are undone (:meth:`_abandon`); the calls
        after it, if any, go on in a new transaction."""
        inside: list[_Call[Any]] = []  # the calls that ran in the open transaction
        try:
            for call in batch:
                try:
                    if self._conn is None:
                        self._conn = self._open()
                    call.result = outcome.Value(call.fn(self._conn))
                except Exception as exc:
                    call.result = outcome.Error(self._mapped(exc))
                    if self._undo is not None and self._lost():
                        self._abandon([*inside, call], exc)
                        inside = []
                        continue
                if self._undo is not None:
                    inside.append(call)
            if self._undo is not None:
                try:
                    self._commit()
                except Exception as exc:
                    self._abandon(inside, exc)
        finally:
            if self._undo is not None:  # interrupted mid-trip (never expected)
                self._abandon(inside, StoreError(f"{self.path}: call interrupted"))

    def _lost(self) -> bool:
        """Whether the open transaction is gone: rolled back by SQLite (disk full,
        I/O error) or by :meth:`_rollback`, which may have closed the connection."""
        return self._conn is None or not self._conn.in_transaction

    def _commit(self) -> None:
        """End the trip's transaction: the counter in ``meta`` set to the trip's last
        revision, the change log compacted when due, then COMMIT."""
        undo, conn = self._undo, self._conn
        assert undo is not None and conn is not None
        if self._revision != undo.revision:
            conn.execute("UPDATE meta SET value = ? WHERE name = 'revision'", (self._revision,))
        upto = self._revision - self.retain_revisions
        if upto - self._compact_revision > self._compact_batch:
            conn.execute("DELETE FROM log WHERE revision <= ?", (upto,))
            conn.execute("UPDATE meta SET value = ? WHERE name = 'compact_revision'", (upto,))
        else:
            upto = self._compact_revision
        conn.execute("COMMIT")
        self._undo = None
        # Only now: the trio thread reads the compaction point to refuse old watches.
        self._compact_revision = upto

    def _abandon(self, calls: list[_Call[Any]], exc: Exception) -> None:
        """The open transaction will not commit: roll it back, put the revision,
        the compaction point and the changes awaiting publication back as they were
        before it, and give each of ``calls`` (those that ran inside it) ``exc``
        (mapped) in place of its outcome."""
        undo, self._undo = self._undo, None
        assert undo is not None
        if self._conn is not None:
            self._rollback(self._conn)
        self._revision = undo.revision
        self._compact_revision = undo.compact_revision
        del self._trip_changes[undo.changes:]
        for call in calls:
            call.result = outcome.Error(self._mapped(exc))

    def _rollback(self, conn: sqlite3.Connection) -> None:
        """Roll the open transaction back. A connection that cannot is closed rather
        than left holding half a trip: the next call reopens the file, which holds
        the last commit."""
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            log.warning("rollback failed; reopening the store", path=str(self.path),
                        error=str(exc))
            self._conn = None
            conn.close()

    def _mapped(self, exc: Exception) -> Exception:
        """What a caller sees for ``exc``: SQLite and file errors as store errors;
        the store's own (``KeyExists``, ``Conflict``...) as they are."""
        error: Exception
        if isinstance(exc, sqlite3.OperationalError):
            error = StoreUnavailable(f"{self.path}: {self._explain(exc)}")
        elif isinstance(exc, sqlite3.Error):
            error = StoreError(f"{self.path}: {exc}")
        elif isinstance(exc, OSError):  # creating the directory
            error = StoreError(f"{self.path}: {exc.strerror or exc}")
        else:
            return exc
        error.__cause__ = exc
        return error

    def _remember(self, changes: list[WatchEvent]) -> None:
        """Keep the changes a trip committed (in revision order) for watchers."""
        recent = self._recent
        if recent and changes[0].revision != recent[-1].revision + 1:
            recent.clear()  # never a gap: memory holds one contiguous run of revisions
        recent.extend(changes)
        self._recent_upto = changes[-1].revision
        current, keys = self._kv, self._keys
        if current is None:  # cannot be: the trip that wrote opened the file
            return
        for change in changes:
            key = change.kv.key
            if change.type is EventType.DELETE:
                if current.pop(key, None) is not None:
                    del keys[bisect.bisect_left(keys, key)]
            else:
                if key not in current:
                    bisect.insort(keys, key)
                current[key] = change.kv

    def _from_memory(
        self, prefix: str, after: int
    ) -> tuple[list[WatchEvent], int] | None:
        """The remembered changes under ``prefix`` after ``after`` and the revision
        memory covers, or ``None`` when memory does not reach back to ``after``."""
        recent = self._recent
        if after >= self._recent_upto:
            return [], after
        if not recent or after < recent[0].revision - 1:
            return None
        # From the newest end: watchers are usually a few changes behind at most.
        newer = list(itertools.islice(reversed(recent), self._recent_upto - after))
        newer.reverse()
        return [event for event in newer if event.kv.key.startswith(prefix)], self._recent_upto

    @staticmethod
    def _explain(exc: sqlite3.OperationalError) -> str:
        text = str(exc)
        if "locked" in text:
            return f"{text} (is another process using this store file?)"
        return text

    def _notify(self) -> None:
        changed, self._changed = self._changed, trio.Event()
        changed.set()

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            isolation_level=None,  # explicit BEGIN/COMMIT below
            check_same_thread=False,  # used from trio's worker threads, one at a time
        )
        try:
            # Exclusive before WAL: no shared-memory index, and no other process can
            # change the file behind this process's in-memory watch notifications.
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: cannot use WAL journal (got {mode})")
            conn.execute(f"PRAGMA synchronous={self._synchronous.upper()}")
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        if meta["schema"] != SCHEMA_VERSION:
            conn.close()
            raise StoreError(
                f"{self.path}: schema version {meta['schema']}, expected {SCHEMA_VERSION}"
            )
        self._revision = int(meta["revision"])
        self._compact_revision = int(meta["compact_revision"])
        self._recent_upto = self._revision
        items, _ = self._list_tx(conn, "")
        self._keys = [kv.key for kv in items]
        self._kv = {kv.key: kv for kv in items}
        log.debug("store opened", path=str(self.path), revision=self._revision)
        return conn

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection) -> Iterator[None]:
        """Run the block as one write of the trip's transaction, which it begins when
        it is the trip's first (:meth:`_run_batch` commits it). The block runs in a
        savepoint: if it raises, its own changes are undone and the trip's others
        stay. A savepoint that cannot be undone rolls the whole transaction back."""
        if self._undo is None:
            conn.execute("BEGIN IMMEDIATE")
            self._undo = _Undo(self._revision, self._compact_revision, len(self._trip_changes))
        conn.execute("SAVEPOINT write")
        try:
            yield
        except BaseException:
            try:
                conn.execute("ROLLBACK TO write")
                conn.execute("RELEASE write")
            except sqlite3.Error:
                self._rollback(conn)
                raise
            raise
        conn.execute("RELEASE write")

    def _record(
        self,
        conn: sqlite3.Connection,
        kind: EventType,
        kv: KeyValue,
        prev: KeyValue | None,
    ) -> None:
        """Append ``kv``'s change to the log, inside the write's savepoint (the
        counter in ``meta`` and compaction are the trip's, in :meth:`_commit`)."""
        conn.execute(
            "INSERT INTO log (revision, key, type, value, create_revision, prev_value,"
            " prev_mod_revision) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                kv.mod_revision,
                kv.key,
                kind.value,
                kv.value,
                kv.create_revision,
                None if prev is None else prev.value,
                None if prev is None else prev.mod_revision,
            ),
        )

    @staticmethod
    def _current(conn: sqlite3.Connection, key: str) -> KeyValue | None:
        row = conn.execute(
            "SELECT value, create_revision, mod_revision FROM kv WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        return KeyValue(key, bytes(row[0]), int(row[1]), int(row[2]))

    # -- transactions (worker thread) --------------------------------------------------

    def _create_tx(self, conn: sqlite3.Connection, key: str, value: bytes) -> KeyValue:
        revision = self._revision + 1
        kv = KeyValue(key, value, revision, revision)
        with self._transaction(conn):
            if self._current(conn, key) is not None:
                raise KeyExists(key)
            conn.execute(
                "INSERT INTO kv (key, value, create_revision, mod_revision) VALUES (?, ?, ?, ?)",
                (key, value, revision, revision),
            )
            self._record(conn, EventType.PUT, kv, None)
        self._written(revision, WatchEvent(EventType.PUT, kv, None))
        return kv

    def _update_tx(
        self, conn: sqlite3.Connection, key: str, value: bytes, expected: int
    ) -> KeyValue:
        revision = self._revision + 1
        with self._transaction(conn):
            prev = self._current(conn, key)
            if prev is None:
                raise KeyNotFound(key)
            if prev.mod_revision != expected:
                raise Conflict(key, expected, prev.mod_revision)
            kv = KeyValue(key, value, prev.create_revision, revision)
            conn.execute(
                "UPDATE kv SET value = ?, mod_revision = ? WHERE key = ?", (value, revision, key)
            )
            self._record(conn, EventType.PUT, kv, prev)
        self._written(revision, WatchEvent(EventType.PUT, kv, prev))
        return kv

    def _delete_tx(self, conn: sqlite3.Connection, key: str, expected: int | None) -> KeyValue:
        revision = self._revision + 1
        with self._transaction(conn):
            prev = self._current(conn, key)
            if prev is None:
                raise KeyNotFound(key)
            if expected is not None and prev.mod_revision != expected:
                raise Conflict(key, expected, prev.mod_revision)
            kv = KeyValue(key, prev.value, prev.create_revision, revision)
            conn.execute("DELETE FROM kv WHERE key = ?", (key,))
            self._record(conn, EventType.DELETE, kv, prev)
        self._written(revision, WatchEvent(EventType.DELETE, kv, prev))
        return kv

    def _written(self, revision: int, change: WatchEvent) -> None:
        """A write's savepoint was released: the trip is at ``revision``, and
        ``change`` is published if the trip commits."""
        self._revision = revision
        self._trip_changes.append(change)

    def _list_tx(self, conn: sqlite3.Connection, prefix: str) -> tuple[list[KeyValue], int]:
        where, args = _prefix_clause(prefix)
        rows = conn.execute(
            "SELECT key, value, create_revision, mod_revision FROM kv"
            f" WHERE {where} ORDER BY key",
            args,
        ).fetchall()
        items = [KeyValue(str(r[0]), bytes(r[1]), int(r[2]), int(r[3])) for r in rows]
        return items, self._revision

    def _log_tx(
        self, conn: sqlite3.Connection, prefix: str, after: int, limit: int
    ) -> tuple[list[WatchEvent], int]:
        """Events under ``prefix`` after revision ``after`` (at most ``limit``) and the
        revision the log was scanned up to (the next read starts after it)."""
        if after < self._compact_revision:
            raise Compacted(after, self._compact_revision)
        where, args = _prefix_clause(prefix)
        rows = conn.execute(
            "SELECT revision, key, type, value, create_revision, prev_value, prev_mod_revision"
            f" FROM log WHERE revision > ? AND {where} ORDER BY revision LIMIT ?",
            (after, *args, limit),
        ).fetchall()
        events: list[WatchEvent] = []
        for revision, key, kind, value, create_rev, prev_value, prev_mod in rows:
            kv = KeyValue(str(key), bytes(value), int(create_rev), int(revision))
            prev = (
                None
                if prev_value is None
                else KeyValue(str(key), bytes(prev_value), int(create_rev), int(prev_mod))
            )
            events.append(WatchEvent(EventType(kind), kv, prev))
        scanned = events[-1].revision if len(events) == limit else max(after, self._revision)
        return events, scanned

    # -- the Store protocol --------------------------------------------------------------

    async def _memory(self) -> dict[str, KeyValue]:
        """The in-memory copy of the current keys (opening the file first if needed).
        A checkpoint like any store call: a read is where a caller can be cancelled and
        other tasks run."""
        await trio.lowlevel.checkpoint()
        if self._closed:
            raise StoreUnavailable(f"store {self.path} is closed")
        if self._kv is None:
            await self._run(lambda conn: None)
            if self._kv is None:  # closed meanwhile
                raise StoreUnavailable(f"store {self.path} is closed")
        return self._kv

    async def get(self, key: str) -> KeyValue | None:
        return (await self._memory()).get(key)

    async def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        current = await self._memory()
        keys = self._keys
        start = bisect.bisect_left(keys, prefix)
        end = len(keys)
        if prefix:
            # Keys starting with the prefix sort before its prefix_end.
            upper = prefix_end(prefix)
            end = bisect.bisect_left(keys, upper) if upper is not None else end
        return [current[key] for key in keys[start:end]], self._recent_upto

    async def revision(self) -> int:
        return await self._run(lambda conn: self._revision)

    async def create(self, key: str, value: bytes) -> KeyValue:
        data = bytes(value)
        return await self._run(lambda conn: self._create_tx(conn, key, data), write=True)

    async def update(self, key: str, value: bytes, expected_revision: int) -> KeyValue:
        data = bytes(value)
        return await self._run(
            lambda conn: self._update_tx(conn, key, data, expected_revision), write=True
        )

    async def delete(self, key: str, expected_revision: int | None = None) -> KeyValue:
        return await self._run(
            lambda conn: self._delete_tx(conn, key, expected_revision), write=True
        )

    async def compact(self, revision: int) -> None:
        """Drop change history before ``revision``, as etcd's compaction does: a watch
        from ``revision - 1`` or later still works, one from before raises
        :class:`Compacted`. Compaction also happens by itself past ``retain_revisions``."""
        await self._run(lambda conn: self._compact_tx(conn, revision))

    def _compact_tx(self, conn: sqlite3.Connection, revision: int) -> None:
        upto = min(revision - 1, self._revision)
        if upto <= self._compact_revision:
            return
        with self._transaction(conn):
            conn.execute("DELETE FROM log WHERE revision <= ?", (upto,))
            conn.execute("UPDATE meta SET value = ? WHERE name = 'compact_revision'", (upto,))
        self._compact_revision = upto

    @asynccontextmanager
    async def watch(self, prefix: str, revision: int) -> AsyncIterator[AsyncIterator[WatchEvent]]:
        """Changes under ``prefix`` after ``revision``, read from the change log.

        The iterator raises :class:`Compacted` when history after ``revision`` is gone
        and :class:`StoreUnavailable` once the store is closed. A slow consumer misses
        nothing: events wait in the log, not in a buffer."""
        events = self._follow(prefix, max(0, revision))
        self._watches += 1
        try:
            yield events
        finally:
            self._watches -= 1
            await events.aclose()

    async def _follow(self, prefix: str, revision: int) -> AsyncGenerator[WatchEvent, None]:
        position = revision
        if self._conn is None:
            await self._run(lambda conn: None)  # opened: memory knows the revision
        while True:
            # Taken before reading, so a commit after the read still wakes this watcher.
            changed = self._changed
            if self._closed:
                raise StoreUnavailable(f"store {self.path} is closed")
            if position < self._compact_revision:
                raise Compacted(position, self._compact_revision)
            remembered = self._from_memory(prefix, position)
            if remembered is not None:
                batch, scanned = remembered
                caught_up = True
            else:
                batch, scanned = await self._run(
                    partial(self._log_tx, prefix=prefix, after=position, limit=WATCH_BATCH)
                )
                caught_up = len(batch) < WATCH_BATCH and scanned >= self._recent_upto
            for event in batch:
                yield event
            position = scanned
            if caught_up and position >= self._recent_upto:
                await changed.wait()

    async def aclose(self) -> None:
        """Close the file; open watches end with :class:`StoreUnavailable`. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._notify()
        with trio.CancelScope(shield=True):
            async with self._lock:
                conn, self._conn = self._conn, None
                self._kv, self._keys = None, []
                if conn is not None:
                    await trio.to_thread.run_sync(conn.close)
