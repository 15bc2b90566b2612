"""Bindings and each host's list of pods (``BoundPods`` at the host key).

Binding a pod to a host (v0.5's ``assignPod``, with a proper 409 where v0.5 answered
500):

1. compare-and-swap the pod's ``desiredState.host`` from "" to the host; a pod that
   already has a host is a 409 Conflict, a missing pod a 404;
2. build its BoundPod (id, uid, namespace, creationTimestamp, selfLink, and a spec whose
   containers get every service's environment variables appended, see
   :mod:`~kubecore.apiserver.envvars`);
3. compare-and-swap it into the host's ``BoundPods`` (created when absent), refusing a
   hostPort another pod on that host already uses (409 Conflict);
4. if 2 or 3 fails, the pod's host is set back to "".

The host list is also kept current when a bound pod is deleted (its entry is removed)
or its images are updated (its entry's images are rewritten).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import trio
from pydantic import ValidationError

from kubecore.api import (
    API_VERSION,
    DEFAULT_NAMESPACE,
    Binding,
    BoundPod,
    BoundPods,
    Cause,
    Pod,
    PodSpec,
    Reason,
    Service,
    Status,
    validate_binding,
)
from kubecore.apiserver import errors
from kubecore.apiserver.envvars import service_env
from kubecore.apiserver.keys import host_key
from kubecore.apiserver.resources import PODS, SERVICES
from kubecore.apiserver.stored import encode_stored
from kubecore.apiserver.strategy import ensure
from kubecore.log import get_logger
from kubecore.store import Conflict, KeyExists, KeyNotFound

if TYPE_CHECKING:
    from kubecore.apiserver.registry import Registry

log = get_logger("kubecore.apiserver")

MAX_RETRIES = 20


def _binding_causes(binding: Binding) -> list[Cause]:
    causes = validate_binding(binding)
    for field, value in (("podID", binding.pod_id), ("host", binding.host)):
        if "/" in value or value in (".", "..") or value != value.strip():
            causes.append(Cause(Reason.INVALID, f"invalid value {value!r}: must not contain "
                                "'/' or spaces, or be '.' or '..'", field))
    return causes


async def bind(registry: Registry, binding: Binding, namespace: str | None) -> Status:
    """Assign ``binding.pod_id`` (in ``namespace``) to ``binding.host``; see the module
    docstring. Answers ``Status`` Success."""
    if namespace and binding.namespace and binding.namespace != namespace:
        raise errors.StatusError(409, errors.CONFLICT,
                                 f"the namespace of the binding ({binding.namespace!r}) does "
                                 f"not match the namespace of the request ({namespace!r})")
    ns = namespace or binding.namespace or DEFAULT_NAMESPACE
    ensure(binding, _binding_causes(binding))
    pod, revision = await _assign(registry, ns, binding.pod_id, binding.host)
    try:
        services, _ = await registry.list_raw(SERVICES.name)
        bound = bound_pod(pod, [cast(Service, s) for s in services])
        await add_bound_pod(registry, binding.host, bound)
    except BaseException:
        with trio.CancelScope(shield=True):
            try:
                await _unassign(registry, ns, binding.pod_id, binding.host)
            except Exception as exc:  # the original error is the one to report
                log.error("could not reset the host of a pod whose binding failed",
                          pod=binding.pod_id, namespace=ns, error=str(exc))
        raise
    await _drop_if_gone(registry, ns, binding.pod_id, binding.host, revision)
    # Debug: the scheduler logs each placement; a line per bind here would double it.
    log.debug("pod bound", pod=binding.pod_id, namespace=ns, host=binding.host)
    return errors.success("binding", binding.pod_id)


async def _assign(
    registry: Registry, namespace: str, pod_id: str, host: str
) -> tuple[Pod, int]:
    """The pod with its host set, and the revision that wrote it."""
    key = PODS.key(namespace, pod_id)
    for _ in range(MAX_RETRIES):
        kv = await registry.store.get(key)
        if kv is None:
            raise errors.not_found("Pod", pod_id)
        pod = registry.read_shared(PODS, kv)  # not changed: _with_host copies
        if not isinstance(pod, Pod):
            raise errors.StatusError(500, errors.INTERNAL_ERROR,
                                     f"the stored value at {key} is not a valid Pod")
        if pod.desired_state.host:
            raise errors.StatusError(
                409, errors.CONFLICT,
                f'pod "{pod_id}" is already assigned to host "{pod.desired_state.host}"',
                kind="pod", id=pod_id)
        assigned = _with_host(pod, host)
        value = encode_stored(assigned)
        registry.remember(PODS, key, value, assigned)  # every pod watch reads it
        try:
            written = await registry.store.update(key, value, kv.mod_revision)
        except Conflict:
            continue  # changed meanwhile (a status update, another binding): look again
        except KeyNotFound:
            raise errors.not_found("Pod", pod_id) from None
        return assigned, written.mod_revision
    raise errors.conflict("Pod", pod_id, "too many concurrent writers; retry")


async def _unassign(registry: Registry, namespace: str, pod_id: str, host: str) -> None:
    key = PODS.key(namespace, pod_id)
    for _ in range(MAX_RETRIES):
        kv = await registry.store.get(key)
        pod = registry.read(PODS, kv) if kv is not None else None
        if kv is None or not isinstance(pod, Pod) or pod.desired_state.host != host:
            return
        try:
            await registry.store.update(key, encode_stored(_with_host(pod, "")), kv.mod_revision)
        except Conflict:
            continue
        except KeyNotFound:
            return
        return


async def _drop_if_gone(
    registry: Registry, namespace: str, pod_id: str, host: str, revision: int
) -> None:
    """Undo the host list entry of a pod deleted (or reset) while it was being bound: its
    delete may have looked at the host list before the entry was added. ``revision``
    is the binding's write: a pod still at it needs no decoding to be known bound."""
    kv = await registry.store.get(PODS.key(namespace, pod_id))
    if kv is not None and kv.mod_revision == revision:
        return
    pod = registry.read_shared(PODS, kv) if kv is not None else None
    if not isinstance(pod, Pod) or pod.desired_state.host != host:
        await remove_bound_pod(registry, host, namespace, pod_id)


