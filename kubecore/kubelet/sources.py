"""The manifest source contract: what a ``kubecore_manifest_sources`` hook returns.

Each source sends full snapshots of the pods it wants on this node, never deltas: the
kubelet's merger keeps one map per source and owns the desired state. A snapshot may
carry rejected entries (a file that does not parse, a manifest that fails validation);
the merger logs them and records an event naming the source, the origin and the field,
while the source's valid pods are used as usual.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from kubecore.api import BoundPod, InvalidObject


@dataclass(frozen=True)
class Rejected:
    """An entry a source could not turn into a pod: where it came from and why."""

    origin: str  # a file path, a URL, an etcd key, "POST /containers[2]"
    error: InvalidObject | str


@dataclass(frozen=True)
class Snapshot:
    """Everything one source wants on this node right now."""

    pods: Sequence[BoundPod]
    rejected: Sequence[Rejected] = field(default_factory=tuple)


@runtime_checkable
class ManifestSource(Protocol):
    """``name`` is the source's name in pod full names (``<id>.<namespace>.<name>``)."""

    name: str

    def snapshots(self) -> AsyncIterator[Snapshot]:
        """Yield a snapshot at start (once the origin answers) and after each change.

        While the origin is unreachable the iterator yields nothing and retries, so the
        last good snapshot stays in force; it ends only when cancelled.
        """
        ...


@runtime_checkable
class RouteProvider(Protocol):
    """Optional: a source that receives manifests over HTTP exposes Starlette routes,
    which the kubelet mounts on its own server (v0.5's ``POST /container``)."""

    def routes(self) -> Sequence[BaseRoute]:
        """The routes to mount; called once when the kubelet's server starts."""
        ...
