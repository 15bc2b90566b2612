"""The controller manager as a built-in plugin: its ``[controllers]`` section and the
``replication-manager`` and ``endpoints-controller`` components.

Both are added on a run that includes the master role, whose apiserver (this process's,
or ``kubecore.api_server`` when set) they reach through ``ctx.api_client()``; the
client is made when a component starts, because the local apiserver's URL is known only
once it listens (stage order guarantees that). Each runs until cancelled.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio
from pydantic import Field

from kubecore.client import ApiClient
from kubecore.config import ConfigSection, SectionModel
from kubecore.context import STAGE_CONTROL, Component, Context
from kubecore.hookspecs import hookimpl
from kubecore.log import get_logger

log = get_logger("kubecore.controllers")


class ControllersConfig(SectionModel):
    """``[controllers]``: which controllers run and how often they resync."""

    resync_interval: float = Field(
        default=10.0, gt=0, description="seconds between full resyncs of every object"
    )
    replication: bool = Field(default=True, description="run the replication manager")
    endpoints: bool = Field(default=True, description="run the endpoints controller")
    endpoints_debounce: float = Field(
        default=0.1, ge=0, le=0.5,
        description="seconds a burst of pod changes is gathered before endpoints are"
        " written",
    )


@hookimpl
def kubecore_config_section() -> ConfigSection:
    return ConfigSection("controllers", ControllersConfig,
                         "replication manager and endpoints controller")


def _component(
    ctx: Context, name: str, body: Callable[[ApiClient, trio.TaskStatus[None]],
                                            Awaitable[None]]
) -> Component:
    async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        client = ctx.api_client()
        if client is None:
            raise RuntimeError(f"the {name} needs an apiserver: run one in this process"
                               " or set kubecore.api_server")
        log.info("controller starting", component=name, api=client.base_url,
                 in_process=client.in_process)
        try:
            await body(client, task_status)
        finally:
            with trio.CancelScope(shield=True):
                await client.aclose()

    return Component(name, run, STAGE_CONTROL)


@hookimpl
def kubecore_components(ctx: Context) -> list[Component]:
    # A master run always has an apiserver: the built-in one, or the configured one.
    if not ctx.runs("master"):
        return []
    cfg = ctx.config(ControllersConfig)
    components: list[Component] = []
    if cfg.replication:
        async def replication(client: ApiClient, status: trio.TaskStatus[None]) -> None:
            from kubecore.controllers.replication import ReplicationManager

            manager = ReplicationManager(client, resync_interval=cfg.resync_interval)
            await manager.run(task_status=status)

        components.append(_component(ctx, "replication-manager", replication))
    if cfg.endpoints:
        async def endpoints(client: ApiClient, status: trio.TaskStatus[None]) -> None:
            from kubecore.controllers.endpoints import EndpointsController

            controller = EndpointsController(client, resync_interval=cfg.resync_interval,
                                             debounce=cfg.endpoints_debounce)
            await controller.run(task_status=status)

        components.append(_component(ctx, "endpoints-controller", endpoints))
    return components
