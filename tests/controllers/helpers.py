"""What the controller tests share: objects, bounded waits, a pod-count watcher."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from kubecore.api import (
    Container,
    ContainerManifest,
    Pod,
    PodState,
    PodTemplate,
    Port,
    ReplicationController,
    ReplicationControllerState,
    Service,
)
from kubecore.client import ApiClient, ApiError

TIMEOUT = 10.0
"""Seconds any single wait may take before the test fails."""

POLL = 0.02


def manifest(port: int = 80) -> ContainerManifest:
    return ContainerManifest(
        version="v1beta1",
        containers=[Container(name="www", image="nginx",
                              ports=[Port(name="http", container_port=port)])],
    )


def controller(id: str, replicas: int, labels: dict[str, str] | None = None
               ) -> ReplicationController:
    labels = labels or {"app": id}
    return ReplicationController(
        id=id,
        desired_state=ReplicationControllerState(
            replicas=replicas,
            replica_selector=dict(labels),
            pod_template=PodTemplate(labels=dict(labels),
                                     desired_state=PodState(manifest=manifest())),
        ),
        labels=dict(labels),
    )


def pod(id: str, labels: dict[str, str]) -> Pod:
    return Pod(id=id, labels=labels, desired_state=PodState(manifest=manifest()))


def service(id: str, selector: dict[str, str], container_port: int | str = 80) -> Service:
    return Service(id=id, port=8000, selector=selector, container_port=container_port)


async def wait_for(check: Callable[[], Awaitable[bool]], within: float = TIMEOUT,
                   what: str = "condition") -> None:
    """Poll ``check`` until it is true; fail after ``within`` seconds."""
    with trio.move_on_after(within):
        while True:
            if await check():
                return
            await trio.sleep(POLL)
    raise AssertionError(f"timed out after {within}s waiting for {what}")


async def resize(client: ApiClient, id: str, replicas: int) -> None:
    """Set a controller's replicas, retrying on a write conflict."""
    while True:
        rc = await client.get(ReplicationController, id)
        rc.desired_state.replicas = replicas
        try:
            await client.update(rc)
            return
        except ApiError as exc:
            if exc.code != 409:
                raise


class PodCounter:
    """Follows the pods matching ``selector`` through a watch: current set and the
    largest count ever seen."""

    def __init__(self, client: ApiClient, selector: dict[str, str]) -> None:
        self.client = client
        self.selector = selector
        self.ids: set[str] = set()
        self.max_seen = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        listed = await self.client.list(Pod, labels=self.selector)
        self.ids = {p.id for p in listed.items}
        self.max_seen = len(self.ids)
        async with self.client.watch(Pod, listed.resource_version,
                                     labels=self.selector) as watch:
            task_status.started()
            async for event in watch:
                if event.type == "DELETED":
                    self.ids.discard(event.object.id)
                else:
                    self.ids.add(event.object.id)
                self.max_seen = max(self.max_seen, len(self.ids))

    async def reaches(self, count: int) -> None:
        async def check() -> bool:
            return len(self.ids) == count

        await wait_for(check, what=f"{count} pods (have {len(self.ids)})")
