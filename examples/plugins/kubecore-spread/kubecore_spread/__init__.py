"""Spread pods across minions: a kubecore scheduler priority, ``SpreadByPodCount``.

Each feasible minion scores ``pod count x weight``, the pods counted being those the
scheduler already has placed there (the pod being placed is not included). Lower is
better, so the minion holding the fewest pods wins. kubecore sums every priority's
score per minion, which makes ``weight`` the strength of this preference against the
others (``LeastRequestedPriority`` of scheduler_priority scores 0 to 100).

Configuration, section ``[spread]``: ``weight`` (int >= 0, default 10); 0 turns the
priority into a no-op that scores every minion 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import Field

from kubecore import hookimpl
from kubecore.api import Pod
from kubecore.config import ConfigSection, SectionModel
from kubecore.context import Context
from kubecore.scheduler import NodeInfo, PriorityFunction

__all__ = [
    "PRIORITY_NAME",
    "SECTION",
    "SpreadByPodCount",
    "SpreadConfig",
    "kubecore_config_section",
    "kubecore_scheduler_priorities",
]

SECTION = "spread"
"""The configuration section's name: ``[spread]``, ``--set spread.weight=...``."""

PRIORITY_NAME = "SpreadByPodCount"
"""The name the priority is registered under (it appears in the scheduler's log)."""


class SpreadConfig(SectionModel):
    """``[spread]``: how strongly the pod count of a minion counts against it."""

    weight: int = Field(default=10, ge=0,
                        description="score per pod already on a minion (lower wins); 0 = off")


@dataclass(frozen=True)
class SpreadByPodCount:
    """The priority: ``{minion: pod count x weight}`` for every node it is given.

    A :data:`~kubecore.scheduler.PriorityFunction`: it reads only
    :attr:`~kubecore.scheduler.NodeInfo.pod_count`, so one call costs O(nodes), and it
    never changes a node. ``weight`` must not be negative.
    """

    weight: int = 10

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"weight must not be negative, got {self.weight}")

    def __call__(self, pod: Pod, nodes: Sequence[NodeInfo]) -> dict[str, int]:
        return {node.name: node.pod_count * self.weight for node in nodes}


@hookimpl
def kubecore_config_section() -> ConfigSection:
    """Declare ``[spread]`` (see :class:`SpreadConfig`)."""
    return ConfigSection(SECTION, SpreadConfig, "scheduler priority: fewest pods wins")


@hookimpl
def kubecore_scheduler_priorities(ctx: Context) -> Mapping[str, PriorityFunction]:
    """``{"SpreadByPodCount": priority}`` weighted by the run's ``spread.weight``."""
    return {PRIORITY_NAME: SpreadByPodCount(ctx.config(SpreadConfig).weight)}
