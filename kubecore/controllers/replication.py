"""The replication manager: keeps each replication controller's pod count at its
``replicas``.

Contract:
- Replication controllers are followed by list-then-watch in every namespace; every
  event (deletions too) queues a sync of its controller, and every ``resync_interval``
  all controllers are listed again and each is queued.
- A sync lists the pods in the controller's namespace matching its ``replicaSelector``,
  ignores Terminated ones, and creates (labels and manifest from the template, no id:
  the server assigns one) or deletes the difference. Surplus pods are deleted
  unscheduled first, then Waiting, then Running (v0.5 took the first of the list; this
  removes the pods that serve nothing first). A template without labels, or whose
  labels the selector does not match, is refused (logged): its pods would never count.
- Syncs of one controller never overlap, and each controller keeps *expectations*: the
  pods it created or deleted that no pod-watch event or later list has shown yet. They
  count as present (created) or absent (deleted), so a second sync that runs before the
  apiserver's answers show the change does not create or delete again. A created pod
  is observed when a list or watch shows it, when a list at or after its revision does
  not (someone deleted it), or after ``expectation_ttl``; a deleted one when a list
  lacks it or its DELETED event arrives.
- A deleted controller's pods are left alone (v0.5); resize it to 0 first.
- A failing controller is logged and retried (after a short delay, then at resync); an
  unreachable apiserver is retried with backoff.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import trio

from kubecore.api import (
    POD_RUNNING,
    POD_TERMINATED,
    Pod,
    PodState,
    ReplicationController,
    Selector,
)
from kubecore.client import ApiClient, ApiError, ClientError, WatchEvent
from kubecore.controllers.watching import ObjectKey, key_of, list_and_watch
from kubecore.log import get_logger

log = get_logger("kubecore.controllers.replication")

DEFAULT_RESYNC_INTERVAL = 10.0
DEFAULT_EXPECTATION_TTL = 60.0
WORKERS = 4
# Creations and deletions of one sync that run at the same time.
PARALLEL_WRITES = 16
# First delay before a failed sync is retried (doubles up to the resync interval).
RETRY_DELAY = 0.5


@dataclass
class Expectations:
    """One controller's writes not yet observed: pod id -> (revision, deadline) for
    creations, pod id -> deadline for deletions."""

    creates: dict[str, tuple[int, float]] = field(default_factory=dict)
    deletes: dict[str, float] = field(default_factory=dict)

    def observe_list(self, pods: Iterable[Pod], revision: int, now: float) -> None:
        """Drop what a list read at ``revision`` (complete and current) settles."""
        ids = {pod.id for pod in pods}
        for pod_id, (created_at, deadline) in list(self.creates.items()):
            if pod_id in ids or revision >= created_at or now >= deadline:
                del self.creates[pod_id]
        for pod_id, deadline in list(self.deletes.items()):
            if pod_id not in ids or now >= deadline:
                del self.deletes[pod_id]

    def observe_pod(self, pod_id: str, *, deleted: bool) -> None:
        self.creates.pop(pod_id, None)
        if deleted:
            self.deletes.pop(pod_id, None)

    @property
    def pending(self) -> bool:
        return bool(self.creates or self.deletes)


def _removal_order(pod: Pod) -> tuple[int, int]:
    """Sort key of surplus pods: unscheduled, then Waiting, then Running go first."""
    if not pod.desired_state.host:
        return (0, 0)
    return (1, 1 if pod.current_state.status == POD_RUNNING else 0)


def pod_from_template(rc: ReplicationController) -> Pod:
    """A new pod of ``rc``: template labels and manifest, ``rc``'s namespace, no id."""
    template = rc.desired_state.pod_template
    manifest = template.desired_state.manifest.model_copy(deep=True)
    manifest.id = ""
    manifest.uuid = ""
    return Pod(
        namespace=rc.namespace,
        labels=dict(template.labels),
        desired_state=PodState(manifest=manifest),
    )


def template_problem(rc: ReplicationController) -> str | None:
    """Why ``rc``'s pods cannot be made or counted, or ``None``."""
    selector = Selector.from_set(rc.desired_state.replica_selector)
    labels = rc.desired_state.pod_template.labels
    if selector.empty:
        return "the replica selector is empty"
    if not labels:
        return "the pod template has no labels"
    if not selector.matches(labels):
        return "the replica selector does not match the pod template's labels"
    return None


