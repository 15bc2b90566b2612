"""The store's key layout (KUBERNETES-V05.md section 3), and the host key of DESIGN.md.

| key | value |
|---|---|
| ``/registry/pods/<ns>/<id>`` | Pod |
| ``/registry/controllers/<ns>/<id>`` | ReplicationController |
| ``/registry/services/specs/<ns>/<id>`` | Service |
| ``/registry/services/endpoints/<ns>/<id>`` | Endpoints |
| ``/registry/minions/<id>`` | Minion |
| ``/registry/events/<id>`` | Event (its namespace is in the object) |
| ``host_key`` template, ``{host}`` replaced | BoundPods of that host |

Values are v1beta1 JSON without ``resourceVersion`` (the key's ``mod_revision`` is the
truth) and without ``selfLink``. A list of a namespaced kind reads the prefix
``<root>/<ns>/``, or ``<root>/`` for every namespace.
"""

from __future__ import annotations

POD_ROOT = "/registry/pods"
CONTROLLER_ROOT = "/registry/controllers"
SERVICE_ROOT = "/registry/services/specs"
ENDPOINTS_ROOT = "/registry/services/endpoints"
MINION_ROOT = "/registry/minions"
EVENT_ROOT = "/registry/events"

DEFAULT_HOST_KEY = "/registry/hosts/{host}/kubelet"
"""Where a host's BoundPods live (the 2014 design overview's key; kubecore's default)."""

V05_HOST_KEY = "/registry/nodes/{host}/boundpods"
"""The same list where Kubernetes v0.5 kept it."""


def object_key(root: str, namespace: str | None, id: str) -> str:
    """The key of one object; ``namespace`` is ``None`` for kinds keyed without one."""
    return f"{root}/{namespace}/{id}" if namespace is not None else f"{root}/{id}"


def list_prefix(root: str, namespace: str | None) -> str:
    """The prefix holding the objects of one namespace, or of all when ``None``."""
    return f"{root}/{namespace}/" if namespace is not None else f"{root}/"


def host_key(template: str, host: str) -> str:
    """The key of ``host``'s BoundPods under ``template`` (which holds ``{host}``)."""
    return template.replace("{host}", host)


def check_host_key_template(template: str) -> str:
    """``template`` if it is usable as a host key template, else ``ValueError``."""
    if template.count("{host}") != 1:
        raise ValueError("host_key must contain {host} exactly once")
    if not template.startswith("/"):
        raise ValueError("host_key must start with '/'")
    return template
