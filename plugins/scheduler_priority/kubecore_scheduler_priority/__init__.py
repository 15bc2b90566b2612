"""The scheduling policy of Kubernetes v0.5 (``pkg/scheduler/{predicates,priorities}.go``).

- Predicates: :func:`pod_fits_ports`, :func:`pod_fits_resources`,
  :func:`no_disk_conflict`, :func:`match_node_selector`.
- Priority: :func:`least_requested_priority`, **lower is better**.
- Host selection: uniformly random among the lowest summed scores.

Every function reads only the :class:`~kubecore.scheduler.NodeInfo` aggregates the
scheduler keeps current (used host ports, requested cpu and memory) and the pod's
:func:`~kubecore.scheduler.pod_facts` (computed once per pod), so one call costs
O(host ports of the pod), never a scan of the pods on the node. Each predicate says
which pods it concerns (:func:`~kubecore.scheduler.applies_when`): a pod without host
ports, requests, disks or a node selector is not checked node by node at all.
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
    applies_when,
    node_only,
    pod_facts,
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


def _has_host_ports(pod: Pod) -> bool:
    return bool(pod_facts(pod).host_ports)


def _has_requests(pod: Pod) -> bool:
    facts = pod_facts(pod)
    return bool(facts.cpu or facts.memory)


def _has_disks(pod: Pod) -> bool:
    return bool(pod_facts(pod).disks)


def _has_node_selector(pod: Pod) -> bool:
    return bool(pod.node_selector)


@applies_when(_has_host_ports)
def pod_fits_ports(pod: Pod, node: NodeInfo) -> bool:
    """True when no non-zero hostPort of ``pod`` is already used on ``node`` (protocol
    ignored, as in v0.5)."""
    used = node.used_host_ports
    return not any(port in used for port in pod_facts(pod).host_ports)


@applies_when(_has_requests)
def pod_fits_resources(pod: Pod, node: NodeInfo) -> bool:
    """True when ``node`` has room for ``pod``'s summed cpu and memory requests.

    A pod that requests neither always fits. The node's cpu capacity counts in
    milli-cores (cores x 1000); a capacity of 0 is unlimited.
    """
    facts = pod_facts(pod)
    cpu, memory = facts.cpu, facts.memory
    if cpu == 0 and memory == 0:
        return True
    total_cpu, total_memory = node.capacity
    fits_cpu = total_cpu == 0 or total_cpu - node.requested_cpu >= cpu
    fits_memory = total_memory == 0 or total_memory - node.requested_memory >= memory
    return fits_cpu and fits_memory


@applies_when(_has_disks)
def no_disk_conflict(pod: Pod, node: NodeInfo) -> bool:
    """True when no GCE persistent disk (``pdName``) of ``pod`` is already mounted by a
    pod on ``node`` (v0.5 ignores ``readOnly`` here)."""
    used = node.used_disks
    return not any(disk in used for disk in pod_facts(pod).disks)


@applies_when(_has_node_selector)
def match_node_selector(pod: Pod, node: NodeInfo) -> bool:
    """True when every label of ``pod.nodeSelector`` is on the minion with that value."""
    labels = node.minion.labels
    return all(labels.get(key) == value for key, value in pod.node_selector.items())


@node_only
def least_requested_priority(pod: Pod, nodes: Sequence[NodeInfo]) -> dict[str, int]:
    """``{host: (cpu% + memory%) // 2}`` of what is already requested on each node.

    Integer percentages of the capacity (cpu in milli-cores); a capacity of 0 counts
    0 %. The pod being placed is not included (v0.5). Lower is better: the least loaded
    node wins.
    """
    scores: dict[str, int] = {}
    for node in nodes:  # one pass, no calls per node: this runs for every pod
        total_cpu, total_memory = node.capacity
        cpu = node.requested_cpu * 100 // total_cpu if total_cpu else 0
        memory = node.requested_memory * 100 // total_memory if total_memory else 0
        scores[node.minion.id or ""] = (cpu + memory) // 2
    return scores


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
