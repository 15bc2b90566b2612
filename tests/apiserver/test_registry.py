"""The registry (objects <-> store) against every store plugin: SQLite and etcd.

Revisions are only compared with ones the test itself observed (etcd's counter is
shared by every test on the session's server).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest
import trio

from kubecore.api import (
    Binding,
    Endpoints,
    InvalidObject,
    Pod,
    ReplicationController,
    Selector,
    Service,
    TypeMeta,
    decode_value,
)
from kubecore.apiserver.errors import StatusError
from kubecore.apiserver.registry import Registry
from kubecore.apiserver.watch import Watcher
from kubecore.store import Store, StoreUnavailable
from tests.apiserver.harness import TIMEOUT
from tests.apiserver.objects import controller, endpoints, pod, service

Event = tuple[str, TypeMeta]


def obj(model: type[TypeMeta], body: dict[str, Any], **changes: Any) -> Any:
    return decode_value({**body, **changes}, kind=model)


@pytest.fixture
def registry(any_store: Store) -> Registry:
    return Registry(any_store)


class Events:
    """A running watch's events, received through a memory channel."""

    def __init__(self, receive: trio.MemoryReceiveChannel[Event]) -> None:
        self.receive = receive

    async def take(self, n: int) -> list[Event]:
        with trio.fail_after(TIMEOUT):
            return [await self.receive.receive() for _ in range(n)]

    async def ids(self, n: int) -> list[tuple[str, str]]:
        return [(kind, o.id) for kind, o in await self.take(n)]


@asynccontextmanager
async def running(watcher: Watcher) -> AsyncIterator[Events]:
    send, receive = trio.open_memory_channel[Event](100)

    async def emit(kind: str, o: TypeMeta) -> None:
        await send.send((kind, o))

    async with trio.open_nursery() as nursery:

        async def run() -> None:
            async with send:
                await watcher.run(emit)

        nursery.start_soon(run)
        yield Events(receive)
        nursery.cancel_scope.cancel()


async def test_create_get_update_delete(registry: Registry) -> None:
    created = cast(Pod, await registry.create("pods", obj(Pod, pod("a"))))
    assert created.resource_version > 0 and created.self_link == "/api/v1beta1/pods/a"
    assert created.namespace == "default" and created.desired_state.status == "Running"
    got = await registry.get("pods", "a")
    assert got == created
    with pytest.raises(StatusError) as exists:
        await registry.create("pods", obj(Pod, pod("a")))
    assert (exists.value.code, exists.value.reason) == (409, "AlreadyExists")
    with pytest.raises(StatusError) as no_version:
        await registry.update("pods", obj(Pod, pod("a", labels={"v": "2"})))
    assert no_version.value.code == 409
    updated = await registry.update("pods", obj(Pod, pod("a", labels={"v": "2"}),
                                              resourceVersion=created.resource_version))
    assert updated.resource_version > created.resource_version
    with pytest.raises(StatusError) as stale:
        await registry.update("pods", obj(Pod, pod("a"), resourceVersion=created.resource_version))
    assert (stale.value.code, stale.value.reason) == (409, "Conflict")
    with pytest.raises(InvalidObject):
        await registry.create("pods", obj(Pod, pod("b", image="")))
    status = await registry.delete("pods", "a")
    assert status.status == "Success"
    with pytest.raises(StatusError) as gone:
        await registry.get("pods", "a")
    assert gone.value.code == 404


async def test_writes_leave_the_callers_object_as_it_was(registry: Registry) -> None:
    body = obj(Pod, pod("a"))
    before = body.model_dump()
    created = await registry.create("pods", body, namespace="prod")
    assert body.model_dump() == before and body.namespace == ""
    change = obj(Pod, pod("a", labels={"app": "db"}), resourceVersion=created.resource_version)
    before = change.model_dump()
    await registry.update("pods", change, namespace="prod")
    assert change.model_dump() == before
    # A request body is handed over (owned): it is not copied first, and may change.
    handed = obj(Pod, pod("b"))
    stored = await registry.create("pods", handed, namespace="prod", owned=True)
    assert stored.namespace == "prod" and stored.id == "b"


async def test_lists_namespaces_and_selectors(registry: Registry) -> None:
    await registry.create("pods", obj(Pod, pod("a")))
    await registry.create("pods", obj(Pod, pod("b", labels={"app": "db"})), namespace="prod")
    everything = await registry.list("pods")
    assert sorted(o.id for o in getattr(everything, "items")) == ["a", "b"]  # noqa: B009
    prod = await registry.list("pods", namespace="prod")
    assert [o.id for o in getattr(prod, "items")] == ["b"]  # noqa: B009
    web = await registry.list("pods", labels=Selector.parse("app=web"))
    assert [o.id for o in getattr(web, "items")] == ["a"]  # noqa: B009
    named = await registry.list("pods", fields=Selector.parse("name=b"))
    assert [o.id for o in getattr(named, "items")] == ["b"]  # noqa: B009
    with pytest.raises(StatusError) as refused:
        await registry.list("services", fields=Selector.parse("name=x"))
    assert refused.value.code == 400


