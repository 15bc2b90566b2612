"""source_etcd against a real etcd: initial read, watch, deletes, compaction, layouts."""

from __future__ import annotations

import json

import trio
from kubecore_source_etcd import EtcdSource, EtcdSourceConfig, host_prefix

from kubecore.api import BoundPod, BoundPods, PodSpec, encode_json
from tests.services import etcd_put
from tests.sources.helpers import dumps, manifest, start_collector


def bound_pods(*ids: str) -> bytes:
    items = [BoundPod(id=i, uid=f"uid-{i}", namespace="default",
                      spec=PodSpec.model_validate({"containers": manifest()["containers"]}))
             for i in ids]
    return encode_json(BoundPods(host="node1", items=items))


def etcd_delete(endpoint: str, key: str) -> None:
    import httpx

    from tests.services import etcd_key

    httpx.post(f"http://{endpoint}/v3/kv/deleterange", json={"key": etcd_key(key)},
               timeout=5.0).raise_for_status()


async def put(endpoint: str, key: str, value: bytes) -> int:
    return await trio.to_thread.run_sync(etcd_put, endpoint, key, value)


async def test_read_watch_delete(nursery: trio.Nursery, etcd_endpoint: str,
                                 key_prefix: str) -> None:
    template = key_prefix + "hosts/{hostname}/kubelet"
    assert EtcdSourceConfig().key_template == "/registry/hosts/{hostname}/kubelet"
    key = host_prefix(template, "node1")
    await put(etcd_endpoint, key, bound_pods("a", "b"))
    await put(etcd_endpoint, host_prefix(template, "node2"), bound_pods("other"))
    source = EtcdSource([etcd_endpoint], key)
    collector = start_collector(nursery, source)
    first = await collector.wait_ids(["a", "b"])
    assert [p.uid for p in first.pods] == ["uid-a", "uid-b"] and not first.rejected

    # A plain list of manifests, then one manifest, then YAML.
    await put(etcd_endpoint, key, dumps([manifest("m1"), manifest()]))
    snap = await collector.wait_ids(["m1", "2"])
    assert snap.pods[1].uid == "2.default.etcd"
    await put(etcd_endpoint, key, b"version: v1beta1\nid: y\ncontainers: "
              b"[{name: main, image: busybox}]\n")
    await collector.wait_ids(["y"])

    # An undecodable value: no pods from that key, a rejected entry naming it.
    await put(etcd_endpoint, key, b"{not json")
    snap = await collector.wait_ids([])
    assert [r.origin for r in snap.rejected] == [key]

    await put(etcd_endpoint, key, bound_pods("c"))
    await collector.wait_ids(["c"])
    await trio.to_thread.run_sync(etcd_delete, etcd_endpoint, key)
    snap = await collector.wait_ids([])
    assert not snap.rejected


async def test_v05_layout_and_compaction(nursery: trio.Nursery, etcd_endpoint: str,
                                         key_prefix: str) -> None:
    from kubecore_store_etcd.store import EtcdStore

    key = host_prefix(key_prefix + "registry/nodes/{hostname}/boundpods", "node1")
    await put(etcd_endpoint, key, bound_pods("a"))
    source = EtcdSource([etcd_endpoint], key, retry_max=0.2)
    collector = start_collector(nursery, source)
    await collector.wait_ids(["a"])

    # Compacting past the watch's position while it is idle is harmless; a watch that
    # has to restart from a compacted revision re-reads the prefix instead.
    revision = 0
    for i in range(3):
        revision = await put(etcd_endpoint, key, bound_pods("a", f"n{i}"))
    await collector.wait_ids(["a", "n2"])
    store = EtcdStore([etcd_endpoint])
    try:
        await store.compact(revision)
    finally:
        await store.aclose()
    await put(etcd_endpoint, key, bound_pods("after"))
    await collector.wait_ids(["after"])


async def test_etcd_unreachable_then_up(nursery: trio.Nursery, etcd_endpoint: str,
                                        key_prefix: str) -> None:
    from tests.services import free_port

    # Nothing listens on the first endpoint: the source moves on to the real one.
    key = key_prefix + "hosts/node1/kubelet"
    await put(etcd_endpoint, key, json.dumps([manifest("z")]).encode())
    source = EtcdSource([f"127.0.0.1:{free_port()}", etcd_endpoint], key, retry_max=0.2)
    collector = start_collector(nursery, source)
    await collector.wait_ids(["z"], timeout=15)
