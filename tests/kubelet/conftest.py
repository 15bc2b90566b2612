"""Fixtures: a kubelet on runtime_exec in a temporary root, cleaned up after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from kubecore_runtime_exec import ExecRuntime

from kubecore.kubelet.node import Kubelet
from kubecore.kubelet.sources import ManifestSource
from kubecore.kubelet.sync import SyncSettings

FAST = SyncSettings(sync_frequency=0.2, grace_period=2.0, backoff_min=0.2, backoff_max=5.0,
                    backoff_reset=600.0, max_dead_containers=10)

KubeletFactory = Callable[..., Any]


@pytest.fixture
async def exec_root(tmp_path: Path) -> AsyncIterator[Path]:
    """The runtime root; whatever is left in it is stopped and removed afterwards."""
    root = tmp_path / "exec"
    yield root
    with trio.CancelScope(shield=True):
        sweeper = ExecRuntime(root)
        try:
            for sandbox in await sweeper.list_sandboxes():
                await sweeper.remove_sandbox(sandbox.id)
            for info in await sweeper.list_containers():
                await sweeper.stop_container(info.id, 0)
                await sweeper.remove_container(info.id)
        finally:
            await sweeper.aclose()


@pytest.fixture
def start_kubelet(exec_root: Path, nursery: trio.Nursery) -> KubeletFactory:
    """``async with start_kubelet(sources, settings) as kubelet``: a running kubelet
    that is cancelled (and its runtime closed) when the block ends."""

    @asynccontextmanager
    async def start(sources: Sequence[ManifestSource], settings: SyncSettings = FAST,
                    port: int | None = None) -> AsyncIterator[Kubelet]:
        kubelet = Kubelet(ExecRuntime(exec_root), sources, settings, hostname="node1",
                          port=port)
        scope = trio.CancelScope()
        done = trio.Event()

        async def run(*, task_status: trio.TaskStatus[None]) -> None:
            try:
                with scope:
                    await kubelet.run(task_status=task_status)
            finally:
                done.set()

        await nursery.start(run)
        try:
            yield kubelet
        finally:
            scope.cancel()
            with trio.CancelScope(shield=True):
                await done.wait()

    return start
