"""A real apiserver on store_sqlite for the tests that talk to one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import trio
from kubecore_store_sqlite import SqliteStore

from kubecore.api import API_VERSION, Container, ContainerManifest, Pod, PodState, Port
from kubecore.apiserver.app import create_app
from kubecore.apiserver.registry import Registry
from kubecore.client import AsyncClient
from kubecore.http import serve_asgi

DEADLINE = 10.0


@asynccontextmanager
async def apiserver(tmp_path: Path) -> AsyncIterator[str]:
    """Serve the v1beta1 API on a free loopback port; yields its base URL."""
    store = SqliteStore(tmp_path / "store.sqlite3", synchronous="normal")
    try:
        async with trio.open_nursery() as nursery:
            url: str = await nursery.start(partial(
                serve_asgi, create_app(Registry(store)), name="apiserver",
                address="127.0.0.1", port=0,
            ))
            yield url
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()


@asynccontextmanager
async def client_of(url: str) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(url, timeout=DEADLINE) as client:
        yield client


def api_pod(pod_id: str, command: list[str], *, port: int = 0,
            namespace: str = "default") -> Pod:
    """A pod for the API with one container running ``command`` (and one port)."""
    ports = [Port(container_port=port, name="web")] if port else []
    container = Container(name="main", image="busybox", command=command, ports=ports)
    return Pod(api_version=API_VERSION, id=pod_id, namespace=namespace,
               labels={"app": pod_id},
               desired_state=PodState(manifest=ContainerManifest(
                   version="v1beta1", containers=[container])))
