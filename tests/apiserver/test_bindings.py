"""Bindings over real HTTP: the pod's host CAS, the host's BoundPods at the host key,
hostPort conflicts, and the list kept in step with pod deletes and image updates."""

from __future__ import annotations

import json
from typing import Any

import httpx
import trio

from kubecore.apiserver.keys import V05_HOST_KEY
from kubecore.apiserver.registry import Registry
from tests.apiserver.harness import TIMEOUT, Api, StartServer
from tests.apiserver.objects import pod, service

P = "/api/v1beta1"
HOST_KEY = "/registry/hosts/{host}/kubelet"


async def host_list(api: Api, host: str, template: str = HOST_KEY) -> dict[str, Any] | None:
    kv = await api.store.get(template.replace("{host}", host))
    return None if kv is None else json.loads(kv.value)


async def bind(api: Api, pod_id: str, host: str, query: str = "") -> httpx.Response:
    return await api.http.post(f"{P}/bindings{query}", json={"podID": pod_id, "host": host})


async def test_binding_writes_the_pod_and_the_host_list(api: Api) -> None:
    db = await api.ok("POST", f"{P}/services", json=service("my-db", port=5432, selector={
        "app": "db"}))
    created = await api.ok("POST", f"{P}/pods", json=pod("web-1", host_port=8081))
    status = await api.ok("POST", f"{P}/bindings", json={"kind": "Binding", "podID": "web-1",
                                                         "host": "node-a"})
    assert status["kind"] == "Status" and status["status"] == "Success"
    bound = await api.ok("GET", f"{P}/pods/web-1")
    assert bound["desiredState"]["host"] == "node-a"
    assert bound["resourceVersion"] > created["resourceVersion"]
    listed = await host_list(api, "node-a")
    assert listed is not None
    assert (listed["kind"], listed["apiVersion"], listed["host"]) == ("BoundPods", "v1beta1",
                                                                      "node-a")
    (item,) = listed["items"]
    assert item["id"] == "web-1" and item["uid"] == created["uid"]
    assert item["namespace"] == "default"
    assert item["creationTimestamp"] == created["creationTimestamp"]
    assert item["selfLink"] == f"{P}/boundPods/web-1"
    assert "labels" not in item
    assert set(item["spec"]) == {"volumes", "containers", "restartPolicy"}
    (container,) = item["spec"]["containers"]
    assert container["image"] == "nginx" and container["ports"][0]["hostPort"] == 8081
    ip = db["portalIP"]
    assert {e["name"]: e["value"] for e in container["env"]} == {
        "MY_DB_SERVICE_HOST": ip,
        "MY_DB_SERVICE_PORT": "5432",
        "MY_DB_PORT": f"tcp://{ip}:5432",
        "MY_DB_PORT_5432_TCP": f"tcp://{ip}:5432",
        "MY_DB_PORT_5432_TCP_PROTO": "tcp",
        "MY_DB_PORT_5432_TCP_PORT": "5432",
        "MY_DB_PORT_5432_TCP_ADDR": ip,
    }
    # the pod as stored keeps its own environment; only the bound copy has the services'
    assert "env" not in bound["desiredState"]["manifest"]["containers"][0]


async def test_a_bound_pod_cannot_be_bound_again(api: Api) -> None:
    await api.ok("POST", f"{P}/pods", json=pod())
    assert (await bind(api, "web-1", "node-a")).status_code == 200
    again = await bind(api, "web-1", "node-b")
    assert again.status_code == 409
    assert again.json()["reason"] == "Conflict" and "already assigned" in again.json()["message"]
    assert await host_list(api, "node-b") is None
    items = (await host_list(api, "node-a") or {})["items"]
    assert [item["id"] for item in items] == ["web-1"]


