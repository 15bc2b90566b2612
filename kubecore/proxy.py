"""The service proxy contract: what a ``kubecore_proxier`` plugin returns.

The proxy's config loop (apiserver watch, etcd or a file) hands the proxier the full
set of services and endpoints every time anything changes; the proxier opens, reopens
and closes listeners to match and forwards each new connection to one endpoint.

A service is identified by :func:`service_key` (namespace and name); the
``Endpoints`` object with the same key lists its backends as ``host:port`` strings
(:func:`parse_endpoint`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import trio

if TYPE_CHECKING:
    from kubecore.api import Endpoints, Service

DEFAULT_NAMESPACE = "default"  # as kubecore.api.DEFAULT_NAMESPACE

ServiceKey = tuple[str, str]
"""``(namespace, name)`` of a service; an empty namespace counts as ``default``."""


def service_key(obj: Service | Endpoints) -> ServiceKey:
    """The key a service and its endpoints share: ``(namespace or "default", id)``."""
    return (obj.namespace or DEFAULT_NAMESPACE, obj.id)


def parse_endpoint(text: str) -> tuple[str, int] | None:
    """``"127.0.0.1:80"`` or ``"[::1]:80"`` -> ``(host, port)``; ``None`` when it is not a
    host and a port in 1..65535 (such endpoints are skipped, as v0.5 skipped port 0)."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host or not port_text.isdigit():
        return None
    port = int(port_text)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not 0 < port < 65536:
        return None
    return host, port


@runtime_checkable
class Proxier(Protocol):
    """Forwards each service's traffic to its endpoints.

    Contract:

    - ``run`` serves until cancelled; every listener and connection lives in its
      nursery and is closed when it returns.
    - ``apply`` may be called at any time, also before ``run`` has started (the last
      call is then applied when it starts); calls are serialised and idempotent.
    - A service that cannot be served (invalid port or protocol, address in use) is
      reported in the log and skipped; it never fails ``apply`` or the other services.
    """

    name: str

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; call ``task_status.started()`` once the listeners of
        the last applied configuration are open."""
        ...

    async def apply(self, services: Sequence[Service], endpoints: Sequence[Endpoints]) -> None:
        """Make the listeners match ``services`` and route to ``endpoints`` (full sets).

        A changed service reopens only its own listener; a removed one stops accepting
        while its open connections finish; endpoint changes apply to new connections.
        When it returns, listeners for the new set are open (or reported as failed).
        """
        ...
