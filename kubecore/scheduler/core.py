"""The scheduler loop: unscheduled pods in FIFO order -> predicates -> priorities ->
host selection -> binding, through the API only.

Inputs (as v0.5's ``factory.go``): a list+watch of unscheduled pods
(``DesiredState.Host=``), a list+watch of assigned pods (``DesiredState.Host!=``) that
keeps a :class:`~kubecore.scheduler.NodeInfo` per host, and the minion list polled every
``minion_poll_interval`` seconds. A watch that ends, breaks or answers 410 Gone is
re-listed and resumed from the new list's resource version.

For each pod, in queue order: every predicate runs on every minion (except where the
predicate says the pod does not concern it); every priority scores the feasible ones
and the sums go to the host selection hook. The chosen host is *assumed* at once: the
cache places the pod there before the binding is confirmed, so the next pod sees the
new load, and the binding is POSTed in the background, up to ``bind_concurrency``
bindings in flight. A binding that fails takes the assumption back (unless the
assigned-pods watch has meanwhile said where the pod really is). The apiserver's
compare-and-swap on the pod still refuses a second binding, so concurrency never binds
a pod twice.

No fit: a log line naming the failing predicates, a best-effort ``failedScheduling``
Event, and a per-pod backoff (``backoff_initial`` doubling to ``backoff_max``) after
which the pod is retried if it is still unscheduled. A 409 on bind for a pod that
already has a host drops it. One pod's failure never stops the loop.
"""

from __future__ import annotations

import contextlib
import heapq
import math
import random
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass

import trio

from kubecore.api import API_VERSION, Event, Minion, ObjectReference, Pod
from kubecore.client import ApiClient, ApiError, ClientError, WatchEvent
from kubecore.events import Delivery, send_event
from kubecore.log import get_logger
from kubecore.scheduler import (
    FitPredicate,
    NodeInfo,
    PodKey,
    PriorityFunction,
    ScoreTable,
    applies_to,
    is_node_only,
    pod_key,
    select_lowest,
)

log = get_logger("kubecore.scheduler")

SelectHost = Callable[[Pod, Mapping[str, int], random.Random], "str | None"]
"""``select(pod, scores, rng) -> host`` (or ``None`` to use :func:`select_lowest`)."""

UNASSIGNED = "DesiredState.Host="
ASSIGNED = "DesiredState.Host!="

# Reconnect delays for a watch or list that failed (not the per-pod backoff).
RETRY_MIN = 0.2
RETRY_MAX = 10.0
# Queued events beyond this are dropped: events are best effort and must not slow binds.
EVENT_QUEUE = 256
# How many node names a "no fit" log line gives per predicate.
NAMES_SHOWN = 5


@dataclass(frozen=True)
class Settings:
    """Timing of the loop, in seconds."""

    minion_poll_interval: float = 10.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    #: bindings POSTed and not yet answered, at most
    bind_concurrency: int = 16


@dataclass(frozen=True)
class NoFit:
    """Why no host was found: per predicate name, the nodes it failed on."""

    failed: Mapping[str, list[str]]
    minions: int

    def summary(self) -> str:
        if not self.minions:
            return "no minions registered"
        parts = []
        for name, nodes in sorted(self.failed.items()):
            shown = ", ".join(nodes[:NAMES_SHOWN])
            more = f" and {len(nodes) - NAMES_SHOWN} more" if len(nodes) > NAMES_SHOWN else ""
            parts.append(f"{name} on {len(nodes)} node(s) ({shown}{more})")
        return "; ".join(parts) or "no feasible minion"


