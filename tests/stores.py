"""Making a store of each plugin for tests that run on every store."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kubecore.store import Store


def store_maker(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, *, label: str,
    **sqlite_options: Any,
) -> Callable[[], Store]:
    """A factory of the ``kind`` store (``sqlite`` or ``etcd``), not yet used.

    SQLite lives in ``tmp_path``; etcd is the session's private server (the
    ``etcd_endpoint`` fixture) under a fresh ``/kubecore-<label>/<random>`` prefix, so
    tests never see each other's keys.
    """
    if kind == "sqlite":
        from kubecore_store_sqlite import SqliteStore

        return lambda: SqliteStore(tmp_path / "store.sqlite3", **sqlite_options)
    endpoint: str = request.getfixturevalue("etcd_endpoint")
    from kubecore_store_etcd.store import EtcdStore

    prefix = f"/kubecore-{label}/{uuid.uuid4().hex[:12]}"
    return lambda: EtcdStore([endpoint], prefix=prefix, request_timeout=5.0)
