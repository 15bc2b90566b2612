"""The kubelet assembled: sources -> merger -> sync loop -> runtime, plus its server.

Everything runs in one nursery: one task per source feeding the merger, the sync loop,
the HTTP server and, with an apiserver, the status reporter (minion registration and
pod status, see :mod:`kubecore.kubelet.reporter`). The runtime is closed on the way out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import trio

from kubecore.http import serve_asgi
from kubecore.kubelet.events import EventRecorder
from kubecore.kubelet.merger import DesiredPod, DesiredState, Merger
from kubecore.kubelet.sources import ManifestSource, RouteProvider
from kubecore.kubelet.sync import SyncLoop, SyncSettings
from kubecore.log import get_logger
from kubecore.runtime import Runtime

if TYPE_CHECKING:
    from kubecore.kubelet.reporter import StatusReporter

log = get_logger("kubecore.kubelet")


class Kubelet:
    """One node agent over ``runtime`` and ``sources`` (ranked in the order given);
    ``reporter`` (optional) pushes its minion and pod status to an apiserver; ``events``
    records rejected pods (default: kept locally only, see :mod:`.events`)."""

    def __init__(
        self,
        runtime: Runtime,
        sources: Sequence[ManifestSource],
        settings: SyncSettings | None = None,
        *,
        hostname: str = "localhost",
        address: str = "127.0.0.1",
        port: int | None = 10250,
        reporter: StatusReporter | None = None,
        events: EventRecorder | None = None,
    ) -> None:
        self.runtime = runtime
        self.sources = list(sources)
        self.hostname = hostname
        self.address = address
        self.port = port  # None: no HTTP server
        self.events = events or EventRecorder(hostname)
        self.merger = Merger(self.events)
        self.sync = SyncLoop(runtime, self.merger.desired, settings, events=self.events)
        self.reporter = reporter
        self.url: str | None = None

    @property
    def desired(self) -> DesiredState:
        return self.merger.desired.value

    def find_pod(self, pod_id: str, namespace: str) -> DesiredPod | None:
        """The first desired pod (in source order) with this id and namespace."""
        for pod in self.desired.pods.values():
            if pod.pod.id == pod_id and pod.pod.namespace == namespace:
                return pod
        return None

    async def _feed(self, source: ManifestSource, key: str) -> None:
        try:
            async for snapshot in source.snapshots():
                self.merger.update(key, snapshot)
        except Exception as exc:
            # A broken source keeps its last snapshot; the others go on.
            log.error("manifest source failed", source=source.name,
                      error=str(exc) or type(exc).__name__, exc_info=exc)

    async def run(self, *, task_status: trio.TaskStatus[str | None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Run until cancelled; reports the server's URL (``None`` without a server)."""
        try:
            async with trio.open_nursery() as nursery:
                keys = [self.merger.register(source.name) for source in self.sources]
                if self.port is not None:
                    from kubecore.kubelet.server import create_app

                    routes = [route for source in self.sources
                              if isinstance(source, RouteProvider) for route in source.routes()]
                    app = create_app(self, routes)
                    self.url = await nursery.start(self._serve, app)
                await nursery.start(self.events.run)
                for source, key in zip(self.sources, keys, strict=True):
                    nursery.start_soon(self._feed, source, key)
                await nursery.start(self.sync.run)
                if self.reporter is not None:
                    await nursery.start(self.reporter.run, self.sync)
                log.info("kubelet running", runtime=self.runtime.name,
                         sources=[s.name for s in self.sources], url=self.url)
                task_status.started(self.url)
        finally:
            with trio.CancelScope(shield=True):
                await self.runtime.aclose()

    async def _serve(self, app: object, *, task_status: trio.TaskStatus[str]) -> None:
        assert self.port is not None
        await serve_asgi(app, name="kubelet", address=self.address, port=self.port,
                         task_status=task_status)
