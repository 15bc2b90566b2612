"""Validation rules (KUBERNETES-V05.md section 9): for each rule a failing and a passing
case, asserting the exact causes (field path and reason)."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from kubecore.api import (
    KINDS,
    Cause,
    InvalidObject,
    Minion,
    Pod,
    Service,
    apply_defaults,
    decode,
    ensure_valid,
    is_c_identifier,
    is_dns952_label,
    is_dns_label,
    is_dns_subdomain,
    validate,
    validate_minion_update,
    validate_pod_update,
    validate_service,
    validate_service_update,
)

REQUIRED = "FieldValueRequired"
INVALID = "FieldValueInvalid"
DUPLICATE = "FieldValueDuplicate"
NOT_SUPPORTED = "FieldValueNotSupported"
NOT_FOUND = "FieldValueNotFound"
FORBIDDEN = "FieldValueForbidden"

BASES: dict[str, dict[str, Any]] = {
    "Pod": {
        "kind": "Pod", "id": "web-1", "namespace": "default", "labels": {"app": "web"},
        "desiredState": {"manifest": {
            "version": "v1beta1", "id": "web-1",
            "volumes": [{"name": "data", "source": {"emptyDir": {}}}],
            "containers": [{
                "name": "www", "image": "nginx",
                "ports": [{"name": "http", "containerPort": 80, "hostPort": 8080}],
                "env": [{"name": "MODE", "value": "prod"}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                "lifecycle": {"postStart": {"exec": {"command": ["true"]}}},
            }],
        }},
    },
    "Service": {"kind": "Service", "id": "web", "port": 80, "selector": {"app": "web"},
                "labels": {"tier": "front"}},
    "ReplicationController": {
        "kind": "ReplicationController", "id": "web", "labels": {"app": "web"},
        "desiredState": {"replicas": 2, "replicaSelector": {"app": "web"}, "podTemplate": {
            "labels": {"app": "web", "track": "stable"},
            "desiredState": {"manifest": {"version": "v1beta1", "containers": [
                {"name": "www", "image": "nginx"}]}},
        }},
    },
    "Minion": {"kind": "Minion", "id": "node-a", "labels": {"zone": "a"}},
    "Endpoints": {"kind": "Endpoints", "id": "web", "endpoints": ["127.0.0.1:80"]},
    "Binding": {"kind": "Binding", "podID": "web-1", "host": "node-a"},
    "BoundPod": {"kind": "BoundPod", "id": "web-1", "namespace": "default",
                 "spec": {"containers": [{"name": "www", "image": "nginx"}]}},
    "BoundPods": {"kind": "BoundPods", "host": "node-a", "items": [
        {"id": "a", "namespace": "default", "spec": {"containers": [
            {"name": "c", "image": "busybox"}]}}]},
    "ContainerManifest": {"version": "v1beta1", "id": "m", "containers": [
        {"name": "c", "image": "busybox"}]},
}

M = "desiredState.manifest"
C0 = f"{M}.containers[0]"
T = "desiredState.podTemplate.desiredState.manifest"
DELETE = object()


def _steps(path: str) -> list[str | int]:
    return [int(p[1:-1]) if p.startswith("[") else p
            for p in re.findall(r"\[\d+\]|[^.\[\]]+", path)]


def patch(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set (or with DELETE remove) the value at a JSON field path."""

    def apply(wire: dict[str, Any]) -> None:
        *parents, last = _steps(path)
        node: Any = wire
        for step in parents:
            node = node[step]
        if value is DELETE:
            del node[last]
        elif isinstance(node, list) and last == len(node):
            node.append(copy.deepcopy(value))
        else:
            node[last] = copy.deepcopy(value)

    return apply


@dataclass
class Case:
    name: str
    kind: str
    changes: list[Callable[[dict[str, Any]], None]]
    expected: list[tuple[str, str]]
    allow_privileged: bool = False
    others: list[dict[str, Any]] = field(default_factory=list)


