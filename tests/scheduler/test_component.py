"""The scheduler component through a real apiserver on store_sqlite: built from the
plugin manager like any run, it binds every pod, honours ports and resources, lets a
third-party priority change placement, backs off when nothing fits and drops pods that
another binder placed."""

from __future__ import annotations

import importlib
import itertools
import random
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import kubecore_scheduler_priority
import pytest
import trio

from kubecore.api import Event, Pod
from kubecore.client import WatchEvent
from kubecore.config import KernelConfig, Settings
from kubecore.context import Component, Context
from kubecore.errors import StartupError
from kubecore.hookspecs import hookimpl
from kubecore.plugins import new_manager
from kubecore.scheduler import NodeInfo, pod_host_ports, pod_key
from kubecore.scheduler.core import Scheduler
from kubecore.scheduler.plugin import SchedulerConfig
from tests.scheduler.conftest import TIMEOUT, Cluster, minion, pod

GiB = 2**30
FAST = {"minion_poll_interval": 0.1, "backoff_initial": 0.1, "backoff_max": 0.4, "seed": 1}


def context(url: str, data_dir: Path, *extra: object, policy: bool = True,
            **scheduler: Any) -> Context:
    """A master context whose plugin manager holds the scheduler, (``policy``) the
    scheduler_priority plugin, and ``extra`` plugin objects, registered in that order."""
    manager = new_manager()
    manager.register(importlib.import_module("kubecore.scheduler.plugin"), name="scheduler")
    if policy:
        manager.register(kubecore_scheduler_priority, name="scheduler_priority")
    for plugin in extra:
        manager.register(plugin)
    settings = Settings({
        "kubecore": KernelConfig(role="master", api_server=url, data_dir=data_dir),
        "scheduler": SchedulerConfig(**{**FAST, **scheduler}),
    })
    return Context(settings=settings, hook=manager.hook)


def components(ctx: Context) -> list[Component]:
    batches: list[list[Component]] = ctx.hook.kubecore_components(ctx=ctx)
    return [c for batch in batches if batch for c in batch]


@asynccontextmanager
async def running(ctx: Context) -> AsyncIterator[None]:
    """The scheduler component running for the block's duration."""
    (component,) = [c for c in components(ctx) if c.name == "scheduler"]
    async with trio.open_nursery() as nursery:
        await nursery.start(component.run)
        yield
        nursery.cancel_scope.cancel()


class FewestPods:
    """A third-party priority: fewer pods already on the node is better, weighted so it
    outvotes LeastRequestedPriority."""

    @hookimpl
    def kubecore_scheduler_priorities(self, ctx: Context) -> Mapping[str, Any]:
        def fewest_pods(pod: Pod, nodes: Sequence[NodeInfo]) -> dict[str, int]:
            return {node.name: 100 * node.pod_count for node in nodes}

        return {"FewestPods": fewest_pods}


class Recorder:
    """A predicate that always passes and notes when each pod was evaluated, and a host
    selection that notes the order pods come in and then declines."""

    def __init__(self) -> None:
        self.evaluated: dict[str, list[float]] = {}
        self.order: list[str] = []
        self._changed = trio.Event()

    async def wait_evaluated(self, pod_id: str, times: int) -> None:
        """Wait (at most :data:`TIMEOUT`) until ``pod_id`` was evaluated ``times``."""
        with trio.fail_after(TIMEOUT):
            while len(self.evaluated.get(pod_id, [])) < times:
                self._changed = trio.Event()
                await self._changed.wait()

    @hookimpl
    def kubecore_scheduler_predicates(self, ctx: Context) -> Mapping[str, Any]:
        def recorded(pod: Pod, node: NodeInfo) -> bool:
            self.evaluated.setdefault(pod.id, []).append(trio.current_time())
            self._changed.set()
            return True

        return {"Recorded": recorded}

    @hookimpl
    def kubecore_scheduler_select_host(
        self, pod: Pod, scores: Mapping[str, int], rng: random.Random
    ) -> str | None:
        self.order.append(pod.id)
        return None


async def test_every_pod_is_bound_within_ports_and_resources(
    cluster: Cluster, tmp_path: Path
) -> None:
    client = cluster.client
    for name in ("node-a", "node-b"):
        await client.create(minion(name, cpu=1, memory=GiB))
    ids = []
    for i in range(12):
        ports = [9000 + i % 2] if i < 4 else []  # two pods per port: one per node
        created = await client.create(pod(f"pod-{i:02d}", cpu=100, memory=GiB // 16,
                                          host_ports=ports))
        ids.append(created.id)
    # Neither node has room for this one (1 core each), so it must stay unassigned.
    await client.create(pod("too-big", cpu=1500))

    async with running(context(cluster.url, tmp_path)):
        hosts = await cluster.wait_hosts(ids)
        await trio.sleep(0.3)
        assert (await cluster.hosts())["too-big"] == ""

    per_host: dict[str, list[str]] = {"node-a": [], "node-b": []}
    for pod_id, host in hosts.items():
        per_host[host].append(pod_id)
    for host, placed in per_host.items():
        assert sorted(await cluster.hosted(host)) == sorted(placed)
    listed = {p.id: p for p in (await client.list(Pod)).items}
    for host, placed in per_host.items():
        ports = [port for pod_id in placed for port in pod_host_ports(listed[pod_id])]
        assert sorted(ports) == [9000, 9001], (host, ports)
    # Least requested: the cache is updated at each bind, so the load stays even.
    assert abs(len(per_host["node-a"]) - len(per_host["node-b"])) <= 1


