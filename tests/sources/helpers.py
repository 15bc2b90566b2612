"""Helpers for the source tests: manifests, and a task collecting a source's snapshots."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import trio

from kubecore.kubelet.sources import ManifestSource, Snapshot
from tests.kubelet.helpers import wait_until


def manifest(pod_id: str | None = None, command: Sequence[str] = ("sleep", "60"),
             **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"version": "v1beta1",
                            "containers": [{"name": "main", "image": "busybox",
                                            "command": list(command)}], **extra}
    if pod_id is not None:
        body["id"] = pod_id
    return body


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


class Collector:
    """Runs ``source.snapshots()`` in a task and keeps every snapshot it yields."""

    def __init__(self, source: ManifestSource) -> None:
        self.source = source
        self.snapshots: list[Snapshot] = []

    async def run(self) -> None:
        async for snapshot in self.source.snapshots():
            self.snapshots.append(snapshot)

    @property
    def last(self) -> Snapshot:
        return self.snapshots[-1]

    def ids(self) -> list[str]:
        return [pod.id for pod in self.last.pods] if self.snapshots else []

    async def wait_count(self, count: int, timeout: float = 10.0) -> Snapshot:  # noqa: ASYNC109
        """Wait until at least ``count`` snapshots have arrived; the newest one."""

        async def enough() -> bool:
            return len(self.snapshots) >= count

        await wait_until(enough, timeout=timeout, what=f"{count} snapshots")
        return self.last

    async def wait_ids(self, ids: list[str], timeout: float = 10.0) -> Snapshot:  # noqa: ASYNC109
        async def match() -> bool:
            return self.ids() == ids

        await wait_until(match, timeout=timeout, what=f"pods {ids}")
        return self.last


def start_collector(nursery: trio.Nursery, source: ManifestSource) -> Collector:
    collector = Collector(source)
    nursery.start_soon(collector.run)
    return collector
