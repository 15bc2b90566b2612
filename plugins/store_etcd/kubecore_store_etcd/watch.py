"""One etcd watch: a gRPC watch stream read in its own thread, handed to trio.

The thread opens a ``Watch`` stream (etcd3's generated ``WatchStub`` on the store's
channel) with ``start_revision`` = one past the last revision it delivered and
``prev_kv`` set, and hands each response's events to trio with
``trio.from_thread.run(send.send, ...)``, so a slow consumer holds the thread (and
through gRPC flow control, etcd) back instead of growing a buffer.

When the stream fails it moves to the next endpoint and opens a new stream from the
same position after a backoff wait on the stop event (so stopping interrupts it at
once). etcd answers a start revision older than its compaction with
``compact_revision``, which becomes :class:`~kubecore.store.Compacted`.

etcd3's own ``Watcher`` is not used: its single thread per client never ends, it
restarts a failed stream in a tight loop, and it cannot resume from a revision.

Stopping sets the stop event and cancels the current gRPC call, which ends the
iteration at once; the request iterator gRPC reads from ends with its stream, so no
thread outlives the watch.
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any, TypeAlias

import trio

from kubecore.log import get_logger
from kubecore.store import Compacted, StoreError, StoreUnavailable, WatchEvent

if TYPE_CHECKING:
    from kubecore_store_etcd.store import EtcdStore

log = get_logger("kubecore.store_etcd.watch")

INITIAL_RETRY_DELAY = 0.05
# etcd refuses the watch outright for these; retrying cannot help.
FATAL_CODES = frozenset(
    {"INVALID_ARGUMENT", "PERMISSION_DENIED", "UNAUTHENTICATED", "UNIMPLEMENTED", "NOT_FOUND"}
)
# Ask etcd to fail the stream when its member loses the leader, so the watch moves to
# a member that still has one instead of silently receiving nothing.
REQUIRE_LEADER = (("hasleader", "true"),)


#: What a watch thread hands to trio: a batch of events, or the error that ends the watch.
WatchItem: TypeAlias = list[WatchEvent] | StoreError


class _Finished(Exception):
    """The watch is over: stopped, consumer gone, or a final error was delivered."""


class WatchWorker:
    """The thread behind one :meth:`EtcdStore.watch` context."""

    def __init__(
        self,
        store: EtcdStore,
        *,
        key: bytes,
        range_end: bytes,
        after: int,
        send: trio.MemorySendChannel[WatchItem],
        trio_token: trio.lowlevel.TrioToken,
        description: str,
    ) -> None:
        self._store = store
        self._key = key
        self._range_end = range_end
        self._after = after
        self._send = send
        self._token = trio_token
        self.description = description
        self._stop = threading.Event()
        self._call_lock = threading.Lock()
        self._call: Any = None
        self._failures = 0  # consecutive failed streams
        self._thread = threading.Thread(
            target=self._main, name=f"kubecore-etcd-watch {description}", daemon=True
        )

    @property
    def delivered(self) -> int:
        """The revision the consumer has everything up to."""
        return self._after

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end (any thread; idempotent): cancels the live stream."""
        self._stop.set()
        with self._call_lock:
            call = self._call
        if call is not None:
            call.cancel()

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the thread; whether it has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- the thread --------------------------------------------------------------------

    def _main(self) -> None:
        try:
            self._loop()
        except _Finished:
            pass
        except Exception as exc:  # a failure must reach the consumer, not die here
            log.exception("etcd watch failed", prefix=self.description)
            self._deliver_final(StoreError(f"etcd watch failed: {type(exc).__name__}: {exc}"))
        finally:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._send.close, trio_token=self._token)

    def _loop(self) -> None:
        delay = INITIAL_RETRY_DELAY
        while not self._stop.is_set():
            try:
                index, client = self._store.client()
            except StoreUnavailable as exc:  # the store was closed
                self._deliver_final(exc)
                return
            if self._stream(index, client):
                delay = INITIAL_RETRY_DELAY
            if self._stop.is_set():
                return
            self._store.failover(index)
            self._stop.wait(delay)
            delay = min(delay * 2, self._store.reconnect_delay_max)

    def _stream(self, index: int, client: Any) -> bool:
        """Run one watch stream until it fails; whether etcd accepted it."""
        rpc, grpc = self._store.rpc, self._store.grpc
        request = rpc.WatchRequest(
            create_request=rpc.WatchCreateRequest(
                key=self._key,
                range_end=self._range_end,
                start_revision=self._after + 1,
                prev_kv=True,
            )
        )
        over = threading.Event()

        def requests() -> Any:
            yield request
            # Keep our side of the stream open for as long as it lives; returning here
            # ends the thread gRPC reads requests in.
            over.wait()

        metadata = REQUIRE_LEADER + tuple(client.metadata or ())
        accepted = False
        try:
            call = rpc.WatchStub(client.channel).Watch(
                requests(), credentials=client.call_credentials, metadata=metadata
            )
            with self._call_lock:
                if self._stop.is_set():
                    call.cancel()
                    raise _Finished
                self._call = call
            for response in call:
                if response.compact_revision:
                    self._deliver_final(Compacted(self._after, int(response.compact_revision)))
                    raise _Finished
                if response.canceled:
                    reason = response.cancel_reason or "no reason given"
                    self._deliver_final(StoreUnavailable(f"etcd cancelled the watch: {reason}"))
                    raise _Finished
                if response.created:
                    accepted = True
                    resumed = self._failures > 0
                    (log.info if resumed else log.debug)(
                        "etcd watch resumed" if resumed else "etcd watch started",
                        prefix=self.description,
                        endpoint=self._store.endpoint_name(index),
                        after=self._after,
                    )
                    self._failures = 0
                events = [self._store.event(raw) for raw in response.events]
                if events:
                    self._deliver(events)
                    self._after = events[-1].revision
        except grpc.RpcError as exc:
            if self._stop.is_set():
                raise _Finished from None
            error = self._store.translate(exc, index)
            code = getattr(exc.code(), "name", "")
            if code in FATAL_CODES:
                self._deliver_final(error)
                raise _Finished from None
            # One warning per outage; the retries while etcd stays away are debug noise.
            self._failures += 1
            (log.warning if self._failures == 1 else log.debug)(
                "etcd watch interrupted; reconnecting",
                prefix=self.description,
                endpoint=self._store.endpoint_name(index),
                resume_after=self._after,
                error=str(error),
            )
        except ValueError:  # the channel was closed under us: the store is closing
            if self._stop.is_set() or self._store.closed:
                raise _Finished from None
            raise
        finally:
            over.set()
            with self._call_lock:
                self._call = None
        return accepted

    def _deliver(self, item: WatchItem) -> None:
        """Hand ``item`` to the consumer, waiting while it is busy; :class:`_Finished`
        when it has gone away."""
        try:
            trio.from_thread.run(self._send.send, item, trio_token=self._token)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.RunFinishedError):
            raise _Finished from None
        except trio.Cancelled:
            raise _Finished from None

    def _deliver_final(self, error: StoreError) -> None:
        with contextlib.suppress(_Finished):
            self._deliver(error)
