"""source_server on a real kubelet (runtime_exec): POST /container(s), 400s, the token,
and the pods last POSTed surviving a kubelet restart (in-process and real processes)."""

from __future__ import annotations

from pathlib import Path

import httpx
import structlog
import trio
from kubecore_source_server import ServerSource

from kubecore.kubelet.node import Kubelet
from kubecore.runtime import ContainerInfo, ContainerState
from tests.kubelet.conftest import KubeletFactory
from tests.kubelet.helpers import wait_until
from tests.processes import KubecoreProcess
from tests.sources.helpers import manifest


async def running(kubelet: Kubelet, uid: str) -> list[ContainerInfo]:
    return [c for c in await kubelet.runtime.list_containers(all=True)
            if c.pod_uid == uid and c.state is ContainerState.RUNNING]


async def test_post_container_and_containers(start_kubelet: KubeletFactory) -> None:
    source = ServerSource()
    async with start_kubelet([source], port=0) as kubelet, \
            httpx.AsyncClient(base_url=kubelet.url) as client:
        r = await client.post("/container", json=manifest("solo"))
        assert r.status_code == 200 and r.json() == {"status": "Success", "pods": ["solo"]}
        solo = (await wait_until(lambda: running(kubelet, "solo.default.http")))[0]
        assert kubelet.find_pod("solo", "default") is not None

        r = await client.post("/containers", json=[manifest(), manifest("web"), manifest()])
        assert r.json()["pods"] == ["1", "web", "3"]
        await wait_until(lambda: running(kubelet, "web.default.http"))
        await wait_until(lambda: running(kubelet, "3.default.http"))

        async def solo_gone() -> bool:
            return not await running(kubelet, solo.pod_uid)

        await wait_until(solo_gone, what="the replaced pod stopped")

        # A list with one bad entry: 400 with its field; nothing changes.
        web = (await running(kubelet, "web.default.http"))[0]
        bad = manifest("bad")
        del bad["containers"][0]["image"]
        r = await client.post("/containers", json=[manifest("web"), bad])
        assert r.status_code == 400
        fields = [c["field"] for c in r.json()["details"]["causes"]]
        assert fields == ["[1].containers[0].image"], r.json()
        r = await client.post("/container", json=[manifest("web")])
        assert r.status_code == 400
        r = await client.post("/containers", json=[manifest("x"), manifest("x")])
        assert r.status_code == 400 and r.json()["details"]["causes"][0]["field"] == "[1].id"
        assert source.accepted == 2
        assert [c.id for c in await running(kubelet, "web.default.http")] == [web.id]

        # YAML bodies work too; an empty list stops everything.
        r = await client.post("/container", content=b"version: v1beta1\nid: yml\ncontainers:"
                              b"\n- {name: main, image: busybox, command: [sleep, '60']}\n")
        assert r.status_code == 200
        await wait_until(lambda: running(kubelet, "yml.default.http"))
        assert (await client.post("/containers", json=[])).status_code == 200

        async def all_gone() -> bool:
            return not any(c.state is ContainerState.RUNNING
                           for c in await kubelet.runtime.list_containers(all=True))

        await wait_until(all_gone, what="every pod stopped")


async def test_bearer_token(start_kubelet: KubeletFactory) -> None:
    source = ServerSource(token="s3cret")
    async with start_kubelet([source], port=0) as kubelet, \
            httpx.AsyncClient(base_url=kubelet.url) as client:
        assert (await client.post("/container", json=manifest("a"))).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (await client.post("/container", json=manifest("a"),
                                  headers=wrong)).status_code == 401
        assert source.accepted == 0
        good = {"Authorization": "Bearer s3cret"}
        r = await client.post("/container", json=manifest("a"), headers=good)
        assert r.status_code == 200
        await wait_until(lambda: running(kubelet, "a.default.http"))
        # Other kubelet routes are not affected by the token.
        assert (await client.get("/healthz")).status_code == 200


