"""Bindings in flight: the scheduler assumes each pod on its host before the binding is
answered (so the next pod sees it), keeps several bindings in flight, takes the
assumption back when a binding fails, and trusts the assigned-pods watch over it."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any, cast

import kubecore_scheduler_priority as policy
import trio
import trio.testing

from kubecore.api import STATUS_FAILURE, Pod, Status
from kubecore.client import ApiError, AsyncClient, WatchEvent
from kubecore.scheduler import NodeInfo, PriorityFunction, applies_when, node_only, pod_key
from kubecore.scheduler.core import NoFit, Scheduler, Settings
from tests.scheduler.conftest import TIMEOUT, minion, pod


def api_error(code: int) -> ApiError:
    return ApiError(Status(kind="Status", status=STATUS_FAILURE, code=code,
                           message=f"refused with {code}"))


class HeldBinder:
    """A client whose bindings wait until the test answers them (with success or an
    error), noting the order they were asked in."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []
        self._answers: dict[str, trio.MemoryReceiveChannel[ApiError | None]] = {}
        self._senders: dict[str, trio.MemorySendChannel[ApiError | None]] = {}
        self.changed = trio.Event()

    def _channel(self, pod_id: str) -> None:
        if pod_id not in self._answers:
            send, receive = trio.open_memory_channel[ApiError | None](1)
            self._senders[pod_id], self._answers[pod_id] = send, receive

    async def bind(self, pod_id: str, host: str, **_: Any) -> Status:
        self._channel(pod_id)
        self.asked.append((pod_id, host))
        self.changed.set()
        error = await self._answers[pod_id].receive()
        if error is not None:
            raise error
        return Status(kind="Status", status="Success")

    def answer(self, pod_id: str, error: ApiError | None = None) -> None:
        self._channel(pod_id)
        self._senders[pod_id].send_nowait(error)

    async def get(self, model: type[Pod], id: str, **_: Any) -> Pod:
        return pod(id)  # still unassigned, as far as a 409 check can tell

    async def wait_asked(self, count: int) -> None:
        with trio.fail_after(TIMEOUT):
            while len(self.asked) < count:
                self.changed = trio.Event()
                await self.changed.wait()


def scheduler(binder: HeldBinder, concurrency: int) -> Scheduler:
    s = Scheduler(cast(AsyncClient, binder),
                  {"PodFitsPorts": policy.pod_fits_ports},
                  {"LeastRequestedPriority": policy.least_requested_priority},
                  settings=Settings(bind_concurrency=concurrency, backoff_initial=60.0),
                  rng=random.Random(3))
    s._events_supported = False  # no events: the fake client takes none
    return s


async def test_pods_are_assumed_on_their_host_while_bindings_are_in_flight() -> None:
    binder = HeldBinder()
    s = scheduler(binder, concurrency=5)
    s.set_minions([minion(f"node-{i}") for i in range(4)])
    pods = [pod(f"web-{i}", host_ports=[8080]) for i in range(4)]
    for p in pods:
        s._on_unassigned_event(WatchEvent("ADDED", p))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(s._loop, nursery)
        # All four bindings are asked for before any is answered: each pod took its
        # port on a node the others could then no longer choose.
        await binder.wait_asked(4)
        hosts = [host for _, host in binder.asked]
        assert sorted(hosts) == [f"node-{i}" for i in range(4)]
        assert all(s.nodes[h].used_host_ports == {8080} for h in hosts)

        # A fifth pod with the same port finds no fit while the four are assumed.
        late = pod("late", host_ports=[8080])
        s._on_unassigned_event(WatchEvent("ADDED", late))
        await trio.testing.wait_all_tasks_blocked()
        assert len(binder.asked) == 4
        assert pod_key(late) in s._waiting  # tried, no fit: backing off

        # web-0's binding fails: its node is free again and web-0 waits to be retried.
        failed_host = dict(binder.asked)["web-0"]
        binder.answer("web-0", api_error(500))
        for p in pods[1:]:
            binder.answer(p.id)
        await trio.testing.wait_all_tasks_blocked()
        assert s.nodes[failed_host].used_host_ports == set()
        assert pod_key(pods[0]) in s.queued()
        for p in pods[1:]:  # bound: placed, out of the queue
            assert pod_key(p) not in s.queued()
            assert s.nodes[dict(binder.asked)[p.id]].pod_count == 1
        nursery.cancel_scope.cancel()


async def test_no_more_bindings_in_flight_than_allowed() -> None:
    binder = HeldBinder()
    s = scheduler(binder, concurrency=2)
    s.set_minions([minion("node-a")])
    for i in range(5):
        s._on_unassigned_event(WatchEvent("ADDED", pod(f"p-{i}")))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(s._loop, nursery)
        await binder.wait_asked(2)
        await trio.testing.wait_all_tasks_blocked()
        assert [p for p, _ in binder.asked] == ["p-0", "p-1"]  # FIFO, two at a time
        binder.answer("p-0")
        await binder.wait_asked(3)
        await trio.testing.wait_all_tasks_blocked()
        assert [p for p, _ in binder.asked] == ["p-0", "p-1", "p-2"]
        nursery.cancel_scope.cancel()


