"""The container runtime contract: what a ``kubecore_runtime`` plugin returns.

Shaped as a pod sandbox plus containers. The sandbox holds what a pod's containers
share (for Docker the infra container that owns the network namespace and publishes
the ports on 127.0.0.1; for plain processes a directory and a port map). The kubelet's
sync loop decides what to start and stop; a runtime only carries it out and reports.

Every name a runtime gives out (sandbox ids, container ids) must let a restarted kubelet
find and adopt what is already running: runtimes label or record the pod's full name,
uid, container name and spec hash with each container.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from kubecore.api import BoundPod, Container


class ContainerState(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    EXITED = "exited"


@dataclass(frozen=True)
class PortMapping:
    """A container port as reachable from the host: ``host_ip:host_port``."""

    container_port: int
    host_port: int
    host_ip: str = "127.0.0.1"
    protocol: str = "TCP"
    name: str = ""


@dataclass(frozen=True)
class SandboxInfo:
    """A pod's sandbox as the runtime sees it."""

    id: str
    pod_full_name: str  # "<id>.<namespace>.<source>"
    pod_uid: str
    ready: bool
    ip: str = "127.0.0.1"
    ports: Sequence[PortMapping] = ()
    created_at: float = 0.0


@dataclass(frozen=True)
class ContainerInfo:
    """One container (running or dead) of a pod."""

    id: str
    pod_full_name: str
    pod_uid: str
    name: str
    spec_hash: str
    image: str
    state: ContainerState
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class ContainerStats:
    """cAdvisor-style counters of one container (or the machine) at ``timestamp``."""

    timestamp: float
    cpu_usage_ns: int = 0
    memory_usage_bytes: int = 0
    memory_limit_bytes: int = 0
    network_rx_bytes: int = 0
    network_tx_bytes: int = 0
    filesystem_usage_bytes: int = 0
    extra: Mapping[str, int] = field(default_factory=dict)


class ContainerError(Exception):
    """A runtime operation failed for one pod or container; ``reason`` is a short
    CamelCase word for the pod's ``waiting`` state (``ImageNotFound``, ...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@runtime_checkable
class Runtime(Protocol):
    """Blocking libraries run in ``trio.to_thread``; no method blocks the trio loop."""

    name: str

    async def list_sandboxes(self) -> list[SandboxInfo]:
        """Every sandbox this runtime manages, ready or not."""
        ...

    async def list_containers(self, *, all: bool = True) -> list[ContainerInfo]:
        """Every managed container; with ``all`` dead ones too (for restart counts)."""
        ...

    async def run_sandbox(self, pod: BoundPod, full_name: str) -> SandboxInfo:
        """Create and start the sandbox carrying every container port of ``pod``."""
        ...

    async def stop_sandbox(self, sandbox_id: str, grace_period: float) -> None:
        """Stop the sandbox and every container in it."""
        ...

    async def start_container(
        self,
        pod: BoundPod,
        full_name: str,
        sandbox: SandboxInfo,
        container: Container,
        spec_hash: str,
    ) -> ContainerInfo:
        """Create and start ``container`` in ``sandbox``; raises :class:`ContainerError`."""
        ...

    async def stop_container(self, container_id: str, grace_period: float) -> None:
        """SIGTERM, then SIGKILL after ``grace_period`` seconds; no error if gone."""
        ...

    async def remove_container(self, container_id: str) -> None:
        """Delete a dead container and its record (garbage collection)."""
        ...

    async def exec_in_container(
        self, container_id: str, command: Sequence[str], timeout: float
    ) -> tuple[int, bytes]:
        """Run ``command`` inside the container (exec liveness probes)."""
        ...

    async def container_logs(self, container_id: str, tail: int | None = None) -> bytes:
        """The container's output, the last ``tail`` lines when given."""
        ...

    async def container_stats(self, container_id: str) -> ContainerStats:
        """Current counters of one container."""
        ...

    async def aclose(self) -> None:
        """Release clients and threads; running containers keep running."""
        ...
