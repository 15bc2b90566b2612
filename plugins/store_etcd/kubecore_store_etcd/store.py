"""The etcd v3 store: kubecore's Store protocol on etcd through the ``etcd3`` package.

etcd already has the model the protocol describes (one revision counter, per-key
create/mod revisions, watches from a revision, compaction), so the mapping is direct:

- reads are linearizable ``Range`` calls; ``list`` returns the response header's
  revision, so a watch started from it misses nothing;
- ``create``/``update``/``delete`` are single ``Txn`` calls comparing
  ``create_revision == 0`` or ``mod_revision == expected`` (and ``version > 0`` so a
  compare on a missing key cannot succeed), reading the key in the failure branch to
  tell :class:`KeyNotFound` from :class:`Conflict`;
- watches are gRPC watch streams run in a thread each (see :mod:`.watch`).

Every blocking call runs in ``trio.to_thread.run_sync``. gRPC failures that mean "try
again" become :class:`StoreUnavailable` and move the store to the next endpoint; reads
try every endpoint before giving up, writes do not retry (a write whose answer was lost
may have been applied).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from importlib import import_module
from typing import Any, TypeVar

import trio

from kubecore.log import get_logger
from kubecore.store import (
    Conflict,
    EventType,
    KeyExists,
    KeyNotFound,
    KeyValue,
    StoreError,
    StoreUnavailable,
    WatchEvent,
)
from kubecore_store_etcd.compat import import_etcd3
from kubecore_store_etcd.config import parse_endpoint
from kubecore_store_etcd.watch import WatchItem, WatchWorker

T = TypeVar("T")

log = get_logger("kubecore.store_etcd")

#: Watch batches buffered between a watch thread and its consumer; past this the
#: thread waits, gRPC flow control holds etcd back, and etcd catches up from history.
WATCH_BUFFER = 16
#: How long closing a watch waits for its thread to end.
WATCH_JOIN_TIMEOUT = 10.0
MAX_RECEIVE_BYTES = 256 * 1024 * 1024

# gRPC status names that mean the request may succeed if tried again (or elsewhere).
RETRYABLE_CODES = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "ABORTED", "RESOURCE_EXHAUSTED", "UNKNOWN"}
)


def range_for_prefix(prefix: bytes) -> tuple[bytes, bytes]:
    """etcd's ``(key, range_end)`` covering every key that starts with ``prefix``."""
    if not prefix:
        return b"\x00", b"\x00"  # etcd: from the first key to the end
    end = bytearray(prefix)
    while end and end[-1] == 0xFF:
        end.pop()
    if not end:
        return prefix, b"\x00"
    end[-1] += 1
    return prefix, bytes(end)


