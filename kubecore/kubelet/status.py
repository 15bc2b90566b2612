"""Pod status from what the runtime reports: the v1beta1 ``info`` map of a pod.

Over all instances of each container (running and dead) the newest one gives the state
(running with its start, terminated with exit code and reason, or waiting); the older
ones count as restarts. A ``net`` entry carries the sandbox's pod IP, as v0.5's infra
container did.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from kubecore.api import (
    ContainerState,
    ContainerStateRunning,
    ContainerStateTerminated,
    ContainerStateWaiting,
    ContainerStatus,
    PodSpec,
)
from kubecore.runtime import ContainerInfo, SandboxInfo
from kubecore.runtime import ContainerState as RuntimeState

NET_CONTAINER = "net"


def _time(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


def container_status(newest: ContainerInfo, restarts: int) -> ContainerStatus:
    """The v1beta1 status of one container from its newest instance."""
    if newest.state is RuntimeState.RUNNING:
        state = ContainerState(running=ContainerStateRunning(started_at=_time(newest.started_at)))
    elif newest.state is RuntimeState.EXITED:
        code = newest.exit_code if newest.exit_code is not None else -1
        state = ContainerState(
            termination=ContainerStateTerminated(
                exit_code=code,
                signal=code - 128 if code > 128 else 0,
                reason=newest.reason,
                message=newest.message,
                started_at=_time(newest.started_at),
                finished_at=_time(newest.finished_at),
            )
        )
    else:
        state = ContainerState(waiting=ContainerStateWaiting(reason=newest.reason or "Created"))
    return ContainerStatus(state=state, restart_count=restarts, image=newest.image)


def pod_info(
    containers: Iterable[ContainerInfo],
    sandbox: SandboxInfo | None,
    spec: PodSpec | None = None,
) -> dict[str, ContainerStatus]:
    """Container name -> status for one pod's ``containers`` (all of one uid).

    Containers of ``spec`` that have no instance get a waiting state. Empty when the
    runtime has nothing of the pod.
    """
    by_name: dict[str, list[ContainerInfo]] = {}
    for info in containers:
        by_name.setdefault(info.name, []).append(info)
    result: dict[str, ContainerStatus] = {}
    for name, instances in sorted(by_name.items()):
        ordered = newest_first(instances)
        result[name] = container_status(ordered[0], len(ordered) - 1)
    if not result and sandbox is None:
        return result
    if spec is not None:
        for container in spec.containers:
            if container.name not in result:
                result[container.name] = ContainerStatus(
                    state=ContainerState(
                        waiting=ContainerStateWaiting(reason="ContainerCreating")
                    ),
                    image=container.image,
                )
    if sandbox is not None:
        if sandbox.ready:
            started = ContainerStateRunning(started_at=_time(sandbox.created_at))
            net = ContainerState(running=started)
        else:
            net = ContainerState(waiting=ContainerStateWaiting(reason="SandboxNotReady"))
        result[NET_CONTAINER] = ContainerStatus(state=net, pod_ip=sandbox.ip)
    return result


def newest_first(instances: Sequence[ContainerInfo]) -> list[ContainerInfo]:
    """Instances of one container, newest first (by creation time, then id)."""
    return sorted(instances, key=lambda c: (c.created_at, c.id), reverse=True)