def case(name: str, kind: str, *changes: Callable[[dict[str, Any]], None],
         expect: list[tuple[str, str]] | None = None, **options: Any) -> Any:
    return pytest.param(Case(name, kind, list(changes), expect or [], **options), id=name)


SECOND_CONTAINER = {"name": "side", "image": "busybox"}

CASES = [
    # pod: id required, not format-checked by the apiserver
    case("pod id missing", "Pod", patch("id", ""), expect=[("id", REQUIRED)]),
    case("pod id free-form", "Pod", patch("id", "Web_1.x")),
    case("pod id with slash", "Pod", patch("id", "../minions/a"), expect=[("id", INVALID)]),
    case("pod id dot-dot", "Pod", patch("id", ".."), expect=[("id", INVALID)]),
    # namespace is a DNS subdomain
    case("namespace not subdomain", "Pod", patch("namespace", "Team_A"),
         expect=[("namespace", INVALID)]),
    case("namespace subdomain", "Pod", patch("namespace", "team-a.prod")),
    # manifest version required and supported
    case("version missing", "Pod", patch(f"{M}.version", DELETE),
         expect=[(f"{M}.version", REQUIRED)]),
    case("version unsupported", "Pod", patch(f"{M}.version", "v2"),
         expect=[(f"{M}.version", NOT_SUPPORTED)]),
    case("version v1beta2", "Pod", patch(f"{M}.version", "v1beta2")),
    # container names: DNS labels, unique
    case("container name missing", "Pod", patch(f"{C0}.name", ""),
         expect=[(f"{C0}.name", REQUIRED)]),
    case("container name not label", "Pod", patch(f"{C0}.name", "Www"),
         expect=[(f"{C0}.name", INVALID)]),
    case("container name too long", "Pod", patch(f"{C0}.name", "a" * 64),
         expect=[(f"{C0}.name", INVALID)]),
    case("container name 63", "Pod", patch(f"{C0}.name", "a" * 63)),
    case("container names duplicate", "Pod",
         patch(f"{M}.containers[1]", {**SECOND_CONTAINER, "name": "www"}),
         expect=[(f"{M}.containers[1].name", DUPLICATE)]),
    case("container names unique", "Pod", patch(f"{M}.containers[1]", SECOND_CONTAINER)),
    # image required
    case("image missing", "Pod", patch(f"{C0}.image", DELETE),
         expect=[(f"{C0}.image", REQUIRED)]),
    case("image given", "Pod", patch(f"{C0}.image", "registry:5000/nginx:1.7")),
    # containerPort required, 1-65535
    case("containerPort missing", "Pod", patch(f"{C0}.ports[0].containerPort", DELETE),
         expect=[(f"{C0}.ports[0].containerPort", REQUIRED)]),
    case("containerPort too big", "Pod", patch(f"{C0}.ports[0].containerPort", 65536),
         expect=[(f"{C0}.ports[0].containerPort", INVALID)]),
    case("containerPort max", "Pod", patch(f"{C0}.ports[0].containerPort", 65535)),
    # hostPort valid
    case("hostPort negative", "Pod", patch(f"{C0}.ports[0].hostPort", -1),
         expect=[(f"{C0}.ports[0].hostPort", INVALID)]),
    case("hostPort too big", "Pod", patch(f"{C0}.ports[0].hostPort", 70000),
         expect=[(f"{C0}.ports[0].hostPort", INVALID)]),
    case("hostPort zero", "Pod", patch(f"{C0}.ports[0].hostPort", 0)),
    # hostPort unique within the pod
    case("hostPort duplicate", "Pod", patch(f"{M}.containers[1]", {
        **SECOND_CONTAINER, "ports": [{"containerPort": 81, "hostPort": 8080}]}),
        expect=[(f"{M}.containers[1].ports[0].hostPort", DUPLICATE)]),
    case("hostPort distinct", "Pod", patch(f"{M}.containers[1]", {
        **SECOND_CONTAINER, "ports": [{"containerPort": 80, "hostPort": 8081}]})),
    # port names: DNS labels, unique within the container
    case("port name not label", "Pod", patch(f"{C0}.ports[0].name", "HTTP"),
         expect=[(f"{C0}.ports[0].name", INVALID)]),
    case("port names duplicate", "Pod",
         patch(f"{C0}.ports[1]", {"name": "http", "containerPort": 81}),
         expect=[(f"{C0}.ports[1].name", DUPLICATE)]),
    case("port names unique", "Pod",
         patch(f"{C0}.ports[1]", {"name": "admin", "containerPort": 81})),
    # protocol TCP or UDP (any case), defaulted
    case("protocol unsupported", "Pod", patch(f"{C0}.ports[0].protocol", "SCTP"),
         expect=[(f"{C0}.ports[0].protocol", NOT_SUPPORTED)]),
    case("protocol udp", "Pod", patch(f"{C0}.ports[0].protocol", "udp")),
    # env names: C identifiers
    case("env name missing", "Pod", patch(f"{C0}.env[0].name", DELETE),
         expect=[(f"{C0}.env[0].name", REQUIRED)]),
    case("env name not identifier", "Pod", patch(f"{C0}.env[0].name", "1-MODE"),
         expect=[(f"{C0}.env[0].name", INVALID)]),
    case("env name identifier", "Pod", patch(f"{C0}.env[0].name", "_Mode_2")),
    case("env deprecated key", "Pod", patch(f"{C0}.env[0]", {"key": "MODE", "value": "x"})),
    # volume names: DNS labels, unique
    case("volume name missing", "Pod", patch(f"{M}.volumes[0].name", ""), patch(
        f"{C0}.volumeMounts", DELETE), expect=[(f"{M}.volumes[0].name", REQUIRED)]),
    case("volume name not label", "Pod", patch(f"{M}.volumes[0].name", "Data"), patch(
        f"{C0}.volumeMounts", DELETE), expect=[(f"{M}.volumes[0].name", INVALID)]),
    case("volume names duplicate", "Pod", patch(f"{M}.volumes[1]", {"name": "data"}),
         expect=[(f"{M}.volumes[1].name", DUPLICATE)]),
    case("volume names unique", "Pod", patch(f"{M}.volumes[1]", {"name": "cache"})),
    # exactly one volume source (gitRepo counts), none means emptyDir
    case("two sources", "Pod", patch(f"{M}.volumes[0].source.hostDir", {"path": "/x"}),
         expect=[(f"{M}.volumes[0].source", INVALID)]),
    case("empty source", "Pod", patch(f"{M}.volumes[0].source", {}),
         expect=[(f"{M}.volumes[0].source", INVALID)]),
    case("no source", "Pod", patch(f"{M}.volumes[0].source", DELETE)),
    case("gitRepo source", "Pod", patch(f"{M}.volumes[0].source", {
        "gitRepo": {"repository": "https://example.invalid/r.git"}})),
    case("gitRepo without repository", "Pod", patch(f"{M}.volumes[0].source", {
        "gitRepo": {"revision": "abc"}}),
        expect=[(f"{M}.volumes[0].source.gitRepo.repository", REQUIRED)]),
    case("hostDir without path", "Pod", patch(f"{M}.volumes[0].source", {"hostDir": {}}),
         expect=[(f"{M}.volumes[0].source.hostDir.path", REQUIRED)]),
    case("hostDir with path", "Pod", patch(f"{M}.volumes[0].source", {
        "hostDir": {"path": "/var/log"}})),
    case("persistentDisk incomplete", "Pod", patch(f"{M}.volumes[0].source", {
        "persistentDisk": {"partition": 300}}), expect=[
        (f"{M}.volumes[0].source.persistentDisk.pdName", REQUIRED),
        (f"{M}.volumes[0].source.persistentDisk.fsType", REQUIRED),
        (f"{M}.volumes[0].source.persistentDisk.partition", INVALID)]),
    case("persistentDisk complete", "Pod", patch(f"{M}.volumes[0].source", {
        "persistentDisk": {"pdName": "disk-1", "fsType": "ext4", "partition": 1}})),
    # mounts refer to volumes and need a mountPath
    case("mount of unknown volume", "Pod", patch(f"{C0}.volumeMounts[0].name", "nope"),
         expect=[(f"{C0}.volumeMounts[0].name", NOT_FOUND)]),
    case("mount without name", "Pod", patch(f"{C0}.volumeMounts[0].name", DELETE),
         expect=[(f"{C0}.volumeMounts[0].name", REQUIRED)]),
    case("mount without path", "Pod", patch(f"{C0}.volumeMounts[0].mountPath", DELETE),
         expect=[(f"{C0}.volumeMounts[0].mountPath", REQUIRED)]),
    case("mount with deprecated path", "Pod", patch(f"{C0}.volumeMounts[0]", {
        "name": "data", "path": "/data"})),
    # privileged only when allowed
    case("privileged refused", "Pod", patch(f"{C0}.privileged", True),
         expect=[(f"{C0}.privileged", FORBIDDEN)]),
    case("privileged allowed", "Pod", patch(f"{C0}.privileged", True), allow_privileged=True),
    # lifecycle handlers need exec.command or httpGet.path
    case("handler empty", "Pod", patch(f"{C0}.lifecycle.postStart", {}),
         expect=[(f"{C0}.lifecycle.postStart", INVALID)]),
    case("handler exec without command", "Pod", patch(f"{C0}.lifecycle.preStop", {
        "exec": {"command": []}}), expect=[(f"{C0}.lifecycle.preStop.exec.command", REQUIRED)]),
    case("handler httpGet without path", "Pod", patch(f"{C0}.lifecycle.postStart", {
        "httpGet": {"port": 80}}), expect=[(f"{C0}.lifecycle.postStart.httpGet.path", REQUIRED)]),
    case("handler httpGet with path", "Pod", patch(f"{C0}.lifecycle.postStart", {
        "httpGet": {"path": "/started", "port": "http"}})),
    # restart policy: at most one
    case("two restart policies", "Pod", patch(f"{M}.restartPolicy", {
        "always": {}, "never": {}}), expect=[(f"{M}.restartPolicy", INVALID)]),
    case("restart policy onFailure", "Pod", patch(f"{M}.restartPolicy", {"onFailure": {}})),
    # label keys are DNS-952 labels; values are free
    case("label key not 952", "Pod", patch("labels", {"App": "x", "ok": "y"}),
         expect=[("labels", NOT_SUPPORTED)]),
    case("label key too long", "Pod", patch("labels", {"a" * 25: "x"}),
         expect=[("labels", NOT_SUPPORTED)]),
    case("label value free", "Pod", patch("labels", {"app": "Any value, at all!"})),
    case("node selector key not 952", "Pod", patch("nodeSelector", {"1zone": "a"}),
         expect=[("nodeSelector", NOT_SUPPORTED)]),
    case("every cause is reported", "Pod", patch(f"{C0}.image", ""),
         patch(f"{C0}.name", "X"), patch("id", ""), expect=[
             ("id", REQUIRED), (f"{C0}.name", INVALID), (f"{C0}.image", REQUIRED)]),
    # service: id a DNS-952 label
    case("service id missing", "Service", patch("id", DELETE), expect=[("id", REQUIRED)]),
    case("service id not 952", "Service", patch("id", "1web"), expect=[("id", INVALID)]),
    case("service id 952", "Service", patch("id", "web-frontend-2")),
    case("service namespace", "Service", patch("namespace", "A"),
         expect=[("namespace", INVALID)]),
    # service port valid
    case("service port zero", "Service", patch("port", 0), expect=[("port", INVALID)]),
    case("service port too big", "Service", patch("port", 65536), expect=[("port", INVALID)]),
    case("service port max", "Service", patch("port", 65535)),
    case("service protocol", "Service", patch("protocol", "ICMP"),
         expect=[("protocol", NOT_SUPPORTED)]),
    case("service protocol udp", "Service", patch("protocol", "UDP")),
    # service selector non-empty, keys 952
    case("service selector missing", "Service", patch("selector", DELETE),
         expect=[("selector", REQUIRED)]),
    case("service selector key", "Service", patch("selector", {"App": "web"}),
         expect=[("selector", NOT_SUPPORTED)]),
    case("service label key", "Service", patch("labels", {"Tier": "x"}),
         expect=[("labels", NOT_SUPPORTED)]),
    case("service portalIP", "Service", patch("portalIP", "127.77.0.300"),
         expect=[("portalIP", INVALID)]),
    case("service portalIP ok", "Service", patch("portalIP", "127.77.0.17")),
    case("service containerPort", "Service", patch("containerPort", 70000),
         expect=[("containerPort", INVALID)]),
    case("service containerPort name", "Service", patch("containerPort", "http")),
    # no other external load balancer on the same port
    case("external LB port taken", "Service", patch("createExternalLoadBalancer", True),
         others=[{"id": "other", "port": 80, "createExternalLoadBalancer": True}],
         expect=[("port", DUPLICATE)]),
    case("external LB port free", "Service", patch("createExternalLoadBalancer", True),
         others=[{"id": "other", "port": 80}, {"id": "web", "port": 80,
                                                "createExternalLoadBalancer": True}]),
    # replication controller
    case("rc id missing", "ReplicationController", patch("id", ""), expect=[("id", REQUIRED)]),
    case("rc selector missing", "ReplicationController",
         patch("desiredState.replicaSelector", {}),
         expect=[("desiredState.replicaSelector", REQUIRED)]),
    case("rc replicas negative", "ReplicationController", patch("desiredState.replicas", -1),
         expect=[("desiredState.replicas", INVALID)]),
    case("rc replicas zero", "ReplicationController", patch("desiredState.replicas", 0)),
    case("rc template labels do not match", "ReplicationController",
         patch("desiredState.podTemplate.labels", {"app": "db"}),
         expect=[("desiredState.podTemplate.labels", INVALID)]),
    case("rc template label key", "ReplicationController",
         patch("desiredState.podTemplate.labels.Track", "x"),
         expect=[("desiredState.podTemplate.labels", NOT_SUPPORTED)]),
    case("rc template container", "ReplicationController",
         patch(f"{T}.containers[0].image", ""), expect=[(f"{T}.containers[0].image", REQUIRED)]),
    case("rc template without version", "ReplicationController", patch(f"{T}.version", DELETE)),
    case("rc template writable disk", "ReplicationController", patch(f"{T}.volumes", [
        {"name": "pd", "source": {"persistentDisk": {"pdName": "d", "fsType": "ext4"}}}]),
        expect=[(f"{T}.volumes[0].source.persistentDisk.readOnly", INVALID)]),
    case("rc template read-only disk", "ReplicationController", patch(f"{T}.volumes", [
        {"name": "pd", "source": {"persistentDisk": {"pdName": "d", "fsType": "ext4",
                                                     "readOnly": True}}}])),
    # minion
    case("minion id missing", "Minion", patch("id", DELETE), expect=[("id", REQUIRED)]),
    case("minion label key", "Minion", patch("labels", {"Zone": "a"}),
         expect=[("labels", NOT_SUPPORTED)]),
    # endpoints
    case("endpoints id missing", "Endpoints", patch("id", ""), expect=[("id", REQUIRED)]),
    case("endpoint not host:port", "Endpoints", patch("endpoints", ["127.0.0.1:80", "x"]),
         expect=[("endpoints[1]", INVALID)]),
    case("endpoint bad port", "Endpoints", patch("endpoints", ["127.77.0.1:0"]),
         expect=[("endpoints[0]", INVALID)]),
    case("endpoint huge port", "Endpoints", patch("endpoints", ["h:" + "9" * 5000]),
         expect=[("endpoints[0]", INVALID)]),
    case("endpoint ipv6", "Endpoints", patch("endpoints", ["[::1]:8080"])),
    # binding
    case("binding without pod", "Binding", patch("podID", ""), expect=[("podID", REQUIRED)]),
    case("binding without host", "Binding", patch("host", DELETE), expect=[("host", REQUIRED)]),
    # bound pods: ids and namespaces are DNS subdomains, spec as a manifest
    case("bound pod id not subdomain", "BoundPod", patch("id", "Web_1"),
         expect=[("id", INVALID)]),
    case("bound pod namespace missing", "BoundPod", patch("namespace", ""),
         expect=[]),  # defaulted to "default" before validation
    case("bound pod container", "BoundPod", patch("spec.containers[0].name", "A"),
         expect=[("spec.containers[0].name", INVALID)]),
    case("bound pods host missing", "BoundPods", patch("host", ""), expect=[("host", REQUIRED)]),
    case("bound pods duplicate", "BoundPods", patch("items[1]", {
        "id": "a", "namespace": "default", "spec": {}}), expect=[("items[1].id", DUPLICATE)]),
    case("bound pods item", "BoundPods", patch("items[0].spec.containers[0].image", ""),
         expect=[("items[0].spec.containers[0].image", REQUIRED)]),
    # bare manifests (kubelet files)
    case("manifest container", "ContainerManifest", patch("containers[0].image", ""),
         expect=[("containers[0].image", REQUIRED)]),
    case("manifest version", "ContainerManifest", patch("version", DELETE),
         expect=[("version", REQUIRED)]),
]


