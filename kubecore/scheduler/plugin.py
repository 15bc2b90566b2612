"""The scheduler as a built-in plugin: its ``[scheduler]`` section and its component.

On a run that includes the master role, the component collects every plugin's fit
predicates and priority functions (a name given twice is a start-up error); with none
at all there is nothing to schedule with, so no component is added and the log says
why. The component reaches the apiserver through ``ctx.api_client()`` and runs
:class:`~kubecore.scheduler.core.Scheduler` until cancelled.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import trio
from pydantic import Field, model_validator

from kubecore.api import Pod
from kubecore.config import ConfigSection, SectionModel
from kubecore.context import STAGE_CONTROL, Component, Context
from kubecore.errors import StartupError
from kubecore.hookspecs import hookimpl
from kubecore.log import get_logger
from kubecore.scheduler import FitPredicate, PriorityFunction

log = get_logger("kubecore.scheduler")

class SchedulerConfig(SectionModel):
    """``[scheduler]``: how often minions are read, the per-pod retry backoff, how many
    bindings may be in flight, the RNG."""

    minion_poll_interval: float = Field(
        default=10.0, gt=0, description="seconds between reads of the minion list"
    )
    backoff_initial: float = Field(
        default=1.0, gt=0, description="first wait (s) before retrying a pod that did not fit"
    )
    backoff_max: float = Field(
        default=60.0, gt=0, description="longest wait (s); the wait doubles up to it"
    )
    bind_concurrency: int = Field(
        default=16, ge=1,
        description="bindings in flight at once (each pod is assumed on its host first)",
    )
    seed: int | None = Field(
        default=None, description="seed of the host-selection RNG; unset = random"
    )

    @model_validator(mode="after")
    def _check_backoff(self) -> SchedulerConfig:
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max must not be less than backoff_initial")
        return self


@hookimpl
def kubecore_config_section() -> ConfigSection:
    return ConfigSection("scheduler", SchedulerConfig, "places unscheduled pods on minions")


def _collect(ctx: Context, hook_name: str, what: str) -> dict[str, Any]:
    """Merge every plugin's ``{name: function}`` answer to ``hook_name``; a name two
    plugins give is a :class:`StartupError` naming both."""
    merged: dict[str, Any] = {}
    owners: dict[str, str] = {}
    caller = getattr(ctx.hook, hook_name)
    for impl in reversed(caller.get_hookimpls()):
        args = {"ctx": ctx}
        answer: Mapping[str, Any] | None = impl.function(
            *(args[name] for name in impl.argnames)
        )
        for name, function in (answer or {}).items():
            if name in merged:
                raise StartupError(
                    f"scheduler {what} {name!r} is given by both {owners[name]!r} and"
                    f" {impl.plugin_name!r}"
                )
            merged[name] = function
            owners[name] = impl.plugin_name
    return merged


def predicates_of(ctx: Context) -> dict[str, FitPredicate]:
    """Every loaded plugin's fit predicates by name (see :func:`_collect`)."""
    return _collect(ctx, "kubecore_scheduler_predicates", "predicate")


def priorities_of(ctx: Context) -> dict[str, PriorityFunction]:
    """Every loaded plugin's priority functions by name (see :func:`_collect`)."""
    return _collect(ctx, "kubecore_scheduler_priorities", "priority")


@hookimpl
def kubecore_components(ctx: Context) -> list[Component]:
    if not ctx.runs("master"):
        return []
    predicates = predicates_of(ctx)
    priorities = priorities_of(ctx)
    if not predicates and not priorities:
        log.warning("no scheduler: no plugin gives fit predicates or priorities"
                    " (select scheduler_priority)")
        return []
    cfg = ctx.config(SchedulerConfig)

    def select(pod: Pod, scores: Mapping[str, int], rng: random.Random) -> str | None:
        chosen: str | None = ctx.hook.kubecore_scheduler_select_host(
            pod=pod, scores=scores, rng=rng
        )
        return chosen

    async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        from kubecore.scheduler.core import Scheduler, Settings

        client = ctx.api_client()
        if client is None:
            raise RuntimeError("the scheduler needs an apiserver: run one in this process"
                               " or set kubecore.api_server")
        settings = Settings(
            minion_poll_interval=cfg.minion_poll_interval,
            backoff_initial=cfg.backoff_initial,
            backoff_max=cfg.backoff_max,
            bind_concurrency=cfg.bind_concurrency,
        )
        scheduler = Scheduler(client, predicates, priorities, select, settings=settings,
                              rng=random.Random(cfg.seed))
        log.info("scheduler starting", predicates=sorted(predicates),
                 priorities=sorted(priorities), api=client.base_url,
                 in_process=client.in_process)
        try:
            await scheduler.run(task_status=task_status)
        finally:
            with trio.CancelScope(shield=True):
                await client.aclose()

    return [Component("scheduler", run, STAGE_CONTROL)]