@dataclass
class _PodSeen:
    labels: dict[str, str]
    terminated: bool


class ReplicationManager:
    """Drives every replication controller to its replica count (module docstring).

    :meth:`run` follows the apiserver until cancelled; :meth:`sync` syncs one controller
    now (from the cached controller; a controller not in the cache is a no-op).
    """

    def __init__(
        self,
        client: ApiClient,
        *,
        resync_interval: float = DEFAULT_RESYNC_INTERVAL,
        expectation_ttl: float = DEFAULT_EXPECTATION_TTL,
    ) -> None:
        self.client = client
        self.resync_interval = resync_interval
        self.expectation_ttl = expectation_ttl
        self.controllers: dict[ObjectKey, ReplicationController] = {}
        self.expectations: dict[ObjectKey, Expectations] = {}
        self._pods: dict[ObjectKey, _PodSeen] = {}
        self._locks: dict[ObjectKey, trio.Lock] = {}
        self._queued: set[ObjectKey] = set()
        self._send, self._receive = trio.open_memory_channel[ObjectKey](math.inf)
        self._controllers_listed = trio.Event()
        self._pods_listed = trio.Event()

    # -- following the apiserver ---------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Follow controllers and pods, sync on changes and every resync interval."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow_controllers)
            nursery.start_soon(self._follow_pods)
            nursery.start_soon(self._resync_loop)
            for _ in range(WORKERS):
                nursery.start_soon(self._worker)
            task_status.started()

    async def wait_listed(self) -> None:
        """Return once controllers and pods have each been listed once."""
        await self._controllers_listed.wait()
        await self._pods_listed.wait()

    async def _follow_controllers(self) -> None:
        await list_and_watch(self.client, ReplicationController,
                             on_list=self.replace_controllers,
                             on_event=self.handle_controller_event)

    async def _follow_pods(self) -> None:
        await list_and_watch(self.client, Pod, on_list=self._replace_pods,
                             on_event=self.handle_pod_event)

    def replace_controllers(self, items: list[ReplicationController]) -> None:
        """Take ``items`` as every controller there is, and queue each."""
        self.controllers = {key_of(rc): rc for rc in items}
        for key in list(self.expectations):
            if key not in self.controllers:
                del self.expectations[key]
        for key in self.controllers:
            self.enqueue(key)
        self._controllers_listed.set()

    def handle_controller_event(self, event: WatchEvent[ReplicationController]) -> None:
        """Cache the change and queue its controller (idempotent: the same event twice
        queues at most one more sync, which the expectations keep from writing twice)."""
        key = key_of(event.object)
        if event.type == "DELETED":
            self.controllers.pop(key, None)
            self.expectations.pop(key, None)
            return
        self.controllers[key] = event.object
        self.enqueue(key)

    def _replace_pods(self, items: list[Pod]) -> None:
        self._pods = {key_of(pod): _PodSeen(dict(pod.labels),
                                            pod.current_state.status == POD_TERMINATED)
                      for pod in items}
        # Changes during a watch gap are unknown: look at every controller.
        for key in self.controllers:
            self.enqueue(key)
        self._pods_listed.set()

    def handle_pod_event(self, event: WatchEvent[Pod]) -> None:
        """Settle expectations of the controllers the pod belongs (or belonged) to, and
        queue those whose count may have changed."""
        pod = event.object
        pod_key = key_of(pod)
        before = self._pods.get(pod_key)
        deleted = event.type == "DELETED"
        now = _PodSeen(dict(pod.labels), pod.current_state.status == POD_TERMINATED)
        if deleted:
            self._pods.pop(pod_key, None)
        else:
            self._pods[pod_key] = now
        changed = deleted or before is None or before != now
        for rc_key, rc in self.controllers.items():
            if rc.namespace != pod.namespace:
                continue
            selector = Selector.from_set(rc.desired_state.replica_selector)
            if selector.empty:
                continue
            if not (selector.matches(pod.labels)
                    or (before is not None and selector.matches(before.labels))):
                continue
            expected = self.expectations.get(rc_key)
            if expected is not None:
                expected.observe_pod(pod.id, deleted=deleted)
            if changed:
                self.enqueue(rc_key)

    async def _resync_loop(self) -> None:
        while True:
            await trio.sleep(self.resync_interval)
            try:
                listed = await self.client.list(ReplicationController)
            except ClientError as exc:
                log.warning("resync: cannot list replication controllers", error=str(exc))
                continue
            self.replace_controllers(listed.items)

    # -- the work queue ------------------------------------------------------------

    def enqueue(self, key: ObjectKey) -> None:
        """Queue a sync of ``key`` unless one is already waiting."""
        if key not in self._queued:
            self._queued.add(key)
            self._send.send_nowait(key)

    async def _worker(self) -> None:
        failures: dict[ObjectKey, float] = {}
        async with trio.open_nursery() as retries:
            async for key in self._receive:
                self._queued.discard(key)
                try:
                    await self.sync(key)
                except ClientError as exc:
                    delay = min(failures.get(key, RETRY_DELAY / 2) * 2, self.resync_interval)
                    failures[key] = delay
                    log.warning("sync of replication controller failed; retrying",
                                namespace=key[0], id=key[1], error=str(exc), delay=delay)
                    retries.start_soon(self._requeue_later, key, delay)
                except Exception:
                    # One broken controller never stops the others.
                    log.exception("sync of replication controller crashed",
                                  namespace=key[0], id=key[1])
                else:
                    failures.pop(key, None)

    async def _requeue_later(self, key: ObjectKey, delay: float) -> None:
        await trio.sleep(delay)
        self.enqueue(key)

    # -- one controller ------------------------------------------------------------

    async def sync(self, key: ObjectKey) -> None:
        """Bring controller ``key`` (as cached) to its replica count. Serialized per
        controller; raises :class:`ClientError` when the apiserver fails it."""
        lock = self._locks.setdefault(key, trio.Lock())
        async with lock:
            rc = self.controllers.get(key)
            if rc is None:
                return  # deleted: its pods are left alone
            await self._sync(key, rc)

    async def _sync(self, key: ObjectKey, rc: ReplicationController) -> None:
        problem = template_problem(rc)
        if problem is not None:
            log.error("replication controller refused", namespace=rc.namespace,
                      id=rc.id, reason=problem)
            return
        selector = Selector.from_set(rc.desired_state.replica_selector)
        listed = await self.client.list(Pod, namespace=rc.namespace, labels=selector)
        expected = self.expectations.setdefault(key, Expectations())
        expected.observe_list(listed.items, listed.resource_version, trio.current_time())
        live = [pod for pod in listed.items if pod.current_state.status != POD_TERMINATED
                and pod.id not in expected.deletes]
        listed_ids = {pod.id for pod in listed.items}
        pending_creates = [pod_id for pod_id in expected.creates if pod_id not in listed_ids]
        diff = rc.desired_state.replicas - (len(live) + len(pending_creates))
        if diff > 0:
            log.info("creating pods", namespace=rc.namespace, id=rc.id, count=diff)
            await self._create(rc, expected, diff)
        elif diff < 0:
            surplus = sorted(live, key=_removal_order)[:-diff]
            log.info("deleting pods", namespace=rc.namespace, id=rc.id, count=-diff)
            await self._delete(rc, expected, surplus)

    async def _create(self, rc: ReplicationController, expected: Expectations,
                      count: int) -> None:
        failed: list[ClientError] = []
        limiter = trio.CapacityLimiter(PARALLEL_WRITES)

        async def one() -> None:
            async with limiter:
                try:
                    pod = await self.client.create(pod_from_template(rc),
                                                   namespace=rc.namespace)
                except ClientError as exc:
                    failed.append(exc)
                    return
            deadline = trio.current_time() + self.expectation_ttl
            expected.creates[pod.id] = (pod.resource_version, deadline)

        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(one)
        if failed:
            raise failed[0]

    async def _delete(self, rc: ReplicationController, expected: Expectations,
                      pods: list[Pod]) -> None:
        failed: list[ClientError] = []
        limiter = trio.CapacityLimiter(PARALLEL_WRITES)

        async def one(pod: Pod) -> None:
            async with limiter:
                try:
                    await self.client.delete(Pod, pod.id, namespace=rc.namespace)
                except ApiError as exc:
                    if exc.code != 404:  # already gone is what was wanted
                        failed.append(exc)
                    return
                except ClientError as exc:
                    failed.append(exc)
                    return
            expected.deletes[pod.id] = trio.current_time() + self.expectation_ttl

        async with trio.open_nursery() as nursery:
            for pod in pods:
                nursery.start_soon(one, pod)
        if failed:
            raise failed[0]
