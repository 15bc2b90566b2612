"""Root test configuration: service markers and the real-service fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# `tests` is imported as a package whatever pytest's import mode puts on sys.path.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.services import (  # noqa: E402,F401  (fixtures are found by name)
    busybox_image,
    docker_client,
    docker_labels,
    etcd_cluster,
    etcd_endpoint,
    key_prefix,
)

# A test using any of these fixtures, directly or through another fixture, gets the
# marker, so `-m "not docker"` deselects it.
_MARKER_FIXTURES = {
    "etcd": {"etcd_endpoint", "etcd_cluster"},
    "docker": {"docker_client", "busybox_image"},
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "etcd: needs a real etcd server (Debian etcd-server)")
    config.addinivalue_line("markers", "docker: needs a real Docker daemon (Debian docker.io)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for marker, fixtures in _MARKER_FIXTURES.items():
            if used & fixtures and item.get_closest_marker(marker) is None:
                item.add_marker(getattr(pytest.mark, marker))