def _with_host(pod: Pod, host: str) -> Pod:
    return pod.model_copy(update={
        "desired_state": pod.desired_state.model_copy(update={"host": host})
    })


def bound_pod(pod: Pod, services: list[Service]) -> BoundPod:
    """What the host's kubelet receives for ``pod``: no labels; containers with every
    service's variables appended to their environment.

    The result shares the parts it does not change with ``pod`` (it is built to be
    encoded, once per binding): change neither."""
    manifest = pod.desired_state.manifest
    env = service_env(services)
    containers = [
        container.model_copy(update={"env": [*container.env, *env]})
        for container in manifest.containers
    ]
    return BoundPod(
        id=pod.id,
        uid=pod.uid,
        namespace=pod.namespace or DEFAULT_NAMESPACE,
        creation_timestamp=pod.creation_timestamp,
        self_link=f"/api/v1beta1/boundPods/{pod.id}",
        spec=PodSpec(
            volumes=list(manifest.volumes),
            containers=containers,
            restart_policy=manifest.restart_policy,
        ),
    )


def _host_ports(pod: BoundPod) -> set[int]:
    return {port.host_port for c in pod.spec.containers for port in c.ports if port.host_port}


def _same(pod: BoundPod, namespace: str, id: str) -> bool:
    return pod.id == id and (pod.namespace or DEFAULT_NAMESPACE) == namespace


def _decode_host_list(key: str, value: bytes) -> BoundPods:
    try:
        return BoundPods.model_validate_json(value)
    except (ValidationError, ValueError):
        raise errors.StatusError(500, errors.INTERNAL_ERROR,
                                 f"the value at {key} is not a BoundPods object") from None


