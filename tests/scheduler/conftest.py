"""Fixtures: a real apiserver on store_sqlite on a free loopback port, an API client on
it, and helpers that build minions and pods."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import trio
from kubecore_store_sqlite import SqliteStore

from kubecore.api import (
    API_VERSION,
    BoundPods,
    Container,
    ContainerManifest,
    Minion,
    NodeResources,
    Pod,
    PodState,
    Port,
)
from kubecore.apiserver.app import create_app
from kubecore.apiserver.keys import DEFAULT_HOST_KEY, host_key
from kubecore.apiserver.local import LocalClient
from kubecore.apiserver.registry import Registry
from kubecore.client import ApiClient, AsyncClient
from kubecore.http import serve_asgi
from tests.apiserver.harness import changed_views

TIMEOUT = 10.0
"""Seconds any single wait in these tests may take before it fails."""


def minion(name: str, *, cpu: int | str = 0, memory: int | str = 0,
           labels: Mapping[str, str] | None = None) -> Minion:
    """A minion with the given capacity (0 = unlimited) and labels."""
    capacity: dict[str, int | str] = {}
    if cpu:
        capacity["cpu"] = cpu
    if memory:
        capacity["memory"] = memory
    return Minion(api_version=API_VERSION, id=name,
                  resources=NodeResources(capacity=capacity), labels=dict(labels or {}))


def pod(name: str, *, cpu: int = 0, memory: int = 0, host_ports: Sequence[int] = (),
        node_selector: Mapping[str, str] | None = None, host: str = "") -> Pod:
    """A one-container pod requesting ``cpu`` milli-cores, ``memory`` bytes and the
    given host ports."""
    ports = [Port(container_port=8000 + i, host_port=p) for i, p in enumerate(host_ports)]
    container = Container(name="c", image="busybox", cpu=cpu, memory=memory, ports=ports)
    manifest = ContainerManifest(version="v1beta1", id=name, containers=[container])
    return Pod(api_version=API_VERSION, id=name, namespace="default",
               desired_state=PodState(manifest=manifest, host=host),
               node_selector=dict(node_selector or {}))


@dataclass
class Cluster:
    """A running apiserver: its URL, a client on it and the store under it."""

    url: str
    client: ApiClient
    store: SqliteStore

    async def hosted(self, host: str) -> list[str]:
        """Ids of the pods in ``host``'s BoundPods at the host key."""
        kv = await self.store.get(host_key(DEFAULT_HOST_KEY, host))
        if kv is None:
            return []
        return [item.id for item in BoundPods.model_validate_json(kv.value).items]

    async def hosts(self) -> dict[str, str]:
        """Pod id -> its host ("" when unassigned), for every pod."""
        listed = await self.client.list(Pod)
        return {p.id: p.desired_state.host for p in listed.items}

    async def wait_hosts(self, ids: Sequence[str], *, poll: float = 0.02) -> dict[str, str]:
        """Wait (at most :data:`TIMEOUT`) until every pod in ``ids`` has a host."""
        with trio.fail_after(TIMEOUT):
            while True:
                hosts = await self.hosts()
                if all(hosts.get(i) for i in ids):
                    return {i: hosts[i] for i in ids}
                await trio.sleep(poll)


@pytest.fixture(params=["http", "in-process"])
async def cluster(
    request: pytest.FixtureRequest, tmp_path: Path, nursery: trio.Nursery
) -> AsyncIterator[Cluster]:
    """An apiserver on SQLite and a client of it: over HTTP, or in process."""
    store = SqliteStore(tmp_path / "store.sqlite3", synchronous="normal")
    registry = Registry(store)
    try:
        url: str = await nursery.start(partial(
            serve_asgi, create_app(registry), name="apiserver",
            address="127.0.0.1", port=0,
        ))
        client: ApiClient = (AsyncClient(url, timeout=TIMEOUT) if request.param == "http"
                             else LocalClient(registry, url))
        async with client:
            yield Cluster(url, client, store)
        # In process, lists and watches hand out shared objects: none may have changed.
        assert changed_views(registry) == []
    finally:
        await store.aclose()
