"""The kubelet as a built-in plugin: its ``[kubelet]`` section and its component.

On a run that includes the node role, the component asks the ``kubecore_runtime`` hook
for a runtime (none: no kubelet, and the log says why) and the
``kubecore_manifest_sources`` hook for sources, then runs :class:`~kubecore.kubelet.node.
Kubelet` until cancelled. When the run knows an apiserver (``ctx.api_client()``), the
kubelet registers its minion and pushes its API pods' status there
(:mod:`kubecore.kubelet.reporter`) and records its events there too
(:mod:`kubecore.kubelet.events`; they are always readable at the kubelet's ``/events``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import trio
from pydantic import Field

from kubecore.config import ConfigSection, SectionModel
from kubecore.context import STAGE_NODE, Component, Context
from kubecore.hookspecs import hookimpl
from kubecore.kubelet.sources import ManifestSource
from kubecore.kubelet.sync import SyncSettings
from kubecore.log import get_logger
from kubecore.runtime import Runtime

log = get_logger("kubecore.kubelet")


class KubeletConfig(SectionModel):
    """``[kubelet]``: the node agent's server, sync timing and restart backoff."""

    address: str = Field(default="127.0.0.1", description="address of the kubelet's server")
    port: int = Field(default=10250, ge=0, le=65535, description="its port (0 = any free)")
    sync_frequency: float = Field(
        default=10.0, gt=0, description="seconds between syncs when nothing changes"
    )
    grace_period: float = Field(
        default=10.0, ge=0, description="seconds between SIGTERM and SIGKILL on stop"
    )
    backoff_min: float = Field(default=10.0, ge=0, description="first restart delay (s)")
    backoff_max: float = Field(default=300.0, ge=0, description="longest restart delay (s)")
    backoff_reset: float = Field(
        default=600.0, ge=0,
        description="a container that ran this long before dying restarts with the first"
        " delay again",
    )
    max_dead_containers: int = Field(
        default=2, ge=0, description="dead instances kept per container (for logs, status)"
    )
    gc_interval: float = Field(
        default=60.0, ge=0, description="seconds between collections of dead containers"
        " beyond max_dead_containers (also done in every pod sync); 0 = only then"
    )
    host_ip: str = Field(
        default="127.0.0.1", description="the minion's hostIP (and pods' hostIP) reported"
        " to the apiserver"
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="labels merged into this node's minion"
    )
    root_dir: Path | None = Field(
        default=None, description="the kubelet's own state; unset = <data_dir>/kubelet"
    )

    def sync_settings(self) -> SyncSettings:
        return SyncSettings(
            sync_frequency=self.sync_frequency,
            grace_period=self.grace_period,
            backoff_min=self.backoff_min,
            backoff_max=self.backoff_max,
            backoff_reset=self.backoff_reset,
            max_dead_containers=self.max_dead_containers,
            gc_interval=self.gc_interval,
        )


@hookimpl
def kubecore_config_section() -> ConfigSection:
    return ConfigSection("kubelet", KubeletConfig, "the node agent")


def _sources(ctx: Context) -> list[ManifestSource]:
    results: Iterable[Iterable[ManifestSource] | None] = ctx.hook.kubecore_manifest_sources(
        ctx=ctx
    )
    return [source for batch in results if batch for source in batch]


@hookimpl
def kubecore_components(ctx: Context) -> list[Component]:
    if not ctx.runs("node"):
        return []
    first: Runtime | None = ctx.hook.kubecore_runtime(ctx=ctx)
    if first is None:
        log.warning("no kubelet: no runtime plugin answered (select runtime_exec or"
                    " runtime_docker)")
        return []
    cfg = ctx.config(KubeletConfig)
    pending: list[Runtime] = [first]

    async def run(*, task_status: trio.TaskStatus[str | None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        from kubecore.kubelet.events import EventRecorder
        from kubecore.kubelet.node import Kubelet

        # After a restart of the component the first runtime is closed: ask again.
        runtime = pending.pop() if pending else ctx.hook.kubecore_runtime(ctx=ctx)
        if runtime is None:
            raise RuntimeError("no runtime plugin answered")
        root = (cfg.root_dir or ctx.data_dir / "kubelet").expanduser()
        root.mkdir(parents=True, exist_ok=True)
        client = ctx.api_client()
        reporter = None
        if client is not None:
            from kubecore.kubelet.reporter import StatusReporter

            reporter = StatusReporter(client, ctx.hostname, host_ip=cfg.host_ip,
                                      labels=cfg.labels)
        events = EventRecorder(ctx.hostname, client)
        kubelet = Kubelet(runtime, _sources(ctx), cfg.sync_settings(), hostname=ctx.hostname,
                          address=cfg.address, port=cfg.port, reporter=reporter,
                          events=events)
        try:
            await kubelet.run(task_status=task_status)
        finally:
            if client is not None:
                with trio.CancelScope(shield=True):
                    await client.aclose()

    return [Component("kubelet", run, STAGE_NODE)]