async def test_binding_errors(api: Api) -> None:
    missing = await bind(api, "nope", "node-a")
    assert (missing.status_code, missing.json()["reason"]) == (404, "NotFound")
    await api.ok("POST", f"{P}/pods?namespace=prod", json=pod("p"))
    assert (await bind(api, "p", "node-a")).status_code == 404  # default namespace
    assert (await bind(api, "p", "node-a", "?namespace=prod")).status_code == 200
    mismatch = await api.http.post(f"{P}/bindings?namespace=dev", json={
        "podID": "p", "host": "node-a", "namespace": "prod"})
    assert mismatch.status_code == 409
    invalid = await api.http.post(f"{P}/bindings", json={"podID": "", "host": ""})
    assert invalid.status_code == 422
    assert {c["field"] for c in invalid.json()["details"]["causes"]} == {"podID", "host"}
    for host in ("a/b", "..", " node"):
        escape = await bind(api, "p", host, "?namespace=prod")
        assert escape.status_code == 422, host
    wrong_kind = await api.http.post(f"{P}/bindings", json={"kind": "Pod", "podID": "p"})
    assert wrong_kind.status_code == 400
    garbage = await api.http.post(f"{P}/bindings", content=b"{{{")
    assert garbage.status_code == 400


async def test_a_host_port_in_use_on_the_host_is_a_conflict(api: Api) -> None:
    await api.ok("POST", f"{P}/pods", json=pod("a", host_port=8080))
    await api.ok("POST", f"{P}/pods", json=pod("b", host_port=8080))
    await api.ok("POST", f"{P}/pods", json=pod("c", host_port=9090))
    assert (await bind(api, "a", "node-a")).status_code == 200
    clash = await bind(api, "b", "node-a")
    assert clash.status_code == 409
    assert clash.json()["reason"] == "Conflict" and "8080" in clash.json()["message"]
    # the failed binding gave the pod its host back, so it can go elsewhere
    assert (await api.ok("GET", f"{P}/pods/b"))["desiredState"]["host"] == ""
    assert (await bind(api, "b", "node-b")).status_code == 200
    assert (await bind(api, "c", "node-a")).status_code == 200
    items = (await host_list(api, "node-a") or {})["items"]
    assert [item["id"] for item in items] == ["a", "c"]


async def test_deleting_a_pod_takes_it_off_its_host(api: Api) -> None:
    for name in ("a", "b"):
        await api.ok("POST", f"{P}/pods", json=pod(name))
        assert (await bind(api, name, "node-a")).status_code == 200
    await api.ok("DELETE", f"{P}/pods/a")
    listed = await host_list(api, "node-a")
    assert listed is not None and [item["id"] for item in listed["items"]] == ["b"]
    await api.ok("DELETE", f"{P}/pods/b")
    listed = await host_list(api, "node-a")
    assert listed is not None and listed["items"] == []
    await api.ok("POST", f"{P}/pods", json=pod("unbound"))
    await api.ok("DELETE", f"{P}/pods/unbound")  # never bound: no host list touched
    assert (await host_list(api, "node-a") or {})["items"] == []


async def test_bindings_start_from_the_list_as_stored_whoever_wrote_it(api: Api) -> None:
    """A binding starts from the host list it wrote last only while the stored value is
    still that one: a delete, an image update or another writer in between are kept."""
    key = HOST_KEY.replace("{host}", "node-a")
    for name in ("a", "b", "c"):
        await api.ok("POST", f"{P}/pods", json=pod(name))
    await api.ok("POST", f"{P}/pods", json=pod("d", host_port=8080))
    assert (await bind(api, "a", "node-a")).status_code == 200
    assert (await bind(api, "b", "node-a")).status_code == 200
    await api.ok("DELETE", f"{P}/pods/a")  # rewritten through the models
    assert (await bind(api, "c", "node-a")).status_code == 200
    listed = await host_list(api, "node-a")
    assert listed is not None and [item["id"] for item in listed["items"]] == ["b", "c"]
    # Another writer takes host port 8080 and adds a field of its own.
    kv = await api.store.get(key)
    assert kv is not None
    other = {**json.loads(kv.value), "note": "kept", "items": [*listed["items"], {
        "id": "x", "namespace": "default", "spec": {"containers": [
            {"name": "x", "image": "x", "ports": [{"containerPort": 1, "hostPort": 8080}]}]}}]}
    await api.store.update(key, json.dumps(other).encode(), kv.mod_revision)
    clash = await bind(api, "d", "node-a")
    assert clash.status_code == 409 and "8080" in clash.json()["message"]
    await api.ok("POST", f"{P}/pods", json=pod("e"))
    assert (await bind(api, "e", "node-a")).status_code == 200
    listed = await host_list(api, "node-a")
    assert listed is not None and listed["note"] == "kept"
    assert [item["id"] for item in listed["items"]] == ["b", "c", "x", "e"]
    assert listed["items"][:3] == other["items"]


