"""Fixtures: a real store (SQLite; etcd where parametrized) and a real HTTP apiserver
on a free loopback port, served by hypercorn in the test's nursery."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
from kubecore_store_sqlite import SqliteStore

from kubecore.apiserver.app import create_app
from kubecore.apiserver.registry import Registry
from kubecore.http import serve_asgi
from kubecore.store import Store
from tests.apiserver.harness import TIMEOUT, Api, StartServer
from tests.stores import store_maker


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    made = SqliteStore(tmp_path / "store.sqlite3", synchronous="normal")
    try:
        yield made
    finally:
        await made.aclose()


@pytest.fixture(params=["sqlite", pytest.param("etcd", marks=pytest.mark.etcd)])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """Makes the store a registry test runs on: each store plugin in turn."""
    return store_maker(request.param, request, tmp_path, label="apiserver-test",
                       synchronous="normal")


@pytest.fixture
async def any_store(store_factory: Callable[[], Store]) -> AsyncIterator[Store]:
    made = store_factory()
    try:
        yield made
    finally:
        await made.aclose()


@pytest.fixture
def start_server(nursery: trio.Nursery) -> StartServer:
    """``await start_server(registry, tokens=..., cert=..., key=...)`` -> base URL."""

    async def start(
        registry: Registry,
        *,
        tokens: frozenset[str] | None = None,
        cert: Path | None = None,
        key: Path | None = None,
    ) -> str:
        url: str = await nursery.start(partial(
            serve_asgi, create_app(registry, tokens=tokens), name="apiserver",
            address="127.0.0.1", port=0, tls_cert_file=cert, tls_key_file=key,
        ))
        return url

    return start


@pytest.fixture
async def api(store: SqliteStore, start_server: StartServer) -> AsyncIterator[Api]:
    registry = Registry(store)
    url = await start_server(registry)
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http:
        yield Api(url, http, registry, store)
