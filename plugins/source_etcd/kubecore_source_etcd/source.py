"""Watching the host key in etcd: initial read, then a watch, re-read after any break.

The prefix (the key template formatted with the hostname) is read with one range get;
the values are decoded (:func:`kubecore_source_http.manifests.decode_pods`, in a
thread, each value once) and their pods yielded as one snapshot. A watch then starts
from the read's revision + 1; each change updates that key's value and yields the new
full snapshot. The watch (an
:class:`~kubecore_store_etcd.EtcdStore` watch: its own thread, handed to trio through a
memory channel) resumes by itself from its last revision when a connection breaks; a
compaction or any other store error ends it, and the prefix is read again after a
short wait, so no change is missed. Nothing is yielded while etcd is unreachable, so
the last snapshot stays in force; an outage is logged once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence

import trio
from kubecore_source_http.manifests import Decoded, decode_pods

from kubecore.api import BoundPod, InvalidObject
from kubecore.kubelet.sources import Rejected, Snapshot
from kubecore.log import get_logger
from kubecore.store import EventType, StoreError

log = get_logger("kubecore.source_etcd")

SOURCE_NAME = "etcd"
RETRY_MIN = 0.1
RETRY_MAX = 2.0


def decode_value(key: str, value: bytes) -> Decoded | Rejected:
    """The pods of one key's value, or why the value as a whole was refused."""
    try:
        return decode_pods(value, key, SOURCE_NAME)
    except InvalidObject as exc:
        return Rejected(key, exc)


def decode_all(values: Mapping[str, bytes]) -> dict[str, Decoded | Rejected]:
    return {key: decode_value(key, value) for key, value in values.items()}


def snapshot_of(decoded: Mapping[str, Decoded | Rejected]) -> Snapshot:
    """The snapshot of the keys under the prefix: each value's pods, in key order."""
    pods: list[BoundPod] = []
    rejected: list[Rejected] = []
    for key in sorted(decoded):
        entry = decoded[key]
        if isinstance(entry, Rejected):
            rejected.append(entry)
        else:
            pods.extend(entry.pods)
            rejected.extend(entry.rejected)
    return Snapshot(pods=pods, rejected=rejected)


class EtcdSource:
    """The ``etcd`` manifest source over ``prefix`` on ``endpoints``."""

    name = SOURCE_NAME

    def __init__(self, endpoints: Sequence[str], prefix: str, *,
                 retry_max: float = RETRY_MAX) -> None:
        self.endpoints = list(endpoints)
        self.prefix = prefix
        self.retry_max = retry_max
        self.reads = 0  # full reads of the prefix, for tests and diagnostics

    async def snapshots(self) -> AsyncIterator[Snapshot]:
        """A snapshot after the first read, then one per change (see the module)."""
        # Imported here: gRPC and etcd3 load only when the source runs.
        from kubecore_store_etcd.store import EtcdStore

        store = EtcdStore(self.endpoints, reconnect_delay_max=self.retry_max)
        values: dict[str, bytes] | None = None
        decoded: dict[str, Decoded | Rejected] = {}  # each key's value, decoded once
        delay = RETRY_MIN
        failing = False
        try:
            while True:
                try:
                    kvs, revision = await store.list(self.prefix)
                except StoreError as exc:
                    if not failing:
                        log.warning("etcd unavailable; keeping the last pods",
                                    prefix=self.prefix, error=str(exc))
                        failing = True
                    await trio.sleep(delay)
                    delay = min(delay * 2, self.retry_max)
                    continue
                if failing:
                    log.info("etcd answers again", prefix=self.prefix)
                    failing = False
                delay = RETRY_MIN
                self.reads += 1
                fresh = {kv.key: kv.value for kv in kvs}
                if fresh != values:
                    values = fresh
                    decoded = await trio.to_thread.run_sync(decode_all, fresh)
                    yield snapshot_of(decoded)
                try:
                    async with store.watch(self.prefix, revision) as events:
                        async for event in events:
                            key = event.kv.key
                            if event.type is EventType.DELETE:
                                values.pop(key, None)
                                decoded.pop(key, None)
                            else:
                                values[key] = event.kv.value
                                decoded[key] = await trio.to_thread.run_sync(
                                    decode_value, key, event.kv.value)
                            yield snapshot_of(decoded)
                except StoreError as exc:
                    log.info("etcd watch ended; reading again", prefix=self.prefix,
                             error=str(exc))
                    await trio.sleep(delay)
        finally:
            with trio.CancelScope(shield=True):
                await store.aclose()