async def test_the_watch_overrides_an_assumption_whose_binding_then_fails() -> None:
    binder = HeldBinder()
    s = scheduler(binder, concurrency=1)
    s.set_minions([minion("node-a"), minion("node-b")])
    p = pod("p", host_ports=[80])
    s._on_unassigned_event(WatchEvent("ADDED", p))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(s._loop, nursery)
        await binder.wait_asked(1)
        ((_, assumed),) = binder.asked
        other = "node-b" if assumed == "node-a" else "node-a"
        # Someone else bound it elsewhere; the watch says so before our 409 comes back.
        s._on_assigned_event(WatchEvent("ADDED", pod("p", host_ports=[80], host=other)))
        binder.answer("p", api_error(409))
        await trio.testing.wait_all_tasks_blocked()
        assert s.nodes[other].used_host_ports == {80}
        assert s.nodes[assumed].used_host_ports == set()
        nursery.cancel_scope.cancel()


def test_a_relist_keeps_the_assumptions_still_in_flight() -> None:
    s = scheduler(HeldBinder(), concurrency=1)
    s.set_minions([minion("node-a")])
    s._assume(pod("flying", cpu=100), "node-a")
    s._on_assigned_list([pod("settled", cpu=10, host="node-a")])
    assert s.nodes["node-a"].requested_cpu == 110
    s._unassume(pod_key(pod("flying")))
    assert s.nodes["node-a"].requested_cpu == 10


def test_a_lone_priority_is_read_like_several() -> None:
    """Scores are whole numbers and only feasible hosts count, however many priorities
    there are (the single-priority shortcut must not change that)."""

    def odd(p: Pod, nodes: Sequence[NodeInfo]) -> dict[str, float]:
        return {"node-a": 1.9, "node-b": 1.2, "ghost": -5.0}

    s = Scheduler(cast(AsyncClient, object()), {}, {"Odd": odd},  # type: ignore[dict-item]
                  rng=random.Random(0))
    s.set_minions([minion("node-a"), minion("node-b"), minion("node-c")])
    picks = {s.find_host(pod(f"p{i}")) for i in range(40)}
    assert picks == {"node-c"}  # 1.9 and 1.2 count as 1: node-c's 0 wins, not "ghost"


def test_a_predicate_is_skipped_for_pods_it_does_not_apply_to() -> None:
    calls: list[str] = []

    @applies_when(lambda p: bool(p.node_selector))
    def selective(p: Pod, node: NodeInfo) -> bool:
        calls.append(node.name)
        return node.name == "node-b"

    s = Scheduler(cast(AsyncClient, object()), {"Selective": selective}, {},
                  rng=random.Random(0))
    s.set_minions([minion("node-a"), minion("node-b")])
    assert s.find_host(pod("plain")) in {"node-a", "node-b"} and calls == []
    assert s.find_host(pod("picky", node_selector={"x": "y"})) == "node-b"
    assert sorted(calls) == ["node-a", "node-b"]
    # Nothing fits: every node is reported for the predicate that refused it, and no
    # node was asked twice.
    s.set_minions([minion("node-a")])
    calls.clear()
    found = s.find_host(pod("picky", node_selector={"x": "y"}))
    assert isinstance(found, NoFit) and found.failed == {"Selective": ["node-a"]}
    assert calls == ["node-a"]


def test_a_node_only_priority_is_asked_about_changed_nodes_only() -> None:
    """Kept scores place every pod where asking about every node would have, while
    the priority is asked only about the nodes placements, removals or a minion update
    changed."""
    asked: list[list[str]] = []

    def least(p: Pod, nodes: Sequence[NodeInfo]) -> Mapping[str, int]:
        asked.append(sorted(node.name for node in nodes))
        return policy.least_requested_priority(p, nodes)

    def by_name(p: Pod, nodes: Sequence[NodeInfo]) -> dict[str, int]:
        return {node.name: len(node.name) % 3 for node in nodes}  # not node-only

    def placements(priorities: dict[str, PriorityFunction]) -> list[str]:
        s = Scheduler(cast(AsyncClient, object()), {"PodFitsPorts": policy.pod_fits_ports},
                      priorities, rng=random.Random(7))
        s.set_minions([minion(f"node-{i}", cpu=4000 + 100 * i) for i in range(12)])
        placed = []
        for i in range(80):
            p = pod(f"p{i}", cpu=50 * (i % 7), host_ports=[80] if i % 9 == 0 else [])
            host = s.find_host(p)
            assert isinstance(host, str)
            s._assume(p, host)
            placed.append(host)
            if i % 10 == 5:
                s._unassume(pod_key(pod(f"p{i - 3}")))
            if i == 40:  # node-11 goes, node-0 grows
                s.set_minions([minion("node-0", cpu=9000)] +
                              [minion(f"node-{j}", cpu=4000 + 100 * j) for j in range(1, 11)])
        return placed

    for others in ({}, {"ByName": by_name}):
        asked.clear()
        plain = placements({"Least": least, **others})
        assert len(asked) == 80 and sum(len(nodes) for nodes in asked) > 80 * 8
        asked.clear()

        @node_only
        def marked(p: Pod, nodes: Sequence[NodeInfo]) -> Mapping[str, int]:
            return least(p, nodes)

        kept = placements({"Least": marked, **others})
        assert kept == plain
        assert asked[0] == sorted(f"node-{i}" for i in range(12))
        assert "node-11" not in asked[41] and len(asked[41]) >= 11  # the minion update
        later = [nodes for i, nodes in enumerate(asked) if i not in (0, 41)]
        assert later and all(len(nodes) <= 2 for nodes in later)
        assert sum(len(nodes) for nodes in asked) < 80 * 12 // 4
