"""The v1beta1 REST API over real HTTP and the real SQLite store: every resource and
verb, namespaces, selectors, bodies, and every error code."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.apiserver.harness import Api
from tests.apiserver.objects import controller, endpoints, event, minion, pod, service

P = "/api/v1beta1"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-1[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


# -- pods -----------------------------------------------------------------------------


async def test_pod_create_sets_the_server_fields(api: Api) -> None:
    body = pod(desiredState={"host": "sneaky", "manifest": pod()["desiredState"]["manifest"]},
               currentState={"status": "Running", "podIP": "1.2.3.4"})
    created = await api.ok("POST", f"{P}/pods", json=body)
    assert created["kind"] == "Pod" and created["apiVersion"] == "v1beta1"
    assert created["id"] == "web-1" and created["namespace"] == "default"
    assert created["selfLink"] == f"{P}/pods/web-1"
    assert isinstance(created["resourceVersion"], int) and created["resourceVersion"] > 0
    assert UUID.fullmatch(created["uid"])
    assert TIMESTAMP.fullmatch(created["creationTimestamp"])
    manifest = created["desiredState"]["manifest"]
    assert UUID.fullmatch(manifest["uuid"]) and manifest["uuid"] != created["uid"]
    assert manifest["id"] == "web-1"
    assert manifest["restartPolicy"] == {"always": {}}  # defaults applied
    assert manifest["containers"][0]["ports"][0]["protocol"] == "TCP"
    assert created["desiredState"]["status"] == "Running"
    assert created["desiredState"]["host"] == ""  # only a binding sets it
    assert created["currentState"] == {"status": "Waiting", "host": ""}
    got = await api.ok("GET", f"{P}/pods/web-1")
    assert got == created


async def test_pod_without_id_gets_its_manifest_uuid(api: Api) -> None:
    body = pod()
    del body["id"]
    created = await api.ok("POST", f"{P}/pods", json=body)
    assert UUID.fullmatch(created["id"])
    assert created["desiredState"]["manifest"]["uuid"] == created["id"]
    assert created["desiredState"]["manifest"]["id"] == created["id"]


async def test_pod_get_list_delete(api: Api) -> None:
    await api.ok("POST", f"{P}/pods", json=pod("a"))
    await api.ok("POST", f"{P}/pods", json=pod("b"))
    listed = await api.ok("GET", f"{P}/pods")
    assert listed["kind"] == "PodList" and listed["selfLink"] == f"{P}/pods"
    assert [item["id"] for item in listed["items"]] == ["a", "b"]
    assert listed["resourceVersion"] == max(i["resourceVersion"] for i in listed["items"])
    assert all(item["kind"] == "Pod" for item in listed["items"])
    deleted = await api.ok("DELETE", f"{P}/pods/a")
    assert deleted["kind"] == "Status" and deleted["status"] == "Success"
    missing = await api.fails(404, "GET", f"{P}/pods/a")
    assert missing["reason"] == "NotFound" and missing["message"] == 'pod "a" not found'
    assert missing["details"] == {"id": "a", "kind": "pod"}
    await api.fails(404, "DELETE", f"{P}/pods/a")
    listed = await api.ok("GET", f"{P}/pods")
    assert [item["id"] for item in listed["items"]] == ["b"]


async def test_pod_create_twice_is_already_exists(api: Api) -> None:
    await api.ok("POST", f"{P}/pods", json=pod())
    status = await api.fails(409, "POST", f"{P}/pods", json=pod())
    assert status["reason"] == "AlreadyExists"


async def test_update_is_compare_and_swap_on_resource_version(api: Api) -> None:
    created = await api.ok("POST", f"{P}/pods", json=pod())
    no_version = await api.fails(409, "PUT", f"{P}/pods/web-1", json=pod(labels={"v": "2"}))
    assert no_version["reason"] == "Conflict"
    zero = pod(labels={"v": "2"}, resourceVersion=0)
    await api.fails(409, "PUT", f"{P}/pods/web-1", json=zero)
    body = pod(labels={"v": "2"}, resourceVersion=created["resourceVersion"])
    updated = await api.ok("PUT", f"{P}/pods/web-1", json=body)
    assert updated["labels"] == {"v": "2"}
    assert updated["resourceVersion"] > created["resourceVersion"]
    # the server-set fields survive an update that leaves them out
    assert updated["uid"] == created["uid"]
    assert updated["creationTimestamp"] == created["creationTimestamp"]
    assert updated["desiredState"]["manifest"]["uuid"] == created["desiredState"]["manifest"][
        "uuid"]
    assert updated["currentState"]["status"] == "Waiting"
    stale = await api.fails(409, "PUT", f"{P}/pods/web-1", json=body)
    assert stale["reason"] == "Conflict" and "resourceVersion" in stale["message"]


async def test_update_takes_the_id_from_the_body(api: Api) -> None:
    created = await api.ok("POST", f"{P}/pods", json=pod())
    await api.fails(404, "PUT", f"{P}/pods/other", json=pod("other", resourceVersion=1))
    mismatch = await api.fails(400, "PUT", f"{P}/pods/web-1", json=pod("other"))
    assert mismatch["reason"] == "BadRequest"
    body = pod(resourceVersion=created["resourceVersion"], labels={"x": "y"})
    del body["id"]
    updated = await api.ok("PUT", f"{P}/pods/web-1", json=body)
    assert updated["id"] == "web-1" and updated["labels"] == {"x": "y"}


async def test_pushed_status_is_stored_and_kept(api: Api) -> None:
    created = await api.ok("POST", f"{P}/pods", json=pod())
    report = dict(created, currentState={"status": "Running", "podIP": "127.0.0.5"})
    updated = await api.ok("PUT", f"{P}/pods/web-1", json=report)
    assert updated["currentState"]["status"] == "Running"
    assert updated["currentState"]["podIP"] == "127.0.0.5"
    # an update without currentState keeps the reported one
    relabel = pod(labels={"v": "2"}, resourceVersion=updated["resourceVersion"])
    relabeled = await api.ok("PUT", f"{P}/pods/web-1", json=relabel)
    assert relabeled["currentState"]["podIP"] == "127.0.0.5"


async def test_scheduled_pod_may_change_only_labels_and_images(api: Api) -> None:
    await api.ok("POST", f"{P}/pods", json=pod())
    await api.ok("POST", f"{P}/bindings", json={"podID": "web-1", "host": "node-a"})
    current = await api.ok("GET", f"{P}/pods/web-1")
    assert current["desiredState"]["host"] == "node-a"
    assert current["currentState"]["host"] == "node-a"  # copied on every read
    changed = json.loads(json.dumps(current))
    changed["desiredState"]["manifest"]["containers"][0]["command"] = ["sleep", "1"]
    status = await api.fails(422, "PUT", f"{P}/pods/web-1", json=changed)
    assert status["reason"] == "Invalid"
    assert status["details"]["causes"][0]["field"] == "desiredState.manifest.containers[0]"
    allowed = json.loads(json.dumps(current))
    allowed["labels"] = {"app": "web", "tier": "front"}
    allowed["desiredState"]["manifest"]["containers"][0]["image"] = "nginx:2"
    allowed["desiredState"]["host"] = "elsewhere"  # the host is the binding's, not the PUT's
    updated = await api.ok("PUT", f"{P}/pods/web-1", json=allowed)
    assert updated["desiredState"]["manifest"]["containers"][0]["image"] == "nginx:2"
    assert updated["desiredState"]["host"] == "node-a"


# -- namespaces -----------------------------------------------------------------------


async def test_namespaces(api: Api) -> None:
    await api.ok("POST", f"{P}/pods", json=pod("a"))
    in_query = await api.ok("POST", f"{P}/pods?namespace=prod", json=pod("a"))
    assert in_query["namespace"] == "prod"
    in_body = await api.ok("POST", f"{P}/pods", json=pod("b", namespace="prod"))
    assert in_body["namespace"] == "prod"
    mismatch = await api.fails(409, "POST", f"{P}/pods?namespace=dev",
                               json=pod("c", namespace="prod"))
    assert mismatch["reason"] == "Conflict"
    current = await api.ok("GET", f"{P}/pods/b?namespace=prod")
    await api.fails(409, "PUT", f"{P}/pods/b?namespace=dev", json=current)
    everything = await api.ok("GET", f"{P}/pods")
    assert sorted((i["namespace"], i["id"]) for i in everything["items"]) == [
        ("default", "a"), ("prod", "a"), ("prod", "b")]
    prod = await api.ok("GET", f"{P}/pods?namespace=prod")
    assert [i["id"] for i in prod["items"]] == ["a", "b"]
    assert (await api.ok("GET", f"{P}/pods/b?namespace=prod"))["namespace"] == "prod"
    await api.fails(404, "GET", f"{P}/pods/b")  # default namespace
    await api.ok("DELETE", f"{P}/pods/a?namespace=prod")
    assert (await api.ok("GET", f"{P}/pods/a"))["namespace"] == "default"
    bad = await api.fails(422, "POST", f"{P}/pods?namespace=Not_A_Subdomain", json=pod("d"))
    assert {c["field"] for c in bad["details"]["causes"]} == {"namespace"}


# -- selectors ------------------------------------------------------------------------


POD_SELECTIONS = [
    ("labels=app=web", ["a", "b"]),
    ("labels=app==web", ["a", "b"]),
    ("labels=app!=web", ["c"]),
    ("labels=app=web,tier=db", ["b"]),
    ("labels=tier=", ["a", "c"]),  # a missing label is ""
    ("labels=", ["a", "b", "c"]),
    ("fields=name=b", ["b"]),
    ("fields=name!=b", ["a", "c"]),
    ("fields=DesiredState.Host=node-a", ["a"]),
    ("fields=DesiredState.Host=", ["b", "c"]),
    ("fields=DesiredState.Status=Running", ["a", "b", "c"]),
    ("labels=app=web&fields=DesiredState.Host!=node-a", ["b"]),
]


async def test_pod_selectors(api: Api) -> None:
    await api.ok("POST", f"{P}/pods", json=pod("a"))
    await api.ok("POST", f"{P}/pods", json=pod("b", labels={"app": "web", "tier": "db"}))
    await api.ok("POST", f"{P}/pods", json=pod("c", labels={"app": "db"}))
    await api.ok("POST", f"{P}/bindings", json={"podID": "a", "host": "node-a"})
    for query, expected in POD_SELECTIONS:
        listed = await api.ok("GET", f"{P}/pods?{query}")
        assert [item["id"] for item in listed["items"]] == expected, query


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("pods", "labels=novalue"),
        ("pods", "fields=a=b=c"),
        ("services", "fields=name=web"),
        ("replicationControllers", "fields=name=web"),
        ("endpoints", "labels=app=web"),
        ("endpoints", "fields=name=web"),
        ("watch/endpoints", "labels=app=web"),
        ("watch/services", "fields=name=web"),
        ("watch/pods", "labels=x"),
    ],
)
async def test_refused_selectors_are_bad_requests(api: Api, path: str, query: str) -> None:
    status = await api.fails(400, "GET", f"{P}/{path}?{query}")
    assert status["reason"] == "BadRequest"


async def test_service_and_controller_label_selectors(api: Api) -> None:
    await api.ok("POST", f"{P}/services", json=service("a", labels={"tier": "front"}))
    await api.ok("POST", f"{P}/services", json=service("b", port=81))
    listed = await api.ok("GET", f"{P}/services?labels=tier=front")
    assert [i["id"] for i in listed["items"]] == ["a"]
    await api.ok("POST", f"{P}/replicationControllers", json=controller("x", labels={"t": "1"}))
    await api.ok("POST", f"{P}/replicationControllers", json=controller("y"))
    listed = await api.ok("GET", f"{P}/replicationControllers?labels=t!=1")
    assert [i["id"] for i in listed["items"]] == ["y"]


# -- bodies and plain errors ----------------------------------------------------------


async def test_yaml_bodies_and_absent_api_version(api: Api) -> None:
    body = pod()
    del body["apiVersion"]
    created = await api.ok("POST", f"{P}/pods", content=yaml.safe_dump(body).encode(),
                           headers={"Content-Type": "application/yaml"})
    assert created["id"] == "web-1" and created["apiVersion"] == "v1beta1"
    no_kind = service()
    del no_kind["kind"]
    assert (await api.ok("POST", f"{P}/services", json=no_kind))["kind"] == "Service"


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"",
        b"[1, 2]",
        b'"a string"',
        b"a: [unclosed",
        b'{"kind": "Service", "id": "x"}',  # another kind
        b'{"kind": 5}',
        b"\xff\xfe\x00garbage",
        b"---\nkind: Pod\n---\nkind: Pod\n",
        b"[" * 5000,
    ],
)
async def test_undecodable_bodies_are_bad_requests(api: Api, content: bytes) -> None:
    status = await api.fails(400, "POST", f"{P}/pods", content=content)
    assert status["reason"] == "BadRequest"


async def test_a_huge_body_is_a_bad_request(api: Api) -> None:
    status = await api.fails(400, "POST", f"{P}/pods", content=b" " * (17 * 2**20))
    assert "larger than" in status["message"]


async def test_invalid_objects_report_every_cause(api: Api) -> None:
    body = {"kind": "Pod", "id": "x", "labels": {"Bad_Key": "v"}, "desiredState": {
        "manifest": {"containers": [{"name": "A"}, {"name": "b", "image": "i",
                                                    "ports": [{"containerPort": 70000}]}]}}}
    status = await api.fails(422, "POST", f"{P}/pods", json=body)
    assert status["reason"] == "Invalid"
    fields = [cause["field"] for cause in status["details"]["causes"]]
    assert fields == [
        "desiredState.manifest.version",
        "desiredState.manifest.containers[0].name",
        "desiredState.manifest.containers[0].image",
        "desiredState.manifest.containers[1].ports[0].containerPort",
        "labels",
    ]
    assert status["details"]["kind"] == "Pod" and status["details"]["id"] == "x"
    assert all(cause["reason"].startswith("FieldValue") for cause in status["details"]["causes"])


async def test_wrong_field_types_are_invalid_with_their_paths(api: Api) -> None:
    body = pod(labels={"app": "web"})
    body["desiredState"]["manifest"]["containers"][0]["ports"] = [{"containerPort": "80x"}]
    body["desiredState"]["manifest"]["containers"][0]["memory"] = "lots"
    status = await api.fails(422, "POST", f"{P}/pods", json=body)
    fields = {c["field"] for c in status["details"]["causes"]}
    assert fields == {"desiredState.manifest.containers[0].ports[0].containerPort",
                      "desiredState.manifest.containers[0].memory"}
    bad_version = await api.fails(422, "POST", f"{P}/pods", json=pod(apiVersion="v9"))
    assert bad_version["details"]["causes"][0]["field"] == "apiVersion"


async def test_ids_that_would_escape_their_key_are_invalid(api: Api) -> None:
    for bad in ("a/b", "..", "."):
        status = await api.fails(422, "POST", f"{P}/pods", json=pod(bad))
        assert "id" in {c["field"] for c in status["details"]["causes"]}
    status = await api.fails(422, "POST", f"{P}/minions", json=minion("x/y"))
    assert status["details"]["causes"][0]["field"] == "id"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("GET", f"{P}/nope"),
        ("GET", f"{P}/nope/x"),
        ("PATCH", f"{P}/pods/x"),
        ("PUT", f"{P}/pods"),
        ("POST", f"{P}/pods/x"),
        ("GET", f"{P}/bindings"),
        ("GET", f"{P}/bindings/x"),
        ("PUT", f"{P}/bindings"),
        ("DELETE", f"{P}/bindings/x"),
        ("GET", f"{P}/watch/minions"),
        ("GET", f"{P}/watch/bindings"),
        ("GET", f"{P}/watch/nope"),
        ("POST", f"{P}/watch/pods"),
        ("GET", f"{P}/watch"),
    ],
)
async def test_unknown_paths_and_methods_are_plain_404(api: Api, method: str, path: str) -> None:
    response = await api.http.request(method, path)
    assert response.status_code == 404
    assert response.text == f'Not Found: "{path}"'


async def test_a_closed_store_is_503(api: Api) -> None:
    await api.store.aclose()
    for method, path, kwargs in [("GET", f"{P}/pods", {}), ("GET", f"{P}/pods/x", {}),
                                 ("POST", f"{P}/pods", {"json": pod()})]:
        status = await api.fails(503, method, path, **kwargs)
        assert status["reason"] == "ServiceUnavailable"
    response = await api.http.get("/healthz")
    assert response.text == "ok"


async def test_version_and_api_roots(api: Api) -> None:
    assert (await api.http.get("/api")).json() == {"versions": ["v1beta1"]}
    assert (await api.http.get("/version")).json()["major"] == "0"


# -- services -------------------------------------------------------------------------


async def test_service_crud_and_endpoints_go_with_it(api: Api) -> None:
    created = await api.ok("POST", f"{P}/services", json=service(port=8080))
    assert created["protocol"] == "TCP" and created["proxyPort"] == 0
    assert created["portalIP"].startswith("127.77.")
    await api.ok("POST", f"{P}/endpoints", json=endpoints("web", "127.0.0.1:9000"))
    updated = await api.ok("PUT", f"{P}/services/web",
                           json=dict(service(port=9090), resourceVersion=created[
                               "resourceVersion"]))
    assert updated["port"] == 9090 and updated["portalIP"] == created["portalIP"]
    await api.ok("DELETE", f"{P}/services/web")
    await api.fails(404, "GET", f"{P}/services/web")
    await api.fails(404, "GET", f"{P}/endpoints/web")


async def test_invalid_service_reports_every_cause(api: Api) -> None:
    status = await api.fails(422, "POST", f"{P}/services",
                             json={"kind": "Service", "id": "Bad_Id", "port": 0})
    assert [c["field"] for c in status["details"]["causes"]] == ["id", "port", "selector"]


# -- replication controllers ----------------------------------------------------------


async def test_controller_replicas_are_counted_on_read(api: Api) -> None:
    created = await api.ok("POST", f"{P}/replicationControllers", json=controller())
    assert created["currentState"] == {"replicas": 0}
    await api.ok("POST", f"{P}/pods", json=pod("a"))
    await api.ok("POST", f"{P}/pods", json=pod("b"))
    await api.ok("POST", f"{P}/pods", json=pod("c", labels={"app": "other"}))
    await api.ok("POST", f"{P}/pods?namespace=prod", json=pod("d"))
    got = await api.ok("GET", f"{P}/replicationControllers/web")
    assert got["currentState"] == {"replicas": 2}
    await api.ok("POST", f"{P}/replicationControllers?namespace=prod", json=controller())
    listed = await api.ok("GET", f"{P}/replicationControllers")
    assert [(i["namespace"], i["currentState"]["replicas"]) for i in listed["items"]] == [
        ("default", 2), ("prod", 1)]
    body = dict(controller(replicas=5), resourceVersion=got["resourceVersion"],
                currentState={"replicas": 99})
    updated = await api.ok("PUT", f"{P}/replicationControllers/web", json=body)
    assert updated["desiredState"]["replicas"] == 5
    assert updated["currentState"] == {"replicas": 2}
    await api.ok("DELETE", f"{P}/replicationControllers/web")
    await api.fails(404, "GET", f"{P}/replicationControllers/web")


async def test_controller_without_id_gets_one(api: Api) -> None:
    body = controller()
    del body["id"]
    created = await api.ok("POST", f"{P}/replicationControllers", json=body)
    assert UUID.fullmatch(created["id"])


async def test_invalid_controller(api: Api) -> None:
    body = controller(replicas=-1)
    body["desiredState"]["podTemplate"]["labels"] = {"app": "other"}
    status = await api.fails(422, "POST", f"{P}/replicationControllers", json=body)
    assert [c["field"] for c in status["details"]["causes"]] == [
        "desiredState.replicas", "desiredState.podTemplate.labels"]


# -- minions --------------------------------------------------------------------------


async def test_minions(api: Api) -> None:
    created = await api.ok("POST", f"{P}/minions", json=minion("node-a"))
    assert created["selfLink"] == f"{P}/minions/node-a" and "namespace" not in created
    await api.ok("POST", f"{P}/minions?namespace=prod", json=minion("node-b"))
    listed = await api.ok("GET", f"{P}/minions?labels=nothing=here&fields=x=y&namespace=z")
    assert listed["kind"] == "MinionList"
    assert [m["id"] for m in listed["items"]] == ["node-a", "node-b"]
    assert listed["minions"] == listed["items"]
    relabel = dict(minion("node-a", labels={"zone": "a"}),
                   resourceVersion=created["resourceVersion"])
    updated = await api.ok("PUT", f"{P}/minions/node-a", json=relabel)
    assert updated["labels"] == {"zone": "a"}
    moved = dict(minion("node-a", host_ip="127.0.0.9"),
                 resourceVersion=updated["resourceVersion"])
    status = await api.fails(422, "PUT", f"{P}/minions/node-a", json=moved)
    assert status["details"]["causes"][0]["field"] == "hostIP"
    await api.ok("DELETE", f"{P}/minions/node-a")
    await api.fails(404, "GET", f"{P}/minions/node-a")


# -- endpoints ------------------------------------------------------------------------


async def test_endpoints_are_upserts(api: Api) -> None:
    first = await api.ok("POST", f"{P}/endpoints", json=endpoints("web", "127.0.0.1:1"))
    second = await api.ok("POST", f"{P}/endpoints", json=endpoints("web", "127.0.0.1:2"))
    assert second["endpoints"] == ["127.0.0.1:2"] and second["uid"] == first["uid"]
    third = await api.ok("PUT", f"{P}/endpoints/web", json=endpoints("web", "127.0.0.1:3"))
    assert third["resourceVersion"] > second["resourceVersion"]
    fresh = await api.ok("PUT", f"{P}/endpoints/db", json=endpoints("db"))
    assert fresh["endpoints"] == []
    stale = dict(endpoints("web"), resourceVersion=first["resourceVersion"])
    await api.fails(409, "PUT", f"{P}/endpoints/web", json=stale)
    current = dict(endpoints("web", "127.0.0.1:4"), resourceVersion=third["resourceVersion"])
    assert (await api.ok("PUT", f"{P}/endpoints/web", json=current))["endpoints"] == [
        "127.0.0.1:4"]
    listed = await api.ok("GET", f"{P}/endpoints")
    assert [i["id"] for i in listed["items"]] == ["db", "web"]
    refused = await api.fails(400, "DELETE", f"{P}/endpoints/web")
    assert "read-only" in refused["message"]
    status = await api.fails(422, "POST", f"{P}/endpoints", json=endpoints("web", "nope"))
    assert status["details"]["causes"][0]["field"] == "endpoints[0]"


# -- events ---------------------------------------------------------------------------


async def test_events(api: Api) -> None:
    created = await api.ok("POST", f"{P}/events", json=event())
    assert UUID.fullmatch(created["id"]) and TIMESTAMP.fullmatch(created["timestamp"])
    await api.ok("POST", f"{P}/events", json=event("e2", reason="killed", name="web-2"))
    await api.ok("POST", f"{P}/events?namespace=prod", json=event("e3"))
    listed = await api.ok("GET", f"{P}/events?fields=involvedObject.name=web-2")
    assert [i["id"] for i in listed["items"]] == ["e2"]
    prod = await api.ok("GET", f"{P}/events?namespace=prod")
    assert [i["id"] for i in prod["items"]] == ["e3"]
    assert len((await api.ok("GET", f"{P}/events"))["items"]) == 3
    await api.fails(404, "GET", f"{P}/events/e3")  # it lives in prod
    assert (await api.ok("GET", f"{P}/events/e3?namespace=prod"))["reason"] == "started"
    await api.fails(404, "DELETE", f"{P}/events/e3")
    await api.ok("DELETE", f"{P}/events/e3?namespace=prod")
    await api.fails(404, "GET", f"{P}/events/e3?namespace=prod")
