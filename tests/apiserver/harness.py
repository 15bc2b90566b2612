"""What the apiserver tests share: a running server's handle and the time limits."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from kubecore.api import encode_json
from kubecore.apiserver.registry import Registry
from kubecore.store import KeyValue, Store

TIMEOUT = 10.0
"""Seconds any single wait in these tests may take before it fails."""

StartServer = Callable[..., Awaitable[str]]
"""``await start_server(registry, tokens=..., cert=..., key=...)`` -> the base URL."""


@dataclass
class Api:
    """A running apiserver: its URL, an HTTP client on it, and what it serves."""

    url: str
    http: httpx.AsyncClient
    registry: Registry
    store: Store

    async def ok(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """The JSON body of a request that must answer 200."""
        response = await self.http.request(method, path, **kwargs)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def fails(self, code: int, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """The Status of a request that must answer ``code``."""
        response = await self.http.request(method, path, **kwargs)
        assert response.status_code == code, response.text
        body: dict[str, Any] = response.json()
        assert body["kind"] == "Status" and body["status"] == "Failure"
        assert body["code"] == code
        return body


def changed_views(registry: Registry) -> list[str]:
    """Keys whose shared object (``Registry.view``) no longer encodes as its stored value
    does: an in-process reader changed an object it must treat as read-only."""
    changed = []
    for (name, key, revision, value), obj in list(registry._views.items()):
        strategy = registry.strategy(name)
        fresh = registry.read(strategy.resource, KeyValue(key, value, 0, revision))
        if fresh is None or encode_json(strategy.decorate_one(fresh)) != encode_json(obj):
            changed.append(key)
    return changed
