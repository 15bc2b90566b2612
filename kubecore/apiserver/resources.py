"""The REST resources of ``/api/v1beta1``: their kinds, keys and selector rules.

Selector rules (KUBERNETES-V05.md section 2): pods take label and field selectors
(fields ``name``, ``DesiredState.Status``, ``DesiredState.Host``); services and
replication controllers take labels only (a field selector is a 400); endpoints reject
any selector; minion lists ignore both. Events take labels (they have none, so any
``=`` term with a value selects nothing) and fields of their involved object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from kubecore.api import (
    Endpoints,
    EndpointsList,
    Event,
    EventList,
    Minion,
    MinionList,
    Pod,
    PodList,
    ReplicationController,
    ReplicationControllerList,
    Service,
    ServiceList,
    TypeMeta,
    pod_fields,
)
from kubecore.apiserver import keys

SelectorPolicy = Literal["filter", "reject", "ignore"]
"""What a list or watch does with a selector: apply it, answer 400, or disregard it."""


@dataclass(frozen=True)
class Resource:
    """One collection under ``/api/v1beta1/<name>``.

    ``namespaced``: objects live in a namespace. ``namespace_in_key``: the namespace is
    a segment of the key (false for events, keyed ``/registry/events/<id>``).
    ``field_values`` maps an object to the fields a field selector may test.
    """

    name: str
    model: type[TypeMeta]
    list_model: type[TypeMeta]
    root: str
    namespaced: bool = True
    namespace_in_key: bool = True
    labels: SelectorPolicy = "filter"
    fields: SelectorPolicy = "reject"
    field_values: Callable[[TypeMeta], Mapping[str, str]] | None = None
    watchable: bool = True

    @property
    def kind(self) -> str:
        return self.model.KIND

    def key(self, namespace: str, id: str) -> str:
        """The key of object ``id`` in ``namespace`` (ignored when not part of the key)."""
        keyed = namespace if self.namespaced and self.namespace_in_key else None
        return keys.object_key(self.root, keyed, id)

    def prefix(self, namespace: str | None) -> str:
        """The prefix to list: one namespace, or every one when ``None``."""
        keyed = namespace if self.namespaced and self.namespace_in_key else None
        return keys.list_prefix(self.root, keyed)

    def self_link(self, id: str = "") -> str:
        base = f"/api/v1beta1/{self.name}"
        return f"{base}/{id}" if id else base


def _pod_fields(obj: TypeMeta) -> Mapping[str, str]:
    assert isinstance(obj, Pod)
    return pod_fields(obj)


def event_fields(obj: TypeMeta) -> Mapping[str, str]:
    """The fields an event field selector can test (v0.5's event attributes)."""
    assert isinstance(obj, Event)
    ref = obj.involved_object
    return {
        "involvedObject.kind": ref.kind,
        "involvedObject.namespace": ref.namespace,
        "involvedObject.name": ref.name,
        "involvedObject.uid": ref.uid,
        "involvedObject.apiVersion": ref.api_version,
        "involvedObject.resourceVersion": ref.resource_version,
        "involvedObject.fieldPath": ref.field_path,
        "status": obj.status,
        "reason": obj.reason,
        "source": obj.source,
    }


PODS = Resource("pods", Pod, PodList, keys.POD_ROOT, fields="filter", field_values=_pod_fields)
SERVICES = Resource("services", Service, ServiceList, keys.SERVICE_ROOT)
CONTROLLERS = Resource(
    "replicationControllers", ReplicationController, ReplicationControllerList,
    keys.CONTROLLER_ROOT,
)
ENDPOINTS = Resource(
    "endpoints", Endpoints, EndpointsList, keys.ENDPOINTS_ROOT, labels="reject"
)
MINIONS = Resource(
    "minions", Minion, MinionList, keys.MINION_ROOT, namespaced=False, labels="ignore",
    fields="ignore", watchable=False,
)
EVENTS = Resource(
    "events", Event, EventList, keys.EVENT_ROOT, namespace_in_key=False, fields="filter",
    field_values=event_fields,
)

RESOURCES: dict[str, Resource] = {
    r.name: r for r in (PODS, SERVICES, CONTROLLERS, ENDPOINTS, MINIONS, EVENTS)
}
"""Every stored resource by its URL name (bindings are a verb, not a collection)."""