async def test_watch(registry: Registry) -> None:
    await registry.create("pods", obj(Pod, pod("a")))
    async with running(registry.open_watch("pods", labels=Selector.parse("app=web"))) as events:
        assert await events.ids(1) == [("ADDED", "a")]
        b = await registry.create("pods", obj(Pod, pod("b", labels={"app": "db"})))
        moved = await registry.update("pods", obj(Pod, pod("b"),
                                                resourceVersion=b.resource_version))
        ((kind, added),) = await events.take(1)
        assert (kind, added.id, added.resource_version) == ("ADDED", "b", moved.resource_version)
        await registry.delete("pods", "a")
        ((kind, deleted),) = await events.take(1)
        assert (kind, deleted.id) == ("DELETED", "a")
        assert deleted.resource_version > moved.resource_version
    listed = await registry.list("pods")
    since = listed.resource_version
    await registry.create("pods", obj(Pod, pod("c")))
    async with running(registry.open_watch("pods", resource_version=since)) as events:
        assert await events.ids(1) == [("ADDED", "c")]


async def test_watch_from_a_compacted_revision_is_gone(
    registry: Registry, any_store: Store
) -> None:
    first = await registry.create("pods", obj(Pod, pod("a")))
    for i in range(3):
        await registry.create("pods", obj(Pod, pod(f"b{i}")))
    latest = (await registry.list("pods")).resource_version
    await getattr(any_store, "compact")(latest)  # noqa: B009
    async with running(registry.open_watch("pods", resource_version=first.resource_version)
                       ) as events:
        ((kind, status),) = await events.take(1)
        assert kind == "ERROR"
        assert (getattr(status, "code"), getattr(status, "reason")) == (410, "Gone")  # noqa: B009
        with trio.fail_after(TIMEOUT):
            with pytest.raises(trio.EndOfChannel):
                await events.receive.receive()


async def test_binding_and_the_host_list(registry: Registry, any_store: Store) -> None:
    await registry.create("services", obj(Service, service()))
    await registry.create("pods", obj(Pod, pod("a", host_port=80)))
    await registry.create("pods", obj(Pod, pod("b", host_port=80)))
    await registry.bind(Binding(pod_id="a", host="node-a"))
    with pytest.raises(StatusError) as taken:
        await registry.bind(Binding(pod_id="a", host="node-b"))
    assert taken.value.code == 409
    with pytest.raises(StatusError) as clash:
        await registry.bind(Binding(pod_id="b", host="node-a"))
    assert clash.value.code == 409
    assert cast(Pod, await registry.get("pods", "b")).desired_state.host == ""
    kv = await any_store.get("/registry/hosts/node-a/kubelet")
    assert kv is not None
    listed = json.loads(kv.value)
    assert [item["id"] for item in listed["items"]] == ["a"]
    env = {e["name"] for e in listed["items"][0]["spec"]["containers"][0]["env"]}
    assert "WEB_SERVICE_HOST" in env
    await registry.delete("pods", "a")
    kv = await any_store.get("/registry/hosts/node-a/kubelet")
    assert kv is not None and json.loads(kv.value)["items"] == []


async def test_services_controllers_and_endpoints(registry: Registry) -> None:
    created = cast(Service, await registry.create("services", obj(Service, service())))
    assert created.portal_ip.startswith("127.77.")
    await registry.create("endpoints", obj(Endpoints, endpoints("web", "127.0.0.1:1")))
    await registry.create("endpoints", obj(Endpoints, endpoints("web", "127.0.0.1:2")))
    eps = cast(Endpoints, await registry.get("endpoints", "web"))
    assert eps.endpoints == ["127.0.0.1:2"]
    await registry.delete("services", "web")
    with pytest.raises(StatusError):
        await registry.get("endpoints", "web")
    await registry.create("replicationControllers", obj(ReplicationController, controller()))
    await registry.create("pods", obj(Pod, pod("a")))
    rc = cast(ReplicationController, await registry.get("replicationControllers", "web"))
    assert rc.current_state.replicas == 1


async def test_a_closed_store(registry: Registry, any_store: Store) -> None:
    await registry.create("pods", obj(Pod, pod("a")))
    await any_store.aclose()
    with pytest.raises(StoreUnavailable):
        await registry.get("pods", "a")
    events: list[Event] = []

    async def emit(kind: str, o: TypeMeta) -> None:
        events.append((kind, o))

    with trio.fail_after(TIMEOUT):
        await registry.open_watch("pods", resource_version=1).run(emit)
    ((kind, status),) = events
    assert kind == "ERROR" and getattr(status, "code") == 503  # noqa: B009