def _build(kind: str, changes: list[Callable[[dict[str, Any]], None]]) -> Any:
    wire = copy.deepcopy(BASES[kind])
    for change in changes:
        change(wire)
    return apply_defaults(decode(json.dumps(wire), kind=KINDS[kind]))


@pytest.mark.parametrize("kind", sorted(BASES))
def test_bases_are_valid(kind: str) -> None:
    assert validate(_build(kind, [])) == []


@pytest.mark.parametrize("rule", CASES)
def test_rule(rule: Case) -> None:
    obj = _build(rule.kind, rule.changes)
    if rule.others:
        others = [Service.model_validate(o) for o in rule.others]
        causes = validate_service(obj, others=others)
    else:
        causes = validate(obj, allow_privileged=rule.allow_privileged)
    assert [(c.field, c.reason) for c in causes] == rule.expected
    for cause in causes:
        assert cause.message


def test_namespace_must_be_set_before_validation() -> None:
    pod = decode(json.dumps(BASES["Pod"] | {"namespace": ""}), kind=Pod)
    assert [(c.field, c.reason) for c in validate(pod)] == [("namespace", REQUIRED)]


def test_list_items_are_validated_with_item_paths() -> None:
    pods = decode(json.dumps({"kind": "PodList", "items": [
        BASES["Pod"], {**BASES["Pod"], "id": ""}]}))
    assert [(c.field, c.reason) for c in validate(apply_defaults(pods))] == [
        ("items[1].id", REQUIRED)]