class Scheduler:
    """One scheduler over ``client``. Run it with ``await nursery.start(s.run)``.

    ``predicates`` and ``priorities`` are keyed by name; ``select`` is the host
    selection hook (its ``None`` falls back to :func:`select_lowest`). ``rng`` makes
    selection reproducible. The caller owns and closes ``client``.
    """

    def __init__(
        self,
        client: ApiClient,
        predicates: Mapping[str, FitPredicate],
        priorities: Mapping[str, PriorityFunction],
        select: SelectHost | None = None,
        *,
        settings: Settings | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.predicates = dict(predicates)
        self.priorities = dict(priorities)
        self.select = select
        self.settings = settings or Settings()
        self.rng = rng or random.Random()
        #: every host that has pods or is a minion -> its node
        self.nodes: dict[str, NodeInfo] = {}
        #: names of the registered minions (the only feasible hosts)
        self.minions: set[str] = set()
        #: set once minions and both pod lists have been read
        self.synced = trio.Event()
        self._host_of: dict[PodKey, str] = {}
        #: pods placed in the cache whose binding is in flight -> the pod as placed
        self._assumed: dict[PodKey, Pod] = {}
        self._candidates: list[NodeInfo] = []  # the minions' nodes, by name
        self._names: list[str] = []  # their names
        # The scores of each node-only priority, kept for every minion, and the minions
        # whose node changed since they were computed.
        self._kept_scores: dict[str, ScoreTable] = {
            name: ScoreTable() for name, priority in self.priorities.items()
            if is_node_only(priority)}
        self._changed: set[str] = set()
        self._pending: dict[PodKey, Pod] = {}
        self._ready: OrderedDict[PodKey, None] = OrderedDict()
        self._delay: dict[PodKey, float] = {}
        self._waiting: dict[PodKey, float] = {}  # key -> when it may be retried
        self._heap: list[tuple[float, int, PodKey]] = []
        self._seq = 0
        self._wakeup = trio.Event()
        self._minions_read = trio.Event()
        self._unassigned_read = trio.Event()
        self._assigned_read = trio.Event()
        self._events_send, self._events_recv = trio.open_memory_channel[Event](EVENT_QUEUE)
        self._events_supported = True

    # -- running -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Start the watches, the minion poll, the event sender and the scheduling loop;
        ready at once (the loop waits for the first lists itself). Runs until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._poll_minions)
            nursery.start_soon(self._sync_pods, UNASSIGNED, self._on_unassigned_list,
                               self._on_unassigned_event, self._unassigned_read)
            nursery.start_soon(self._sync_pods, ASSIGNED, self._on_assigned_list,
                               self._on_assigned_event, self._assigned_read)
            nursery.start_soon(self._send_events)
            task_status.started()
            await self._minions_read.wait()
            await self._unassigned_read.wait()
            await self._assigned_read.wait()
            self.synced.set()
            await self._loop(nursery)

    async def _loop(self, nursery: trio.Nursery) -> None:
        slots = trio.Semaphore(max(1, self.settings.bind_concurrency))
        while True:
            self._promote_due()
            if not self._ready:
                self._wakeup = trio.Event()
                timeout = self._heap[0][0] - trio.current_time() if self._heap else math.inf
                with trio.move_on_after(max(timeout, 0)):
                    await self._wakeup.wait()
                continue
            await slots.acquire()
            key = next(iter(self._ready), None)  # the queue may have changed meanwhile
            pod = self._pending.get(key) if key is not None else None
            if key is None or pod is None:
                if key is not None:
                    del self._ready[key]
                slots.release()
                continue
            del self._ready[key]
            try:
                found = self._choose(pod)
            except Exception as exc:  # one pod's trouble must not stop the others
                log.error("scheduling a pod failed", pod=key[1], namespace=key[0],
                          error=str(exc) or type(exc).__name__, exc_info=exc)
                self._back_off(key)
                found = None
            if found is None:
                slots.release()
            else:
                nursery.start_soon(self._bind_released, pod, found, slots)
            await trio.lowlevel.checkpoint()

    async def _bind_released(self, pod: Pod, host: str, slots: trio.Semaphore) -> None:
        try:
            await self._bind(pod, host)
        except Exception as exc:  # one pod's trouble must not stop the others
            key = pod_key(pod)
            log.error("binding a pod failed", pod=key[1], namespace=key[0],
                      error=str(exc) or type(exc).__name__, exc_info=exc)
            self._unassume(key)
            self._back_off(key)
        finally:
            slots.release()

    # -- one pod -----------------------------------------------------------------------

    def find_host(self, pod: Pod) -> str | NoFit:
        """The host for ``pod`` from the current cache, or why there is none."""
        candidates = self._candidates
        feasible = candidates
        # Each predicate filters what the previous ones kept, whole lists at a time;
        # what each saw and kept is noted for the (rare) report of why nothing fits.
        stages: list[tuple[str, list[NodeInfo], list[NodeInfo]]] = []
        for pred_name, predicate in self.predicates.items():
            if not feasible:
                break
            if not applies_to(predicate, pod):
                continue
            before = feasible
            try:
                feasible = [node for node in before if predicate(pod, node)]
            except Exception:
                feasible = [node for node in before
                            if self._fits(pred_name, predicate, pod, node, log_errors=True)]
            stages.append((pred_name, before, feasible))
        if not feasible:
            return NoFit(self._failures(pod, candidates, stages), len(candidates))
        names = self._names if feasible is candidates else [node.name for node in feasible]
        if self._kept_scores and self._changed:
            self._refresh_kept_scores(pod)
        only = len(self.priorities) == 1 and feasible is candidates
        scores: MutableMapping[str, int] = (
            {} if only and self._kept_scores else dict.fromkeys(names, 0))
        for priority_name, priority in self.priorities.items():
            kept = self._kept_scores.get(priority_name)
            if kept is not None:
                if only:
                    # A whole number for every minion, no more: handed over as it is
                    # (read-only), so selection finds the lowest without a scan.
                    scores = kept
                else:
                    for host in names:
                        scores[host] += kept.get(host, 0)
                continue
            answer = priority(pod, feasible)
            if (len(self.priorities) == 1 and answer.keys() <= scores.keys()
                    and set(map(type, answer.values())) <= {int}):
                scores.update(answer)  # the common case, without a loop in Python
                continue
            for host, score in answer.items():
                if host in scores:
                    scores[host] += int(score)
        chosen = self.select(pod, scores, self.rng) if self.select is not None else None
        if chosen is None:
            chosen = select_lowest(scores, self.rng)
        if chosen not in scores:
            raise ValueError(f"host selection chose {chosen!r}, which is not feasible")
        return chosen

    def _refresh_kept_scores(self, pod: Pod) -> None:
        """Ask each node-only priority about the minions changed since it was last
        asked (``pod`` is passed along; such a priority does not look at it)."""
        changed = [self.nodes[name] for name in sorted(self._changed & self.minions)]
        for name, kept in self._kept_scores.items():
            answer = self.priorities[name](pod, changed)
            for node in changed:
                kept[node.name] = int(answer.get(node.name, 0))
        self._changed.clear()  # only once every priority has answered

    @staticmethod
    def _fits(name: str, predicate: FitPredicate, pod: Pod, node: NodeInfo, *,
              log_errors: bool) -> bool:
        try:
            return predicate(pod, node)
        except Exception as exc:
            if log_errors:
                log.error("predicate failed", predicate=name, node=node.name, pod=pod.id,
                          error=str(exc) or type(exc).__name__)
            return False

    def _failures(
        self,
        pod: Pod,
        nodes: list[NodeInfo],
        stages: list[tuple[str, list[NodeInfo], list[NodeInfo]]],
    ) -> dict[str, list[str]]:
        """Per predicate, every node it fails on, as if each had run on every node:
        the answers :meth:`find_host` got are reused, the rest asked for (so no
        predicate is called twice for one node)."""
        known = {name: ({id(n) for n in before}, {id(n) for n in after})
                 for name, before, after in stages}
        failed: dict[str, list[str]] = {}
        for node in nodes:
            for name, predicate in self.predicates.items():
                if name in known and id(node) in known[name][0]:
                    fits = id(node) in known[name][1]
                else:
                    fits = not applies_to(predicate, pod) or self._fits(
                        name, predicate, pod, node, log_errors=True)
                if not fits:
                    failed.setdefault(name, []).append(node.name)
        return failed

    def _choose(self, pod: Pod) -> str | None:
        """Pick ``pod``'s host and assume it there (the caller then binds), or back off
        when nothing fits."""
        key = pod_key(pod)
        found = self.find_host(pod)
        if isinstance(found, NoFit):
            reason = found.summary()
            log.info("failed to find a fit", pod=pod.id, namespace=key[0], reason=reason)
            self._event(pod, "failedScheduling", f"failed to find a fit for pod: {reason}")
            self._back_off(key)
            return None
        self._assume(pod, found)
        return found

    async def schedule(self, pod: Pod) -> str | None:
        """Try to place ``pod`` once and wait for its binding; returns its host, or
        ``None`` when it was not bound (backed off, or dropped because it already has a
        host)."""
        key = pod_key(pod)
        self._ready.pop(key, None)
        found = self._choose(pod)
        if found is None:
            return None
        try:
            return await self._bind(pod, found)
        except BaseException:
            self._unassume(key)
            raise

    async def _bind(self, pod: Pod, found: str) -> str | None:
        """POST the binding of ``pod`` (already assumed on ``found``) and settle the
        assumption: kept (as a placement) on success, taken back on failure."""
        key = pod_key(pod)
        try:
            await self.client.bind(pod.id, found, namespace=key[0])
        except ApiError as exc:
            self._unassume(key)
            if exc.code == 404:
                self._forget(key)  # deleted meanwhile
                return None
            if exc.code == 409 and await self._has_host(key):
                log.info("pod already assigned; dropped from the queue", pod=pod.id,
                         namespace=key[0])
                self._forget(key)
                return None
            log.warning("binding failed", pod=pod.id, namespace=key[0], host=found,
                        error=str(exc))
            self._event(pod, "failedScheduling", f"binding to {found} failed: {exc}")
            self._back_off(key)
            return None
        except ClientError as exc:
            self._unassume(key)
            log.warning("binding failed", pod=pod.id, namespace=key[0], host=found,
                        error=str(exc))
            self._back_off(key)
            return None
        self._forget(key)
        self._assumed.pop(key, None)  # bound: an ordinary placement from now on
        log.info("pod scheduled", pod=pod.id, namespace=key[0], host=found)
        self._event(pod, "scheduled", f"Successfully assigned {pod.id} to {found}")
        return found

    async def _has_host(self, key: PodKey) -> bool:
        try:
            current = await self.client.get(Pod, key[1], namespace=key[0])
        except ClientError:
            return False
        return bool(current.desired_state.host)

    # -- queue and backoff -------------------------------------------------------------

    def queued(self) -> list[PodKey]:
        """Unscheduled pods in the order they will be tried (ready ones first)."""
        waiting = sorted(self._waiting, key=lambda k: self._waiting[k])
        return [*self._ready, *waiting]

    def backoff_of(self, key: PodKey) -> float:
        """The delay the pod's next failure will wait (``backoff_initial`` at first)."""
        return self._delay.get(key, self.settings.backoff_initial)

    def _enqueue(self, key: PodKey) -> None:
        if key not in self._ready and key not in self._waiting and key not in self._assumed:
            self._ready[key] = None
            self._wakeup.set()

    def _back_off(self, key: PodKey) -> None:
        if key not in self._pending:
            return
        delay = self._delay.get(key, self.settings.backoff_initial)
        self._delay[key] = min(delay * 2, self.settings.backoff_max)
        when = trio.current_time() + delay
        self._ready.pop(key, None)
        self._waiting[key] = when
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, key))

    def _promote_due(self) -> None:
        now = trio.current_time()
        while self._heap and self._heap[0][0] <= now:
            when, _, key = heapq.heappop(self._heap)
            if self._waiting.get(key) != when:
                continue  # superseded or forgotten
            del self._waiting[key]
            if key in self._pending and key not in self._assumed:  # still unscheduled
                self._ready[key] = None

    def _forget(self, key: PodKey) -> None:
        self._pending.pop(key, None)
        self._ready.pop(key, None)
        self._waiting.pop(key, None)
        self._delay.pop(key, None)

    # -- cache -------------------------------------------------------------------------

    def _node(self, host: str) -> NodeInfo:
        node = self.nodes.get(host)
        if node is None:
            node = self.nodes[host] = NodeInfo(Minion(id=host))
        return node

    def _assume(self, pod: Pod, host: str) -> None:
        """Place ``pod`` on ``host`` ahead of its binding."""
        key = pod_key(pod)
        assumed = pod.model_copy(update={
            "desired_state": pod.desired_state.model_copy(update={"host": host})
        })
        self._place(assumed, host)
        self._assumed[key] = assumed

    def _unassume(self, key: PodKey) -> None:
        """Take back the assumption of a binding that failed, unless the assigned-pods
        watch has replaced it with where the pod really is."""
        if self._assumed.pop(key, None) is not None:
            self._unplace(key)

    def _place(self, pod: Pod, host: str) -> None:
        key = pod_key(pod)
        self._unplace(key)
        self._node(host).add_pod(pod)
        self._host_of[key] = host
        self._changed.add(host)

    def _unplace(self, key: PodKey) -> None:
        host = self._host_of.pop(key, None)
        if host is None:
            return
        self._changed.add(host)
        node = self.nodes.get(host)
        if node is not None:
            node.remove_pod(key)
            if not node.by_key and host not in self.minions:
                del self.nodes[host]

    def set_minions(self, minions: Iterable[Minion]) -> None:
        """Replace the minion set (keeping what is placed on each host)."""
        fresh = {m.id: m for m in minions if m.id}
        for gone in self.minions - fresh.keys():
            node = self.nodes.get(gone)
            if node is not None and not node.by_key:
                del self.nodes[gone]
        for name, minion in fresh.items():
            self._node(name).minion = minion
        for kept in self._kept_scores.values():
            for gone in kept.keys() - fresh.keys():
                del kept[gone]
        self._changed.update(fresh)  # a minion's capacity may have changed
        self.minions = set(fresh)
        self._names = sorted(fresh)
        self._candidates = [self.nodes[name] for name in self._names]

    def _on_assigned_list(self, pods: list[Pod]) -> None:
        for key in list(self._host_of):
            self._unplace(key)
        for pod in pods:
            self._on_assigned_event(WatchEvent("ADDED", pod))
        for key, assumed in self._assumed.items():  # bindings still in flight
            if key not in self._host_of:
                self._place(assumed, assumed.desired_state.host)

    def _on_assigned_event(self, event: WatchEvent[Pod]) -> None:
        key = pod_key(event.object)
        host = event.object.desired_state.host
        self._assumed.pop(key, None)  # the watch knows better than the assumption
        if event.type == "DELETED" or not host:
            self._unplace(key)
        else:
            self._place(event.object, host)

    def _on_unassigned_list(self, pods: list[Pod]) -> None:
        listed = {pod_key(pod): pod for pod in pods}
        for key in list(self._pending):
            if key not in listed:
                self._forget(key)
        for pod in pods:
            self._on_unassigned_event(WatchEvent("ADDED", pod))

    def _on_unassigned_event(self, event: WatchEvent[Pod]) -> None:
        pod = event.object
        key = pod_key(pod)
        if event.type == "DELETED" or pod.desired_state.host:
            self._forget(key)
            return
        self._pending[key] = pod
        self._enqueue(key)

    # -- inputs from the API -----------------------------------------------------------

    async def _poll_minions(self) -> None:
        while True:
            try:
                listed = await self.client.list(Minion)
            except ClientError as exc:
                log.warning("cannot list minions", error=str(exc))
            else:
                self.set_minions(listed.items)
                self._minions_read.set()
            await trio.sleep(self.settings.minion_poll_interval)

    async def _sync_pods(
        self,
        fields: str,
        on_list: Callable[[list[Pod]], None],
        on_event: Callable[[WatchEvent[Pod]], None],
        read: trio.Event,
    ) -> None:
        """List pods matching ``fields`` then watch from there, forever."""
        delay = RETRY_MIN
        while True:
            try:
                listed = await self.client.list(Pod, fields=fields)
                on_list(listed.items)
                read.set()
                async with self.client.watch(Pod, listed.resource_version,
                                             fields=fields) as watch:
                    async for event in watch:
                        on_event(event)
                        delay = RETRY_MIN
                continue  # the server ended the stream: list again
            except ApiError as exc:
                if exc.code == 410:
                    log.info("watch too old; listing again", fields=fields)
                    continue
                log.warning("pod watch failed", fields=fields, error=str(exc))
            except ClientError as exc:
                log.warning("pod watch failed", fields=fields, error=str(exc))
            await trio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    # -- events ------------------------------------------------------------------------

    def _event(self, pod: Pod, reason: str, message: str) -> None:
        if not self._events_supported:
            return
        event = Event(
            api_version=API_VERSION,
            namespace=pod_key(pod)[0],
            involved_object=ObjectReference(
                kind="Pod", namespace=pod_key(pod)[0], name=pod.id, uid=pod.uid,
                api_version=API_VERSION, resource_version=str(pod.resource_version or ""),
            ),
            status=reason,
            reason=reason,
            message=message,
            source="scheduler",
        )
        # Best effort: a backlog of events is not worth slowing binds.
        with contextlib.suppress(trio.WouldBlock):
            self._events_send.send_nowait(event)

    async def _send_events(self) -> None:
        async for event in self._events_recv:
            if await send_event(self.client, event) is Delivery.UNSUPPORTED:
                self._events_supported = False
