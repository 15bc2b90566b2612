"""The sync loop and its pod workers: make the runtime match the desired state.

A round runs on every change of the desired state, when a restart's backoff expires,
when a skipped pod's worker finishes, and every ``sync_frequency`` seconds otherwise.
It lists the runtime's sandboxes and containers once, drops desired pods whose
hostPorts collide with an earlier pod's (v0.5's kubelet rule: a log line and a
``hostPortConflict`` event when the conflict appears; the pod starts once the port is
free), and hands each pod (desired or not) to its own worker task; a pod whose worker
is still busy is skipped that round. Workers:

- desired pod: ensure a ready sandbox; per container keep the running instance whose
  spec hash matches (unless its liveness probe says unhealthy), replace one whose hash
  differs, restart a dead one as its restart policy allows, after its backoff; stop
  instances of containers no longer in the spec; garbage-collect dead instances beyond
  the newest ``max_dead_containers`` per container.
- pod no longer desired (and whose source has reported): stop gracefully, remove.

Every graceful stop of a running container first runs its ``preStop`` hook (see
:mod:`kubecore.kubelet.hooks`) within the grace period; the container gets what is
left of it between SIGTERM and SIGKILL. The hook comes from the spec the container was
started from (remembered by pod uid, name and spec hash, so a pod that was deleted or
changed still runs its old hook); a kubelet that restarted does not know the specs of
pods removed while it was down, and stops those without hooks. ``postStart`` runs right
after a start; when it fails the container is killed (v0.5), and restarts as its
policy and backoff allow.

Dead instances are also collected on a timer of their own (every ``gc_interval``
seconds, v0.5's one-minute GC), so they go even while rounds are rare or a pod is left
alone (its source has not reported): per pod uid and container name the newest
``max_dead_containers`` are kept; pods whose worker is busy are skipped that time.

What the runtime already runs is adopted: a container with the pod's uid and the
current spec hash is kept, so a restarted kubelet starts nothing twice. One pod's
failure is logged and never stops the loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from kubecore.api import BoundPod, Container
from kubecore.kubelet.backoff import Backoff
from kubecore.kubelet.events import HOST_PORT_CONFLICT, EventRecorder
from kubecore.kubelet.hashing import container_hash
from kubecore.kubelet.hooks import run_handler
from kubecore.kubelet.merger import DesiredPod, DesiredState, Latest
from kubecore.kubelet.naming import source_of
from kubecore.kubelet.probes import UNHEALTHY, probe
from kubecore.kubelet.status import newest_first
from kubecore.log import get_logger
from kubecore.runtime import ContainerInfo, ContainerState, PortMapping, Runtime, SandboxInfo

log = get_logger("kubecore.kubelet.sync")


@dataclass(frozen=True)
class SyncSettings:
    """The sync loop's knobs (seconds)."""

    sync_frequency: float = 10.0
    grace_period: float = 10.0
    backoff_min: float = 10.0
    backoff_max: float = 300.0
    backoff_reset: float = 600.0
    max_dead_containers: int = 2
    gc_interval: float = 60.0  # 0: no collection outside pod workers


@dataclass
class RuntimePod:
    """What the runtime has of one pod uid."""

    uid: str
    full_name: str
    sandboxes: list[SandboxInfo] = field(default_factory=list)
    containers: list[ContainerInfo] = field(default_factory=list)


def group_by_uid(
    sandboxes: list[SandboxInfo], containers: list[ContainerInfo]
) -> dict[str, RuntimePod]:
    pods: dict[str, RuntimePod] = {}
    for sandbox in sandboxes:
        pod = pods.setdefault(sandbox.pod_uid, RuntimePod(sandbox.pod_uid, sandbox.pod_full_name))
        pod.sandboxes.append(sandbox)
    for info in containers:
        pod = pods.setdefault(info.pod_uid, RuntimePod(info.pod_uid, info.pod_full_name))
        pod.containers.append(info)
    return pods


def host_ports(pod: BoundPod) -> set[int]:
    return {p.host_port for c in pod.spec.containers for p in c.ports if p.host_port}


def restart_allowed(pod: BoundPod, newest_dead: ContainerInfo) -> bool:
    """v0.5's rule: never -> not after any death; onFailure -> not after a clean exit
    (an unknown exit code counts as a failure); always -> yes."""
    policy = pod.spec.restart_policy
    if policy.never is not None:
        return False
    if policy.on_failure is not None:
        return newest_dead.exit_code != 0
    return True


