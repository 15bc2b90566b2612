"""source_etcd across etcd outages: a restarted member (alone, and under a kubelet that
stops no pod meanwhile), and a compaction while away."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import structlog
import trio
from kubecore_source_etcd import EtcdSource

from kubecore.runtime import ContainerState
from tests.kubelet.conftest import KubeletFactory
from tests.kubelet.helpers import wait_until
from tests.services import EtcdCluster, etcd_key, etcd_put
from tests.sources.helpers import dumps, manifest, start_collector

KEY = "/registry/hosts/node1/kubelet"


def compact(endpoint: str, revision: int) -> None:
    httpx.post(f"http://{endpoint}/v3/kv/compaction",
               json={"revision": str(revision), "physical": True},
               timeout=5.0).raise_for_status()


def delete(endpoint: str, key: str) -> None:
    httpx.post(f"http://{endpoint}/v3/kv/deleterange", json={"key": etcd_key(key)},
               timeout=5.0).raise_for_status()


async def test_member_restart_keeps_pods_and_resumes(
    nursery: trio.Nursery, etcd_cluster: Callable[..., EtcdCluster]
) -> None:
    cluster = await trio.to_thread.run_sync(etcd_cluster, 1)
    endpoint = cluster.endpoints[0]
    await trio.to_thread.run_sync(etcd_put, endpoint, KEY, dumps([manifest("a")]))
    source = EtcdSource([endpoint], KEY, retry_max=0.2)
    collector = start_collector(nursery, source)
    await collector.wait_ids(["a"])

    await trio.to_thread.run_sync(cluster.stop, 0)
    await trio.sleep(0.5)  # several reconnect attempts; nothing may be yielded
    assert len(collector.snapshots) == 1
    await trio.to_thread.run_sync(cluster.start, 0)
    await trio.to_thread.run_sync(cluster.wait_healthy)
    await trio.to_thread.run_sync(etcd_put, endpoint, KEY, dumps([manifest("b")]))
    await collector.wait_ids(["b"], timeout=15)


async def test_compaction_while_away_is_read_again(
    nursery: trio.Nursery, etcd_cluster: Callable[..., EtcdCluster]
) -> None:
    cluster = await trio.to_thread.run_sync(etcd_cluster, 3)
    watched, other = cluster.endpoints[0], cluster.endpoints[1]
    other_key = KEY + "/extra"
    await trio.to_thread.run_sync(etcd_put, other, KEY, dumps([manifest("a")]))
    await trio.to_thread.run_sync(etcd_put, other, other_key, dumps([manifest("x")]))
    source = EtcdSource([watched], KEY, retry_max=0.2)
    collector = start_collector(nursery, source)
    await collector.wait_ids(["a", "x"])

    with structlog.testing.capture_logs() as logs:
        await trio.to_thread.run_sync(cluster.stop, 0)

        def change_and_compact() -> None:
            etcd_put(other, KEY, dumps([manifest("b")]))
            delete(other, other_key)
            revision = etcd_put(other, KEY, dumps([manifest("c"), manifest("d")]))
            compact(other, revision)

        await trio.to_thread.run_sync(change_and_compact)
        await trio.to_thread.run_sync(cluster.start, 0)
        # The watch restarts below the compaction: the prefix is read again.
        snapshot = await collector.wait_ids(["c", "d"], timeout=20)
    assert not snapshot.rejected
    assert source.reads >= 2
    assert any(line["event"] == "etcd watch ended; reading again" for line in logs), logs


async def test_etcd_away_on_a_kubelet_stops_no_pod(
    etcd_cluster: Callable[..., EtcdCluster], start_kubelet: KubeletFactory
) -> None:
    """The member stops while a kubelet runs its pods: they keep running through sync
    rounds; once it is back, a change of the key is applied again."""
    cluster = await trio.to_thread.run_sync(etcd_cluster, 1)
    endpoint = cluster.endpoints[0]
    await trio.to_thread.run_sync(etcd_put, endpoint, KEY,
                                  dumps([manifest("a"), manifest("b")]))
    source = EtcdSource([endpoint], KEY, retry_max=0.2)
    async with start_kubelet([source]) as kubelet:

        async def running(count: int) -> dict[str, str] | None:
            found = {c.pod_uid: c.id for c in await kubelet.runtime.list_containers()
                     if c.state is ContainerState.RUNNING}
            return found if len(found) == count else None

        before = await wait_until(lambda: running(2), timeout=15, what="two pods running")
        await trio.to_thread.run_sync(cluster.stop, 0)
        rounds = kubelet.sync.rounds

        async def rounds_passed() -> bool:
            return kubelet.sync.rounds >= rounds + 5

        await wait_until(rounds_passed, what="sync rounds while etcd is away")
        assert await running(2) == before
        await trio.to_thread.run_sync(cluster.start, 0)
        await trio.to_thread.run_sync(cluster.wait_healthy)
        await trio.to_thread.run_sync(etcd_put, endpoint, KEY, dumps([manifest("a")]))
        remaining = await wait_until(lambda: running(1), timeout=15, what="pod b stopped")
        assert set(remaining.items()) <= set(before.items())