def test_ensure_valid_raises_with_every_cause() -> None:
    pod = _build("Pod", [patch("id", ""), patch(f"{C0}.image", "")])
    with pytest.raises(InvalidObject) as caught:
        ensure_valid(pod)
    assert (caught.value.kind, len(caught.value.causes)) == ("Pod", 2)
    ensure_valid(_build("Pod", []))


def test_validation_does_not_change_the_object() -> None:
    pod = decode(json.dumps(BASES["Pod"]), kind=Pod)
    before = pod.model_copy(deep=True)
    validate(pod)
    assert pod == before and pod.model_fields_set == before.model_fields_set


# ---------------------------------------------------------------------------- name checks


@pytest.mark.parametrize(
    ("check", "good", "bad"),
    [
        (is_dns_label, ["a", "0", "a-b", "a" * 63], ["", "A", "-a", "a-", "a.b", "a" * 64,
                                                       "a\n", "é"]),
        (is_dns_subdomain, ["a", "a.b-c.d", ".".join(["a" * 63] * 3)],
         ["", "a..b", ".a", "a.", "A.b", "a" * 254, "a.b\n"]),
        (is_dns952_label, ["a", "a-1", "a" * 24], ["", "1a", "a-", "a_b", "a" * 25, "A"]),
        (is_c_identifier, ["a", "_", "A_1", "x" * 300], ["", "1a", "a-b", "a b", "a\n"]),
    ],
)
def test_name_checks(check: Callable[[str], bool], good: list[str], bad: list[str]) -> None:
    assert all(check(value) for value in good)
    assert not any(check(value) for value in bad)


