"""Status pushed to the apiserver: the node's minion and its API pods' ``currentState``.

On start the reporter registers the node's minion: ``id`` the hostname, ``hostIP``
(127.0.0.1 unless configured), ``resources.capacity`` with ``cpu`` (cores, an int as
v0.5 wrote it) and ``memory`` (bytes, from ``/proc/meminfo``) and the configured labels.
A minion that already exists is updated in its labels only (minion updates may change
nothing else): the configured labels are merged over the stored ones.

After every sync round (and whenever a pod worker finishes) it lists the runtime and
computes each desired pod's status. A pod is an API pod when the apiserver has a pod of
that namespace and id with the same ``uid``; the first GET tells, and a 404 (or another
uid) marks the uid as a non-API pod (file, HTTP) that is never asked about again. An
API pod's status is PUT only when it differs from the last one pushed:

- ``currentState.status``: v0.5's rule over the manifest's containers (waiting ones
  count as unknown): one running and none unknown -> Running; none running, one
  terminated, none unknown -> Terminated; otherwise Waiting;
- ``host`` (the hostname), ``hostIP``, ``podIP`` (the ready sandbox's IP);
- ``info``: per container ``state``, ``restartCount``, ``image``, plus ``net`` with the
  ``podIP`` (see :mod:`kubecore.kubelet.status`);
- **published addresses**: ``currentState.manifest`` is the pod's desired manifest with
  every container port's ``hostPort`` and ``hostIP`` replaced by the address the runtime
  actually publishes it on (``SandboxInfo.ports``, matched by container port, protocol
  and name). A port the runtime does not publish keeps ``hostPort`` 0. The endpoints of
  a service are thus ``<hostIP>:<hostPort>`` of the matching port in
  ``currentState.manifest.containers[*].ports`` (``127.0.0.1:<port>`` on one machine),
  never the runtime's private addresses.

An unreachable apiserver never stops the kubelet: the attempt is retried with backoff
(``retry_min`` doubling to ``retry_max`` seconds) and the sync loop goes on meanwhile.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from kubecore.api import (
    API_VERSION,
    DEFAULT_NAMESPACE,
    POD_RUNNING,
    POD_TERMINATED,
    POD_WAITING,
    ContainerManifest,
    ContainerStatus,
    Minion,
    NodeResources,
    Pod,
    PodState,
)
from kubecore.client import ApiConnectionError, ApiError
from kubecore.kubelet.status import NET_CONTAINER, pod_info
from kubecore.kubelet.sync import group_by_uid
from kubecore.log import get_logger
from kubecore.runtime import PortMapping, SandboxInfo

if TYPE_CHECKING:
    from kubecore.api import BoundPod
    from kubecore.client import ApiClient
    from kubecore.kubelet.merger import DesiredPod
    from kubecore.kubelet.sync import RuntimePod, SyncLoop

log = get_logger("kubecore.kubelet.reporter")

DEBOUNCE = 0.05
"""Seconds to wait after a round before looking, so a burst of workers reports once."""
MAX_CONFLICT_RETRIES = 5


def machine_capacity() -> dict[str, int]:
    """``{"cpu": cores, "memory": bytes}`` of this machine (memory 0 if unknown)."""
    memory = 0
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    memory = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        memory = 0
    return {"cpu": os.cpu_count() or 1, "memory": memory}


def pod_status(containers: list[str], info: Mapping[str, ContainerStatus]) -> str:
    """v0.5's pod status over the manifest's container names (``net`` not counted): a
    container absent from ``info`` or waiting is unknown; one running and none unknown
    -> Running; none running, one terminated, none unknown -> Terminated; else Waiting."""
    running = stopped = unknown = 0
    for name in containers:
        status = info.get(name)
        if status is not None and status.state.running is not None:
            running += 1
        elif status is not None and status.state.termination is not None:
            stopped += 1
        else:
            unknown += 1  # absent or waiting, as v0.5 counted them
    if running and not unknown:
        return POD_RUNNING
    if not running and stopped and not unknown:
        return POD_TERMINATED
    return POD_WAITING


def published_manifest(manifest: ContainerManifest, ports: list[PortMapping]
                       ) -> ContainerManifest:
    """``manifest`` with each container port's ``hostPort``/``hostIP`` set to where the
    runtime publishes it (unpublished ports get ``hostPort`` 0)."""
    free = list(ports)
    containers = []
    for container in manifest.containers:
        new_ports = []
        for port in container.ports:
            protocol = (port.protocol or "TCP").upper()
            candidates = [m for m in free if m.container_port == port.container_port
                          and m.protocol.upper() == protocol]
            match = next((m for m in candidates if m.name == port.name), None)
            match = match or next(iter(candidates), None)
            if match is not None:
                free.remove(match)
                new_ports.append(port.model_copy(update={"host_port": match.host_port,
                                                         "host_ip": match.host_ip}))
            else:
                new_ports.append(port.model_copy(update={"host_port": 0}))
        containers.append(container.model_copy(update={"ports": new_ports}))
    return manifest.model_copy(update={"containers": containers})


@dataclass(frozen=True)
class _Observed:
    """What the kubelet knows of one pod; pushed when it differs from the last push."""

    status: str
    pod_ip: str
    info: dict[str, ContainerStatus]
    ports: tuple[PortMapping, ...]


@dataclass
class _Memory:
    not_api: set[str] = field(default_factory=set)  # uids the apiserver does not know
    pushed: dict[str, _Observed] = field(default_factory=dict)  # uid -> last pushed


class StatusReporter:
    """Registers the minion and pushes API pods' status through ``client``.

    ``run`` (started with the kubelet, beside its sync loop) owns nothing it must clean
    up but its own task; the caller closes ``client``.
    """

    def __init__(
        self,
        client: ApiClient,
        hostname: str,
        *,
        host_ip: str = "127.0.0.1",
        labels: Mapping[str, str] | None = None,
        capacity: Mapping[str, int] | None = None,
        retry_min: float = 0.5,
        retry_max: float = 30.0,
    ) -> None:
        self.client = client
        self.hostname = hostname
        self.host_ip = host_ip
        self.labels = dict(labels or {})
        self.capacity = dict(capacity) if capacity is not None else machine_capacity()
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.registered = False
        self.pushes = 0
        self._memory = _Memory()

    async def run(self, sync: SyncLoop, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Register, then report after each round of ``sync``; until cancelled."""
        task_status.started()
        seen = 0
        delay = self.retry_min
        retry_at: float | None = trio.current_time()  # register at once
        while True:
            if retry_at is None:
                seen, _ = await sync.progress.wait_newer(seen)
            else:
                # Failing: rounds do not hurry the next attempt, the backoff does.
                await trio.sleep_until(retry_at)
            await trio.sleep(DEBOUNCE)
            seen = sync.progress.version
            try:
                if not self.registered:
                    await self.register()
                await self.report(sync)
            except ApiConnectionError as exc:
                log.warning("apiserver unreachable; status retried later",
                            error=str(exc), retry_in=delay)
            except Exception as exc:  # a surprise must not end the reporting
                log.error("status report failed", error=str(exc) or type(exc).__name__,
                          retry_in=delay, exc_info=exc)
            else:
                delay = self.retry_min
                retry_at = None
                continue
            retry_at = trio.current_time() + delay
            delay = min(delay * 2, self.retry_max)

    # -- the minion ---------------------------------------------------------------------

    async def register(self) -> None:
        """Create this node's minion, or merge the configured labels into it."""
        minion = Minion(
            api_version=API_VERSION,
            id=self.hostname,
            host_ip=self.host_ip,
            resources=NodeResources(capacity=dict(self.capacity)),
            labels=dict(self.labels),
        )
        for _ in range(MAX_CONFLICT_RETRIES):
            try:
                await self.client.create(minion)
                log.info("minion registered", minion=self.hostname, host_ip=self.host_ip,
                         capacity=self.capacity)
                self.registered = True
                return
            except ApiError as exc:
                if exc.code != 409:
                    raise
            try:
                stored = await self.client.get(Minion, self.hostname)
            except ApiError as exc:
                if exc.code == 404:
                    continue  # deleted meanwhile: create again
                raise
            if stored.host_ip != self.host_ip or stored.resources != minion.resources:
                log.warning("minion exists with another hostIP or capacity; only labels"
                            " are updated", minion=self.hostname, stored_ip=stored.host_ip)
            labels = {**stored.labels, **self.labels}
            if labels != stored.labels:
                try:
                    await self.client.update(stored.model_copy(update={"labels": labels}))
                except ApiError as exc:
                    if exc.code == 409:
                        continue
                    raise
            log.info("minion already registered", minion=self.hostname)
            self.registered = True
            return
        log.warning("minion registration kept conflicting; retried later")

    # -- pod status -----------------------------------------------------------------------

    async def report(self, sync: SyncLoop) -> None:
        """Push the status of every desired API pod whose status changed."""
        desired = sync.desired.value.by_uid()
        memory = self._memory
        memory.not_api &= set(desired)
        for uid in set(memory.pushed) - set(desired):
            del memory.pushed[uid]
        candidates = [pod for uid, pod in desired.items() if uid not in memory.not_api]
        if not candidates:
            return
        sandboxes = await sync.runtime.list_sandboxes()
        containers = await sync.runtime.list_containers(all=True)
        present = group_by_uid(sandboxes, containers)
        for desired_pod in candidates:
            observed = self.observe(desired_pod.pod, present.get(desired_pod.uid))
            if memory.pushed.get(desired_pod.uid) == observed:
                continue
            await self._push(desired_pod, observed)

    def observe(self, pod: BoundPod, present: RuntimePod | None) -> _Observed:
        """The status the runtime shows for ``pod``."""
        sandbox: SandboxInfo | None = None
        if present is not None and present.sandboxes:
            sandbox = next((s for s in present.sandboxes if s.ready), present.sandboxes[0])
        info = pod_info(present.containers if present else [], sandbox, pod.spec)
        status = pod_status([c.name for c in pod.spec.containers], info)
        ready = sandbox is not None and sandbox.ready
        pod_ip = sandbox.ip if ready and sandbox is not None else ""
        ports = tuple(sandbox.ports) if ready and sandbox is not None else ()
        return _Observed(status, pod_ip, info, ports)

    async def _push(self, desired: DesiredPod, observed: _Observed) -> None:
        memory = self._memory
        bound = desired.pod
        namespace = bound.namespace or DEFAULT_NAMESPACE
        for _ in range(MAX_CONFLICT_RETRIES):
            try:
                stored = await self.client.get(Pod, bound.id, namespace=namespace)
            except ApiError as exc:
                if exc.code == 404:
                    memory.not_api.add(desired.uid)
                    return
                raise
            if stored.uid != desired.uid:
                memory.not_api.add(desired.uid)
                return
            info = dict(observed.info)
            if NET_CONTAINER in info:
                info[NET_CONTAINER] = info[NET_CONTAINER].model_copy(
                    update={"pod_ip": observed.pod_ip})
            current = PodState(
                manifest=published_manifest(stored.desired_state.manifest,
                                            list(observed.ports)),
                status=observed.status,
                host=self.hostname,
                host_ip=self.host_ip,
                pod_ip=observed.pod_ip,
                info=info,
            )
            try:
                await self.client.update(stored.model_copy(update={"current_state": current}),
                                         namespace=namespace)
            except ApiError as exc:
                if exc.code == 409:
                    continue  # changed meanwhile: read it again
                if exc.code == 404:
                    memory.not_api.add(desired.uid)
                    return
                # Refused for another reason: not retried until the status changes.
                log.warning("pod status refused", pod=desired.full_name, error=str(exc))
                memory.pushed[desired.uid] = observed
                return
            memory.pushed[desired.uid] = observed
            self.pushes += 1
            log.debug("pod status pushed", pod=desired.full_name, status=observed.status)
            return
        log.warning("pod status kept conflicting; retried later", pod=desired.full_name)