async def test_pods_are_taken_in_fifo_order(cluster: Cluster, tmp_path: Path) -> None:
    await cluster.client.create(minion("node-a"))
    ids = [f"pod-{i:02d}" for i in range(8)]
    for pod_id in ids:
        await cluster.client.create(pod(pod_id))
    recorder = Recorder()
    async with running(context(cluster.url, tmp_path, recorder)):
        await cluster.wait_hosts(ids)
        later = ["pod-z", "pod-y", "pod-x"]
        for pod_id in later:  # through the watch, in creation (not name) order
            await cluster.client.create(pod(pod_id))
        await cluster.wait_hosts(later)
    assert recorder.order == [*ids, *later]


@pytest.mark.parametrize("third_party", [False, True])
async def test_a_third_party_priority_changes_placement(
    cluster: Cluster, tmp_path: Path, third_party: bool
) -> None:
    client = cluster.client
    # node-a: many small pods on a big node (0 % used); node-b: one pod using half of it.
    await client.create(minion("node-a", cpu=100))
    await client.create(minion("node-b", cpu=1))
    for i in range(3):
        await client.create(pod(f"small-{i}", cpu=100))
        await client.bind(f"small-{i}", "node-a")
    await client.create(pod("half", cpu=500))
    await client.bind("half", "node-b")
    await client.create(pod("new", cpu=100))

    extra = [FewestPods()] if third_party else []
    async with running(context(cluster.url, tmp_path, *extra)):
        hosts = await cluster.wait_hosts(["new"])
    # LeastRequested alone: node-a (0) beats node-b (25); with FewestPods node-a scores
    # 300 and node-b 125.
    assert hosts["new"] == ("node-b" if third_party else "node-a")


async def test_no_fit_backs_off_with_growing_gaps_until_a_minion_appears(
    cluster: Cluster, tmp_path: Path
) -> None:
    client = cluster.client
    await client.create(minion("node-a"))
    await client.create(pod("holder", host_ports=[8080]))
    await client.bind("holder", "node-a")
    await client.create(pod("late", host_ports=[8080]))

    recorder = Recorder()
    async with running(context(cluster.url, tmp_path, recorder)):
        await recorder.wait_evaluated("late", 5)
        late = await client.get(Pod, "late")
        assert late.desired_state.host == ""
        assert late.current_state.status == "Waiting"
        times = recorder.evaluated["late"][:5]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # 0.1, 0.2, 0.4, then capped at 0.4 (each wait is at least its backoff).
        for gap, expected in zip(gaps, [0.1, 0.2, 0.4, 0.4], strict=True):
            assert expected - 0.01 <= gap < expected + 0.3, gaps
        assert gaps[1] > gaps[0] * 1.5 and gaps[2] > gaps[1] * 1.5

        await client.create(minion("node-b"))
        hosts = await cluster.wait_hosts(["late"])
        # Events are sent in the background: wait for the "scheduled" one.
        with trio.fail_after(TIMEOUT):
            while True:
                events = [e for e in (await client.list(Event)).items
                          if e.involved_object.name == "late"]
                if any(e.status == "scheduled" for e in events):
                    break
                await trio.sleep(0.02)
    assert hosts["late"] == "node-b"
    assert await cluster.hosted("node-b") == ["late"]
    failed = [e for e in events if e.status == "failedScheduling"]
    assert failed and "PodFitsPorts" in failed[0].message and "node-a" in failed[0].message


async def test_no_minions_is_no_fit_and_the_pod_waits(cluster: Cluster,
                                                      tmp_path: Path) -> None:
    await cluster.client.create(pod("alone"))
    async with running(context(cluster.url, tmp_path)):
        with trio.fail_after(TIMEOUT):
            while True:
                events = (await cluster.client.list(Event)).items
                if any("no minions" in e.message for e in events):
                    break
                await trio.sleep(0.05)
        await cluster.client.create(minion("node-a"))
        assert (await cluster.wait_hosts(["alone"]))["alone"] == "node-a"


async def test_a_pod_bound_by_someone_else_is_dropped(cluster: Cluster) -> None:
    client = cluster.client
    await client.create(minion("node-a"))
    await client.create(minion("node-b"))
    stale = await client.create(pod("taken"))
    await client.bind("taken", "node-b")

    scheduler = Scheduler(client, {"PodFitsPorts": kubecore_scheduler_priority.pod_fits_ports},
                          {}, rng=random.Random(0))
    scheduler.set_minions([minion("node-a"), minion("node-b")])
    scheduler._on_unassigned_event(WatchEvent("ADDED", stale))
    assert scheduler.queued() == [pod_key(stale)]
    assert await scheduler.schedule(stale) is None
    assert scheduler.queued() == []
    assert (await client.get(Pod, "taken")).desired_state.host == "node-b"


def test_duplicate_predicate_names_are_a_startup_error(tmp_path: Path) -> None:
    class Clash:
        @hookimpl
        def kubecore_scheduler_predicates(self, ctx: Context) -> Mapping[str, Any]:
            return {"PodFitsPorts": kubecore_scheduler_priority.pod_fits_ports}

    ctx = context("http://127.0.0.1:9", tmp_path, Clash())
    with pytest.raises(StartupError, match="PodFitsPorts"):
        components(ctx)


def test_no_policy_plugin_means_no_scheduler(tmp_path: Path) -> None:
    assert components(context("http://127.0.0.1:9", tmp_path, policy=False)) == []


def test_a_node_run_has_no_scheduler(tmp_path: Path) -> None:
    ctx = context("http://127.0.0.1:9", tmp_path)
    ctx.settings = Settings({
        "kubecore": KernelConfig(role="node", data_dir=tmp_path),
        "scheduler": SchedulerConfig(),
    })
    assert components(ctx) == []
