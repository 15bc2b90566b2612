"""The container runtime contract: what a ``kubecore_runtime`` plugin returns.

Shaped as a pod sandbox plus containers. The sandbox holds what a pod's containers
share (for Docker the infra container that owns the network namespace and publishes
the ports on 127.0.0.1; for plain processes a directory and a port map). The kubelet's
sync loop decides what to start, stop, restart and remove; a runtime only carries it
out and reports. Restart policy and backoff are not a runtime's job: a container that
exits stays listed as exited until :meth:`Runtime.remove_container`.

Every name a runtime gives out (sandbox ids, container ids) must let a restarted kubelet
find and adopt what is already running: runtimes label or record the pod's full name,
uid, container name and spec hash with each container, and a new runtime instance on
the same backend lists (with the same ids) and can stop what an earlier one started.
Runtimes of different nodes sharing one backend keep apart: each lists and touches only
its own node's containers.

Errors: an operation that fails for one pod or container raises :class:`ContainerError`
with a short CamelCase ``reason`` (see :class:`ContainerReason`) and a message a person
can act on; nothing else escapes a runtime method for such failures.

The suite ``tests/contract/test_runtime.py`` checks every runtime against this contract.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

if TYPE_CHECKING:
    from kubecore.api import BoundPod, Container


class ContainerState(enum.Enum):
    """``WAITING``: created, not started yet. ``RUNNING``: its main process runs.
    ``EXITED``: it ran and ended, or could not be started at all."""

    WAITING = "waiting"
    RUNNING = "running"
    EXITED = "exited"


class ContainerReason:
    """The ``reason`` words runtimes use, in :class:`ContainerInfo` and
    :class:`ContainerError`. A runtime may add its own (``ImageNotFound``, ...)."""

    #: Exited with code 0.
    COMPLETED: Final = "Completed"
    #: Exited with a non-zero code or was killed by a signal (the message says which).
    ERROR: Final = "Error"
    #: Could not be started: no such executable, bad working directory, no command...
    CANNOT_RUN: Final = "ContainerCannotRun"
    #: Ended, but its exit code cannot be known (``exit_code`` is ``None``): it ended
    #: while no runtime instance watched it, or the runtime cannot learn it for a
    #: container that an earlier instance started.
    EXIT_CODE_UNKNOWN: Final = "ExitCodeUnknown"
    #: No container or sandbox with that id.
    NOT_FOUND: Final = "ContainerNotFound"
    #: The operation needs a running container (exec, stats).
    NOT_RUNNING: Final = "ContainerNotRunning"
    #: The operation needs a container that is not running (remove).
    RUNNING: Final = "ContainerRunning"
    #: The sandbox is missing or stopped; run it again first.
    SANDBOX_NOT_READY: Final = "SandboxNotReady"
    #: A pod or container name the runtime cannot use.
    INVALID: Final = "InvalidPod"
    #: ``exec_in_container`` ran out of time; the command was killed.
    EXEC_TIMEOUT: Final = "ExecTimeout"
    #: ``exec_in_container`` could not start the command.
    EXEC_FAILED: Final = "ExecFailed"
    #: The image is not on the node and cannot be found (PullNever, or the registry says so).
    IMAGE_NOT_FOUND: Final = "ImageNotFound"
    #: The image is not on the node and pulling it failed or timed out.
    IMAGE_PULL_FAILED: Final = "ImagePullFailed"
    #: Killed for exceeding its memory limit.
    OOM_KILLED: Final = "OOMKilled"
    #: The runtime's backend (a daemon) does not answer: the node's trouble, not the pod's.
    UNAVAILABLE: Final = "RuntimeUnavailable"


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
    """A pod's sandbox as the runtime sees it.

    ``ports`` holds one mapping per container port of the pod (all containers), each
    with the address the runtime actually publishes it on; endpoints are built from it.
    """

    id: str
    pod_full_name: str  # "<id>.<namespace>.<source>"
    pod_uid: str
    ready: bool
    ip: str = "127.0.0.1"
    ports: Sequence[PortMapping] = ()
    created_at: float = 0.0


@dataclass(frozen=True)
class ContainerInfo:
    """One container (running or dead) of a pod. Times are seconds since the epoch.

    For an ``EXITED`` container ``finished_at`` is set; ``exit_code`` is the process's
    exit status (128 + signal number when a signal ended it), or ``None`` when unknown
    (``reason`` then says why: ``ExitCodeUnknown``, ``ContainerCannotRun``).
    """

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
    """cAdvisor-style counters of one container (or the machine) at ``timestamp``.

    ``cpu_usage_ns`` is cumulative CPU time (user + system); ``memory_usage_bytes`` the
    resident memory now. A counter a runtime cannot measure stays 0; ``extra`` holds
    runtime-specific counters by name.
    """

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
    CamelCase word for the pod's ``waiting`` state (see :class:`ContainerReason`),
    ``str()`` the message for people."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    @property
    def message(self) -> str:
        return str(self)


@runtime_checkable
class Runtime(Protocol):
    """A node's container runtime. ``name`` is short and stable (``docker``, ``exec``).

    Methods may be called concurrently from several tasks (one worker per pod). Blocking
    libraries run in ``trio.to_thread``; no method blocks the trio loop. Cancelling a
    call leaves no half-made container behind that the runtime would not list.
    """

    name: str

    async def list_sandboxes(self) -> list[SandboxInfo]:
        """Every sandbox this runtime manages, ready or not, including those made by an
        earlier instance on the same backend."""
        ...

    async def list_containers(self, *, all: bool = True) -> list[ContainerInfo]:
        """Every managed container, including those an earlier instance started (adopted
        with the same ids); with ``all`` exited ones too (for restart counts and status),
        otherwise only ``RUNNING`` ones. State is current as of the call."""
        ...

    async def run_sandbox(self, pod: BoundPod, full_name: str) -> SandboxInfo:
        """Make a ready sandbox for ``pod`` carrying every container port of the pod,
        and return it. If the pod's sandbox is already ready it may be returned as is;
        a stopped one is started again or replaced (its id may change)."""
        ...

    async def stop_sandbox(self, sandbox_id: str, grace_period: float) -> None:
        """Stop every container of the sandbox (as :meth:`stop_container`) and the
        sandbox itself, which stays listed as not ready. Unknown ids are no error."""
        ...

    async def remove_sandbox(self, sandbox_id: str) -> None:
        """Delete the sandbox and every container of its pod with their records and logs,
        killing (no grace) whatever still runs. Unknown ids are no error."""
        ...

    async def start_container(
        self,
        pod: BoundPod,
        full_name: str,
        sandbox: SandboxInfo,
        container: Container,
        spec_hash: str,
    ) -> ContainerInfo:
        """Create and start a new instance of ``container`` in ``sandbox`` (which must be
        ready) with the container's command, environment and working directory.

        Returns the container as started. Raises :class:`ContainerError` when it cannot
        run (no such executable, missing image, bad working directory...); a container
        that was created but could not start stays listed as ``EXITED`` with the same
        reason and message (the message names the command) until removed.
        """
        ...

    async def stop_container(self, container_id: str, grace_period: float) -> None:
        """Stop a running container: SIGTERM, then SIGKILL after ``grace_period`` seconds.

        Returns once it has exited and its exit is recorded. A container that already
        exited, or an unknown id, is no error.
        """
        ...

    async def remove_container(self, container_id: str) -> None:
        """Delete an exited container, its record and its logs (garbage collection).

        Raises :class:`ContainerError` (``ContainerRunning``) if it is still running; an
        unknown id is no error.
        """
        ...

    async def exec_in_container(
        self,
        container_id: str,
        command: Sequence[str],
        # A parameter, not the caller's cancel scope: the runtime must kill the command
        # itself, and Docker's exec API has no cancellation.
        timeout: float,  # noqa: ASYNC109
    ) -> tuple[int, bytes]:
        """Run ``command`` inside a running container (its filesystem view, working
        directory and environment) and return its exit code and combined output (each
        stream in its own order; lines written to stdout and stderr within a moment of
        each other may interleave either way).

        Raises :class:`ContainerError`: ``ContainerNotFound``, ``ContainerNotRunning``,
        ``ExecFailed`` (could not start it) or ``ExecTimeout`` (still running after
        ``timeout`` seconds: killed).
        """
        ...

    async def container_logs(self, container_id: str, tail: int | None = None) -> bytes:
        """The container's stdout and stderr as written, the last ``tail`` lines when
        given (each stream in its own order: a backend that reads the two through
        separate pipes, as Docker does, may swap lines written a moment apart). Works
        for exited containers until they are removed; an unknown id raises
        :class:`ContainerError` (``ContainerNotFound``)."""
        ...

    async def container_stats(self, container_id: str) -> ContainerStats:
        """Current counters of one running container. Raises :class:`ContainerError`
        (``ContainerNotFound`` or ``ContainerNotRunning``)."""
        ...

    async def aclose(self) -> None:
        """Release clients, threads and background tasks; idempotent. Running containers
        keep running (a later instance adopts them); the instance is not used again."""
        ...
