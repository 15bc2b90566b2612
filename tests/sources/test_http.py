"""source_http against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import structlog
import trio
from kubecore_source_http import HTTPSource

from kubecore.runtime import ContainerInfo, ContainerState
from tests.kubelet.conftest import KubeletFactory
from tests.kubelet.helpers import wait_until
from tests.sources.helpers import dumps, manifest, start_collector
from tests.sources.servers import ManifestServer

FAST = 0.05


async def test_list_ids_etag_and_changes(nursery: trio.Nursery) -> None:
    server = ManifestServer(dumps([manifest(), manifest("web"), manifest()]))
    url = await server.start(nursery)
    source = HTTPSource(url, check_interval=FAST)
    collector = start_collector(nursery, source)
    first = await collector.wait_ids(["1", "web", "3"])
    assert not first.rejected
    assert [p.namespace for p in first.pods] == ["default"] * 3
    assert first.pods[0].uid == "1.default.http"

    # Unchanged: 304s, no new snapshot.
    polls = source.polls
    await wait_until(lambda: _true(source.polls >= polls + 5), what="more polls")
    assert server.not_modified >= 4
    assert len(collector.snapshots) == 1

    server.body = dumps(manifest("single", ["sleep", "5"]))
    snap = await collector.wait_ids(["single"])
    assert snap.pods[0].spec.containers[0].command == ["sleep", "5"]
    assert len(collector.snapshots) == 2


async def test_same_body_without_etag_is_skipped(nursery: trio.Nursery) -> None:
    body = b"version: v1beta1\nid: yaml\ncontainers:\n- {name: main, image: busybox}\n"
    server = ManifestServer(body, etag=False)
    url = await server.start(nursery)
    source = HTTPSource(url, check_interval=FAST)
    collector = start_collector(nursery, source)
    await collector.wait_ids(["yaml"])
    await wait_until(lambda: _true(server.requests >= 6), what="more requests")
    assert len(collector.snapshots) == 1 and source.changes == 1


async def test_last_modified_gives_304s(nursery: trio.Nursery) -> None:
    date = "Tue, 24 Nov 2026 10:00:00 GMT"
    server = ManifestServer(dumps([manifest("a")]), etag=False, last_modified=date)
    url = await server.start(nursery)
    source = HTTPSource(url, check_interval=FAST)
    collector = start_collector(nursery, source)
    await collector.wait_ids(["a"])
    await wait_until(lambda: _true(server.not_modified >= 3), what="304 answers")
    server.body = dumps([manifest("b")])
    server.last_modified = "Tue, 24 Nov 2026 11:00:00 GMT"
    await collector.wait_ids(["b"])
    assert len(collector.snapshots) == 2


async def test_outage_keeps_last_pods_and_logs_once(nursery: trio.Nursery) -> None:
    server = ManifestServer(dumps([manifest("a"), manifest("b")]))
    url = await server.start(nursery)
    port = int(url.split(":")[2].split("/")[0])
    source = HTTPSource(url, check_interval=FAST, timeout=1.0)
    collector = start_collector(nursery, source)
    await collector.wait_ids(["a", "b"])
    with structlog.testing.capture_logs() as logs:
        server.status = 503
        polls = source.polls
        await wait_until(lambda: _true(source.polls >= polls + 4), what="polls on 503")
        server.status = 404
        polls = source.polls
        await wait_until(lambda: _true(source.polls >= polls + 4), what="polls on 404")
        await server.stop()
        polls = source.polls
        await wait_until(lambda: _true(source.polls >= polls + 4), what="polls while down")
        assert len(collector.snapshots) == 1
        server.status = 200
        server.body = dumps([manifest("a"), manifest("c")])
        await server.start(nursery, port)
        await collector.wait_ids(["a", "c"])
    warnings = [line for line in logs if line["event"].startswith("manifest URL unavailable")]
    assert len(warnings) == 1, warnings
    assert any(line["event"] == "manifest URL answers again" for line in logs)


async def test_undecodable_body_keeps_pods(nursery: trio.Nursery) -> None:
    server = ManifestServer(dumps([manifest("a")]))
    url = await server.start(nursery)
    collector = start_collector(nursery, HTTPSource(url, check_interval=FAST))
    await collector.wait_ids(["a"])
    server.body = b"\x00\xff\xfe junk"
    snap = await collector.wait_count(2)
    assert [p.id for p in snap.pods] == ["a"]
    assert [r.origin for r in snap.rejected] == [url]


async def _true(value: bool) -> bool:
    return value


async def test_server_away_on_a_kubelet_stops_no_pod(
    nursery: trio.Nursery, start_kubelet: KubeletFactory
) -> None:
    server = ManifestServer(dumps([manifest("a"), manifest("b")]))
    url = await server.start(nursery)
    port = int(url.split(":")[2].split("/")[0])
    source = HTTPSource(url, check_interval=FAST, timeout=1.0)
    async with start_kubelet([source]) as kubelet:
        async def running() -> list[ContainerInfo] | None:
            found = [c for c in await kubelet.runtime.list_containers(all=True)
                     if c.state is ContainerState.RUNNING]
            return found if len(found) == 2 else None

        before = sorted(c.id for c in await wait_until(running, what="two pods running"))
        await server.stop()
        polls, rounds = source.polls, kubelet.sync.rounds
        await wait_until(lambda: _true(source.polls >= polls + 5
                                       and kubelet.sync.rounds >= rounds + 3),
                         what="polls and sync rounds while the server is away")
        assert sorted(c.id for c in await wait_until(running)) == before
        await server.start(nursery, port)  # back with the same body: nothing changes
        polls = source.polls
        await wait_until(lambda: _true(source.polls >= polls + 3), what="polls again")
        server.body = dumps([manifest("a")])

        async def one() -> list[ContainerInfo] | None:
            found = [c for c in await kubelet.runtime.list_containers(all=True)
                     if c.state is ContainerState.RUNNING]
            return found if len(found) == 1 else None

        remaining = await wait_until(one, what="pod b stopped")
        assert remaining[0].id in before and remaining[0].pod_uid == "a.default.http"
