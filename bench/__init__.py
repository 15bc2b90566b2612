"""Benchmarks: ``python -m bench NAME [--quick]`` runs ``bench.NAME.run(quick)``.

Each benchmark measures kubecore beside a peer or the physical limit in the same run and
returns :class:`Measure` values; the harness (``bench/__main__.py``) writes them to
``bench/results/NAME.json`` and prints a table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Goal = Literal["ratio_at_least", "at_most", "at_least", "ratio_at_most"]


@dataclass(frozen=True)
class Measure:
    """One comparison: kubecore's value beside a baseline measured in the same run.

    ``goal`` says how ``target`` is read: ``ratio_at_least`` means kubecore/baseline
    must be at least ``target``; ``at_most`` means kubecore's own value must be at most
    ``target`` (in ``unit``); ``at_least`` means it must be at least ``target``;
    ``ratio_at_most`` means kubecore/baseline must be at most ``target``.
    Without a target, ``met`` is ``None``.
    """

    name: str
    unit: str
    kubecore: float
    baseline: float
    baseline_name: str
    target: float | None = None
    goal: Goal = "ratio_at_least"

    @property
    def ratio(self) -> float | None:
        return self.kubecore / self.baseline if self.baseline else None

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        if self.goal == "at_most":
            return self.kubecore <= self.target
        if self.goal == "at_least":
            return self.kubecore >= self.target
        if self.goal == "ratio_at_most":
            return self.ratio is not None and self.ratio <= self.target
        return self.ratio is not None and self.ratio >= self.target

    def as_dict(self) -> dict[str, Any]:
        """The JSON form written to ``bench/results/NAME.json``."""
        ratio = self.ratio
        return {
            "name": self.name,
            "unit": self.unit,
            "kubecore": round(self.kubecore, 4),
            "baseline": round(self.baseline, 4),
            "baseline_name": self.baseline_name,
            "ratio": None if ratio is None else round(ratio, 3),
            "target": self.target,
            "met": self.met,
        }
