"""The bad-input corpus through every source: file, http, server and etcd.

Each malformed manifest is rejected with its field (or, for input that does not decode
at all, a message), and a healthy pod from the same source keeps running.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import trio
from kubecore_source_etcd import EtcdSource
from kubecore_source_file import FileSource, pod_id_for
from kubecore_source_file.source import read_snapshot
from kubecore_source_http import HTTPSource
from kubecore_source_server import ServerSource

from kubecore.api import InvalidObject
from kubecore.kubelet.sources import Rejected, Snapshot
from kubecore.runtime import ContainerInfo, ContainerState
from tests.kubelet.conftest import KubeletFactory
from tests.kubelet.helpers import wait_until
from tests.services import etcd_put
from tests.sources.corpus import BODIES, ITEMS, BadBody, BadItem
from tests.sources.helpers import dumps, manifest, start_collector
from tests.sources.servers import ManifestServer

GOOD = manifest("good")


def test_corpus_size() -> None:
    assert len(ITEMS) + len(BODIES) >= 30
    names = [item.name for item in ITEMS] + [body.name for body in BODIES]
    assert len(set(names)) == len(names)


def fields(rejected: Rejected) -> list[str]:
    error = rejected.error
    return [c.field for c in error.causes] if isinstance(error, InvalidObject) else []


def text(rejected: Rejected) -> str:
    return str(rejected.error)


def check_item(rejected: list[Rejected], item: BadItem, origin: str) -> None:
    """Exactly one rejection, from ``origin``, naming the item's field."""
    assert [r.origin for r in rejected] == [origin], (item.name, rejected)
    if item.field:
        assert item.field in fields(rejected[0]), (item.name, fields(rejected[0]))
    assert text(rejected[0]), item.name


def check_body(rejected: list[Rejected], body: BadBody, origin: str) -> None:
    assert [r.origin for r in rejected] == [origin], (body.name, rejected)
    assert body.message in text(rejected[0]), (body.name, text(rejected[0]))


def write_corpus(directory: Path, *, all_items: bool = True
                 ) -> tuple[Path, dict[Path, BadItem | BadBody]]:
    directory.mkdir()
    good = directory / "good.json"
    good.write_text(json.dumps(GOOD))
    files: dict[Path, BadItem | BadBody] = {}
    for i, item in enumerate(ITEMS):
        if item.file_ignores and not all_items:
            continue
        path = directory / f"item{i:02d}.json"
        path.write_text(json.dumps(item.value))
        files[path] = item
    for i, body in enumerate(BODIES):
        path = directory / f"body{i:02d}.yaml"
        path.write_bytes(body.data)
        files[path] = body
    return good, files


def by_origin(snapshot: Snapshot) -> dict[str, list[Rejected]]:
    found: dict[str, list[Rejected]] = {}
    for entry in snapshot.rejected:
        found.setdefault(entry.origin, []).append(entry)
    return found


def check_all(snapshot: Snapshot, origins: dict[str, BadItem | BadBody]) -> None:
    found = by_origin(snapshot)
    assert set(found) == set(origins)
    for origin, entry in origins.items():
        if isinstance(entry, BadItem):
            check_item(found[origin], entry, origin)
        else:
            check_body(found[origin], entry, origin)


async def test_file_source_corpus(tmp_path: Path) -> None:
    good, files = write_corpus(tmp_path / "manifests")
    snapshot = await trio.to_thread.run_sync(read_snapshot, tmp_path / "manifests")
    assert snapshot is not None
    used = [path for path, entry in files.items()
            if isinstance(entry, BadItem) and entry.file_ignores]
    assert sorted(pod.id for pod in snapshot.pods) == sorted(
        pod_id_for(path) for path in [good, *used])
    check_all(snapshot, {str(path): entry for path, entry in files.items()
                         if path not in used})


