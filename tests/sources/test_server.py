"""source_server on a real kubelet (runtime_exec): POST /container(s), 400s, the token."""

from __future__ import annotations

import httpx
from kubecore_source_server import ServerSource

from kubecore.kubelet.node import Kubelet
from kubecore.runtime import ContainerInfo, ContainerState
from tests.kubelet.conftest import KubeletFactory
from tests.kubelet.helpers import wait_until
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