# ---------------------------------------------------------------------------- updates


def _pod(**changes: Any) -> Pod:
    wire = copy.deepcopy(BASES["Pod"])
    for path, value in changes.items():
        patch(path.replace("__", "."), value)(wire)
    return decode(json.dumps(wire), kind=Pod)


SCHEDULED = {"desiredState__host": "node-a"}


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(_pod(**SCHEDULED), _pod(labels={"app": "web", "v": "2"}), [],
                     id="labels may change"),
        pytest.param(_pod(**SCHEDULED), _pod(**{f"{C0}.image".replace(".", "__"): "nginx:2"}),
                     [], id="images may change"),
        pytest.param(_pod(**SCHEDULED), _pod(**{f"{C0}.cpu".replace(".", "__"): 500}),
                     [(f"{C0}", INVALID)], id="other container fields may not"),
        pytest.param(_pod(**SCHEDULED), _pod(**{f"{M}.restartPolicy".replace(".", "__"): {
            "never": {}}}), [(f"{M}.restartPolicy", INVALID)], id="restart policy may not"),
        pytest.param(_pod(**SCHEDULED), _pod(**{f"{M}.containers[1]".replace(".", "__"): {
            "name": "b", "image": "b"}}), [(f"{M}.containers", INVALID)],
                     id="container count may not"),
        pytest.param(_pod(), _pod(**{f"{C0}.cpu".replace(".", "__"): 500}), [],
                     id="unscheduled pods may change"),
        pytest.param(_pod(), _pod(id="web-2"), [("id", INVALID)], id="id may not change"),
        pytest.param(_pod(**SCHEDULED), _pod(**{f"{M}.id".replace(".", "__"): DELETE}), [],
                     id="omitted server-set manifest id is kept"),
    ],
)
def test_pod_update(old: Pod, new: Pod, expected: list[tuple[str, str]]) -> None:
    assert [(c.field, c.reason) for c in validate_pod_update(old, new)] == expected


