"""The scheduling policy of Kubernetes v0.5 (``pkg/scheduler/{predicates,priorities}.go``).

- Predicates: :func:`pod_fits_ports`, :func:`pod_fits_resources`,
  :func:`no_disk_conflict`, :func:`match_node_selector`.
- Priority: :func:`least_requested_priority`, **lower is better**.
- Host selection: uniformly random among the lowest summed scores.

Every function reads only the :class:`~kubecore.scheduler.NodeInfo` aggregates the
scheduler keeps current (used host ports, requested cpu and memory), so one call costs
O(containers of the pod), never a scan of the pods on the node.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from kubecore.api import Pod
from kubecore.context import Context
from kubecore.hookspecs import hookimpl
from kubecore.scheduler import (
    FitPredicate,
    NodeInfo,
    PriorityFunction,
    pod_disk_names,
    pod_host_ports,
    pod_requests,
    select_lowest,
)

__all__ = [
    "kubecore_scheduler_predicates",
    "kubecore_scheduler_priorities",
    "kubecore_scheduler_select_host",
    "least_requested_priority",
    "match_node_selector",
    "no_disk_conflict",
    "pod_fits_ports",
    "pod_fits_resources",
]


def pod_fits_ports(pod: Pod, node: NodeInfo) -> bool:
    """True when no non-zero hostPort of ``pod`` is already used on ``node`` (protocol
    ignored, as in v0.5)."""
    used = node.used_host_ports
    return not any(port in used for port in pod_host_ports(pod))


def pod_fits_resources(pod: Pod, node: NodeInfo) -> bool:
    """True when ``node`` has room for ``pod``'s summed cpu and memory requests.

    A pod that requests neither always fits. The node's cpu capacity counts in
    milli-cores (cores x 1000); a capacity of 0 is unlimited.
    """
    cpu, memory = pod_requests(pod)
    if cpu == 0 and memory == 0:
        return True
    total_cpu = node.capacity_cpu
    total_memory = node.capacity_memory
    fits_cpu = total_cpu == 0 or total_cpu - node.requested_cpu >= cpu
    fits_memory = total_memory == 0 or total_memory - node.requested_memory >= memory
    return fits_cpu and fits_memory


def no_disk_conflict(pod: Pod, node: NodeInfo) -> bool:
    """True when no GCE persistent disk (``pdName``) of ``pod`` is already mounted by a
    pod on ``node`` (v0.5 ignores ``readOnly`` here)."""
    used = node.used_disks
    return not any(disk in used for disk in pod_disk_names(pod))


def match_node_selector(pod: Pod, node: NodeInfo) -> bool:
    """True when every label of ``pod.nodeSelector`` is on the minion with that value."""
    labels = node.minion.labels
    return all(labels.get(key) == value for key, value in pod.node_selector.items())


def _percentage(requested: int, capacity: int) -> int:
    return requested * 100 // capacity if capacity else 0


def least_requested_priority(pod: Pod, nodes: Sequence[NodeInfo]) -> dict[str, int]:
    """``{host: (cpu% + memory%) // 2}`` of what is already requested on each node.

    Integer percentages of the capacity (cpu in milli-cores); a capacity of 0 counts
    0 %. The pod being placed is not included (v0.5). Lower is better: the least loaded
    node wins.
    """
    return {
        node.name: (_percentage(node.requested_cpu, node.capacity_cpu)
                    + _percentage(node.requested_memory, node.capacity_memory)) // 2
        for node in nodes
    }


@hookimpl
def kubecore_scheduler_predicates(ctx: Context) -> Mapping[str, FitPredicate]:
    return {
        "PodFitsPorts": pod_fits_ports,
        "PodFitsResources": pod_fits_resources,
        "NoDiskConflict": no_disk_conflict,
        "MatchNodeSelector": match_node_selector,
    }


@hookimpl
def kubecore_scheduler_priorities(ctx: Context) -> Mapping[str, PriorityFunction]:
    return {"LeastRequestedPriority": least_requested_priority}


@hookimpl
def kubecore_scheduler_select_host(
    pod: Pod, scores: Mapping[str, int], rng: random.Random
) -> str | None:
    """Uniformly random among the hosts with the lowest score, after sorting by
    ``(score, name)`` so a seeded ``rng`` is reproducible."""
    return select_lowest(scores, rng) if scores else None
