"""The kubelet against a real apiserver (store_sqlite): it registers its minion, runs
pods bound to it through source_api, pushes their status (host, podIP, info, published
ports) and stops them when they are deleted; an unreachable apiserver stops nothing."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio
from kubecore_runtime_exec import ExecRuntime
from kubecore_source_api import ApiSource
from structlog.testing import capture_logs

from kubecore.api import API_VERSION, Minion, Pod
from kubecore.client import AsyncClient
from kubecore.kubelet.node import Kubelet
from kubecore.kubelet.reporter import StatusReporter, pod_status, published_manifest
from kubecore.kubelet.sources import ManifestSource
from kubecore.runtime import ContainerState, PortMapping
from tests.kubelet.conftest import FAST
from tests.kubelet.helpers import PushSource, pod, wait_until
from tests.sources_api.helpers import DEADLINE, api_pod, apiserver, client_of

HOST = "node1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def kubelet_on(exec_root: Path, url: str, *sources: ManifestSource,
                     ) -> AsyncIterator[Kubelet]:
    """A running kubelet on runtime_exec reporting to ``url``."""
    reporter = StatusReporter(AsyncClient(url, timeout=DEADLINE), HOST, retry_min=0.05,
                              retry_max=0.2)
    kubelet = Kubelet(ExecRuntime(exec_root), sources, FAST, hostname=HOST, port=None,
                      reporter=reporter)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(kubelet.run)
            yield kubelet
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await reporter.client.aclose()


async def test_minion_registered_and_pod_status_pushed(tmp_path: Path, exec_root: Path
                                                       ) -> None:
    port = free_port()
    async with apiserver(tmp_path) as url, client_of(url) as client:
        local = PushSource("file")
        source = ApiSource(lambda: AsyncClient(url, timeout=DEADLINE), HOST, retry_min=0.05)
        async with kubelet_on(exec_root, url, source, local) as kubelet:
            local.push(pod("local", uid="uid-local"))

            async def minion() -> Minion | None:
                listed = await client.list(Minion)
                return next((m for m in listed.items if m.id == HOST), None)

            registered = await wait_until(minion, what="the minion")
            assert registered.host_ip == "127.0.0.1"
            assert registered.resources.capacity["cpu"] == (os.cpu_count() or 1)
            memory = registered.resources.capacity["memory"]
            assert isinstance(memory, int) and memory > 0

            await client.create(api_pod("web", ["sleep", "60"], port=port))
            await client.bind("web", HOST)
            stored = await client.get(Pod, "web")

            async def running() -> Pod | None:
                got = await client.get(Pod, "web")
                return got if got.current_state.status == "Running" else None

            with trio.fail_after(5):
                seen = await wait_until(running, what="the pod Running")
            state = seen.current_state
            assert state.host == HOST and state.host_ip == "127.0.0.1"
            assert state.pod_ip == "127.0.0.1"
            assert state.info["main"].state.running is not None
            assert state.info["main"].restart_count == 0
            assert state.info["main"].image == "busybox"
            assert state.info["net"].pod_ip == "127.0.0.1"
            published = state.manifest.containers[0].ports[0]
            assert (published.container_port, published.host_port, published.host_ip) == (
                port, port, "127.0.0.1")
            assert seen.desired_state.manifest == stored.desired_state.manifest

            infos = await kubelet.runtime.list_containers()
            mine = [i for i in infos if i.pod_uid == stored.uid]
            assert [i.state for i in mine] == [ContainerState.RUNNING]

            async def local_skipped() -> bool:
                assert kubelet.reporter is not None
                return "uid-local" in kubelet.reporter._memory.not_api

            await wait_until(local_skipped, what="the file pod known as not an API pod")
            pushes = kubelet.reporter.pushes if kubelet.reporter else 0
            await trio.sleep(0.5)  # rounds go on; an unchanged status is not pushed again
            assert kubelet.reporter is not None and kubelet.reporter.pushes == pushes

            await client.delete(Pod, "web")

            async def stopped() -> bool:
                infos = await kubelet.runtime.list_containers()
                return not any(i.pod_uid == stored.uid and i.state is ContainerState.RUNNING
                               for i in infos)

            await wait_until(stopped, what="the deleted pod's process stopped")


async def test_existing_minion_gets_labels_only(tmp_path: Path) -> None:
    async with apiserver(tmp_path) as url, client_of(url) as client:
        await client.create(Minion(api_version=API_VERSION, id=HOST, host_ip="127.0.0.1",
                                   labels={"rack": "a", "zone": "z1"}))
        reporter = StatusReporter(client, HOST, labels={"zone": "z2"},
                                  capacity={"cpu": 2, "memory": 1024})
        await reporter.register()
        stored = await client.get(Minion, HOST)
        assert stored.labels == {"rack": "a", "zone": "z2"}
        assert stored.resources.capacity == {}
        assert reporter.registered


async def test_unreachable_apiserver_stops_nothing(exec_root: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        local = PushSource("file")
        async with kubelet_on(exec_root, url, local) as kubelet:
            local.push(pod("local", uid="uid-local"))

            async def started() -> bool:
                infos = await kubelet.runtime.list_containers()
                return any(i.pod_uid == "uid-local" and i.state is ContainerState.RUNNING
                           for i in infos)

            await wait_until(started, what="the local pod running")
            with capture_logs() as logs:
                await trio.sleep(1.0)
            assert kubelet.reporter is not None and not kubelet.reporter.registered
            assert kubelet.sync.rounds > 3
            # Backoff (0.05 s doubling to 0.2 s), not every round, paces the attempts.
            attempts = sum("unreachable" in e["event"] for e in logs)
            assert 2 <= attempts <= 7


def test_pod_status_rules() -> None:
    from kubecore.api import (
        ContainerState as State,
    )
    from kubecore.api import (
        ContainerStateRunning,
        ContainerStateTerminated,
        ContainerStateWaiting,
        ContainerStatus,
    )

    run = ContainerStatus(state=State(running=ContainerStateRunning()))
    done = ContainerStatus(state=State(termination=ContainerStateTerminated()))
    wait = ContainerStatus(state=State(waiting=ContainerStateWaiting()))
    assert pod_status(["a", "b"], {"a": run, "b": done}) == "Running"
    assert pod_status(["a", "b"], {"a": run}) == "Waiting"  # b unknown
    assert pod_status(["a", "b"], {"a": done, "b": done}) == "Terminated"
    assert pod_status(["a", "b"], {"a": done, "b": wait}) == "Waiting"
    assert pod_status([], {}) == "Waiting"


def test_published_manifest_matches_ports() -> None:
    manifest = api_pod("web", ["sleep", "1"], port=80).desired_state.manifest
    mapped = published_manifest(manifest, [PortMapping(80, 31000, "127.0.0.1", "TCP", "web")])
    port = mapped.containers[0].ports[0]
    assert (port.container_port, port.host_port, port.host_ip) == (80, 31000, "127.0.0.1")
    assert published_manifest(manifest, []).containers[0].ports[0].host_port == 0


async def test_kubelet_component_runs_api_pods(tmp_path: Path, exec_root: Path) -> None:
    """The all-in-one path: the kubelet component with runtime_exec and source_api
    finds the apiserver through the context."""
    import importlib

    import kubecore_runtime_exec
    import kubecore_source_api

    from kubecore.config import KernelConfig, Settings
    from kubecore.context import Component, Context
    from kubecore.kubelet.plugin import KubeletConfig
    from kubecore.plugins import new_manager

    manager = new_manager()
    manager.register(importlib.import_module("kubecore.kubelet.plugin"), name="kubelet")
    manager.register(kubecore_runtime_exec, name="runtime_exec")
    manager.register(kubecore_source_api, name="source_api")
    async with apiserver(tmp_path) as url, client_of(url) as client:
        ctx = Context(settings=Settings({
            "kubecore": KernelConfig(role="node", api_server=url, data_dir=tmp_path,
                                     hostname=HOST),
            "kubelet": KubeletConfig(port=0, sync_frequency=0.2, grace_period=1.0),
            "runtime_exec": kubecore_runtime_exec.ExecRuntimeConfig(root=exec_root),
        }), hook=manager.hook)
        batches: list[list[Component]] = ctx.hook.kubecore_components(ctx=ctx)
        [kubelet] = [c for batch in batches for c in batch if c.name == "kubelet"]
        async with trio.open_nursery() as nursery:
            await nursery.start(kubelet.run)
            await client.create(api_pod("web", ["sleep", "60"]))
            await client.bind("web", HOST)

            async def running() -> Pod | None:
                got = await client.get(Pod, "web")
                return got if got.current_state.status == "Running" else None

            seen = await wait_until(running, what="the pod Running")
            assert seen.current_state.host == HOST
            assert (await client.get(Minion, HOST)).host_ip == "127.0.0.1"
            nursery.cancel_scope.cancel()
