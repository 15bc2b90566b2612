"""Events for pods the kubelet refuses: invalid ones, clashing ones, hostPort conflicts.

They are recorded once per distinct problem, readable at the kubelet's ``/events``
without a master, and sent to the apiserver when there is one.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import httpx
import trio
from kubecore_runtime_exec import ExecRuntime
from kubecore_source_file import FileSource
from kubecore_store_sqlite import SqliteStore

from kubecore.api import Event, Port
from kubecore.apiserver.app import create_app
from kubecore.apiserver.registry import Registry
from kubecore.client import AsyncClient
from kubecore.http import serve_asgi
from kubecore.kubelet.events import (
    DUPLICATE_POD,
    FAILED_VALIDATION,
    HOST_PORT_CONFLICT,
    EventRecorder,
)
from kubecore.kubelet.merger import Merger
from kubecore.kubelet.node import Kubelet
from kubecore.kubelet.sources import Snapshot
from tests.kubelet.conftest import FAST, KubeletFactory
from tests.kubelet.helpers import PushSource, container, pod, wait_until
from tests.kubelet.test_server import free_port
from tests.sources_api.helpers import DEADLINE, apiserver, client_of


def test_merger_records_each_distinct_rejection_once() -> None:
    events = EventRecorder("node1")
    merger = Merger(events)
    key = merger.register("file")
    bad = pod("noimage", container(image=""))
    merger.update(key, Snapshot([pod("good"), bad]))
    merger.update(key, Snapshot([pod("good"), bad]))  # re-sent: nothing new
    [event] = events.recent()
    assert event.reason == FAILED_VALIDATION and event.source == "kubelet"
    assert event.involved_object.name == "noimage"
    assert event.involved_object.namespace == "default"
    assert "'file'" in event.message and "pods[1] (noimage)" in event.message
    assert "spec.containers[0].image" in event.message and "node1" in event.message
    # Fixed, then broken again: a new event.
    merger.update(key, Snapshot([pod("good")]))
    merger.update(key, Snapshot([pod("good"), bad]))
    assert len(events.recent()) == 2

    other = merger.register("http")
    merger.update(other, Snapshot([pod("elsewhere", uid="uid-good")]))
    merger.update(other, Snapshot([pod("elsewhere", uid="uid-good")]))
    clashes = [e for e in events.recent() if e.reason == DUPLICATE_POD]
    assert len(clashes) == 1 and "uid uid-good" in clashes[0].message


def test_recent_events_are_bounded() -> None:
    events = EventRecorder("node1", keep=3)
    for i in range(5):
        events.record(FAILED_VALIDATION, f"problem {i}", pod_id=f"p{i}", namespace="Bad_NS")
    assert [e.message.split(" (")[0] for e in events.recent()] == [
        "problem 2", "problem 3", "problem 4"]
    assert {e.namespace for e in events.recent()} == {"default"}


async def test_second_pod_on_a_taken_host_port_is_not_started(
    start_kubelet: KubeletFactory,
) -> None:
    """v0.5's kubelet rule: of two pods asking for one hostPort, the later one waits
    (with an event saying why) until the port is free."""
    source = PushSource("file")
    ports = [Port(container_port=8080, host_port=18080)]
    first = pod("first", container(ports=ports))
    second = pod("second", container(ports=ports))
    async with start_kubelet([source], port=0) as kubelet:
        source.push(first, second)

        async def first_running() -> bool:
            live = await kubelet.runtime.list_containers(all=False)
            return any(c.pod_uid == first.uid for c in live)

        await wait_until(first_running, what="the first pod")
        rounds = kubelet.sync.rounds
        await wait_until(lambda: _later(kubelet, rounds + 3), what="three more rounds")
        assert not [c for c in await kubelet.runtime.list_containers(all=True)
                    if c.pod_uid == second.uid]
        assert kubelet.url is not None
        async with httpx.AsyncClient(base_url=kubelet.url) as client:
            listed = (await client.get("/events")).json()
        assert listed["kind"] == "EventList"
        [event] = listed["items"]
        assert event["reason"] == HOST_PORT_CONFLICT
        assert event["involvedObject"]["name"] == "second"
        assert "18080" in event["message"] and "first.default.file" in event["message"]

        source.push(second)  # the port is free now

        async def second_running() -> bool:
            live = await kubelet.runtime.list_containers(all=False)
            return any(c.pod_uid == second.uid for c in live)

        await wait_until(second_running, what="the second pod once the port is free")


async def _later(kubelet: Kubelet, rounds: int) -> bool:
    return kubelet.sync.rounds >= rounds


async def test_rejected_file_pod_event_reaches_the_apiserver(tmp_path: Path,
                                                             exec_root: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "bad.yaml").write_text(
        "version: v1beta1\ncontainers:\n- name: main\n  image: ''\n")
    source = FileSource(manifests, check_interval=0.05, watch=False)
    async with apiserver(tmp_path) as url, client_of(url) as client:
        recorder = EventRecorder("node1", AsyncClient(url, timeout=DEADLINE))
        kubelet = Kubelet(ExecRuntime(exec_root), [source], FAST, hostname="node1",
                          port=None, events=recorder)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(kubelet.run)

                async def recorded() -> list[Event] | None:
                    listed = await client.list(Event)
                    return listed.items or None

                [event] = await wait_until(recorded, what="the event in the apiserver")
                assert event.reason == FAILED_VALIDATION
                assert str(manifests / "bad.yaml") in event.message
                assert "containers[0].image" in event.message
                reads = source.reads
                await wait_until(lambda: _reads(source, reads + 5), what="more re-reads")
                assert len((await client.list(Event)).items) == 1
                assert recorder.sent == 1
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await recorder.client.aclose()  # type: ignore[union-attr]


async def _reads(source: FileSource, count: int) -> bool:
    return source.reads >= count


async def test_events_wait_for_an_unreachable_apiserver(tmp_path: Path) -> None:
    """Recorded while nothing answers at the apiserver's address, sent once it does."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    recorder = EventRecorder("node1", AsyncClient(url, timeout=DEADLINE), retry_min=0.05,
                             retry_max=0.1)
    recorder.record(FAILED_VALIDATION, "broken", pod_id="p")
    store = SqliteStore(tmp_path / "store.sqlite3")
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(recorder.run)
            await trio.sleep(0.3)
            assert recorder.sent == 0
            await nursery.start(partial(serve_asgi, create_app(Registry(store)),
                                        name="apiserver", address="127.0.0.1", port=port))
            async with client_of(url) as client:

                async def recorded() -> list[Event] | None:
                    return (await client.list(Event)).items or None

                [event] = await wait_until(recorded, what="the late event")
            assert event.involved_object.name == "p" and recorder.sent == 1
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await recorder.client.aclose()  # type: ignore[union-attr]
            await store.aclose()
