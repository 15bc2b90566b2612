"""Hypothesis strategies for valid v1beta1 objects of every kind, in wire form (dicts with
JSON names), so that tests can decode them, encode them back and validate them.

"Valid" means: after ``apply_defaults`` the object passes ``validate`` with
``allow_privileged=False``. Each strategy leaves optional fields out at random, so the
round trip is tested on many different sets of given fields.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

Draw = Any  # hypothesis' draw function
Wire = dict[str, Any]

# Built from plain text strategies rather than from_regex: several times faster to draw.
_LOWER = "abcdefghijklmnopqrstuvwxyz"
_ALNUM = _LOWER + "0123456789"
_words = st.text(alphabet=_ALNUM, min_size=1, max_size=5)
dns_labels = st.one_of(_words, st.builds("{}-{}".format, _words, _words))
dns952_labels = st.builds(
    "{}{}".format, st.sampled_from(_LOWER), st.one_of(
        st.text(alphabet=_ALNUM, max_size=5), st.builds("-{}".format, _words)))
subdomains = st.one_of(dns_labels, st.builds("{}.{}".format, dns_labels, dns_labels))
c_identifiers = st.builds(
    "{}{}".format, st.sampled_from(_LOWER.upper() + "_"),
    st.text(alphabet=_ALNUM + _LOWER.upper() + "_", max_size=6))
texts = st.text(max_size=12)
ports = st.integers(1, 65535)
int64s = st.integers(-(2**63), 2**63 - 1)
uint64s = st.integers(0, 2**64 - 1)
ipv4s = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
label_maps = st.dictionaries(dns952_labels, texts, max_size=3)
text_maps = st.dictionaries(texts, texts, max_size=3)
times = st.none() | st.datetimes(
    min_value=datetime(1, 1, 1),
    max_value=datetime(9999, 12, 31),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=2)), timezone(-timedelta(hours=5, minutes=30))]
    ),
)
int_or_strings = st.one_of(st.integers(0, 65535), dns_labels)


def _pick(draw: Draw, fields: dict[str, st.SearchStrategy[Any]]) -> Wire:
    """A random subset of ``fields``, each drawn from its strategy."""
    chosen = draw(st.sets(st.sampled_from(sorted(fields)))) if fields else set()
    return {name: draw(fields[name]) for name in sorted(chosen)}


def type_meta(draw: Draw, kind: str, *, namespaced: bool = True) -> Wire:
    fields: dict[str, st.SearchStrategy[Any]] = {
        "kind": st.just(kind),
        "apiVersion": st.sampled_from(["v1beta1", "v1beta2"]),
        "uid": texts,
        "creationTimestamp": times,
        "selfLink": texts,
        "resourceVersion": uint64s,
        "annotations": text_maps,
    }
    if namespaced:
        fields["namespace"] = subdomains
    return _pick(draw, fields)


@st.composite
def volume_sources(draw: Draw) -> Wire | None:
    choice = draw(st.sampled_from(["none", "hostDir", "emptyDir", "persistentDisk", "gitRepo"]))
    if choice == "none":
        return None
    if choice == "hostDir":
        return {"hostDir": {"path": "/" + draw(texts)}}
    if choice == "emptyDir":
        return {"emptyDir": {}}
    if choice == "persistentDisk":
        return {"persistentDisk": {"pdName": draw(dns_labels), "fsType": "ext4",
                                   **_pick(draw, {"partition": st.integers(0, 255),
                                                  "readOnly": st.booleans()})}}
    return {"gitRepo": {"repository": "https://example.invalid/" + draw(dns_labels),
                        **_pick(draw, {"revision": texts})}}


def handler(draw: Draw) -> Wire:
    if draw(st.booleans()):
        return {"exec": {"command": draw(st.lists(texts, min_size=1, max_size=3))}}
    return {"httpGet": {"path": "/" + draw(texts),
                        **_pick(draw, {"port": int_or_strings, "host": texts})}}


@st.composite
def containers(draw: Draw, name: str, volumes: list[str], used_host_ports: set[int]) -> Wire:
    port_list = []
    for port_name in draw(st.lists(dns_labels, max_size=3, unique=True)):
        port: Wire = {"containerPort": draw(ports)}
        if draw(st.booleans()):
            port["name"] = port_name
        host_port = draw(st.integers(0, 65535))
        if host_port and host_port not in used_host_ports:
            used_host_ports.add(host_port)
            port["hostPort"] = host_port
        port.update(_pick(draw, {"protocol": st.sampled_from(["TCP", "UDP", "tcp"]),
                                 "hostIP": ipv4s}))
        port_list.append(port)
    env = [
        {draw(st.sampled_from(["name", "key"])): draw(c_identifiers),
         **_pick(draw, {"value": texts})}
        for _ in range(draw(st.integers(0, 2)))
    ]
    mounts = [
        {"name": draw(st.sampled_from(volumes)),
         draw(st.sampled_from(["mountPath", "path"])): "/" + draw(texts),
         **_pick(draw, {"readOnly": st.booleans()})}
        for _ in range(draw(st.integers(0, 2) if volumes else st.just(0)))
    ]
    probe = st.one_of(
        st.builds(lambda p: {"httpGet": {"path": p}}, texts),
        st.builds(lambda p: {"tcpSocket": {"port": p}}, int_or_strings),
        st.builds(lambda c: {"exec": {"command": c}}, st.lists(texts, max_size=2)),
    ).map(lambda d: d | {"initialDelaySeconds": 5})
    container: Wire = {"name": name, "image": draw(dns_labels) + ":" + draw(dns_labels)}
    container.update(_pick(draw, {
        "command": st.lists(texts, max_size=3),
        "workingDir": texts,
        "ports": st.just(port_list),
        "env": st.just(env),
        "memory": st.integers(0, 2**40),
        "cpu": st.integers(0, 4000),
        "volumeMounts": st.just(mounts),
        "livenessProbe": probe,
        "terminationMessagePath": st.just("/dev/termination-log"),
        "privileged": st.just(False),
        "imagePullPolicy": st.sampled_from(["PullAlways", "PullNever", "PullIfNotPresent"]),
    }))
    if draw(st.booleans()):
        hooks = sorted(draw(st.sets(st.sampled_from(["postStart", "preStop"]))))
        container["lifecycle"] = {hook: handler(draw) for hook in hooks}
    return container


@st.composite
def pod_specs(draw: Draw, *, read_only_disks: bool = False) -> Wire:
    """volumes, containers and restartPolicy of a valid manifest."""
    volumes = []
    for name in draw(st.lists(dns_labels, max_size=3, unique=True)):
        volume: Wire = {"name": name}
        source = draw(volume_sources())
        if source is not None or draw(st.booleans()):
            if read_only_disks and source and "persistentDisk" in source:
                source["persistentDisk"]["readOnly"] = True
            volume["source"] = source
        volumes.append(volume)
    names = [v["name"] for v in volumes]
    used: set[int] = set()
    container_list = [
        draw(containers(name, names, used))
        for name in draw(st.lists(dns_labels, max_size=3, unique=True))
    ]
    spec = _pick(draw, {
        "containers": st.just(container_list),
        "restartPolicy": st.sampled_from([{}, {"always": {}}, {"onFailure": {}}, {"never": {}}]),
    })
    if volumes or draw(st.booleans()):  # mounts refer to them
        spec["volumes"] = volumes
    return spec


@st.composite
def manifests(draw: Draw, *, require_version: bool = True, read_only_disks: bool = False,
              kind: bool = False) -> Wire:
    manifest: Wire = draw(pod_specs(read_only_disks=read_only_disks))
    if require_version or draw(st.booleans()):
        manifest["version"] = draw(st.sampled_from(["v1beta1", "v1beta2", "V1Beta1"]))
    manifest.update(_pick(draw, {"id": subdomains, "uuid": texts}))
    if kind:
        manifest["kind"] = "ContainerManifest"
    return manifest


@st.composite
def container_statuses(draw: Draw) -> Wire:
    state = draw(st.sampled_from(["waiting", "running", "termination"]))
    value = {
        "waiting": lambda: _pick(draw, {"reason": texts}),
        "running": lambda: _pick(draw, {"startedAt": times}),
        "termination": lambda: _pick(draw, {
            "exitCode": int64s, "signal": st.integers(0, 64), "reason": texts,
            "message": texts, "startedAt": times, "finishedAt": times}),
    }[state]()
    return {"state": {state: value},
            **_pick(draw, {"restartCount": st.integers(0, 10), "podIP": ipv4s, "image": texts})}


@st.composite
def pod_states(draw: Draw, *, manifest: bool = True) -> Wire:
    fields: dict[str, st.SearchStrategy[Any]] = {
        "status": st.sampled_from(["Waiting", "Running", "Terminated"]),
        "message": texts,
        "host": dns_labels,
        "hostIP": ipv4s,
        "podIP": ipv4s,
        "info": st.dictionaries(dns_labels, container_statuses(), max_size=2),
    }
    state = _pick(draw, fields)
    if manifest:
        state["manifest"] = draw(manifests())
    return state


@st.composite
def pods(draw: Draw, *, kind: bool = True) -> Wire:
    pod = type_meta(draw, "Pod") if kind else {}
    pod["id"] = draw(subdomains)
    pod["desiredState"] = draw(pod_states())
    pod.update(_pick(draw, {
        "labels": label_maps,
        "currentState": pod_states(manifest=False),
        "nodeSelector": label_maps,
    }))
    return pod


@st.composite
def replication_controllers(draw: Draw, *, kind: bool = True) -> Wire:
    rc = type_meta(draw, "ReplicationController") if kind else {}
    selector = draw(st.dictionaries(dns952_labels, texts, min_size=1, max_size=3))
    template_labels = selector | draw(label_maps)
    template_labels.update(selector)
    manifest = draw(manifests(require_version=False, read_only_disks=True))
    rc.update({
        "id": draw(subdomains),
        "desiredState": {
            "replicas": draw(st.integers(0, 100)),
            "replicaSelector": selector,
            "podTemplate": {"labels": template_labels, "desiredState": {"manifest": manifest}},
        },
    })
    rc.update(_pick(draw, {"labels": label_maps,
                           "currentState": st.builds(lambda n: {"replicas": n},
                                                     st.integers(0, 100))}))
    return rc


@st.composite
def services(draw: Draw, *, kind: bool = True) -> Wire:
    service = type_meta(draw, "Service") if kind else {}
    service.update({
        "id": draw(dns952_labels),
        "port": draw(ports),
        "selector": draw(st.dictionaries(dns952_labels, texts, min_size=1, max_size=3)),
    })
    service.update(_pick(draw, {
        "protocol": st.sampled_from(["TCP", "UDP"]),
        "labels": label_maps,
        "createExternalLoadBalancer": st.booleans(),
        "publicIPs": st.lists(ipv4s, max_size=2),
        "containerPort": int_or_strings,
        "portalIP": ipv4s,
        "proxyPort": st.just(0),
    }))
    return service


@st.composite
def endpoints(draw: Draw, *, kind: bool = True) -> Wire:
    obj = type_meta(draw, "Endpoints") if kind else {}
    obj["id"] = draw(dns952_labels)
    addresses = st.builds(lambda ip, port: f"{ip}:{port}", ipv4s, ports)
    obj.update(_pick(draw, {"endpoints": st.lists(addresses, max_size=3)}))
    return obj


@st.composite
def minions(draw: Draw, *, kind: bool = True) -> Wire:
    minion = type_meta(draw, "Minion", namespaced=False) if kind else {}
    minion["id"] = draw(subdomains)
    capacity = st.dictionaries(st.sampled_from(["cpu", "memory"]),
                               st.one_of(st.integers(0, 2**40), st.just("3Gi")))
    minion.update(_pick(draw, {"hostIP": ipv4s, "labels": label_maps,
                               "resources": st.builds(lambda c: {"capacity": c}, capacity)}))
    return minion


@st.composite
def bindings(draw: Draw) -> Wire:
    return {**type_meta(draw, "Binding"), "podID": draw(subdomains), "host": draw(dns_labels)}


@st.composite
def bound_pods(draw: Draw, *, kind: bool = True, pod_id: str | None = None) -> Wire:
    pod = type_meta(draw, "BoundPod") if kind else {}
    pod["id"] = pod_id or draw(subdomains)
    pod["spec"] = draw(pod_specs()) | _pick(draw, {"nodeSelector": label_maps})
    return pod


@st.composite
def bound_pod_lists(draw: Draw) -> Wire:
    ids = draw(st.lists(subdomains, max_size=3, unique=True))
    items = []
    for pod_id in ids:
        item = draw(bound_pods(kind=False, pod_id=pod_id))
        item["namespace"] = "default"  # a repeated id must not be told apart by namespace
        items.append(item)
    return {**type_meta(draw, "BoundPods"), "host": draw(dns_labels), "items": items}


@st.composite
def statuses(draw: Draw) -> Wire:
    cause = st.fixed_dictionaries({}, optional={"reason": texts, "message": texts,
                                                "field": texts})
    details = st.fixed_dictionaries({}, optional={"id": texts, "kind": texts,
                                                  "causes": st.lists(cause, max_size=2)})
    return {**type_meta(draw, "Status", namespaced=False), **_pick(draw, {
        "status": st.sampled_from(["Success", "Failure", "Working"]),
        "message": texts, "reason": texts, "details": details, "code": st.integers(0, 599)})}


@st.composite
def events(draw: Draw, *, kind: bool = True) -> Wire:
    reference = st.fixed_dictionaries({}, optional={
        "kind": texts, "namespace": texts, "name": texts, "uid": texts,
        "apiVersion": texts, "resourceVersion": texts, "fieldPath": texts})
    event = type_meta(draw, "Event") if kind else {}
    event.update(_pick(draw, {"involvedObject": reference, "status": texts, "reason": texts,
                              "message": texts, "source": texts, "timestamp": times}))
    return event


def _list_of(kind: str, items: st.SearchStrategy[Wire], *, unique_ids: bool = True,
             field: str = "items") -> st.SearchStrategy[Wire]:
    @st.composite
    def build(draw: Draw) -> Wire:
        values = draw(st.lists(items, max_size=2,
                               unique_by=(lambda item: item.get("id")) if unique_ids else None))
        return {**type_meta(draw, kind, namespaced=False), field: values}

    return build()


def kind_strategies() -> dict[str, st.SearchStrategy[Wire]]:
    """kind -> a strategy of valid wire dicts of that kind (every kind in KINDS)."""
    return {
        "Pod": pods(),
        "PodList": _list_of("PodList", pods(kind=False)),
        "ContainerManifest": manifests(kind=True),
        "ContainerManifestList": _list_of("ContainerManifestList", manifests(),
                                          unique_ids=False),
        "ReplicationController": replication_controllers(),
        "ReplicationControllerList": _list_of("ReplicationControllerList",
                                              replication_controllers(kind=False)),
        "Service": services(),
        "ServiceList": _list_of("ServiceList", services(kind=False)),
        "Endpoints": endpoints(),
        "EndpointsList": _list_of("EndpointsList", endpoints(kind=False)),
        "Minion": minions(),
        "MinionList": st.one_of(_list_of("MinionList", minions(kind=False)),
                                _list_of("MinionList", minions(kind=False), field="minions")),
        "Binding": bindings(),
        "BoundPod": bound_pods(),
        "BoundPods": bound_pod_lists(),
        "Status": statuses(),
        "Event": events(),
        "EventList": _list_of("EventList", events(kind=False), unique_ids=False),
    }
