"""Fixtures for the store contract suite: one ``store`` per store plugin.

Every test in ``test_store.py`` runs once per parameter of :func:`store_kind`. Each
store is fresh and private to its test: the SQLite store gets its own file, the etcd
store (on the session's private etcd) a key prefix of its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from kubecore.store import Store
from tests.stores import store_maker

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
    return store_maker(store_kind, request, tmp_path, label="contract",
                       retain_revisions=100_000)


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
