"""source_api against a real apiserver on store_sqlite: bound pods become snapshots (with
the variables of the services created before them), unbound and other hosts' pods do
not, deletions leave, and no apiserver yields nothing."""

from __future__ import annotations

from pathlib import Path

import trio
from kubecore_source_api import ApiSource, bound_pod
from structlog.testing import capture_logs

from kubecore.api import Pod, Service
from kubecore.client import AsyncClient
from kubecore.kubelet.sources import Snapshot
from tests.sources_api.helpers import DEADLINE, api_pod, apiserver, client_of


async def next_matching(
    receive: trio.MemoryReceiveChannel[Snapshot], ids: set[str]
) -> Snapshot:
    """The first snapshot whose pod ids are exactly ``ids``."""
    with trio.fail_after(DEADLINE):
        async for snapshot in receive:
            if {pod.id for pod in snapshot.pods} == ids:
                return snapshot
    raise AssertionError("snapshots ended")


async def collect(source: ApiSource, send: trio.MemorySendChannel[Snapshot]) -> None:
    async for snapshot in source.snapshots():
        await send.send(snapshot)


async def test_bound_pods_become_snapshots(tmp_path: Path) -> None:
    async with apiserver(tmp_path) as url, client_of(url) as client, \
            trio.open_nursery() as nursery:
        await client.create(api_pod("early", ["sleep", "60"]))
        await client.bind("early", "node1")
        send, receive = trio.open_memory_channel[Snapshot](100)
        source = ApiSource(lambda: client_of_url(url), "node1", retry_min=0.05)
        nursery.start_soon(collect, source, send)

        first = await next_matching(receive, {"early"})
        stored = await client.get(Pod, "early")
        assert first.pods[0] == bound_pod(stored)
        assert first.pods[0].uid == stored.uid
        assert first.pods[0].namespace == "default"
        assert [c.command for c in first.pods[0].spec.containers] == [["sleep", "60"]]

        await client.create(api_pod("late", ["sleep", "60"]))
        await client.create(api_pod("elsewhere", ["sleep", "60"]))
        await client.create(api_pod("unbound", ["sleep", "60"]))
        await client.bind("elsewhere", "node2")
        await client.bind("late", "node1")
        await next_matching(receive, {"early", "late"})

        await client.delete(Pod, "early")
        await next_matching(receive, {"late"})
        nursery.cancel_scope.cancel()


def env_of(snapshot: Snapshot, pod_id: str) -> dict[str, str]:
    [pod] = [p for p in snapshot.pods if p.id == pod_id]
    [container] = pod.spec.containers
    return {e.name: e.value for e in container.env}


async def test_pods_get_the_variables_of_services_created_before_them(tmp_path: Path) -> None:
    async with apiserver(tmp_path) as url, client_of(url) as client:
        db = await client.create(Service(id="db", port=5432, selector={"app": "db"}))
        await client.create(api_pod("early", ["sleep", "60"]))
        await client.bind("early", "node1")
        # Creation times have whole seconds: "cache" is strictly newer than "early".
        await trio.sleep(1.1)
        cache = await client.create(Service(id="cache", port=6379, selector={"app": "c"}))
        await client.create(api_pod("late", ["sleep", "60"]))
        await client.bind("late", "node1")

        for _ in range(2):  # a restarted source gives the same variables
            send, receive = trio.open_memory_channel[Snapshot](100)
            source = ApiSource(lambda: client_of_url(url), "node1", retry_min=0.05)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(collect, source, send)
                snapshot = await next_matching(receive, {"early", "late"})
                nursery.cancel_scope.cancel()
            early, late = env_of(snapshot, "early"), env_of(snapshot, "late")
            assert early["DB_SERVICE_HOST"] == db.portal_ip
            assert early["DB_SERVICE_PORT"] == "5432"
            assert early["DB_PORT"] == f"tcp://{db.portal_ip}:5432"
            assert not any(name.startswith("CACHE_") for name in early)
            assert late["CACHE_SERVICE_HOST"] == cache.portal_ip
            assert late["DB_SERVICE_HOST"] == db.portal_ip


def client_of_url(url: str) -> AsyncClient:
    """A new client (the source closes it)."""
    return AsyncClient(url, timeout=DEADLINE)


async def test_unreachable_keeps_retrying_and_no_api_yields_nothing() -> None:
    with socket_closed_port() as port:
        source = ApiSource(lambda: client_of_url(f"http://127.0.0.1:{port}"), "node1",
                           retry_min=0.01, retry_max=0.02)
        with capture_logs() as logs, trio.move_on_after(0.3):
            async for _ in source.snapshots():
                raise AssertionError("an unreachable apiserver yields no snapshot")
        assert sum(1 for e in logs if "unreachable" in e["event"]) >= 3

    quiet = ApiSource(lambda: None, "node1")
    with capture_logs() as logs, trio.move_on_after(0.1):
        async for _ in quiet.snapshots():
            raise AssertionError("no apiserver yields no snapshot")
    assert [e["event"] for e in logs if "apiserver" in e["event"]] == [
        "source_api has no apiserver (set kubecore.api_server or run the master role);"
        " it yields no pods"]


class socket_closed_port:
    """A loopback port nothing listens on (bound, never listening, while in use)."""

    def __enter__(self) -> int:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        port: int = self._sock.getsockname()[1]
        return port

    def __exit__(self, *exc: object) -> None:
        self._sock.close()
