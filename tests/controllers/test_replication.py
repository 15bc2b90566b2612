"""The replication manager against a real apiserver: convergence, resizes without
overshoot, idempotent syncs, restarts."""

from __future__ import annotations

import trio

from kubecore.api import Pod, ReplicationController
from kubecore.client import ApiClient, AsyncClient, ObjectList, SelectorArg, T, WatchEvent
from kubecore.controllers.replication import ReplicationManager, pod_from_template
from tests.controllers.helpers import PodCounter, controller, resize, wait_for

SETTLE = 0.3
"""Seconds to keep watching after convergence, to catch a late overshoot."""


async def _count(client: ApiClient, labels: dict[str, str]) -> int:
    return len((await client.list(Pod, labels=labels)).items)


async def test_converges_and_resizes_without_overshoot(
    any_client: ApiClient, nursery: trio.Nursery
) -> None:
    client = any_client
    await client.create(controller("web", 5))
    counter = PodCounter(client, {"app": "web"})
    await nursery.start(counter.run)
    manager = ReplicationManager(client, resync_interval=0.5)
    await nursery.start(manager.run)

    await counter.reaches(5)
    await trio.sleep(SETTLE)
    assert len(counter.ids) == 5 and counter.max_seen == 5
    assert await _count(client, {"app": "web"}) == 5

    await resize(client, "web", 7)
    await counter.reaches(7)
    await trio.sleep(SETTLE)
    assert len(counter.ids) == 7 and counter.max_seen == 7

    await resize(client, "web", 2)
    await counter.reaches(2)
    await trio.sleep(SETTLE)
    assert len(counter.ids) == 2 and counter.max_seen == 7
    assert await _count(client, {"app": "web"}) == 2
    rc = await client.get(ReplicationController, "web")
    assert rc.current_state.replicas == 2


async def test_created_pods_follow_the_template(client: ApiClient) -> None:
    rc = await client.create(controller("tpl", 2, {"app": "tpl", "tier": "front"}))
    manager = ReplicationManager(client)
    manager.replace_controllers([rc])
    await manager.sync(("default", "tpl"))
    pods = (await client.list(Pod, labels={"app": "tpl"})).items
    assert len(pods) == 2
    for made in pods:
        assert made.labels == {"app": "tpl", "tier": "front"}
        assert made.id and made.id != "tpl"  # the server assigned it
        assert made.desired_state.manifest.containers[0].image == "nginx"
    assert pod_from_template(rc).id == ""


async def test_two_syncs_back_to_back_and_at_once_do_not_over_create(
    client: ApiClient,
) -> None:
    rc = await client.create(controller("twice", 3))
    manager = ReplicationManager(client)
    manager.replace_controllers([rc])
    key = ("default", "twice")
    await manager.sync(key)
    await manager.sync(key)
    assert await _count(client, {"app": "twice"}) == 3
    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(manager.sync, key)
    assert await _count(client, {"app": "twice"}) == 3


async def test_the_same_event_twice_does_not_over_create(
    client: ApiClient, nursery: trio.Nursery
) -> None:
    counter = PodCounter(client, {"app": "dup"})
    await nursery.start(counter.run)
    manager = ReplicationManager(client, resync_interval=0.2)
    await nursery.start(manager.run)
    await manager.wait_listed()
    rc = await client.create(controller("dup", 4))
    event = WatchEvent("ADDED", rc)
    manager.handle_controller_event(event)
    manager.handle_controller_event(event)
    await counter.reaches(4)
    manager.handle_controller_event(WatchEvent("MODIFIED", rc))
    manager.handle_controller_event(WatchEvent("MODIFIED", rc))
    await trio.sleep(0.5)
    assert len(counter.ids) == 4 and counter.max_seen == 4


class StaleLists(AsyncClient):
    """An apiserver whose pod lists lag behind: after ``fresh`` lists, every pod list
    answers what the first one did (as a cache that has not caught up would)."""

    fresh = 1
    first: ObjectList[Pod] | None = None

    async def list(self, model: type[T], *, namespace: str | None = None,
                   labels: SelectorArg = None, fields: SelectorArg = None
                   ) -> ObjectList[T]:
        listed = await super().list(model, namespace=namespace, labels=labels,
                                    fields=fields)
        if model is not Pod:
            return listed
        if self.first is None:
            self.first = listed  # type: ignore[assignment]
        if self.fresh > 0:
            self.fresh -= 1
            return listed
        return self.first  # type: ignore[return-value]


async def test_expectations_cover_a_list_that_has_not_caught_up(client: ApiClient) -> None:
    rc = await client.create(controller("lag", 3))
    stale = StaleLists(client.base_url)
    try:
        manager = ReplicationManager(stale)
        manager.replace_controllers([rc])
        key = ("default", "lag")
        await manager.sync(key)  # sees nothing, creates 3
        await manager.sync(key)  # the list still shows nothing: expectations hold
        assert await _count(client, {"app": "lag"}) == 3
        assert len(manager.expectations[key].creates) == 3

        # The pod watch settles them; then a fresh list counts the pods themselves.
        for made in (await client.list(Pod, labels={"app": "lag"})).items:
            manager.handle_pod_event(WatchEvent("ADDED", made))
        assert not manager.expectations[key].pending
        stale.fresh = 1
        await manager.sync(key)
        assert await _count(client, {"app": "lag"}) == 3
    finally:
        await stale.aclose()


async def test_restart_does_not_over_create(client: ApiClient, nursery: trio.Nursery) -> None:
    await client.create(controller("again", 5))
    counter = PodCounter(client, {"app": "again"})
    await nursery.start(counter.run)
    with trio.CancelScope() as first:
        manager = ReplicationManager(client, resync_interval=0.2)
        nursery.start_soon(manager.run)
        await counter.reaches(5)
    first.cancel()

    fresh = ReplicationManager(client, resync_interval=0.2)
    await nursery.start(fresh.run)
    await fresh.wait_listed()
    await trio.sleep(0.6)  # several resyncs
    assert len(counter.ids) == 5 and counter.max_seen == 5


async def test_deleted_controller_leaves_its_pods(
    client: ApiClient, nursery: trio.Nursery
) -> None:
    await client.create(controller("gone", 2))
    counter = PodCounter(client, {"app": "gone"})
    await nursery.start(counter.run)
    manager = ReplicationManager(client, resync_interval=0.2)
    await nursery.start(manager.run)
    await counter.reaches(2)
    await client.delete(ReplicationController, "gone")
    await trio.sleep(0.5)
    assert len(counter.ids) == 2
    assert ("default", "gone") not in manager.controllers


async def test_replaces_a_deleted_pod(client: ApiClient, nursery: trio.Nursery) -> None:
    await client.create(controller("heal", 2))
    counter = PodCounter(client, {"app": "heal"})
    await nursery.start(counter.run)
    manager = ReplicationManager(client, resync_interval=30.0)
    await nursery.start(manager.run)
    await counter.reaches(2)
    victim = sorted(counter.ids)[0]
    await client.delete(Pod, victim)
    # Through the pod watch, well before the (long) resync.
    async def replaced() -> bool:
        return victim not in counter.ids and len(counter.ids) == 2

    await wait_for(replaced, within=5.0, what="a replacement pod")
    assert counter.max_seen == 2