class EtcdStore:
    """A :class:`kubecore.store.Store` on an etcd v3 cluster.

    ``endpoints`` are ``host:port`` strings, tried in turn; ``prefix`` is prepended to
    every key in etcd and removed from every key returned. Connections are made lazily
    (the first call), so constructing the store never blocks.
    """

    name = "store_etcd"

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        prefix: str = "",
        request_timeout: float = 5.0,
        reconnect_delay_max: float = 2.0,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        self._etcd = import_etcd3()
        self.rpc: Any = self._etcd.etcdrpc
        self.grpc: Any = import_module("grpc")
        self.endpoints = [parse_endpoint(endpoint) for endpoint in endpoints]
        self.prefix = prefix
        self._prefix_bytes = prefix.encode()
        self.request_timeout = request_timeout
        self.reconnect_delay_max = reconnect_delay_max
        self._clients: list[Any | None] = [None] * len(self.endpoints)
        self._current = 0
        self._clients_lock = threading.Lock()
        self._workers: set[WatchWorker] = set()
        self._closed = False

    # -- connections (any thread) --------------------------------------------------

    def endpoint_name(self, index: int) -> str:
        host, port = self.endpoints[index]
        return f"{host}:{port}"

    def client(self) -> tuple[int, Any]:
        """The endpoint in use and its ``etcd3`` client (created on first use)."""
        with self._clients_lock:
            if self._closed:
                raise StoreUnavailable("etcd store is closed")
            index = self._current
            client = self._clients[index]
            if client is None:
                host, port = self.endpoints[index]
                max_backoff_ms = int(self.reconnect_delay_max * 1000)
                client = self._etcd.client(
                    host=host,
                    port=port,
                    timeout=self.request_timeout,
                    grpc_options=[
                        # Reconnect soon after etcd comes back, not minutes later.
                        ("grpc.initial_reconnect_backoff_ms", min(100, max_backoff_ms)),
                        ("grpc.min_reconnect_backoff_ms", min(100, max_backoff_ms)),
                        ("grpc.max_reconnect_backoff_ms", max_backoff_ms),
                        # Notice a dead peer on an idle watch stream. etcd refuses pings
                        # more often than every 5 s, and pings without a call.
                        ("grpc.keepalive_time_ms", 10_000),
                        ("grpc.keepalive_timeout_ms", 5_000),
                        ("grpc.http2.max_pings_without_data", 0),
                        ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
                    ],
                )
                self._clients[index] = client
            return index, client

    def failover(self, index: int) -> None:
        """Move to the endpoint after ``index`` unless another caller already moved."""
        with self._clients_lock:
            if self._current == index:
                self._current = (index + 1) % len(self.endpoints)

    def translate(self, exc: BaseException, index: int) -> StoreError:
        """A gRPC (or etcd3) error as the :class:`StoreError` callers expect."""
        rpc_error = exc if isinstance(exc, self.grpc.RpcError) else exc.__context__
        where = f"etcd {self.endpoint_name(index)}"
        if isinstance(rpc_error, self.grpc.RpcError):
            code = rpc_error.code()
            name = getattr(code, "name", str(code))
            detail = rpc_error.details() or ""
            if name in RETRYABLE_CODES:
                return StoreUnavailable(f"{where}: {name}: {detail}")
            return StoreError(f"{where}: {name}: {detail}")
        if isinstance(exc, self._etcd.Etcd3Exception):
            return StoreUnavailable(f"{where}: {type(exc).__name__}: {exc}")
        return StoreError(f"{where}: {type(exc).__name__}: {exc}")

    def _call(self, fn: Callable[[Any], T], idempotent: bool) -> T:
        """Run ``fn(client)``; on a retryable failure move to the next endpoint and, for
        reads, try again there (each endpoint once)."""
        attempts = len(self.endpoints) if idempotent else 1
        error: StoreError | None = None
        for _ in range(attempts):
            index, client = self.client()
            try:
                return fn(client)
            except (self.grpc.RpcError, self._etcd.Etcd3Exception) as exc:
                error = self.translate(exc, index)
                if not isinstance(error, StoreUnavailable):
                    raise error from exc
                self.failover(index)
        assert error is not None
        raise error

    async def _run(self, fn: Callable[[Any], T], *, idempotent: bool) -> T:
        if self._closed:
            raise StoreUnavailable("etcd store is closed")
        return await trio.to_thread.run_sync(partial(self._call, fn, idempotent))

    # -- keys and values -----------------------------------------------------------------

    def _key(self, key: str) -> bytes:
        return self._prefix_bytes + key.encode()

    def strip(self, raw_key: bytes) -> str:
        return raw_key[len(self._prefix_bytes) :].decode()

    def _kv(self, raw: Any) -> KeyValue:
        return KeyValue(
            self.strip(raw.key), bytes(raw.value), int(raw.create_revision), int(raw.mod_revision)
        )

    def event(self, raw: Any) -> WatchEvent:
        """An etcd ``mvccpb.Event`` (watched with ``prev_kv``) as a :class:`WatchEvent`."""
        key = self.strip(raw.kv.key)
        prev = None
        if raw.HasField("prev_kv") and raw.prev_kv.mod_revision:
            prev = KeyValue(
                key,
                bytes(raw.prev_kv.value),
                int(raw.prev_kv.create_revision),
                int(raw.prev_kv.mod_revision),
            )
        revision = int(raw.kv.mod_revision)
        if raw.type == raw.DELETE:
            # etcd's delete event carries only the key; the last value is in prev_kv.
            value = prev.value if prev is not None else b""
            created = prev.create_revision if prev is not None else 0
            return WatchEvent(EventType.DELETE, KeyValue(key, value, created, revision), prev)
        kv = KeyValue(key, bytes(raw.kv.value), int(raw.kv.create_revision), revision)
        return WatchEvent(EventType.PUT, kv, prev)

    def _txn(self, client: Any, compare: list[Any], success: list[Any], failure: list[Any]) -> Any:
        request = self.rpc.TxnRequest(
            compare=[c.build_message() for c in compare], success=success, failure=failure
        )
        # etcd3's transaction() drops the response header, whose revision stamps the write.
        return client.kvstub.Txn(
            request,
            client.timeout,
            credentials=client.call_credentials,
            metadata=client.metadata,
        )

    def _put_op(self, key: bytes, value: bytes) -> Any:
        return self.rpc.RequestOp(
            request_put=self.rpc.PutRequest(key=key, value=value, prev_kv=True)
        )

    def _range_op(self, key: bytes) -> Any:
        return self.rpc.RequestOp(request_range=self.rpc.RangeRequest(key=key))

    def _current_or_raise(self, key: str, response: Any, expected: int) -> StoreError:
        kvs = response.responses[0].response_range.kvs
        if not kvs:
            return KeyNotFound(key)
        return Conflict(key, expected, int(kvs[0].mod_revision))

    # -- the Store protocol ----------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        raw = self._key(key)
        response = await self._run(lambda c: c.get_response(raw), idempotent=True)
        return self._kv(response.kvs[0]) if response.kvs else None

    async def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        start, end = range_for_prefix(self._key(prefix))
        response = await self._run(
            lambda c: c.get_range_response(start, end, sort_order="ascend", sort_target="key"),
            idempotent=True,
        )
        return [self._kv(raw) for raw in response.kvs], int(response.header.revision)

    async def revision(self) -> int:
        probe = self._prefix_bytes or b"\x00"
        response = await self._run(lambda c: c.get_response(probe), idempotent=True)
        return int(response.header.revision)

    async def create(self, key: str, value: bytes) -> KeyValue:
        raw, data = self._key(key), bytes(value)

        def txn(c: Any) -> Any:
            t = c.transactions
            return self._txn(c, [t.create(raw) == 0], [self._put_op(raw, data)], [])

        response = await self._run(txn, idempotent=False)
        if not response.succeeded:
            raise KeyExists(key)
        revision = int(response.header.revision)
        return KeyValue(key, data, revision, revision)

    async def update(self, key: str, value: bytes, expected_revision: int) -> KeyValue:
        raw, data = self._key(key), bytes(value)

        def txn(c: Any) -> Any:
            t = c.transactions
            compare = [t.mod(raw) == expected_revision, t.version(raw) > 0]
            return self._txn(c, compare, [self._put_op(raw, data)], [self._range_op(raw)])

        response = await self._run(txn, idempotent=False)
        if not response.succeeded:
            raise self._current_or_raise(key, response, expected_revision)
        prev = response.responses[0].response_put.prev_kv
        return KeyValue(key, data, int(prev.create_revision), int(response.header.revision))

    async def delete(self, key: str, expected_revision: int | None = None) -> KeyValue:
        raw = self._key(key)

        def txn(c: Any) -> Any:
            t = c.transactions
            compare = [t.version(raw) > 0]
            if expected_revision is not None:
                compare.append(t.mod(raw) == expected_revision)
            delete = self.rpc.RequestOp(
                request_delete_range=self.rpc.DeleteRangeRequest(key=raw, prev_kv=True)
            )
            return self._txn(c, compare, [delete], [self._range_op(raw)])

        response = await self._run(txn, idempotent=False)
        if not response.succeeded:
            raise self._current_or_raise(key, response, expected_revision or 0)
        prev_kvs = response.responses[0].response_delete_range.prev_kvs
        if not prev_kvs:  # deleted by someone else between compare and apply: cannot happen
            raise KeyNotFound(key)
        prev = prev_kvs[0]
        return KeyValue(
            key, bytes(prev.value), int(prev.create_revision), int(response.header.revision)
        )

    @asynccontextmanager
    async def watch(self, prefix: str, revision: int) -> AsyncIterator[AsyncIterator[WatchEvent]]:
        """Changes under ``prefix`` after ``revision``, from an etcd watch stream.

        The stream runs in its own thread and reconnects (next endpoint, backoff) from
        the revision after the last one delivered, so a lost connection neither loses
        nor repeats events. Leaving the context cancels the stream and waits for the
        thread to end."""
        if self._closed:
            raise StoreUnavailable("etcd store is closed")
        key, range_end = range_for_prefix(self._key(prefix))
        send, receive = trio.open_memory_channel[WatchItem](WATCH_BUFFER)
        worker = WatchWorker(
            self,
            key=key,
            range_end=range_end,
            after=max(0, revision),
            send=send,
            trio_token=trio.lowlevel.current_trio_token(),
            description=prefix,
        )
        self._workers.add(worker)
        worker.start()
        events = self._events(receive)
        try:
            yield events
        finally:
            worker.stop()
            receive.close()  # a thread blocked handing over a batch gives up at once
            await events.aclose()
            await self._reap(worker)

    async def _events(
        self, receive: trio.MemoryReceiveChannel[WatchItem]
    ) -> AsyncGenerator[WatchEvent, None]:
        async for item in receive:
            if isinstance(item, StoreError):
                raise item
            for event in item:
                yield event
        raise StoreUnavailable(
            "etcd store is closed" if self._closed else "etcd watch ended unexpectedly"
        )

    async def _reap(self, worker: WatchWorker) -> None:
        with trio.CancelScope(shield=True):
            ended = await trio.to_thread.run_sync(worker.join, WATCH_JOIN_TIMEOUT)
        if not ended:
            log.warning("etcd watch thread did not stop", prefix=worker.description)
        self._workers.discard(worker)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def active_watches(self) -> int:
        """Watch threads currently running for this store."""
        return len(self._workers)

    async def compact(self, revision: int) -> None:
        """Drop etcd's history before ``revision`` (etcd's own compaction)."""
        await self._run(lambda c: c.compact(revision, physical=True), idempotent=True)

    async def aclose(self) -> None:
        """Stop every watch, then close the connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True):
            for worker in list(self._workers):
                worker.stop()
            for worker in list(self._workers):
                await self._reap(worker)
            with self._clients_lock:
                clients = [client for client in self._clients if client is not None]
                self._clients = [None] * len(self.endpoints)
            for client in clients:
                await trio.to_thread.run_sync(client.close)