async def test_saved_manifests_survive_a_restart(tmp_path: Path,
                                                 start_kubelet: KubeletFactory) -> None:
    """The state file carries the pods last POSTed into the next source; an unusable
    one is ignored."""
    state = tmp_path / "kubelet" / "source_server.json"
    source = ServerSource(state_file=state)
    async with start_kubelet([source], port=0) as kubelet, \
            httpx.AsyncClient(base_url=kubelet.url) as client:
        r = await client.post("/containers", json=[manifest("a"), manifest("b")])
        assert r.status_code == 200 and state.exists()
        first = {c.pod_uid: c.id for c in await wait_until(lambda: _both(kubelet))}
    async with start_kubelet([ServerSource(state_file=state)], port=0) as kubelet:
        rounds = kubelet.sync.rounds
        await wait_until(lambda: _rounds(kubelet, rounds + 3), what="rounds after restart")
        assert {c.pod_uid: c.id for c in await _both(kubelet) or []} == first
        assert sorted(p.pod.id for p in kubelet.desired.pods.values()) == ["a", "b"]
        async with httpx.AsyncClient(base_url=kubelet.url) as client:
            assert (await client.post("/containers", json=[])).status_code == 200

        async def stopped() -> bool:
            return not any(c.state is ContainerState.RUNNING
                           for c in await kubelet.runtime.list_containers(all=True))

        await wait_until(stopped, what="the pods stopped by an empty POST")
    state.write_text("{not json")
    with structlog.testing.capture_logs() as logs:
        restored = await anext(ServerSource(state_file=state).snapshots())
    assert restored.pods == [] and any("unusable" in line["event"] for line in logs)


async def _both(kubelet: Kubelet) -> list[ContainerInfo] | None:
    found = [c for c in await kubelet.runtime.list_containers(all=True)
             if c.state is ContainerState.RUNNING]
    return found if len(found) == 2 else None


async def _rounds(kubelet: Kubelet, count: int) -> bool:
    return kubelet.sync.rounds >= count


async def test_posted_pods_survive_a_kubelet_process_restart(tmp_path: Path) -> None:
    """``kubecore run`` stopped and started again on the same data directory: the pods
    last POSTed are desired at once and keep running (same start time, no restart)."""
    args = ["run", "--role", "node", "--hostname-override", "node9",
            "--plugins", "runtime_exec,source_server", "--set", "kubelet.port=0",
            "--set", "kubelet.grace_period=1", "--set", "kubelet.sync_frequency=0.2",
            "--data-dir", str(tmp_path / "data"), "--log-format", "json"]

    async def running_since(client: httpx.AsyncClient, pod_id: str) -> str | None:
        r = await client.get("/podInfo", params={"podID": pod_id})
        state = r.json().get("main", {}).get("state", {}) if r.status_code == 200 else {}
        started: str | None = state.get("running", {}).get("startedAt")
        return started

    with KubecoreProcess(args) as proc:
        try:
            url = (await trio.to_thread.run_sync(
                lambda: proc.wait_event("listening", logger="kubecore.kubelet")))["url"]
            async with httpx.AsyncClient(base_url=url) as client:
                r = await client.post("/containers", json=[manifest("keep")])
                assert r.status_code == 200, r.text
                started = await wait_until(lambda: running_since(client, "keep"),
                                           timeout=20, what="the posted pod running")
        finally:
            assert proc.stop() == 0
    with KubecoreProcess(args) as proc:
        try:
            url = (await trio.to_thread.run_sync(
                lambda: proc.wait_event("listening", logger="kubecore.kubelet")))["url"]
            async with httpx.AsyncClient(base_url=url) as client:
                await trio.to_thread.run_sync(
                    lambda: proc.wait_event("manifests restored", timeout=10))

                async def bound() -> list[str] | None:
                    items = (await client.get("/boundPods")).json()["items"]
                    return [item["id"] for item in items] or None

                assert await wait_until(bound, what="the restored pod") == ["keep"]
                # A few sync rounds later it still runs, started before the restart.
                await trio.sleep(1.0)
                assert await running_since(client, "keep") == started
                assert not [e for e in proc.events if e.get("event") == "stopping pod"]
                assert (await client.post("/containers", json=[])).status_code == 200
                await trio.to_thread.run_sync(lambda: proc.wait_event("pod stopped"))
        finally:
            assert proc.stop() == 0
