"""The v1beta1 objects of Kubernetes v0.5, as pydantic models with the exact wire format.

JSON names are those of KUBERNETES-V05.md section 1; attributes are their snake_case
forms (``desiredState`` -> ``desired_state``, ``hostIP`` -> ``host_ip``). Every field
has Go's zero value as its default, so any subset of fields decodes; which fields were
given is remembered, and :func:`encode_json` / :func:`encode_yaml` / :func:`to_dict`
write back exactly those. Deprecated spellings are read into their current attribute
(``env[].key`` -> ``name``, ``volumeMounts[].path`` -> ``mount_path``, MinionList
``minions`` -> ``items``) without being re-encoded under the new name.

:data:`KINDS` maps each ``kind`` string to its model; :data:`LIST_ITEM_KINDS` maps each
list kind to the model of its items.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self, TypeVar

import yaml
from pydantic import Field, model_validator

from kubecore.api.meta import (
    Int,
    IntOrString,
    Labels,
    Str,
    Time,
    TypeMeta,
    WireModel,
)

API_VERSION = "v1beta1"
"""The API version kubecore writes."""

API_VERSIONS = ("v1beta1", "v1beta2")
"""The ``apiVersion`` values accepted on input (v1beta2 shares v1beta1's wire format here)."""

# ---------------------------------------------------------------------------- volumes


class HostDir(WireModel):
    path: Str = ""


class EmptyDir(WireModel):
    pass


class GCEPersistentDisk(WireModel):
    pd_name: Str = ""
    fs_type: Str = ""
    partition: Int = 0
    read_only: bool = False


class GitRepo(WireModel):
    repository: Str = ""
    revision: Str = ""


class VolumeSource(WireModel):
    """Exactly one member should be set (checked by validation, not by decoding)."""

    host_dir: HostDir | None = None
    empty_dir: EmptyDir | None = None
    persistent_disk: GCEPersistentDisk | None = None
    git_repo: GitRepo | None = None


class Volume(WireModel):
    """A named volume; a ``None`` source means an empty directory (see apply_defaults)."""

    name: Str = ""
    source: VolumeSource | None = None


# ---------------------------------------------------------------------------- containers


class Port(WireModel):
    name: Str = ""
    host_port: Int = 0
    container_port: Int = 0
    protocol: Str = ""
    host_ip: Str = ""


class EnvVar(WireModel):
    """An environment variable; the deprecated ``key`` is read as ``name`` when ``name``
    is empty."""

    name: Str = ""
    key: Str = ""
    value: Str = ""

    @model_validator(mode="after")
    def _read_deprecated_key(self) -> Self:
        if not self.name and self.key:
            self._set_quietly("name", self.key)
        return self


class VolumeMount(WireModel):
    """A mount; the deprecated ``path`` is read as ``mountPath`` when that is empty."""

    name: Str = ""
    read_only: bool = False
    mount_path: Str = ""
    path: Str = ""

    @model_validator(mode="after")
    def _read_deprecated_path(self) -> Self:
        if not self.mount_path and self.path:
            self._set_quietly("mount_path", self.path)
        return self


class HTTPGetAction(WireModel):
    path: Str = ""
    port: IntOrString = 0
    host: Str = ""


class TCPSocketAction(WireModel):
    port: IntOrString = 0


class ExecAction(WireModel):
    command: list[Str] = Field(default_factory=list)


class LivenessProbe(WireModel):
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    exec: ExecAction | None = None
    initial_delay_seconds: Int = 0


class Handler(WireModel):
    """A lifecycle hook action: ``exec`` or ``httpGet``."""

    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None


class Lifecycle(WireModel):
    post_start: Handler | None = None
    pre_stop: Handler | None = None


PULL_ALWAYS = "PullAlways"
PULL_NEVER = "PullNever"
PULL_IF_NOT_PRESENT = "PullIfNotPresent"


class Container(WireModel):
    """One container. ``memory`` is in bytes, ``cpu`` in milli-cores; an empty
    ``image_pull_policy`` means PullIfNotPresent."""

    name: Str = ""
    image: Str = ""
    command: list[Str] = Field(default_factory=list)
    working_dir: Str = ""
    ports: list[Port] = Field(default_factory=list)
    env: list[EnvVar] = Field(default_factory=list)
    memory: Int = 0
    cpu: Int = 0
    volume_mounts: list[VolumeMount] = Field(default_factory=list)
    liveness_probe: LivenessProbe | None = None
    lifecycle: Lifecycle | None = None
    termination_message_path: Str = ""
    privileged: bool = False
    image_pull_policy: Str = ""


class RestartPolicyAlways(WireModel):
    pass


class RestartPolicyOnFailure(WireModel):
    pass


class RestartPolicyNever(WireModel):
    pass


class RestartPolicy(WireModel):
    """``{"always":{}}`` | ``{"onFailure":{}}`` | ``{"never":{}}``; none set means always."""

    always: RestartPolicyAlways | None = None
    on_failure: RestartPolicyOnFailure | None = None
    never: RestartPolicyNever | None = None


class ContainerManifest(WireModel):
    """A pod's containers and volumes; the unit kubelet sources deliver.

    v1beta1 gives a manifest no TypeMeta; ``kind`` and ``api_version`` exist only so a
    file may say ``kind: ContainerManifest`` and keep it when re-encoded.
    """

    KIND: ClassVar[str] = "ContainerManifest"

    kind: Str = ""
    api_version: Str = ""
    version: Str = ""
    id: Str = ""
    uuid: Str = ""
    volumes: list[Volume] = Field(default_factory=list)
    containers: list[Container] = Field(default_factory=list)
    restart_policy: RestartPolicy = Field(default_factory=RestartPolicy)


class ContainerManifestList(TypeMeta):
    KIND: ClassVar[str] = "ContainerManifestList"
    items: list[ContainerManifest] = Field(default_factory=list)


# ---------------------------------------------------------------------------- pods

POD_WAITING = "Waiting"
POD_RUNNING = "Running"
POD_TERMINATED = "Terminated"


class ContainerStateWaiting(WireModel):
    reason: Str = ""


class ContainerStateRunning(WireModel):
    started_at: Time = None


class ContainerStateTerminated(WireModel):
    exit_code: Int = 0
    signal: Int = 0
    reason: Str = ""
    message: Str = ""
    started_at: Time = None
    finished_at: Time = None


class ContainerState(WireModel):
    waiting: ContainerStateWaiting | None = None
    running: ContainerStateRunning | None = None
    termination: ContainerStateTerminated | None = None


class ContainerStatus(WireModel):
    """What a kubelet reports of one container (``pod_ip`` only on the ``net`` entry)."""

    state: ContainerState = Field(default_factory=ContainerState)
    restart_count: Int = 0
    pod_ip: Str = ""
    image: Str = ""


class PodState(WireModel):
    """A pod's desired or current state; ``status`` is Waiting, Running or Terminated."""

    manifest: ContainerManifest = Field(default_factory=ContainerManifest)
    status: Str = ""
    message: Str = ""
    host: Str = ""
    host_ip: Str = ""
    pod_ip: Str = ""
    info: dict[Str, ContainerStatus] = Field(default_factory=dict)


class Pod(TypeMeta):
    KIND: ClassVar[str] = "Pod"
    labels: Labels = Field(default_factory=dict)
    desired_state: PodState = Field(default_factory=PodState)
    current_state: PodState = Field(default_factory=PodState)
    node_selector: Labels = Field(default_factory=dict)


class PodList(TypeMeta):
    KIND: ClassVar[str] = "PodList"
    items: list[Pod] = Field(default_factory=list)


class PodTemplate(WireModel):
    desired_state: PodState = Field(default_factory=PodState)
    labels: Labels = Field(default_factory=dict)


class ReplicationControllerState(WireModel):
    replicas: Int = 0
    replica_selector: Labels = Field(default_factory=dict)
    pod_template: PodTemplate = Field(default_factory=PodTemplate)


class ReplicationController(TypeMeta):
    KIND: ClassVar[str] = "ReplicationController"
    desired_state: ReplicationControllerState = Field(
        default_factory=ReplicationControllerState
    )
    current_state: ReplicationControllerState = Field(
        default_factory=ReplicationControllerState
    )
    labels: Labels = Field(default_factory=dict)


class ReplicationControllerList(TypeMeta):
    KIND: ClassVar[str] = "ReplicationControllerList"
    items: list[ReplicationController] = Field(default_factory=list)


# ---------------------------------------------------------------------------- services


class Service(TypeMeta):
    """A service. ``container_port`` is a port number or a port name; 0 or "" means the
    first port of the first container. ``portal_ip`` is immutable once allocated."""

    KIND: ClassVar[str] = "Service"
    port: Int = 0
    protocol: Str = ""
    labels: Labels = Field(default_factory=dict)
    selector: Labels = Field(default_factory=dict)
    create_external_load_balancer: bool = False
    public_ips: list[Str] = Field(default_factory=list)
    container_port: IntOrString = 0
    portal_ip: Str = ""
    proxy_port: Int = 0


class ServiceList(TypeMeta):
    KIND: ClassVar[str] = "ServiceList"
    items: list[Service] = Field(default_factory=list)


class Endpoints(TypeMeta):
    """The ``ip:port`` addresses serving the service whose id this object carries."""

    KIND: ClassVar[str] = "Endpoints"
    endpoints: list[Str] = Field(default_factory=list)


class EndpointsList(TypeMeta):
    KIND: ClassVar[str] = "EndpointsList"
    items: list[Endpoints] = Field(default_factory=list)


# ---------------------------------------------------------------------------- minions


class NodeResources(WireModel):
    """``capacity`` maps a resource name (``cpu``, ``memory``) to an int or a string."""

    capacity: dict[Str, IntOrString] = Field(default_factory=dict)


class Minion(TypeMeta):
    """A node; ``id`` is its kubelet's hostname."""

    KIND: ClassVar[str] = "Minion"
    host_ip: Str = ""
    resources: NodeResources = Field(default_factory=NodeResources)
    labels: Labels = Field(default_factory=dict)


class MinionList(TypeMeta):
    """Minions; v1beta1 also wrote them under the deprecated ``minions``, which is read
    as ``items`` when ``items`` is empty. Writers should set both."""

    KIND: ClassVar[str] = "MinionList"
    minions: list[Minion] = Field(default_factory=list)
    items: list[Minion] = Field(default_factory=list)

    @model_validator(mode="after")
    def _read_deprecated_minions(self) -> Self:
        if not self.items and self.minions:
            self._set_quietly("items", list(self.minions))
        return self


# ---------------------------------------------------------------------------- binding


class Binding(TypeMeta):
    KIND: ClassVar[str] = "Binding"
    pod_id: Str = ""
    host: Str = ""


class PodSpec(WireModel):
    volumes: list[Volume] = Field(default_factory=list)
    containers: list[Container] = Field(default_factory=list)
    restart_policy: RestartPolicy = Field(default_factory=RestartPolicy)
    node_selector: Labels = Field(default_factory=dict)


class BoundPod(TypeMeta):
    """A pod as its host's kubelet receives it (no labels)."""

    KIND: ClassVar[str] = "BoundPod"
    spec: PodSpec = Field(default_factory=PodSpec)


class BoundPods(TypeMeta):
    """Every pod bound to one host."""

    KIND: ClassVar[str] = "BoundPods"
    host: Str = ""
    items: list[BoundPod] = Field(default_factory=list)


# ---------------------------------------------------------------------------- status, events

STATUS_SUCCESS = "Success"
STATUS_FAILURE = "Failure"
STATUS_WORKING = "Working"


class StatusCause(WireModel):
    reason: Str = ""
    message: Str = ""
    field: Str = ""


class StatusDetails(WireModel):
    id: Str = ""
    kind: Str = ""
    causes: list[StatusCause] = Field(default_factory=list)


class Status(TypeMeta):
    """The result of an operation that returns no object, and every error body."""

    KIND: ClassVar[str] = "Status"
    status: Str = ""
    message: Str = ""
    reason: Str = ""
    details: StatusDetails | None = None
    code: Int = 0


class ObjectReference(WireModel):
    """A reference to another object; v1beta1 writes its id as ``name`` and its
    ``resourceVersion`` as a string."""

    kind: Str = ""
    namespace: Str = ""
    name: Str = ""
    uid: Str = ""
    api_version: Str = ""
    resource_version: Str = ""
    field_path: Str = ""


class Event(TypeMeta):
    KIND: ClassVar[str] = "Event"
    involved_object: ObjectReference = Field(default_factory=ObjectReference)
    status: Str = ""
    reason: Str = ""
    message: Str = ""
    source: Str = ""
    timestamp: Time = None


class EventList(TypeMeta):
    KIND: ClassVar[str] = "EventList"
    items: list[Event] = Field(default_factory=list)


# ---------------------------------------------------------------------------- registry

Object = TypeMeta | ContainerManifest
"""Any top-level object: one with TypeMeta, or a bare ContainerManifest."""

_ALL: tuple[type[TypeMeta] | type[ContainerManifest], ...] = (
    Pod,
    PodList,
    ContainerManifest,
    ContainerManifestList,
    ReplicationController,
    ReplicationControllerList,
    Service,
    ServiceList,
    Endpoints,
    EndpointsList,
    Minion,
    MinionList,
    Binding,
    BoundPod,
    BoundPods,
    Status,
    Event,
    EventList,
)

KINDS: dict[str, type[TypeMeta] | type[ContainerManifest]] = {cls.KIND: cls for cls in _ALL}
"""``kind`` string -> model, for every object that may stand alone in a body or a file."""

LIST_ITEM_KINDS: dict[str, type[TypeMeta] | type[ContainerManifest]] = {
    "PodList": Pod,
    "ContainerManifestList": ContainerManifest,
    "ReplicationControllerList": ReplicationController,
    "ServiceList": Service,
    "EndpointsList": Endpoints,
    "MinionList": Minion,
    "EventList": Event,
}
"""List ``kind`` -> the model of its ``items``."""


# ---------------------------------------------------------------------------- encoding


def to_dict(obj: WireModel) -> dict[str, Any]:
    """The JSON-ready dict of ``obj`` with JSON names, holding only the fields given."""
    return obj.model_dump(mode="json", by_alias=True, exclude_unset=True)


def encode_json(obj: WireModel) -> bytes:
    """Compact UTF-8 JSON of ``obj``, holding only the fields given (see :func:`to_dict`)."""
    return obj.model_dump_json(by_alias=True, exclude_unset=True).encode()


_Dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def encode_yaml(obj: WireModel) -> str:
    """Block-style YAML of ``obj`` in field order, holding only the fields given."""
    return yaml.dump(
        to_dict(obj),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1 << 16,  # no folding: long strings stay on one line
    )


_Typed = TypeVar("_Typed", bound=TypeMeta)


def with_kind(obj: _Typed, api_version: str = API_VERSION) -> _Typed:
    """A copy of ``obj`` with ``kind`` and ``apiVersion`` set, as responses carry them."""
    return obj.model_copy(update={"kind": obj.KIND, "api_version": api_version})
