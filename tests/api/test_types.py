"""Wire format of the v1beta1 objects: names, round trips, deprecated spellings, nulls."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from kubecore.api import (
    KINDS,
    LIST_ITEM_KINDS,
    Container,
    ContainerManifest,
    EnvVar,
    InvalidObject,
    Minion,
    MinionList,
    Pod,
    PodState,
    Port,
    Service,
    Status,
    VolumeMount,
    apply_defaults,
    decode,
    encode_json,
    encode_yaml,
    format_time,
    parse_time,
    to_dict,
    with_kind,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "manifests"

# The examples of KUBERNETES-V05.md section 1, verbatim.
SECTION_1_EXAMPLES = {
    "Pod": """{"kind":"Pod","apiVersion":"v1beta1","id":"web-1","namespace":"default",
 "labels":{"app":"web"},
 "desiredState":{"manifest":{"version":"v1beta1","id":"web-1","containers":[{"name":"www",
   "image":"nginx","ports":[{"containerPort":80,"hostPort":8081}],"cpu":100,"memory":67108864}]}},
 "currentState":{"status":"Running","host":"node-a","podIP":"127.0.0.4",
   "info":{"www":{"state":{"running":{"startedAt":"2014-11-20T10:00:00Z"}},"restartCount":0,
   "image":"nginx"}}}}""",
    "Service": """{"kind":"Service","apiVersion":"v1beta1","id":"web","port":80,
 "selector":{"app":"web"},"containerPort":80,"portalIP":"127.77.0.17"}""",
    "ReplicationController": """{"kind":"ReplicationController","apiVersion":"v1beta1",
 "id":"web","labels":{"app":"web"},
 "desiredState":{"replicas":2,"replicaSelector":{"app":"web"},
  "podTemplate":{"labels":{"app":"web"},"desiredState":{"manifest":{"version":"v1beta1",
  "containers":[{"name":"www","image":"nginx"}]}}}}}""",
    "Endpoints": """{"kind":"Endpoints","id":"web","endpoints":["127.0.0.4:80"]}""",
    "Binding": """{"kind":"Binding","podID":"web-1","host":"node-a"}""",
    "Status": """{"kind":"Status","status":"Failure","message":"pod \\"x\\" not found",
 "reason":"NotFound","details":{"id":"x","kind":"pod"},"code":404}""",
    "BoundPods": """{"kind":"BoundPods","host":"node-a","items":[{"id":"web-1",
 "uid":"8c0d4f5e","namespace":"default","creationTimestamp":"2014-11-20T10:00:00Z",
 "selfLink":"/api/v1beta1/boundPods/web-1","spec":{"volumes":[],"containers":[
 {"name":"www","image":"nginx"}],"restartPolicy":{"always":{}}}}]}""",
    "Event": """{"kind":"Event","id":"e1","involvedObject":{"kind":"Pod","name":"web-1",
 "namespace":"default"},"status":"running","reason":"started","message":"ok",
 "source":"kubelet","timestamp":"2014-11-20T10:00:01Z"}""",
}


@pytest.mark.parametrize("kind", sorted(SECTION_1_EXAMPLES))
def test_section_1_examples_round_trip(kind: str) -> None:
    text = SECTION_1_EXAMPLES[kind]
    obj = decode(text)
    assert type(obj) is KINDS[kind]
    assert json.loads(encode_json(obj)) == json.loads(text)
    assert yaml.safe_load(encode_yaml(obj)) == json.loads(text)
    assert decode(encode_yaml(obj)) == obj


def test_pod_example_attributes() -> None:
    pod = decode(SECTION_1_EXAMPLES["Pod"], kind=Pod)
    container = pod.desired_state.manifest.containers[0]
    assert (container.name, container.image, container.cpu, container.memory) == (
        "www", "nginx", 100, 67108864)
    assert container.ports[0] == Port(container_port=80, host_port=8081)
    assert pod.current_state.pod_ip == "127.0.0.4"
    running = pod.current_state.info["www"].state.running
    assert running is not None
    assert running.started_at == datetime(2014, 11, 20, 10, tzinfo=UTC)


@pytest.mark.parametrize("path", sorted((DATA / "valid").iterdir()), ids=lambda p: p.name)
def test_example_files_round_trip(path: Path) -> None:
    from kubecore.api import decode_documents

    kind = ContainerManifest if path.name.startswith("kubelet-") else None  # no kind field
    objects = decode_documents(path.read_bytes(), path.name, kind=kind)
    assert objects
    for obj in objects:
        assert decode(encode_json(obj), kind=type(obj)) == obj
        assert decode(encode_yaml(obj), kind=type(obj)) == obj


@pytest.mark.parametrize(
    ("model", "attribute", "json_name"),
    [
        (PodState, "host_ip", "hostIP"),
        (PodState, "pod_ip", "podIP"),
        (Service, "portal_ip", "portalIP"),
        (Service, "public_ips", "publicIPs"),
        (Service, "create_external_load_balancer", "createExternalLoadBalancer"),
        (Pod, "api_version", "apiVersion"),
        (Pod, "creation_timestamp", "creationTimestamp"),
        (Pod, "self_link", "selfLink"),
        (Pod, "resource_version", "resourceVersion"),
        (Pod, "desired_state", "desiredState"),
        (Port, "host_ip", "hostIP"),
        (Container, "image_pull_policy", "imagePullPolicy"),
        (ContainerManifest, "restart_policy", "restartPolicy"),
    ],
)
def test_json_names(model: type[Any], attribute: str, json_name: str) -> None:
    assert model.model_fields[attribute].alias == json_name


def test_binding_pod_id_is_podID() -> None:
    assert to_dict(decode('{"kind":"Binding","podID":"p","host":"h"}')) == {
        "kind": "Binding", "podID": "p", "host": "h"}


def test_attributes_or_json_names_build_the_same_object() -> None:
    by_name = PodState(host_ip="1.2.3.4", pod_ip="5.6.7.8")
    by_alias = PodState.model_validate({"hostIP": "1.2.3.4", "podIP": "5.6.7.8"})
    assert by_name == by_alias
    assert to_dict(by_name) == {"hostIP": "1.2.3.4", "podIP": "5.6.7.8"}


def test_resource_version_is_a_number() -> None:
    pod = decode('{"kind":"Pod","resourceVersion":42}', kind=Pod)
    assert pod.resource_version == 42
    assert json.loads(encode_json(pod))["resourceVersion"] == 42
    with pytest.raises(InvalidObject) as caught:
        decode('{"kind":"Pod","resourceVersion":"42"}')
    assert [c.field for c in caught.value.causes] == ["resourceVersion"]


def test_unknown_fields_are_ignored() -> None:
    pod = decode('{"kind":"Pod","id":"a","bogus":{"x":[1]},"desiredState":{"cpuSet":"0-3"}}')
    assert to_dict(pod) == {"kind": "Pod", "id": "a", "desiredState": {}}


def test_only_given_fields_are_encoded() -> None:
    pod = decode('{"kind":"Pod","id":"a","desiredState":{"manifest":{"containers":'
                 '[{"name":"c"}]}}}', kind=Pod)
    assert to_dict(pod) == {"kind": "Pod", "id": "a",
                            "desiredState": {"manifest": {"containers": [{"name": "c"}]}}}
    pod.desired_state.host = "node-a"  # an assignment counts as given
    assert to_dict(pod)["desiredState"]["host"] == "node-a"


def test_deprecated_env_key_reads_as_name_and_round_trips() -> None:
    env = EnvVar.model_validate({"key": "FOO", "value": "1"})
    assert env.name == "FOO"
    assert to_dict(env) == {"key": "FOO", "value": "1"}
    assert EnvVar.model_validate({"name": "A", "key": "B"}).name == "A"


def test_deprecated_mount_path_reads_as_mount_path_and_round_trips() -> None:
    mount = VolumeMount.model_validate({"name": "v", "path": "/data"})
    assert mount.mount_path == "/data"
    assert to_dict(mount) == {"name": "v", "path": "/data"}
    assert VolumeMount.model_validate({"mountPath": "/a", "path": "/b"}).mount_path == "/a"


def test_minion_list_reads_deprecated_minions_as_items() -> None:
    listed = decode('{"kind":"MinionList","minions":[{"id":"a"}]}', kind=MinionList)
    assert [m.id for m in listed.items] == ["a"]
    assert to_dict(listed) == {"kind": "MinionList", "minions": [{"id": "a"}]}
    both = MinionList(items=[Minion(id="b")], minions=[Minion(id="c")])
    assert [m.id for m in both.items] == ["b"]


def test_null_means_go_zero_value() -> None:
    pod = decode('{"kind":"Pod","id":null,"labels":null,"creationTimestamp":null,'
                 '"desiredState":{"manifest":{"volumes":null,"containers":[{"name":"c",'
                 '"env":[{"name":"A","value":null}],"cpu":null}]}}}', kind=Pod)
    assert pod.id == "" and pod.labels == {} and pod.creation_timestamp is None
    container = pod.desired_state.manifest.containers[0]
    assert container.cpu == 0 and container.env[0].value == ""
    assert pod.desired_state.manifest.volumes == []
    # a pointer field keeps null as None, and encodes it back as null
    assert to_dict(decode('{"kind":"Status","details":null}'))["details"] is None


NULLS = ('{"kind":"Pod","id":"null","labels":null,"uid":null,"desiredState":{"manifest":'
         '{"containers":[{"name":"c","env":[{"name":"A","value":null}],"ports":null,'
         '"memory":null}],"restartPolicy":null},"info":{"c":{"state":null,'
         '"restartCount":null,"image":"x"}}},"currentState":null}')


def test_null_is_the_zero_value_from_json_text_and_from_plain_data_alike() -> None:
    data = json.loads(NULLS)
    from_text = Pod.model_validate_json(NULLS)
    assert from_text == Pod.model_validate(data)
    assert from_text.id == "null" and from_text.uid == "" and from_text.labels == {}
    container = from_text.desired_state.manifest.containers[0]
    assert (container.env[0].value, container.ports, container.memory) == ("", [], 0)
    status = from_text.desired_state.info["c"]
    assert status.restart_count == 0 and status.image == "x"
    assert status.state.running is None  # a pointer inside a zero struct stays None
    assert data == json.loads(NULLS)  # the plain data was not changed in place
    # Text without a null takes pydantic's path alone, with the same rules for numbers.
    assert Pod.model_validate_json('{"id":5,"labels":{"a":1.5}}').labels == {"a": "1.5"}
    with pytest.raises(ValidationError, match="string"):
        Pod.model_validate_json('{"id":true}')
    with pytest.raises(ValidationError, match=r"(?i)json"):  # not a JSONDecodeError
        Pod.model_validate_json('{"id":null')


def test_numbers_in_string_fields_become_text() -> None:
    manifest = decode("version: v1beta1\ncontainers:\n- name: a\n  command: [sleep, 10, 1.5]\n",
                      kind=ContainerManifest)
    assert manifest.containers[0].command == ["sleep", "10", "1.5"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2014-11-20T10:00:00Z", datetime(2014, 11, 20, 10, tzinfo=UTC)),
        ("2014-11-20t10:00:00.5z", datetime(2014, 11, 20, 10, 0, 0, 500000, tzinfo=UTC)),
        ("2014-11-20T10:00:00.123456789+02:00",
         datetime(2014, 11, 20, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    assert parse_time(text) == expected
    assert parse_time(format_time(expected)) == expected


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2014, 11, 20, 10, tzinfo=UTC), "2014-11-20T10:00:00Z"),
        (datetime(2014, 11, 20, 10, 0, 0, 250000, tzinfo=UTC), "2014-11-20T10:00:00.25Z"),
        (datetime(2014, 11, 20, 10, tzinfo=timezone(-timedelta(hours=5, minutes=30))),
         "2014-11-20T10:00:00-05:30"),
        (None, None),
    ],
)
def test_format_time(value: datetime | None, text: str | None) -> None:
    assert format_time(value) == text


@pytest.mark.parametrize("text", ["yesterday", "2014-11-20", "2014-11-20T10:00:00",
                                  "2014-02-30T10:00:00Z", "2014-11-20T25:00:00Z"])
def test_bad_timestamps_are_invalid(text: str) -> None:
    with pytest.raises(InvalidObject) as caught:
        decode(json.dumps({"kind": "Pod", "creationTimestamp": text}))
    assert [c.field for c in caught.value.causes] == ["creationTimestamp"]


def test_kinds_registry_is_complete() -> None:
    assert set(KINDS) == {
        "Pod", "PodList", "ContainerManifest", "ContainerManifestList",
        "ReplicationController", "ReplicationControllerList", "Service", "ServiceList",
        "Endpoints", "EndpointsList", "Minion", "MinionList", "Binding", "BoundPod",
        "BoundPods", "Status", "Event", "EventList"}
    for name, model in KINDS.items():
        assert name == model.KIND
    for list_kind, item in LIST_ITEM_KINDS.items():
        assert list_kind in KINDS and item in KINDS.values()


def test_with_kind_sets_kind_and_api_version() -> None:
    stamped = with_kind(Service(id="web"))
    assert to_dict(stamped) == {"kind": "Service", "apiVersion": "v1beta1", "id": "web"}


def test_capacity_is_int_or_string() -> None:
    minion = decode('{"kind":"Minion","id":"n","resources":{"capacity":{"cpu":1000,'
                    '"memory":"3Gi"}}}', kind=Minion)
    assert minion.resources.capacity == {"cpu": 1000, "memory": "3Gi"}
    with pytest.raises(InvalidObject):
        decode('{"kind":"Minion","resources":{"capacity":{"cpu":true}}}')


def test_apply_defaults_fills_v05_defaults_and_leaves_the_argument_alone() -> None:
    pod = decode('{"kind":"Pod","id":"p","desiredState":{"manifest":{"version":"v1beta1",'
                 '"volumes":[{"name":"v"}],"containers":[{"name":"c","image":"i",'
                 '"ports":[{"containerPort":80}]}]}}}', kind=Pod)
    before = to_dict(pod)
    defaulted = apply_defaults(pod)
    assert to_dict(pod) == before
    manifest = defaulted.desired_state.manifest
    container = manifest.containers[0]
    assert defaulted.namespace == "default"
    assert container.ports[0].protocol == "TCP"
    assert container.image_pull_policy == "PullIfNotPresent"
    assert container.termination_message_path == "/dev/termination-log"
    assert manifest.restart_policy.always is not None
    assert manifest.volumes[0].source is not None
    assert manifest.volumes[0].source.empty_dir is not None
    assert to_dict(defaulted)["desiredState"]["manifest"]["restartPolicy"] == {"always": {}}


def test_apply_defaults_keeps_given_values() -> None:
    service = apply_defaults(Service(id="s", protocol="UDP", namespace="ns"))
    assert (service.protocol, service.namespace) == ("UDP", "ns")
    minion = apply_defaults(Minion(id="m"))
    assert minion.namespace == ""  # minions are not namespaced
    assert apply_defaults(Service(id="s")).protocol == "TCP"


def test_status_round_trip_from_python() -> None:
    status = Status(status="Success")
    assert decode(encode_json(status), kind=Status) == status
