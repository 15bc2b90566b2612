"""The scheduler's inputs and queue without a server: list then watch from the list's
resource version, re-list on 410 Gone, on a closed stream and after a connection error;
the FIFO forgets pods that are deleted or assigned, also while backing off."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, cast

import trio

from kubecore.api import STATUS_FAILURE, Pod, Status
from kubecore.client import (
    ApiConnectionError,
    ApiError,
    AsyncClient,
    ClientError,
    ObjectList,
    WatchEvent,
)
from kubecore.scheduler import pod_key
from kubecore.scheduler.core import UNASSIGNED, Scheduler, Settings
from tests.scheduler.conftest import TIMEOUT, minion, pod


class FakeWatch:
    """Sends ``events``, then raises ``error`` (or ends when it is ``None`` and
    ``forever`` is false)."""

    def __init__(self, events: Sequence[WatchEvent[Pod]], error: Exception | None,
                 forever: bool) -> None:
        self.events = list(events)
        self.error = error
        self.forever = forever

    async def __aenter__(self) -> FakeWatch:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def __aiter__(self) -> FakeWatch:
        return self

    async def __anext__(self) -> WatchEvent[Pod]:
        await trio.lowlevel.checkpoint()
        if self.events:
            return self.events.pop(0)
        if self.error is not None:
            raise self.error
        if self.forever:
            await trio.sleep_forever()
        raise StopAsyncIteration


class FakeClient:
    """Answers pod lists and watches from a script, noting what was asked."""

    def __init__(self, lists: Sequence[ObjectList[Pod] | ClientError],
                 watches: Sequence[FakeWatch]) -> None:
        self.lists = list(lists)
        self.watches = list(watches)
        self.watched_from: list[int] = []
        self.listed = 0
        self.changed = trio.Event()

    async def list(self, model: type[Pod], **_: Any) -> ObjectList[Pod]:
        self.listed += 1
        answer = self.lists.pop(0)
        if isinstance(answer, ClientError):
            raise answer
        return answer

    def watch(self, model: type[Pod], resource_version: int, **_: Any) -> FakeWatch:
        self.watched_from.append(resource_version)
        self.changed.set()
        return self.watches.pop(0)


def gone() -> ApiError:
    return ApiError(Status(kind="Status", status=STATUS_FAILURE, code=410,
                           reason="Expired", message="too old resource version"))


async def test_list_then_watch_and_relist_on_gone_closed_stream_and_errors() -> None:
    a, b, c, d = (pod(name) for name in "abcd")
    fake = FakeClient(
        lists=[ApiConnectionError("down"), ObjectList([a, b], 5), ObjectList([b], 7),
               ObjectList([b, d], 9)],
        watches=[FakeWatch([WatchEvent("ADDED", c)], gone(), False),
                 FakeWatch([], None, False),
                 FakeWatch([WatchEvent("DELETED", b)], None, True)],
    )
    scheduler = Scheduler(cast(AsyncClient, fake), {}, {}, rng=random.Random(0))
    read = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(scheduler._sync_pods, UNASSIGNED, scheduler._on_unassigned_list,
                           scheduler._on_unassigned_event, read)
        with trio.fail_after(TIMEOUT):
            while len(fake.watched_from) < 3:
                fake.changed = trio.Event()
                await fake.changed.wait()
            await trio.sleep(0.05)  # let the last watch deliver its event
        nursery.cancel_scope.cancel()
    assert read.is_set()
    assert fake.listed == 4
    assert fake.watched_from == [5, 7, 9]
    # c was seen then missing from the next list; b was deleted; d came with the last list.
    assert scheduler.queued() == [pod_key(d)]


async def test_the_queue_is_fifo_and_forgets_deleted_or_assigned_pods() -> None:
    scheduler = Scheduler(cast(AsyncClient, object()), {}, {},
                          settings=Settings(backoff_initial=0.5, backoff_max=2.0))
    first, second, third = pod("first"), pod("second"), pod("third")
    for p in (first, second, third):
        scheduler._on_unassigned_event(WatchEvent("ADDED", p))
    scheduler._on_unassigned_event(WatchEvent("MODIFIED", first))  # keeps its place
    assert scheduler.queued() == [pod_key(first), pod_key(second), pod_key(third)]

    scheduler._back_off(pod_key(first))  # waiting now: after the ready ones
    assert scheduler.queued() == [pod_key(second), pod_key(third), pod_key(first)]
    assert scheduler.backoff_of(pod_key(first)) == 1.0
    scheduler._back_off(pod_key(first))
    scheduler._back_off(pod_key(first))
    assert scheduler.backoff_of(pod_key(first)) == 2.0  # capped

    scheduler._on_unassigned_event(WatchEvent("DELETED", first))
    assigned = pod("second", host="node-a")
    scheduler._on_unassigned_event(WatchEvent("MODIFIED", assigned))
    assert scheduler.queued() == [pod_key(third)]


def test_the_cache_follows_the_assigned_watch_and_the_minion_list() -> None:
    scheduler = Scheduler(cast(AsyncClient, object()), {}, {})
    scheduler.set_minions([minion("node-a", cpu=1)])
    scheduler._on_assigned_event(WatchEvent("ADDED", pod("x", cpu=100, host="node-a")))
    scheduler._on_assigned_event(WatchEvent("ADDED", pod("y", cpu=50, host="node-z")))
    assert scheduler.nodes["node-a"].requested_cpu == 100
    assert "node-z" not in scheduler.minions and scheduler.nodes["node-z"].pod_count == 1
    # A minion registered later sees the pods already bound to it.
    scheduler.set_minions([minion("node-a", cpu=1), minion("node-z")])
    assert scheduler.nodes["node-z"].requested_cpu == 50
    scheduler._on_assigned_event(WatchEvent("MODIFIED", pod("x", cpu=300, host="node-a")))
    assert scheduler.nodes["node-a"].requested_cpu == 300
    scheduler._on_assigned_event(WatchEvent("DELETED", pod("x", cpu=300, host="node-a")))
    assert scheduler.nodes["node-a"].requested_cpu == 0
    # A re-list replaces everything placed.
    scheduler._on_assigned_list([pod("w", memory=7, host="node-a")])
    assert scheduler.nodes["node-a"].requested_memory == 7
    assert scheduler.nodes["node-z"].pod_count == 0
