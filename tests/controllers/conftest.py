"""Fixtures: a real apiserver (on store_sqlite; store_etcd where parametrized) on a free
loopback port in the test's nursery, and an API client on it (over HTTP, and for
``client`` also in process, as the controllers run next to the apiserver)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path

import pytest
import trio
from kubecore_store_sqlite import SqliteStore

from kubecore.apiserver.app import create_app
from kubecore.apiserver.local import LocalClient
from kubecore.apiserver.registry import Registry
from kubecore.client import ApiClient, AsyncClient
from kubecore.http import serve_asgi
from kubecore.store import Store
from tests.apiserver.harness import changed_views
from tests.stores import store_maker


async def _serve(nursery: trio.Nursery, store: Store, registry: Registry | None = None) -> str:
    url: str = await nursery.start(partial(
        serve_asgi, create_app(registry or Registry(store)), name="apiserver",
        address="127.0.0.1", port=0,
    ))
    return url


@pytest.fixture(params=["http", "in-process"])
async def client(
    request: pytest.FixtureRequest, nursery: trio.Nursery, tmp_path: Path
) -> AsyncIterator[ApiClient]:
    """A client of an apiserver on a fresh SQLite store: over HTTP, or in process."""
    store = SqliteStore(tmp_path / "store.sqlite3", synchronous="normal")
    registry = Registry(store)
    try:
        url = await _serve(nursery, store, registry)
        made: ApiClient = (AsyncClient(url, timeout=10.0) if request.param == "http"
                           else LocalClient(registry, url))
        async with made:
            yield made
        # In process, lists and watches hand out shared objects: none may have changed.
        assert changed_views(registry) == []
    finally:
        await store.aclose()


@pytest.fixture(params=["sqlite", pytest.param("etcd", marks=pytest.mark.etcd)])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """Makes the store the apiserver runs on: each store plugin in turn."""
    return store_maker(request.param, request, tmp_path, label="controllers-test",
                       synchronous="normal")


@pytest.fixture
async def any_client(
    nursery: trio.Nursery, store_factory: Callable[[], Store]
) -> AsyncIterator[AsyncClient]:
    """A client of an apiserver on each store plugin in turn."""
    store = store_factory()
    try:
        async with AsyncClient(await _serve(nursery, store), timeout=10.0) as made:
            yield made
    finally:
        await store.aclose()
