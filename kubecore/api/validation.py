"""Validation rules of KUBERNETES-V05.md section 9.

Every ``validate_*`` function returns *all* the problems it finds as a list of
:class:`~kubecore.api.errors.Cause` (empty when valid), each with the field path in
JSON names, e.g. ``desiredState.manifest.containers[0].image``. They never raise and
never change their argument. Fields that have defaults (protocol, restart policy,
volume source, pull policy) may be empty; ``namespace`` must already be set (see
:func:`kubecore.api.defaults.apply_defaults`, which the apiserver and the CLI apply
before validating).

Deliberate differences from v0.5 (all stricter on nonsense, or fixes):
- a ``gitRepo`` volume source counts as a source (v0.5 forgot it, rejecting gitRepo
  volumes) and needs a repository;
- ``hostDir.path`` missing is "required" (v0.5 said "not found"); the privileged check
  runs whatever the container name; host port conflicts name the port
  (``containers[1].ports[0].hostPort``);
- service ``portalIP`` must be an IPv4 address when given, ``containerPort`` a port
  number or a port name, endpoints ``host:port``; a binding needs ``podID`` and ``host``;
  a pod's ``nodeSelector`` keys are checked like label keys (they must match minion
  labels, which are); no id may contain ``/`` or be ``.`` or ``..`` (ids become storage
  keys and URL paths);
- updates: a service update may leave ``portalIP`` empty to keep it, and a scheduled
  pod's update may leave the server-set ``manifest.id``/``uuid`` empty (v0.5 demanded
  both be repeated); a minion update compares only ``id``, ``hostIP`` and ``resources``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from kubecore.api.defaults import apply_defaults
from kubecore.api.errors import Cause, InvalidObject, Reason
from kubecore.api.labels import Selector
from kubecore.api.meta import TypeMeta, WireModel, json_name
from kubecore.api.names import (
    C_IDENTIFIER_HELP,
    DNS_952_HELP,
    DNS_LABEL_HELP,
    DNS_SUBDOMAIN_HELP,
    PROTOCOLS,
    is_c_identifier,
    is_dns952_label,
    is_dns_label,
    is_dns_subdomain,
    is_valid_port,
)
from kubecore.api.types import (
    API_VERSIONS,
    Binding,
    BoundPod,
    BoundPods,
    Container,
    ContainerManifest,
    ContainerManifestList,
    Endpoints,
    Handler,
    Minion,
    Pod,
    Port,
    ReplicationController,
    RestartPolicy,
    Service,
    Volume,
)

__all__ = [  # the name checks are re-exported: callers validating names look here first
    "ensure_valid",
    "is_c_identifier",
    "is_dns952_label",
    "is_dns_label",
    "is_dns_subdomain",
    "is_valid_port",
    "validate",
    "validate_binding",
    "validate_bound_pod",
    "validate_bound_pods",
    "validate_endpoints",
    "validate_manifest",
    "validate_minion",
    "validate_minion_update",
    "validate_pod",
    "validate_pod_update",
    "validate_replication_controller",
    "validate_service",
    "validate_service_update",
]

# ---------------------------------------------------------------------------- helpers


def _at(path: str, name: str) -> str:
    if not path:
        return name
    return path + name if name.startswith("[") else f"{path}.{name}"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _required(field: str, what: str = "required value") -> Cause:
    return Cause(Reason.REQUIRED, what, field)


def _invalid(field: str, value: Any, why: str) -> Cause:
    return Cause(Reason.INVALID, f"invalid value {_show(value)}: {why}", field)


def _prefixed(causes: Iterable[Cause], prefix: str) -> list[Cause]:
    return [Cause(c.reason, c.message, _at(prefix, c.field) if c.field else prefix)
            for c in causes]


def _check_id(
    value: str, field: str, test: Callable[[str], bool] | None = None, help_text: str = ""
) -> list[Cause]:
    if not value:
        return [_required(field)]
    if test is not None and not test(value):
        return [_invalid(field, value, f"must be {help_text}")]
    if "/" in value or value in (".", ".."):
        # ids become storage keys and URL path segments
        return [_invalid(field, value, "may not contain '/' or be '.' or '..'")]
    return []


def _check_namespace(namespace: str, field: str = "namespace") -> list[Cause]:
    return _check_id(namespace, field, is_dns_subdomain, f"a DNS subdomain ({DNS_SUBDOMAIN_HELP})")


def _check_label_keys(labels: Mapping[str, str], field: str) -> list[Cause]:
    return [
        Cause(Reason.NOT_SUPPORTED,
              f"label key {_show(key)} must be a DNS-952 label ({DNS_952_HELP})", field)
        for key in sorted(labels)
        if not is_dns952_label(key)
    ]


# ---------------------------------------------------------------------------- manifests


def _check_unique_label(name: str, field: str, seen: set[str], what: str) -> list[Cause]:
    """Why ``name`` is not a DNS label unique among ``seen`` (nothing when it is, and it
    is then added to ``seen``)."""
    if not name:
        return [_required(field)]
    if not is_dns_label(name):
        return [_invalid(field, name, f"must be a DNS label ({DNS_LABEL_HELP})")]
    if name in seen:
        return [Cause(Reason.DUPLICATE, f"duplicate {what} {name!r}", field)]
    seen.add(name)
    return []


def _check_volumes(volumes: Sequence[Volume], path: str) -> tuple[set[str], list[Cause]]:
    names: set[str] = set()
    causes: list[Cause] = []
    for i, volume in enumerate(volumes):
        at = _at(path, f"[{i}]")
        causes += _check_unique_label(volume.name, _at(at, "name"), names, "volume")
        source = volume.source
        if source is None:
            continue  # an empty directory
        src = _at(at, "source")
        given = [s for s in (source.host_dir, source.empty_dir, source.persistent_disk,
                             source.git_repo) if s is not None]
        if len(given) != 1:
            causes.append(Cause(Reason.INVALID, "exactly one of hostDir, emptyDir, "
                                f"persistentDisk, gitRepo must be set ({len(given)} are)", src))
        if source.host_dir is not None and not source.host_dir.path:
            causes.append(_required(_at(src, "hostDir.path")))
        if (disk := source.persistent_disk) is not None:
            if not disk.pd_name:
                causes.append(_required(_at(src, "persistentDisk.pdName")))
            if not disk.fs_type:
                causes.append(_required(_at(src, "persistentDisk.fsType")))
            if not 0 <= disk.partition <= 255:
                causes.append(_invalid(_at(src, "persistentDisk.partition"), disk.partition,
                                       "must be 0 to 255"))
        if source.git_repo is not None and not source.git_repo.repository:
            causes.append(_required(_at(src, "gitRepo.repository")))
    return names, causes


def _check_ports(ports: Sequence[Port], path: str) -> list[Cause]:
    causes: list[Cause] = []
    names: set[str] = set()
    for j, port in enumerate(ports):
        at = _at(path, f"[{j}]")
        if port.name:
            causes += _check_unique_label(port.name, _at(at, "name"), names, "port name")
        if port.container_port == 0:
            causes.append(_required(_at(at, "containerPort")))
        elif not is_valid_port(port.container_port):
            causes.append(_invalid(_at(at, "containerPort"), port.container_port,
                                   "must be 1 to 65535"))
        if port.host_port != 0 and not is_valid_port(port.host_port):
            causes.append(_invalid(_at(at, "hostPort"), port.host_port, "must be 0 to 65535"))
        if port.protocol and port.protocol.upper() not in PROTOCOLS:
            causes.append(Cause(Reason.NOT_SUPPORTED,
                                f"unsupported protocol {_show(port.protocol)} (TCP or UDP)",
                                _at(at, "protocol")))
    return causes


def _check_handler(handler: Handler, path: str) -> list[Cause]:
    if handler.exec is not None:
        return [] if handler.exec.command else [_required(_at(path, "exec.command"))]
    if handler.http_get is not None:
        return [] if handler.http_get.path else [_required(_at(path, "httpGet.path"))]
    return [Cause(Reason.INVALID, "a handler needs exec or httpGet", path)]


def _check_container(
    container: Container, at: str, volumes: set[str], allow_privileged: bool
) -> list[Cause]:
    causes: list[Cause] = []
    if container.privileged and not allow_privileged:
        causes.append(Cause(Reason.FORBIDDEN, "privileged containers are not allowed here",
                            _at(at, "privileged")))
    if not container.image:
        causes.append(_required(_at(at, "image")))
    if container.lifecycle is not None:
        for name, handler in (("postStart", container.lifecycle.post_start),
                              ("preStop", container.lifecycle.pre_stop)):
            if handler is not None:
                causes += _check_handler(handler, _at(at, f"lifecycle.{name}"))
    causes += _check_ports(container.ports, _at(at, "ports"))
    for k, env in enumerate(container.env):
        field = _at(at, f"env[{k}].name")
        if not env.name:
            causes.append(_required(field))
        elif not is_c_identifier(env.name):
            causes.append(_invalid(field, env.name, f"must be a C identifier "
                                                    f"({C_IDENTIFIER_HELP})"))
    for k, mount in enumerate(container.volume_mounts):
        mount_at = _at(at, f"volumeMounts[{k}]")
        if not mount.name:
            causes.append(_required(_at(mount_at, "name")))
        elif mount.name not in volumes:
            causes.append(Cause(Reason.NOT_FOUND, f"no volume named {mount.name!r}",
                                _at(mount_at, "name")))
        if not mount.mount_path:
            causes.append(_required(_at(mount_at, "mountPath")))
    return causes


def _check_pod_spec(
    volumes: Sequence[Volume],
    containers: Sequence[Container],
    restart_policy: RestartPolicy,
    path: str,
    allow_privileged: bool,
) -> list[Cause]:
    names, causes = _check_volumes(volumes, _at(path, "volumes"))
    seen: set[str] = set()
    host_ports: set[int] = set()
    for i, container in enumerate(containers):
        at = _at(path, f"containers[{i}]")
        causes += _check_unique_label(container.name, _at(at, "name"), seen, "container")
        causes += _check_container(container, at, names, allow_privileged)
        for j, port in enumerate(container.ports):
            if port.host_port == 0:
                continue
            if port.host_port in host_ports:
                causes.append(Cause(Reason.DUPLICATE,
                                    f"host port {port.host_port} is used twice in the pod",
                                    _at(at, f"ports[{j}].hostPort")))
            host_ports.add(port.host_port)
    policies = [restart_policy.always, restart_policy.on_failure, restart_policy.never]
    if sum(policy is not None for policy in policies) > 1:
        causes.append(Cause(Reason.INVALID, "at most one of always, onFailure, never",
                            _at(path, "restartPolicy")))
    return causes


def validate_manifest(
    m: ContainerManifest,
    path: str = "",
    *,
    allow_privileged: bool = False,
    require_version: bool = True,
) -> list[Cause]:
    """Check a ContainerManifest; field paths start with ``path`` (e.g.
    ``desiredState.manifest``). ``require_version=False`` for pod templates, whose
    manifest version v0.5 did not check."""
    causes: list[Cause] = []
    if not m.version:
        if require_version:
            causes.append(_required(_at(path, "version")))
    elif m.version.lower() not in API_VERSIONS:
        causes.append(Cause(Reason.NOT_SUPPORTED, f"unsupported version {_show(m.version)} "
                            "(v1beta1 or v1beta2)", _at(path, "version")))
    return causes + _check_pod_spec(m.volumes, m.containers, m.restart_policy, path,
                                    allow_privileged)


# ---------------------------------------------------------------------------- objects


def validate_pod(pod: Pod, *, allow_privileged: bool = False) -> list[Cause]:
    """id required, namespace a DNS subdomain, the manifest, label and node selector
    keys DNS-952."""
    return [
        *_check_id(pod.id, "id"),
        *_check_namespace(pod.namespace),
        *validate_manifest(pod.desired_state.manifest, "desiredState.manifest",
                           allow_privileged=allow_privileged),
        *_check_label_keys(pod.labels, "labels"),
        *_check_label_keys(pod.node_selector, "nodeSelector"),
    ]


def validate_bound_pod(pod: BoundPod, *, allow_privileged: bool = False) -> list[Cause]:
    """id and namespace DNS subdomains, and the spec as a manifest (paths ``spec....``)."""
    spec = pod.spec
    return [
        *_check_id(pod.id, "id", is_dns_subdomain, f"a DNS subdomain ({DNS_SUBDOMAIN_HELP})"),
        *_check_namespace(pod.namespace),
        *_check_pod_spec(spec.volumes, spec.containers, spec.restart_policy, "spec",
                         allow_privileged),
        *_check_label_keys(spec.node_selector, "spec.nodeSelector"),
    ]


def validate_bound_pods(pods: BoundPods, *, allow_privileged: bool = False) -> list[Cause]:
    """host required; each item a valid bound pod; no two items with one id+namespace."""
    causes = _check_id(pods.host, "host")
    seen: set[tuple[str, str]] = set()
    for i, pod in enumerate(pods.items):
        causes += _prefixed(validate_bound_pod(pod, allow_privileged=allow_privileged),
                            f"items[{i}]")
        if (pod.id, pod.namespace) in seen:
            causes.append(Cause(Reason.DUPLICATE, f"pod {pod.id!r} is listed twice",
                                f"items[{i}].id"))
        seen.add((pod.id, pod.namespace))
    return causes


def validate_service(service: Service, *, others: Iterable[Service] = ()) -> list[Cause]:
    """id a DNS-952 label, namespace, port, protocol, a non-empty selector, label keys;
    an external load balancer's port must not be another such service's (``others``:
    the services already stored in the namespace)."""
    causes = _check_id(service.id, "id", is_dns952_label, f"a DNS-952 label ({DNS_952_HELP})")
    causes += _check_namespace(service.namespace)
    if not is_valid_port(service.port):
        causes.append(_invalid("port", service.port, "must be 1 to 65535"))
    if service.protocol and service.protocol.upper() not in PROTOCOLS:
        causes.append(Cause(Reason.NOT_SUPPORTED, f"unsupported protocol "
                            f"{_show(service.protocol)} (TCP or UDP)", "protocol"))
    if Selector.from_set(service.selector).empty:
        causes.append(_required("selector"))
    causes += _check_label_keys(service.labels, "labels")
    causes += _check_label_keys(service.selector, "selector")
    target = service.container_port
    if isinstance(target, int) and target != 0 and not is_valid_port(target):
        causes.append(_invalid("containerPort", target, "must be 1 to 65535"))
    elif isinstance(target, str) and target and not is_dns_label(target):
        causes.append(_invalid("containerPort", target, "must be a port number or name"))
    if service.portal_ip:
        try:
            ipaddress.IPv4Address(service.portal_ip)
        except ValueError:
            causes.append(_invalid("portalIP", service.portal_ip, "must be an IPv4 address"))
    if service.create_external_load_balancer:
        for other in others:
            if (other.id != service.id and other.create_external_load_balancer
                    and other.port == service.port):
                causes.append(Cause(Reason.DUPLICATE, f"port {service.port} is already used "
                                    f"by the external load balancer of {other.id!r}", "port"))
                break
    return causes


def validate_replication_controller(
    rc: ReplicationController, *, allow_privileged: bool = False
) -> list[Cause]:
    """id, namespace, a non-empty selector, replicas ≥ 0, template labels matching the
    selector, the template manifest (version optional), read-only persistent disks."""
    state = rc.desired_state
    template = state.pod_template
    manifest_path = "desiredState.podTemplate.desiredState.manifest"
    causes = [*_check_id(rc.id, "id"), *_check_namespace(rc.namespace)]
    selector = Selector.from_set(state.replica_selector)
    if selector.empty:
        causes.append(_required("desiredState.replicaSelector"))
    if state.replicas < 0:
        causes.append(_invalid("desiredState.replicas", state.replicas, "must be ≥ 0"))
    if not selector.matches(template.labels):
        causes.append(_invalid("desiredState.podTemplate.labels", template.labels,
                               f"must match the replica selector {str(selector)!r}"))
    causes += _check_label_keys(template.labels, "desiredState.podTemplate.labels")
    causes += validate_manifest(template.desired_state.manifest, manifest_path,
                                allow_privileged=allow_privileged, require_version=False)
    for i, volume in enumerate(template.desired_state.manifest.volumes):
        disk = volume.source.persistent_disk if volume.source else None
        if disk is not None and not disk.read_only:
            causes.append(Cause(Reason.INVALID, "a template's persistent disk must be "
                                "read-only", f"{manifest_path}.volumes[{i}].source."
                                "persistentDisk.readOnly"))
    causes += _check_label_keys(rc.labels, "labels")
    return causes


def validate_minion(minion: Minion) -> list[Cause]:
    """id required, label keys DNS-952."""
    return [*_check_id(minion.id, "id"), *_check_label_keys(minion.labels, "labels")]


def validate_endpoints(endpoints: Endpoints) -> list[Cause]:
    """id (the service's) required, namespace, each endpoint ``host:port``."""
    causes = [*_check_id(endpoints.id, "id"), *_check_namespace(endpoints.namespace)]
    for i, address in enumerate(endpoints.endpoints):
        host, colon, port = address.rpartition(":")
        if not (host and colon and port.isascii() and port.isdigit() and len(port) <= 5
                and is_valid_port(int(port))):
            causes.append(_invalid(f"endpoints[{i}]", address, "must be host:port"))
    return causes


def validate_binding(binding: Binding) -> list[Cause]:
    """podID and host required."""
    return [*_check_id(binding.pod_id, "podID"), *_check_id(binding.host, "host")]


def validate(obj: WireModel, *, allow_privileged: bool = False) -> list[Cause]:
    """Every cause found in ``obj``, by its type; list items get ``items[i].`` paths.
    Kinds without rules (Status, Event) are always valid."""
    if isinstance(obj, Pod):
        return validate_pod(obj, allow_privileged=allow_privileged)
    if isinstance(obj, ContainerManifest):
        return validate_manifest(obj, allow_privileged=allow_privileged)
    if isinstance(obj, BoundPod):
        return validate_bound_pod(obj, allow_privileged=allow_privileged)
    if isinstance(obj, BoundPods):
        return validate_bound_pods(obj, allow_privileged=allow_privileged)
    if isinstance(obj, Service):
        return validate_service(obj)
    if isinstance(obj, ReplicationController):
        return validate_replication_controller(obj, allow_privileged=allow_privileged)
    if isinstance(obj, Minion):
        return validate_minion(obj)
    if isinstance(obj, Endpoints):
        return validate_endpoints(obj)
    if isinstance(obj, Binding):
        return validate_binding(obj)
    items = getattr(obj, "items", None)
    causes: list[Cause] = []
    if isinstance(items, list) and isinstance(obj, (TypeMeta, ContainerManifestList)):
        for i, item in enumerate(items):
            if isinstance(item, WireModel):
                causes += _prefixed(validate(item, allow_privileged=allow_privileged),
                                    f"items[{i}]")
    return causes


def ensure_valid(obj: WireModel, *, allow_privileged: bool = False) -> None:
    """Raise :class:`InvalidObject` with every cause if :func:`validate` finds any."""
    causes = validate(obj, allow_privileged=allow_privileged)
    if causes:
        raise InvalidObject(getattr(obj, "KIND", ""), getattr(obj, "id", ""), causes)


# ---------------------------------------------------------------------------- updates


def _immutable(old: Any, new: Any, field: str) -> list[Cause]:
    if old == new:
        return []
    return [_invalid(field, new, f"may not change (was {_show(old)})")]


def validate_pod_update(old: Pod, new: Pod) -> list[Cause]:
    """id and namespace may not change; once the pod is scheduled (``old`` has a
    desired host) only its labels and its containers' images may change. Defaults are
    applied to both before comparing, so an omitted default is not a change."""
    causes = [*_immutable(old.id, new.id, "id"),
              *_immutable(old.namespace, new.namespace, "namespace")]
    if not old.desired_state.host:
        return causes
    before = apply_defaults(old.desired_state.manifest)
    after = apply_defaults(new.desired_state.manifest)
    path = "desiredState.manifest"
    why = "a scheduled pod may only change labels and container images"
    if len(before.containers) != len(after.containers):
        return [*causes, _invalid(f"{path}.containers", f"{len(after.containers)} containers",
                                  why)]
    for name in ContainerManifest.model_fields:
        if name in ("containers", "kind", "api_version"):
            continue
        if name in ("id", "uuid") and not getattr(after, name):
            continue  # set by the server; an update that leaves them out keeps them
        if getattr(before, name) != getattr(after, name):
            causes.append(Cause(Reason.INVALID, f"may not change: {why}",
                                f"{path}.{json_name(name)}"))
    for i, (was, now) in enumerate(zip(before.containers, after.containers, strict=True)):
        if was.model_copy(update={"image": now.image}) != now:
            causes.append(Cause(Reason.INVALID, f"may not change: {why}",
                                f"{path}.containers[{i}]"))
    return causes


def validate_minion_update(old: Minion, new: Minion) -> list[Cause]:
    """Only labels may change (bookkeeping metadata is not compared)."""
    return [
        *_immutable(old.id, new.id, "id"),
        *_immutable(old.host_ip, new.host_ip, "hostIP"),
        *_immutable(old.resources, new.resources, "resources"),
    ]


def validate_service_update(old: Service, new: Service) -> list[Cause]:
    """id may not change; neither may portalIP once allocated (an empty portalIP in the
    update means "keep it")."""
    causes = _immutable(old.id, new.id, "id")
    if new.portal_ip and old.portal_ip and new.portal_ip != old.portal_ip:
        causes += _immutable(old.portal_ip, new.portal_ip, "portalIP")
    return causes
