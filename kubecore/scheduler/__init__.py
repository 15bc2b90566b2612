"""Scheduler contracts: fit predicates and priority functions plugins provide.

The scheduler keeps, for every registered minion, a :class:`NodeInfo` with the pods
already bound there and their summed requests, maintained incrementally as pods come and
go, so a predicate or priority never scans the cluster itself: each aggregate it needs
(used host ports, requested cpu and memory, pod count) is one attribute read.

A predicate that only concerns some pods (those with host ports, say) can say so with
:func:`applies_when`: for any other pod the scheduler counts it as passing on every
node without calling it once per node, which is most of the cost of a pod on a large
cluster. What a pod asks for (:func:`pod_facts`) is computed once per pod object, not
once per node. A priority whose score of a node does not depend on the pod (v0.5's
LeastRequested) can say so with :func:`node_only`: the scheduler then asks it only
about the nodes that changed since it last asked, not about every node for every pod.

The component itself (queue, watches, binding) is :mod:`kubecore.scheduler.core`; its
built-in plugin (config section, component) is :mod:`kubecore.scheduler.plugin`.
"""

from __future__ import annotations

import bisect
import math
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from kubecore.api import DEFAULT_NAMESPACE

if TYPE_CHECKING:
    from kubecore.api import Minion, Pod

PodKey = tuple[str, str]
"""``(namespace, id)``: how the scheduler names a pod."""


def pod_key(pod: Pod) -> PodKey:
    """The pod's ``(namespace, id)``; an empty namespace is ``default``."""
    return (pod.namespace or DEFAULT_NAMESPACE, pod.id)


def pod_host_ports(pod: Pod) -> list[int]:
    """Every non-zero hostPort the pod's containers request (protocol ignored, as in
    v0.5), in manifest order."""
    return [
        port.host_port
        for container in pod.desired_state.manifest.containers
        for port in container.ports
        if port.host_port
    ]


def pod_disk_names(pod: Pod) -> list[str]:
    """The GCE persistent disk names (``pdName``) the pod's volumes mount."""
    return [
        volume.source.persistent_disk.pd_name
        for volume in pod.desired_state.manifest.volumes
        if volume.source is not None and volume.source.persistent_disk is not None
        and volume.source.persistent_disk.pd_name
    ]


def pod_requests(pod: Pod) -> tuple[int, int]:
    """``(milli-cores, bytes)``: the sum of the pod's container requests."""
    containers = pod.desired_state.manifest.containers
    return sum(c.cpu for c in containers), sum(c.memory for c in containers)


@dataclass(frozen=True, slots=True)
class PodFacts:
    """What a pod asks of a node, in the form predicates read it."""

    cpu: int  # milli-cores
    memory: int  # bytes
    host_ports: tuple[int, ...]
    disks: tuple[str, ...]  # GCE pdNames


_last_facts: tuple[Pod, PodFacts] | None = None


def pod_facts(pod: Pod) -> PodFacts:
    """The pod's requests, host ports and disks. The answer for the most recent pod
    object is kept (the scheduler asks once per node for the same pod), so pods must
    not be changed in place once scheduling has looked at them."""
    global _last_facts
    last = _last_facts
    if last is not None and last[0] is pod:
        return last[1]
    cpu, memory = pod_requests(pod)
    facts = PodFacts(cpu, memory, tuple(pod_host_ports(pod)), tuple(pod_disk_names(pod)))
    _last_facts = (pod, facts)
    return facts


_QUANTITY = re.compile(r"^\s*(\d+)\s*([KMGTP]i?|[kmgtp])?\s*$")
_FACTORS = {
    "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
}


def parse_capacity(value: int | str | None) -> int:
    """A minion capacity value (int-or-string) as an int.

    Numbers stay as they are; strings may be plain digits or carry a decimal
    (``k M G T P``) or binary (``Ki Mi Gi Ti Pi``) suffix. Anything else, and a negative
    number, reads as 0, which every predicate treats as "unlimited".
    """
    if value is None or isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    match = _QUANTITY.match(value)
    if match is None:
        return 0
    number, suffix = match.groups()
    return int(number) * (_FACTORS[suffix] if suffix else 1)


def parse_cpu_capacity(value: int | str | None) -> int:
    """A minion's ``cpu`` capacity (cores, int-or-string) in milli-cores.

    ``4`` and ``"4"`` are 4000, ``"0.5"`` is 500 (v0.5 read it as a float), ``"250m"``
    is 250; anything unreadable or negative is 0 ("unlimited").
    """
    if value is None or isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0) * 1000
    text = value.strip()
    try:
        if text.endswith("m"):
            return max(int(text[:-1]), 0)
        cores = float(text)
    except ValueError:
        return 0
    if not math.isfinite(cores) or cores < 0:
        return 0
    return int(cores * 1000)