def _encode_host_list(pods: BoundPods) -> bytes:
    listed = pods.model_copy(update={"kind": BoundPods.KIND, "api_version": API_VERSION})
    return listed.model_dump_json(by_alias=True, exclude_unset=True,
                                  exclude={"resource_version"}).encode()


async def _edit_host_list(
    registry: Registry,
    host: str,
    edit: Callable[[list[BoundPod]], list[BoundPod] | None],
    *,
    create: bool,
) -> None:
    """Compare-and-swap the host's list through ``edit`` (which returns the new items, or
    ``None`` for "no change"); an absent list is created only when ``create``."""
    key = host_key(registry.host_key, host)
    for _ in range(MAX_RETRIES):
        kv = await registry.store.get(key)
        if kv is None:
            if not create:
                return
            items = edit([])
            if items is None:
                return
            try:
                await registry.store.create(key, _encode_host_list(
                    BoundPods(host=host, items=items)))
            except KeyExists:
                continue
            return
        current = _decode_host_list(key, kv.value)
        items = edit(list(current.items))
        if items is None:
            return
        updated = current.model_copy(update={"host": host, "items": items})
        try:
            await registry.store.update(key, _encode_host_list(updated), kv.mod_revision)
        except (Conflict, KeyNotFound):
            continue
        return
    raise errors.StatusError(409, errors.CONFLICT,
                             f"the pod list of host {host!r} is changing too fast; retry")


def _port_clash(pod: BoundPod, host: str, clash: set[int], other: str) -> errors.StatusError:
    return errors.StatusError(
        409, errors.CONFLICT,
        f'pod "{pod.id}" cannot be bound to host "{host}": host port '
        f'{min(clash)} is already used there by pod "{other}"',
        kind="pod", id=pod.id)


@dataclass(frozen=True)
class _Entry:
    """One item of a plain host list: who it is, the host ports it uses, its JSON."""

    id: str
    namespace: str
    ports: frozenset[int]
    json: bytes


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class PlainHostList:
    """A host list in the shape this module writes, kept as plain parts: the fields
    besides ``items``, and each item's identity, host ports and JSON. Binding appends to
    lists of many pods: decoding every entry into models (or even parsing all of it)
    each time would cost more than the rest of the binding."""

    header: dict[str, Any]
    entries: tuple[_Entry, ...]

    def encode(self) -> bytes:
        head = _dumps(self.header)
        items = b'"items":[' + b",".join(entry.json for entry in self.entries) + b"]}"
        return head[:-1] + (b"," if len(head) > 2 else b"") + items


def _plain_host_list(value: bytes) -> PlainHostList | None:
    """The stored host list as a :class:`PlainHostList` when it has the shape this
    module writes; ``None`` for anything else (the models then read it, or refuse it)."""
    try:
        data = json.loads(value)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("kind", BoundPods.KIND) != BoundPods.KIND:
        return None
    items = data.pop("items", None) or []
    if not isinstance(items, list):
        return None
    entries: list[_Entry] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            return None
        used: set[int] = set()
        spec = item.get("spec") or {}
        containers = spec.get("containers") or [] if isinstance(spec, dict) else None
        if not isinstance(containers, list):
            return None
        for container in containers:
            listed = container.get("ports") or [] if isinstance(container, dict) else None
            if not isinstance(listed, list):
                return None
            for port in listed:
                number = port.get("hostPort") if isinstance(port, dict) else None
                if number is not None and (not isinstance(number, int) or isinstance(
                        number, bool)):
                    return None
                if number:
                    used.add(number)
        entries.append(_Entry(item["id"], item.get("namespace") or DEFAULT_NAMESPACE,
                              frozenset(used), _dumps(item)))
    return PlainHostList(data, tuple(entries))