async def test_file_source_corpus_on_a_kubelet(tmp_path: Path,
                                               start_kubelet: KubeletFactory) -> None:
    good, _ = write_corpus(tmp_path / "manifests", all_items=False)
    async with start_kubelet([FileSource(tmp_path / "manifests")]) as kubelet:
        async def running() -> list[ContainerInfo]:
            return [c for c in await kubelet.runtime.list_containers(all=True)
                    if c.state is ContainerState.RUNNING]

        started = await wait_until(running, what="the healthy pod")
        assert {c.pod_uid for c in started} == {pod_id_for(good)}
        assert [p.pod.id for p in kubelet.desired.pods.values()] == [pod_id_for(good)]


async def test_http_source_corpus(nursery: trio.Nursery) -> None:
    server = ManifestServer(dumps([GOOD]))
    url = await server.start(nursery)
    collector = start_collector(nursery, HTTPSource(url, check_interval=0.01))
    await collector.wait_ids(["good"])
    for item in ITEMS:
        count = len(collector.snapshots)
        server.body = dumps([GOOD, item.value])
        snapshot = await collector.wait_count(count + 1)
        assert [p.id for p in snapshot.pods] == ["good"], item.name
        check_item(list(snapshot.rejected), item, f"{url} ([1])")
    for body in BODIES:
        count = len(collector.snapshots)
        server.body = body.data
        snapshot = await collector.wait_count(count + 1)
        assert [p.id for p in snapshot.pods] == ["good"], body.name  # the last good pods
        check_body(list(snapshot.rejected), body, url)


async def test_server_source_corpus(start_kubelet: KubeletFactory) -> None:
    source = ServerSource()
    async with start_kubelet([source], port=0) as kubelet, \
            httpx.AsyncClient(base_url=kubelet.url) as client:
        assert (await client.post("/containers", json=[GOOD])).status_code == 200

        async def running() -> list[ContainerInfo]:
            return [c for c in await kubelet.runtime.list_containers(all=True)
                    if c.state is ContainerState.RUNNING and c.pod_uid == "good.default.http"]

        first = await wait_until(running, what="the healthy pod")
        for item in ITEMS:
            r = await client.post("/containers", json=[GOOD, item.value])
            assert r.status_code == 400, item.name
            causes = r.json()["details"]["causes"]
            expected = f"[1].{item.field}" if item.field else "[1]"
            assert expected in [c["field"] for c in causes], (item.name, causes)
        for body in BODIES:
            r = await client.post("/containers", content=body.data)
            assert r.status_code == 400, body.name
            assert body.message in r.json()["message"], (body.name, r.json())
        assert source.accepted == 1
        assert [c.id for c in await running()] == [c.id for c in first]
        assert [p.pod.id for p in kubelet.desired.pods.values()] == ["good"]


@pytest.mark.etcd
async def test_etcd_source_corpus(nursery: trio.Nursery, etcd_endpoint: str,
                                  key_prefix: str) -> None:
    prefix = key_prefix + "hosts/node1/kubelet"
    origins: dict[str, BadItem | BadBody] = {}

    def write() -> None:
        etcd_put(etcd_endpoint, prefix, dumps(GOOD))
        for i, item in enumerate(ITEMS):
            origins[f"{prefix}/item{i:02d}"] = item
            etcd_put(etcd_endpoint, f"{prefix}/item{i:02d}", dumps(item.value))
        for i, body in enumerate(BODIES):
            origins[f"{prefix}/body{i:02d}"] = body
            etcd_put(etcd_endpoint, f"{prefix}/body{i:02d}", body.data)

    await trio.to_thread.run_sync(write)
    collector = start_collector(nursery, EtcdSource([etcd_endpoint], prefix))
    snapshot = await collector.wait_count(1)
    assert [p.id for p in snapshot.pods] == ["good"]
    check_all(snapshot, origins)

    # A bad entry next to a good one in the same value: the good one stays.
    count = len(collector.snapshots)
    await trio.to_thread.run_sync(etcd_put, etcd_endpoint, prefix,
                                  dumps([GOOD, ITEMS[4].value]))
    snapshot = await collector.wait_count(count + 1)
    assert [p.id for p in snapshot.pods] == ["good"]
    assert fields(by_origin(snapshot)[f"{prefix} ([1])"][0]) == [ITEMS[4].field]