@dataclass
class NodeInfo:
    """A minion and what is already placed on it, with aggregates kept current.

    Change the placed pods only through :meth:`add_pod` and :meth:`remove_pod` (or build
    with :meth:`of`); they keep :attr:`used_host_ports`, :attr:`used_disks`,
    :attr:`requested_cpu` and :attr:`requested_memory` equal to what a full scan of
    :attr:`pods` would give, in O(containers and volumes of the pod). ``capacity_cpu``
    is in milli-cores (the minion's ``cpu`` capacity x 1000, as v0.5 reads it) and
    ``capacity_memory`` in bytes; 0 means unlimited.
    """

    minion: Minion
    by_key: dict[PodKey, Pod] = field(default_factory=dict)
    used_host_ports: set[int] = field(default_factory=set)
    used_disks: set[str] = field(default_factory=set)  # GCE pdNames
    requested_cpu: int = 0  # milli-cores
    requested_memory: int = 0  # bytes
    # A port can be counted twice (two pods bound before the host list refused one).
    _port_counts: Counter[int] = field(default_factory=Counter, init=False, repr=False)
    _disk_counts: Counter[str] = field(default_factory=Counter, init=False, repr=False)
    _capacity_of: Minion | None = field(default=None, init=False, repr=False, compare=False)
    _parsed_capacity: tuple[int, int] = field(default=(0, 0), init=False, repr=False,
                                              compare=False)

    @classmethod
    def of(cls, minion: Minion, pods: Iterable[Pod] = ()) -> NodeInfo:
        """A node holding ``pods``."""
        node = cls(minion)
        for pod in pods:
            node.add_pod(pod)
        return node

    @property
    def name(self) -> str:
        return self.minion.id or ""

    @property
    def pods(self) -> list[Pod]:
        """The pods placed here (a new list each call)."""
        return list(self.by_key.values())

    @property
    def pod_count(self) -> int:
        return len(self.by_key)

    @property
    def capacity(self) -> tuple[int, int]:
        """``(capacity_cpu, capacity_memory)``, read in one go (priorities read it for
        every node and every pod, hence no further call when it is current)."""
        if self._capacity_of is self.minion:
            return self._parsed_capacity
        return self._capacity()

    @property
    def capacity_cpu(self) -> int:
        return self._capacity()[0]

    @property
    def capacity_memory(self) -> int:
        return self._capacity()[1]

    def _capacity(self) -> tuple[int, int]:
        # Parsed once per minion object: predicates ask for every pod on every node.
        if self._capacity_of is not self.minion:
            capacity = self.minion.resources.capacity
            self._parsed_capacity = (parse_cpu_capacity(capacity.get("cpu")),
                                     parse_capacity(capacity.get("memory")))
            self._capacity_of = self.minion
        return self._parsed_capacity

    def add_pod(self, pod: Pod) -> None:
        """Place ``pod`` here, replacing an older version of the same pod."""
        key = pod_key(pod)
        if key in self.by_key:
            self.remove_pod(key)
        self.by_key[key] = pod
        cpu, memory = pod_requests(pod)
        self.requested_cpu += cpu
        self.requested_memory += memory
        for port in pod_host_ports(pod):
            self._port_counts[port] += 1
            self.used_host_ports.add(port)
        for disk in pod_disk_names(pod):
            self._disk_counts[disk] += 1
            self.used_disks.add(disk)

    def remove_pod(self, key: PodKey) -> Pod | None:
        """Take the pod ``key`` away; returns it, or ``None`` if it was not here."""
        pod = self.by_key.pop(key, None)
        if pod is None:
            return None
        cpu, memory = pod_requests(pod)
        self.requested_cpu -= cpu
        self.requested_memory -= memory
        for port in pod_host_ports(pod):
            self._port_counts[port] -= 1
            if self._port_counts[port] <= 0:
                del self._port_counts[port]
                self.used_host_ports.discard(port)
        for disk in pod_disk_names(pod):
            self._disk_counts[disk] -= 1
            if self._disk_counts[disk] <= 0:
                del self._disk_counts[disk]
                self.used_disks.discard(disk)
        return pod