async def test_an_image_update_rewrites_the_bound_pod(api: Api) -> None:
    await api.ok("POST", f"{P}/services", json=service())
    await api.ok("POST", f"{P}/pods", json=pod())
    assert (await bind(api, "web-1", "node-a")).status_code == 200
    before = (await host_list(api, "node-a") or {})["items"][0]
    current = await api.ok("GET", f"{P}/pods/web-1")
    current["desiredState"]["manifest"]["containers"][0]["image"] = "nginx:1.7"
    await api.ok("PUT", f"{P}/pods/web-1", json=current)
    after = (await host_list(api, "node-a") or {})["items"][0]
    assert after["spec"]["containers"][0]["image"] == "nginx:1.7"
    after["spec"]["containers"][0]["image"] = "nginx"
    assert after == before  # nothing else changed, service variables included


async def test_a_stale_entry_of_the_same_pod_is_replaced(api: Api) -> None:
    created = await api.ok("POST", f"{P}/pods", json=pod(host_port=80))
    stale = {"kind": "BoundPods", "host": "node-a", "items": [
        {"id": "web-1", "namespace": "default", "spec": {"containers": [
            {"name": "www", "image": "old", "ports": [{"containerPort": 80, "hostPort": 80}]}]}}]}
    await api.store.create(HOST_KEY.replace("{host}", "node-a"), json.dumps(stale).encode())
    assert (await bind(api, "web-1", "node-a")).status_code == 200
    (item,) = (await host_list(api, "node-a") or {})["items"]
    assert item["uid"] == created["uid"] and item["spec"]["containers"][0]["image"] == "nginx"


async def test_a_corrupt_host_list_fails_the_binding_and_resets_the_host(api: Api) -> None:
    await api.ok("POST", f"{P}/pods", json=pod())
    await api.store.create(HOST_KEY.replace("{host}", "node-a"), b"not json")
    failed = await bind(api, "web-1", "node-a")
    assert failed.status_code == 500 and failed.json()["kind"] == "Status"
    assert (await api.ok("GET", f"{P}/pods/web-1"))["desiredState"]["host"] == ""


async def test_concurrent_bindings(api: Api) -> None:
    for i in range(8):
        await api.ok("POST", f"{P}/pods", json=pod(f"p{i}"))
    codes: dict[str, int] = {}

    async def bind_to(pod_id: str, host: str) -> None:
        codes[f"{pod_id}@{host}"] = (await bind(api, pod_id, host)).status_code

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(bind_to, f"p{i}", "node-a")
            nursery.start_soon(bind_to, "p0", "node-b")  # races p0@node-a
    assert sorted(codes[f"p0@{h}"] for h in ("node-a", "node-b")) == [200, 409]
    assert all(codes[f"p{i}@node-a"] == 200 for i in range(1, 8))
    on_a = {item["id"] for item in (await host_list(api, "node-a") or {})["items"]}
    on_b = {item["id"] for item in (await host_list(api, "node-b") or {"items": []})["items"]}
    assert on_a | on_b == {f"p{i}" for i in range(8)} and not on_a & on_b


async def test_the_v05_host_key_works_too(store: Any, start_server: StartServer) -> None:
    registry = Registry(store, host_key=V05_HOST_KEY)
    url = await start_server(registry)
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http:
        api = Api(url, http, registry, store)
        await api.ok("POST", f"{P}/pods", json=pod())
        assert (await bind(api, "web-1", "node-a")).status_code == 200
        listed = await host_list(api, "node-a", V05_HOST_KEY)
        assert listed is not None and listed["items"][0]["id"] == "web-1"
        assert await host_list(api, "node-a") is None
        await api.ok("DELETE", f"{P}/pods/web-1")
        assert (await host_list(api, "node-a", V05_HOST_KEY) or {})["items"] == []
