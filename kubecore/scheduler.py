"""Scheduler contracts: fit predicates and priority functions plugins provide.

The scheduler keeps, for every registered minion, a :class:`NodeInfo` with the pods
already bound there and their summed requests, so a predicate or priority never scans
the cluster itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kubecore.api import Minion, Pod


@dataclass
class NodeInfo:
    """A minion and what is already placed on it."""

    minion: Minion
    pods: list[Pod] = field(default_factory=list)
    used_host_ports: set[int] = field(default_factory=set)
    requested_cpu: int = 0  # milli-cores
    requested_memory: int = 0  # bytes

    @property
    def name(self) -> str:
        return self.minion.id or ""


FitPredicate = Callable[["Pod", NodeInfo], bool]
"""``predicate(pod, node) -> True`` when ``pod`` fits on ``node``."""

PriorityFunction = Callable[["Pod", Sequence[NodeInfo]], Mapping[str, int]]
"""``priority(pod, nodes) -> {host: score}``; lower is better, as in Kubernetes v0.5."""
