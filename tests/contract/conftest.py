"""Fixtures for the store contract suite: one ``store`` per store plugin.

Every test in ``test_store.py`` runs once per parameter of :func:`store_kind`. Each
store is fresh and private to its test: the SQLite store gets its own file, the etcd
store (on the session's private etcd) a key prefix of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from kubecore.store import Store

# Compaction takes a revision R: history before R is dropped, so a watch from a
# revision below R - 1 raises Compacted and one from R - 1 still sees R onwards.
Compact = Callable[[int], Awaitable[None]]


@pytest.fixture(params=["sqlite", pytest.param("etcd", marks=pytest.mark.etcd)])
def store_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def store_factory(
    store_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[[], Store]:
    """Makes the store under test (not yet used, so no I/O has happened)."""
    if store_kind == "sqlite":
        from kubecore_store_sqlite import SqliteStore

        return lambda: SqliteStore(tmp_path / "store.sqlite3", retain_revisions=100_000)

    endpoint: str = request.getfixturevalue("etcd_endpoint")
    from kubecore_store_etcd.store import EtcdStore

    prefix = f"/kubecore-contract/{uuid.uuid4().hex[:12]}"
    return lambda: EtcdStore([endpoint], prefix=prefix, request_timeout=5.0)


@pytest.fixture
async def store(store_factory: Callable[[], Store]) -> AsyncIterator[Store]:
    made = store_factory()
    try:
        yield made
    finally:
        await made.aclose()


@pytest.fixture
def compact(store: Store) -> Compact:
    """Compaction for the store under test (each plugin exposes its own)."""
    method: Compact = getattr(store, "compact")  # noqa: B009  (not part of the protocol)
    return method