class HostLists:
    """The host lists this process wrote last, by key, with the value each was written
    as: the next binding to the host starts from them when the stored value is still
    that one (compared byte for byte), with no parsing."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._lists: OrderedDict[str, tuple[bytes, PlainHostList]] = OrderedDict()

    def get(self, key: str, value: bytes) -> PlainHostList | None:
        known = self._lists.get(key)
        if known is None or known[0] != value:
            return None
        self._lists.move_to_end(key)
        return known[1]

    def put(self, key: str, value: bytes, plain: PlainHostList) -> None:
        self._lists[key] = (value, plain)
        self._lists.move_to_end(key)
        if len(self._lists) > self._size:
            self._lists.popitem(last=False)


async def add_bound_pod(registry: Registry, host: str, pod: BoundPod) -> None:
    """Put ``pod`` in ``host``'s list (replacing a stale entry of the same pod); a
    hostPort already used there by another pod is a 409 Conflict."""
    namespace = pod.namespace or DEFAULT_NAMESPACE
    wanted = _host_ports(pod)
    entry = _Entry(pod.id, namespace, frozenset(wanted),
                   _dumps(pod.model_dump(mode="json", by_alias=True, exclude_unset=True)))
    key = host_key(registry.host_key, host)
    for _ in range(MAX_RETRIES):
        kv = await registry.store.get(key)
        plain: PlainHostList | None
        if kv is None:
            plain = PlainHostList({}, ())
        else:
            plain = registry.host_lists.get(key, kv.value) or _plain_host_list(kv.value)
            if plain is None:
                break  # not a list this module wrote: edit it through the models
        kept = []
        for other in plain.entries:
            if other.id == pod.id and other.namespace == namespace:
                continue
            if wanted & other.ports:
                raise _port_clash(pod, host, set(wanted & other.ports), other.id)
            kept.append(other)
        header = {name: field for name, field in plain.header.items()
                  if name != "resourceVersion"}
        header.update(kind=BoundPods.KIND, apiVersion=API_VERSION, host=host)
        updated = PlainHostList(header, (*kept, entry))
        value = updated.encode()
        try:
            if kv is None:
                await registry.store.create(key, value)
            else:
                await registry.store.update(key, value, kv.mod_revision)
        except (KeyExists, Conflict, KeyNotFound):
            continue  # changed meanwhile: look again
        registry.host_lists.put(key, value, updated)
        return
    else:
        raise errors.StatusError(409, errors.CONFLICT,
                                 f"the pod list of host {host!r} is changing too fast; retry")

    def edit(items: list[BoundPod]) -> list[BoundPod]:
        others = [item for item in items if not _same(item, namespace, pod.id)]
        for other in others:
            clash = wanted & _host_ports(other)
            if clash:
                raise _port_clash(pod, host, clash, other.id)
        return [*others, pod]

    await _edit_host_list(registry, host, edit, create=True)


async def remove_bound_pod(registry: Registry, host: str, namespace: str, id: str) -> None:
    """Take pod ``id`` out of ``host``'s list (nothing happens if it is not there)."""

    def edit(items: list[BoundPod]) -> list[BoundPod] | None:
        kept = [item for item in items if not _same(item, namespace, id)]
        return kept if len(kept) != len(items) else None

    await _edit_host_list(registry, host, edit, create=False)


async def rewrite_images(registry: Registry, host: str, pod: Pod) -> None:
    """Give ``pod``'s entry in ``host``'s list the images of its (updated) manifest."""
    namespace = pod.namespace or DEFAULT_NAMESPACE
    images = {c.name: c.image for c in pod.desired_state.manifest.containers}

    def edit(items: list[BoundPod]) -> list[BoundPod] | None:
        changed = False
        result = []
        for item in items:
            if _same(item, namespace, pod.id):
                containers = []
                for container in item.spec.containers:
                    image = images.get(container.name, container.image)
                    if image != container.image:
                        container = container.model_copy(update={"image": image})
                        changed = True
                    containers.append(container)
                item = item.model_copy(update={
                    "spec": item.spec.model_copy(update={"containers": containers})
                })
            result.append(item)
        return result if changed else None

    await _edit_host_list(registry, host, edit, create=False)