def _ports_of(pod: BoundPod) -> set[tuple[int, str]]:
    return {
        (p.container_port, (p.protocol or "TCP").upper())
        for c in pod.spec.containers
        for p in c.ports
    }


class SyncLoop:
    """Drives ``runtime`` towards the newest value of ``desired``.

    ``run`` is a component-style task; :attr:`runtime_pods` holds what the last round
    saw (the HTTP server reads it); :attr:`progress` gets a new version after every
    round and every finished pod worker.
    """

    def __init__(
        self,
        runtime: Runtime,
        desired: Latest[DesiredState],
        settings: SyncSettings | None = None,
        clock: Callable[[], float] = time.time,
        events: EventRecorder | None = None,
    ) -> None:
        self.runtime = runtime
        self.events = events
        self.desired = desired
        self.settings = settings or SyncSettings()
        self.clock = clock
        self.backoff = Backoff(
            self.settings.backoff_min,
            self.settings.backoff_max,
            self.settings.backoff_reset,
            clock=clock,
        )
        self.runtime_pods: dict[str, RuntimePod] = {}
        self.rounds = 0
        # Bumped after every round and every finished worker: status reporting follows.
        self.progress: Latest[int] = Latest(0)
        self._busy: set[str] = set()
        self._skipped: set[str] = set()
        self._wake = trio.Event()
        self._collisions: set[str] = set()
        self._wait_scope: trio.CancelScope | None = None
        # (pod uid, container name, spec hash) -> the spec instances were started from:
        # where a stop finds the container's preStop hook.
        self._specs: dict[tuple[str, str, str], Container] = {}
        self._specs_of: DesiredState | None = None

    def wake(self) -> None:
        """Ask for a round now."""
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as workers:
            if self.settings.gc_interval > 0:
                workers.start_soon(self._gc_timer)
            task_status.started()
            while True:
                version = self.desired.version
                self._wake = trio.Event()
                try:
                    await self.sync_once(workers, self.desired.value)
                except Exception as exc:  # listing failed: try again next round
                    log.error("sync round failed", error=str(exc) or type(exc).__name__,
                              exc_info=exc)
                self.rounds += 1
                self.progress.set(self.rounds)
                await self._wait(version)

    async def _wait(self, version: int) -> None:
        """Until the desired state is newer than ``version``, a wake-up, or the next
        due time (tightened by workers through :meth:`_due_at`)."""
        with trio.move_on_after(self._next_timeout()) as scope:
            self._wait_scope = scope
            try:
                async with trio.open_nursery() as waiters:
                    async def changed() -> None:
                        await self.desired.wait_newer(version)
                        waiters.cancel_scope.cancel()

                    async def woken() -> None:
                        await self._wake.wait()
                        waiters.cancel_scope.cancel()

                    waiters.start_soon(changed)
                    waiters.start_soon(woken)
            finally:
                self._wait_scope = None

    def _due_at(self, when: float) -> None:
        """Make sure a round runs soon after wall-clock time ``when``."""
        scope = self._wait_scope
        if scope is not None:
            delay = max(0.0, when - self.clock()) + 0.01
            scope.deadline = min(scope.deadline, trio.current_time() + delay)

    def _next_timeout(self) -> float:
        now = self.clock()
        soonest = min(self.backoff.pending(now), default=math.inf)
        # A little past the deadline, so the round sees the restart as due.
        return max(0.0, min(self.settings.sync_frequency, soonest - now + 0.01))

    async def sync_once(self, workers: trio.Nursery, state: DesiredState) -> None:
        """One round: list the runtime, hand every pod to its worker (unless busy)."""
        sandboxes, containers = await self._list_runtime()
        running = group_by_uid(sandboxes, containers)
        self.runtime_pods = running
        self._remember_specs(state, running)
        wanted = self._without_collisions(state)
        wanted_uids = {pod.uid for pod in wanted}
        self.backoff.retain(lambda key: isinstance(key, tuple) and key[0] in wanted_uids)
        for desired in wanted:
            self._dispatch(workers, desired.uid, self._sync_pod, desired,
                           running.get(desired.uid))
        for uid, present in running.items():
            if uid in wanted_uids:
                continue
            source = source_of(present.full_name)
            if source in state.sources and source not in state.reported:
                continue  # its source has not said yet whether it still wants it
            self._dispatch(workers, uid, self._kill_pod, present)

    async def _gc_timer(self) -> None:
        while True:
            await trio.sleep(self.settings.gc_interval)
            try:
                await self.collect_garbage()
            except Exception as exc:  # the runtime did not answer: next time
                log.warning("garbage collection failed", error=str(exc) or type(exc).__name__)

    async def collect_garbage(self) -> int:
        """Remove dead instances beyond the newest ``max_dead_containers`` per pod uid
        and container name, skipping pods whose worker is busy; how many went."""
        keep = self.settings.max_dead_containers
        groups: dict[tuple[str, str], list[ContainerInfo]] = {}
        for info in await self.runtime.list_containers(all=True):
            if info.state is ContainerState.EXITED:
                groups.setdefault((info.pod_uid, info.name), []).append(info)
        removed = 0
        for (uid, _name), dead in groups.items():
            if uid in self._busy or len(dead) <= keep:
                continue
            for info in newest_first(dead)[keep:]:
                if uid in self._busy:
                    break  # a worker started on the pod meanwhile: it collects itself
                await self.runtime.remove_container(info.id)
                removed += 1
        if removed:
            log.info("dead containers removed", count=removed)
        return removed

    def _remember_specs(self, state: DesiredState, running: dict[str, RuntimePod]) -> None:
        if state is not self._specs_of:
            self._specs_of = state
            for desired in state.pods.values():
                for container in desired.pod.spec.containers:
                    key = (desired.uid, container.name, container_hash(container))
                    self._specs[key] = container
        alive = {pod.uid for pod in state.pods.values()} | set(running)
        for key in [key for key in self._specs if key[0] not in alive]:
            del self._specs[key]

    async def _list_runtime(self) -> tuple[list[SandboxInfo], list[ContainerInfo]]:
        """Sandboxes and containers, asked for concurrently (each is a round trip or
        more to the runtime, and every round starts with them). The first failure is
        raised as is."""
        sandboxes: list[SandboxInfo] = []
        errors: list[Exception] = []

        async def list_sandboxes() -> None:
            try:
                sandboxes.extend(await self.runtime.list_sandboxes())
            except Exception as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(list_sandboxes)
            try:
                containers = await self.runtime.list_containers(all=True)
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
        return sandboxes, containers

    def _without_collisions(self, state: DesiredState) -> list[DesiredPod]:
        used: dict[int, str] = {}
        kept: list[DesiredPod] = []
        dropped: set[str] = set()
        for desired in state.pods.values():
            ports = host_ports(desired.pod)
            clash = sorted(port for port in ports if port in used)
            if clash:
                dropped.add(desired.full_name)
                if desired.full_name not in self._collisions:
                    log.warning(
                        "pod dropped: host port already used",
                        pod=desired.full_name,
                        host_ports=clash,
                        used_by=used[clash[0]],
                    )
                    if self.events is not None:
                        self.events.record(
                            HOST_PORT_CONFLICT,
                            f"pod {desired.full_name} from source {desired.source!r} not"
                            f" started: hostPort {', '.join(map(str, clash))} already used"
                            f" by pod {used[clash[0]]}",
                            pod_id=desired.pod.id, namespace=desired.pod.namespace,
                            uid=desired.uid,
                        )
                continue
            for port in ports:
                used[port] = desired.full_name
            kept.append(desired)
        self._collisions = dropped
        return kept

    def _dispatch(self, workers: trio.Nursery, uid: str, fn: Callable[..., object],
                  *args: object) -> None:
        if uid in self._busy:
            self._skipped.add(uid)
            return
        self._busy.add(uid)
        workers.start_soon(self._worker, uid, fn, args)

    async def _worker(self, uid: str, fn: Callable[..., object], args: tuple[object, ...]) -> None:
        try:
            await fn(*args)  # type: ignore[misc]
        except Exception as exc:
            name = getattr(args[0], "full_name", uid)
            log.error("pod sync failed", pod=name, error=str(exc) or type(exc).__name__,
                      exc_info=exc)
        finally:
            self._busy.discard(uid)
            self.progress.set(self.rounds)
            if uid in self._skipped:
                self._skipped.discard(uid)
                self.wake()

    # -- workers ---------------------------------------------------------------------

    async def _pre_stop_all(self, infos: list[ContainerInfo],
                            sandbox: SandboxInfo | None) -> float:
        """Run the preStop hooks of every running one of ``infos`` concurrently; the
        grace period left for the stops that follow."""
        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            for info in infos:
                if info.state is ContainerState.RUNNING:
                    nursery.start_soon(self._pre_stop, info, sandbox)
        return max(0.0, self.settings.grace_period - (trio.current_time() - started))

    async def _pre_stop(self, info: ContainerInfo, sandbox: SandboxInfo | None) -> None:
        container = self._specs.get((info.pod_uid, info.name, info.spec_hash))
        hook = container.lifecycle.pre_stop if container and container.lifecycle else None
        if container is None or hook is None:
            return
        mappings: list[PortMapping] = list(sandbox.ports) if sandbox else []
        ip = (sandbox.ip if sandbox else "") or "127.0.0.1"
        try:
            failure = await run_handler(self.runtime, info.id, container, hook, mappings,
                                        ip=ip, timeout=self.settings.grace_period)
        except Exception as exc:  # a broken hook must not keep the container from stopping
            failure = str(exc) or type(exc).__name__
        if failure is None:
            log.info("preStop hook ran", pod=info.pod_full_name, container=info.name)
        else:
            log.warning("preStop hook failed", pod=info.pod_full_name, container=info.name,
                        error=failure)

    async def _graceful_stop(self, info: ContainerInfo, sandbox: SandboxInfo | None) -> None:
        """preStop (when the container has one), then SIGTERM and SIGKILL after what
        is left of the grace period."""
        left = await self._pre_stop_all([info], sandbox)
        await self.runtime.stop_container(info.id, left)

    async def _kill_pod(self, present: RuntimePod) -> None:
        log.info("stopping pod", pod=present.full_name, uid=present.uid)
        ready = next((s for s in present.sandboxes if s.ready), None)
        grace = await self._pre_stop_all(present.containers, ready)
        for sandbox in present.sandboxes:
            await self.runtime.stop_sandbox(sandbox.id, grace)
        for info in present.containers:
            if info.state is not ContainerState.EXITED:
                await self.runtime.stop_container(info.id, grace)
        for sandbox in present.sandboxes:
            await self.runtime.remove_sandbox(sandbox.id)
        for info in present.containers:
            await self.runtime.remove_container(info.id)
        self.backoff.retain(lambda key: not (isinstance(key, tuple) and key[0] == present.uid))
        log.info("pod stopped", pod=present.full_name, uid=present.uid)

    async def _sync_pod(self, desired: DesiredPod, present: RuntimePod | None) -> None:
        pod = desired.pod
        name = desired.full_name
        sandbox = next((s for s in (present.sandboxes if present else []) if s.ready), None)
        instances = present.containers if present else []
        wanted_ports = _ports_of(pod)
        if sandbox is not None and {
            (m.container_port, m.protocol.upper()) for m in sandbox.ports
        } != wanted_ports:
            log.info("pod ports changed: restarting its sandbox", pod=name)
            left = await self._pre_stop_all(instances, sandbox)
            await self.runtime.stop_sandbox(sandbox.id, left)
            instances = [i for i in await self.runtime.list_containers(all=True)
                         if i.pod_uid == pod.uid]
            sandbox = None
        if sandbox is None:
            sandbox = await self.runtime.run_sandbox(pod, name)
            log.info("sandbox ready", pod=name, sandbox=sandbox.id)

        by_name: dict[str, list[ContainerInfo]] = {}
        for info in instances:
            by_name.setdefault(info.name, []).append(info)
        spec_names = {c.name for c in pod.spec.containers}
        for container in pod.spec.containers:
            await self._sync_container(desired, sandbox, container,
                                       newest_first(by_name.get(container.name, [])))
        for cname, infos in by_name.items():
            if cname in spec_names:
                continue
            for info in infos:
                if info.state is not ContainerState.EXITED:
                    log.info("stopping container no longer in the pod", pod=name,
                             container=cname)
                    await self._graceful_stop(info, sandbox)
            await self._collect(pod, infos, keep=0)

    async def _sync_container(
        self,
        desired: DesiredPod,
        sandbox: SandboxInfo,
        container: Container,
        instances: list[ContainerInfo],
    ) -> None:
        pod = desired.pod
        name = desired.full_name
        key = (pod.uid, container.name)
        spec_hash = container_hash(container)
        live = [i for i in instances if i.state is not ContainerState.EXITED]
        keep: ContainerInfo | None = None
        for info in live:
            if keep is None and info.spec_hash == spec_hash:
                keep = info
                continue
            why = "spec changed" if info.spec_hash != spec_hash else "duplicate instance"
            log.info("stopping container", pod=name, container=container.name, reason=why)
            await self._graceful_stop(info, sandbox)
            if why == "spec changed":
                self.backoff.forget(key)
        if keep is not None:
            if not await self._unhealthy(sandbox, container, keep):
                await self._collect(pod, instances, keep=self.settings.max_dead_containers)
                return
            log.info("container unhealthy: restarting", pod=name, container=container.name)
            await self._graceful_stop(keep, sandbox)
            instances = newest_first([
                i for i in await self.runtime.list_containers(all=True)
                if i.pod_uid == pod.uid and i.name == container.name
            ])
        dead = [i for i in instances if i.state is ContainerState.EXITED]
        if keep is None and dead and dead[0].spec_hash == spec_hash and not live:
            newest = dead[0]
            if not restart_allowed(pod, newest):
                await self._collect(pod, instances, keep=self.settings.max_dead_containers)
                return
            due = self.backoff.not_before(key, newest.id, newest.started_at,
                                          newest.finished_at)
            if due > self.clock():
                self._due_at(due)
                await self._collect(pod, instances, keep=self.settings.max_dead_containers)
                return
        elif keep is not None:
            # An unhealthy container is replaced as a dead one would be.
            refreshed = next((i for i in instances if i.id == keep.id), keep)
            if not restart_allowed(pod, refreshed):
                return
            due = self.backoff.not_before(key, refreshed.id, refreshed.started_at,
                                          refreshed.finished_at)
            if due > self.clock():
                self._due_at(due)
                return
        await self._start(desired, sandbox, container, spec_hash, bool(dead))
        await self._collect(pod, [*instances], keep=self.settings.max_dead_containers)

    async def _start(self, desired: DesiredPod, sandbox: SandboxInfo, container: Container,
                     spec_hash: str, restart: bool) -> None:
        from kubecore.runtime import ContainerError

        try:
            info = await self.runtime.start_container(
                desired.pod, desired.full_name, sandbox, container, spec_hash
            )
        except ContainerError as exc:
            log.warning("container failed to start", pod=desired.full_name,
                        container=container.name, reason=exc.reason, error=exc.message)
            return
        log.info("container restarted" if restart else "container started",
                 pod=desired.full_name, container=container.name, id=info.id, hash=spec_hash)
        hook = container.lifecycle.post_start if container.lifecycle else None
        if hook is not None and info.state is ContainerState.RUNNING:
            failure = await run_handler(self.runtime, info.id, container, hook,
                                        sandbox.ports, ip=sandbox.ip or "127.0.0.1",
                                        timeout=self.settings.grace_period)
            if failure is not None:
                log.warning("postStart hook failed: killing the container",
                            pod=desired.full_name, container=container.name, error=failure)
                await self.runtime.stop_container(info.id, 0)

    async def _unhealthy(self, sandbox: SandboxInfo, container: Container,
                         info: ContainerInfo) -> bool:
        spec = container.liveness_probe
        if spec is None or info.state is not ContainerState.RUNNING:
            return False
        started = info.started_at if info.started_at is not None else info.created_at
        if self.clock() - started < spec.initial_delay_seconds:
            return False
        result = await probe(self.runtime, info.id, container, spec, sandbox.ports,
                             ip=sandbox.ip or "127.0.0.1")
        return result == UNHEALTHY

    async def _collect(self, pod: BoundPod, instances: list[ContainerInfo], keep: int) -> None:
        """Remove dead instances beyond the newest ``keep`` of one container."""
        dead = newest_first([i for i in instances if i.state is ContainerState.EXITED])
        for info in dead[keep:]:
            await self.runtime.remove_container(info.id)
