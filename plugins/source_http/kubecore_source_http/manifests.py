"""Turning a body of manifests into pods: shared by the http, server and etcd sources.

A body is one object or a list of them, in JSON or YAML: a lone ContainerManifest, a
top-level array of manifests, a ``ContainerManifestList``, or a ``BoundPods`` object
(whose items are BoundPods; recognised by its ``items`` when it has no ``kind``).
Each item becomes a pod or a :class:`Rejected` entry on its own, so one bad manifest
never hides the others; only a body that does not decode at all (junk bytes, a YAML
bomb, too deep) is refused as a whole, by raising :class:`InvalidObject`.

Pods made from manifests take the manifest's id (``"1"``, ``"2"``, … by position when
it has none), namespace ``default`` and uid = the manifest's ``uuid``, else
``<id>.<namespace>.<source>`` (unique on the node, stable across re-reads).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kubecore.api import (
    DEFAULT_NAMESPACE,
    BoundPod,
    Cause,
    ContainerManifest,
    InvalidObject,
    PodSpec,
    Reason,
    apply_defaults,
    decode_value,
    load_documents,
    validate_bound_pod,
)
from kubecore.kubelet.sources import Rejected

MAX_BODY_BYTES = 16 * 1024 * 1024
_LIST_KINDS = {"ContainerManifestList": ContainerManifest, "BoundPods": BoundPod}


@dataclass(frozen=True)
class Decoded:
    """What one body holds: its valid pods and its rejected entries, in body order."""

    pods: list[BoundPod]
    rejected: list[Rejected]


def _whole(message: str, origin: str, field: str = "") -> InvalidObject:
    return InvalidObject("", "", [Cause(Reason.INVALID, message, field)], source=origin)


def split_items(data: bytes | str, origin: str) -> tuple[list[tuple[str, Any]], type[Any]]:
    """The raw items of a body, each with its position (``""`` for a lone object,
    ``"[2]"``, ``"items[2]"``), and the model they are to be decoded as.

    Raises :class:`InvalidObject` (``source`` = ``origin``) when the body does not
    decode, holds several documents, or is not an object or an array.
    """
    if len(data) > MAX_BODY_BYTES:
        raise _whole(f"body larger than {MAX_BODY_BYTES} bytes", origin)
    try:
        documents = load_documents(data)
    except InvalidObject as exc:
        exc.source = origin
        raise
    if len(documents) != 1:
        message = "empty body" if not documents else (
            f"expected one object or one list, found {len(documents)} documents")
        raise _whole(message, origin)
    document = documents[0]
    if isinstance(document, list):
        return [(f"[{i}]", item) for i, item in enumerate(document)], ContainerManifest
    if not isinstance(document, dict):
        raise _whole(f"expected an object or a list, got {type(document).__name__}", origin)
    kind = document.get("kind")
    model = _LIST_KINDS.get(kind) if isinstance(kind, str) else None
    if not kind and "items" in document and "containers" not in document:
        model = BoundPod  # a BoundPods object encoded without its kind
    if model is None:
        return [("", document)], ContainerManifest
    items = document.get("items")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise _whole("expected an array", origin, "items")
    return [(f"items[{i}]", item) for i, item in enumerate(items)], model


def _where(origin: str, position: str) -> str:
    return f"{origin} ({position})" if position else origin


def manifest_pod(manifest: ContainerManifest, default_id: str, source: str) -> BoundPod:
    """The defaulted pod of ``manifest`` (not validated)."""
    pod_id = manifest.id or default_id
    return apply_defaults(BoundPod(
        id=pod_id,
        uid=manifest.uuid or f"{pod_id}.{DEFAULT_NAMESPACE}.{source}",
        namespace=DEFAULT_NAMESPACE,
        spec=PodSpec(volumes=manifest.volumes, containers=manifest.containers,
                     restart_policy=manifest.restart_policy),
    ))


def _bound_pod(pod: BoundPod, default_id: str, source: str) -> BoundPod:
    pod = apply_defaults(pod)
    if not pod.id:
        pod.id = default_id
    if not pod.namespace:
        pod.namespace = DEFAULT_NAMESPACE
    if not pod.uid:
        pod.uid = f"{pod.id}.{pod.namespace}.{source}"
    return pod


def decode_pods(data: bytes | str, origin: str, source: str) -> Decoded:
    """Every item of the body at ``origin`` as a pod or a rejected entry.

    Field paths are the body's own: a manifest's ``containers[0].image``, a BoundPod's
    ``spec.containers[0].image``. Raises :class:`InvalidObject` only when the body as a
    whole does not decode (see :func:`split_items`).
    """
    items, model = split_items(data, origin)
    pods: list[BoundPod] = []
    rejected: list[Rejected] = []
    for number, (position, raw) in enumerate(items, start=1):
        where = _where(origin, position)
        try:
            decoded = decode_value(raw, kind=model, source=where)
        except InvalidObject as exc:
            rejected.append(Rejected(where, exc))
            continue
        if isinstance(decoded, ContainerManifest):
            pod = manifest_pod(decoded, str(number), source)
            causes = [Cause(c.reason, c.message, c.field.removeprefix("spec."))
                      for c in validate_bound_pod(pod)]
            kind = "ContainerManifest"
        else:
            pod = _bound_pod(decoded, str(number), source)
            causes = validate_bound_pod(pod)
            kind = "BoundPod"
        if causes:
            rejected.append(Rejected(where, InvalidObject(kind, pod.id, causes, source=where)))
        else:
            pods.append(pod)
    return Decoded(pods, rejected)


def all_causes(rejected: Sequence[Rejected]) -> list[Cause]:
    """Every cause of ``rejected``, fields prefixed by the entry's position in the body
    (``[1].containers[0].image``), for an HTTP answer."""
    causes: list[Cause] = []
    for entry in rejected:
        position = entry.origin.rpartition(" (")[2].rstrip(")") if " (" in entry.origin else ""
        if isinstance(entry.error, str):
            causes.append(Cause(Reason.INVALID, entry.error, position))
            continue
        for cause in entry.error.causes:
            if position and cause.field:
                field = f"{position}.{cause.field}"
            else:
                field = position or cause.field
            causes.append(Cause(cause.reason, cause.message, field))
    return causes