FitPredicate = Callable[["Pod", NodeInfo], bool]
"""``predicate(pod, node) -> True`` when ``pod`` fits on ``node``. Must not change
``node``; an exception counts as "does not fit" (and is logged). A predicate marked
with :func:`applies_when` is not called for pods it does not apply to."""

P = TypeVar("P", bound=Callable[..., bool])

APPLIES_TO = "applies_to"
"""The attribute :func:`applies_when` sets on a predicate."""


def applies_when(applies: Callable[[Pod], bool]) -> Callable[[P], P]:
    """Mark a predicate as passing on every node for a pod where ``applies(pod)`` is
    false (a ports check for a pod without host ports): the scheduler then skips it for
    that pod. ``applies`` must be cheap and must not depend on the node."""

    def mark(predicate: P) -> P:
        setattr(predicate, APPLIES_TO, applies)
        return predicate

    return mark


def applies_to(predicate: FitPredicate, pod: Pod) -> bool:
    """Whether ``predicate`` has to be called for ``pod`` (see :func:`applies_when`)."""
    applies: Callable[[Pod], bool] | None = getattr(predicate, APPLIES_TO, None)
    return applies is None or applies(pod)

PriorityFunction = Callable[["Pod", Sequence[NodeInfo]], Mapping[str, int]]
"""``priority(pod, nodes) -> {host: score}``; lower is better, as in Kubernetes v0.5.
A host missing from the answer scores 0."""

NODE_ONLY = "node_only"
"""The attribute :func:`node_only` sets on a priority."""

F = TypeVar("F", bound=Callable[..., Mapping[str, int]])


def node_only(priority: F) -> F:
    """Mark a priority whose score of a node depends on that node's state alone (its
    minion and the pods placed there), never on the pod being placed. The scheduler
    then keeps its scores and asks it again only about nodes whose state changed, with
    whichever pod is being placed at the time."""
    setattr(priority, NODE_ONLY, True)
    return priority


def is_node_only(priority: PriorityFunction) -> bool:
    """Whether ``priority`` is marked with :func:`node_only`."""
    return bool(getattr(priority, NODE_ONLY, False))


class ScoreTable(MutableMapping[str, int]):
    """Scores by host that also know, without a scan, which hosts share the lowest.

    The scheduler keeps a node-only priority's scores for every minion in one and hands
    it to host selection as it is; :func:`select_lowest` then picks among the tied hosts
    at once instead of scanning a thousand minions for every pod.
    """

    def __init__(self) -> None:
        self._scores: dict[str, int] = {}
        self._hosts: dict[int, list[str]] = {}  # score -> its hosts, by name

    def __getitem__(self, host: str) -> int:
        return self._scores[host]

    def __setitem__(self, host: str, score: int) -> None:
        old = self._scores.get(host)
        if old == score:
            return
        if old is not None:
            self._drop(host, old)
        self._scores[host] = score
        bisect.insort(self._hosts.setdefault(score, []), host)

    def __delitem__(self, host: str) -> None:
        self._drop(host, self._scores.pop(host))

    def _drop(self, host: str, score: int) -> None:
        hosts = self._hosts[score]
        del hosts[bisect.bisect_left(hosts, host)]
        if not hosts:
            del self._hosts[score]

    def __iter__(self) -> Iterator[str]:
        return iter(self._scores)

    def __len__(self) -> int:
        return len(self._scores)

    def lowest(self) -> Sequence[str]:
        """The hosts with the lowest score, by name (empty when there are none)."""
        return self._hosts[min(self._hosts)] if self._hosts else ()


def select_lowest(scores: Mapping[str, int], rng: random.Random) -> str:
    """A host chosen uniformly at random among those with the lowest score.

    The tied hosts are taken in name order, so the same ``rng`` state gives the same
    choice whatever the mapping's order (as sorting by ``(score, name)`` would).
    ``scores`` must not be empty.
    """
    if isinstance(scores, ScoreTable):
        tied: Sequence[str] = scores.lowest()
    else:
        best = min(scores.values())
        tied = sorted([name for name, score in scores.items() if score == best])
    return tied[rng.randrange(len(tied))]


__all__ = [
    "FitPredicate",
    "NodeInfo",
    "PodFacts",
    "PodKey",
    "PriorityFunction",
    "ScoreTable",
    "applies_to",
    "applies_when",
    "is_node_only",
    "node_only",
    "parse_capacity",
    "parse_cpu_capacity",
    "pod_disk_names",
    "pod_facts",
    "pod_host_ports",
    "pod_key",
    "pod_requests",
    "select_lowest",
]
