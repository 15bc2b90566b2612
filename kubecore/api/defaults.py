"""Defaulting: the values v0.5 fills in for fields left empty.

:func:`apply_defaults` returns a new object (the argument is not changed) in which:
namespace ``default`` (namespaced kinds), port and service protocol ``TCP``, restart
policy ``always``, image pull policy ``PullIfNotPresent``, termination message path
``/dev/termination-log``, and a volume without source an ``emptyDir``. Defaulted fields
count as given, so they are encoded. Decoding never defaults: what a person wrote is
what is encoded back.
"""

from __future__ import annotations

from typing import TypeVar

from kubecore.api.meta import TypeMeta, WireModel
from kubecore.api.types import (
    PULL_IF_NOT_PRESENT,
    BoundPod,
    BoundPods,
    Container,
    ContainerManifest,
    ContainerManifestList,
    EmptyDir,
    Pod,
    PodSpec,
    ReplicationController,
    RestartPolicy,
    RestartPolicyAlways,
    Service,
    Volume,
    VolumeSource,
)

DEFAULT_NAMESPACE = "default"
DEFAULT_PROTOCOL = "TCP"
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"

# Kinds whose objects live in a namespace (minions, bindings and statuses do not).
_NAMESPACED = {"Pod", "ReplicationController", "Service", "Endpoints", "Event", "BoundPod"}

M = TypeVar("M", bound=WireModel)


def apply_defaults(obj: M) -> M:
    """A deep copy of ``obj`` with v0.5's defaults filled in (see the module docstring).

    Lists are defaulted item by item; objects without defaults come back as copies.
    """
    copy = obj.model_copy(deep=True)
    _default(copy)
    return copy


def _default(obj: WireModel) -> None:
    if isinstance(obj, TypeMeta) and obj.KIND in _NAMESPACED and not obj.namespace:
        obj.namespace = DEFAULT_NAMESPACE
    if isinstance(obj, Pod):
        _default_manifest(obj.desired_state.manifest)
    elif isinstance(obj, ReplicationController):
        _default_manifest(obj.desired_state.pod_template.desired_state.manifest)
    elif isinstance(obj, Service):
        if not obj.protocol:
            obj.protocol = DEFAULT_PROTOCOL
    elif isinstance(obj, ContainerManifest):
        _default_manifest(obj)
    elif isinstance(obj, BoundPod):
        _default_spec(obj.spec)
    elif isinstance(obj, BoundPods):
        for pod in obj.items:
            _default(pod)
    elif isinstance(obj, ContainerManifestList):
        for manifest in obj.items:
            _default_manifest(manifest)
    else:
        items = getattr(obj, "items", None)
        if isinstance(items, list):
            for item in items:
                if isinstance(item, WireModel):
                    _default(item)


def _default_manifest(manifest: ContainerManifest) -> None:
    manifest.restart_policy = _default_restart_policy(manifest.restart_policy)
    _default_volumes(manifest.volumes)
    for container in manifest.containers:
        _default_container(container)


def _default_spec(spec: PodSpec) -> None:
    spec.restart_policy = _default_restart_policy(spec.restart_policy)
    _default_volumes(spec.volumes)
    for container in spec.containers:
        _default_container(container)


def _default_restart_policy(policy: RestartPolicy) -> RestartPolicy:
    if policy.always is None and policy.on_failure is None and policy.never is None:
        return RestartPolicy(always=RestartPolicyAlways())
    return policy


def _default_volumes(volumes: list[Volume]) -> None:
    for volume in volumes:
        if volume.source is None:
            volume.source = VolumeSource(empty_dir=EmptyDir())


def _default_container(container: Container) -> None:
    for port in container.ports:
        if not port.protocol:
            port.protocol = DEFAULT_PROTOCOL
    if not container.image_pull_policy:
        container.image_pull_policy = PULL_IF_NOT_PRESENT
    if not container.termination_message_path:
        container.termination_message_path = DEFAULT_TERMINATION_MESSAGE_PATH