def test_pod_update_ignores_omitted_defaults() -> None:
    old = apply_defaults(_pod(**SCHEDULED))
    assert validate_pod_update(old, _pod()) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [({"labels": {"zone": "b"}}, []), ({"hostIP": "127.77.0.2"}, [("hostIP", INVALID)]),
     ({"id": "node-b"}, [("id", INVALID)]),
     ({"resources": {"capacity": {"cpu": 2}}}, [("resources", INVALID)])],
)
def test_minion_update(change: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    old = Minion.model_validate(BASES["Minion"])
    new = Minion.model_validate(BASES["Minion"] | change)
    assert [(c.field, c.reason) for c in validate_minion_update(old, new)] == expected


@pytest.mark.parametrize(
    ("new_ip", "expected"),
    [("127.77.0.17", []), ("", []), ("127.77.0.18", [("portalIP", INVALID)])],
)
def test_service_portal_ip_is_immutable(new_ip: str, expected: list[tuple[str, str]]) -> None:
    old = Service.model_validate(BASES["Service"] | {"portalIP": "127.77.0.17"})
    new = Service.model_validate(BASES["Service"] | {"portalIP": new_ip})
    assert [(c.field, c.reason) for c in validate_service_update(old, new)] == expected


def test_cause_str_is_field_and_message() -> None:
    assert str(Cause(REQUIRED, "required value", "a.b")) == "a.b: required value"
    assert str(Cause(INVALID, "bad input")) == "bad input"
