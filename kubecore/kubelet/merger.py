"""The merger: the sources' full snapshots -> the node's one desired state.

Each source's snapshot replaces that source's map (keyed by pod full name
``<id>.<namespace>.<source>``). Pods are defaulted (the namespace to ``default``, for
every source), validated (the id must be a DNS subdomain) and annotated with
``kubernetes/config.source``; an invalid pod, a source's rejected entry, or a pod whose
full name or uid another pod already has is dropped with one log line and one event
(see :mod:`kubecore.kubelet.events`) naming the source, the origin and the field, and
nothing else is affected. Both are made when a problem first appears, not again while a
source keeps re-sending it. Sources are ranked in
the order they were registered: on a clash the earlier one wins.

The result is published as a :class:`DesiredState` in a :class:`Latest` cell; the sync
loop only ever needs the newest one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import trio

from kubecore.api import BoundPod, Cause, InvalidObject, apply_defaults, validate_bound_pod
from kubecore.kubelet.events import DUPLICATE_POD, FAILED_VALIDATION, EventRecorder
from kubecore.kubelet.naming import SOURCE_ANNOTATION, full_name
from kubecore.kubelet.sources import Snapshot
from kubecore.log import get_logger

log = get_logger("kubecore.kubelet.merger")

T = TypeVar("T")


class Latest(Generic[T]):
    """A versioned cell holding the newest value; readers wait for a newer version.

    Writers never block and readers never see a stale value once they wake: missed
    intermediate values are skipped on purpose.
    """

    def __init__(self, value: T) -> None:
        self.value = value
        self.version = 0
        self._changed = trio.Event()

    def set(self, value: T) -> None:
        self.value = value
        self.version += 1
        self._changed.set()
        self._changed = trio.Event()

    async def wait_newer(self, version: int) -> tuple[int, T]:
        """Return ``(version, value)`` as soon as the version is above ``version``."""
        while self.version <= version:
            await self._changed.wait()
        return self.version, self.value


@dataclass(frozen=True)
class DesiredPod:
    """A pod the node should run: defaulted, validated, annotated with its source."""

    full_name: str
    source: str
    pod: BoundPod

    @property
    def uid(self) -> str:
        return self.pod.uid


@dataclass(frozen=True)
class DesiredState:
    """The union of every source's pods, in source order then snapshot order.

    ``sources`` names every registered source; ``reported`` those that have sent at
    least one snapshot. Pods of a source that has not reported yet are neither known
    nor to be removed: the sync loop leaves them alone.
    """

    pods: Mapping[str, DesiredPod] = field(default_factory=dict)
    sources: frozenset[str] = frozenset()
    reported: frozenset[str] = frozenset()

    def by_uid(self) -> dict[str, DesiredPod]:
        return {pod.uid: pod for pod in self.pods.values()}


def _first_field(error: InvalidObject | str) -> str:
    if isinstance(error, InvalidObject):
        return next((cause.field for cause in error.causes if cause.field), "")
    return ""


def _problems(error: InvalidObject | str) -> str:
    return "; ".join(str(c) for c in error.causes) if isinstance(error, InvalidObject) else error


class Merger:
    """Keeps one pod map per registered source and publishes their union.

    ``register`` a source (in rank order) before its first snapshot; ``update`` is
    synchronous and publishes at once. Rejections go to ``events`` when given.
    """

    def __init__(self, events: EventRecorder | None = None) -> None:
        self.events = events
        self.desired: Latest[DesiredState] = Latest(DesiredState())
        self._order: list[str] = []  # registration keys, in rank order
        self._names: dict[str, str] = {}  # key -> source name
        self._maps: dict[str, dict[str, DesiredPod]] = {}
        self._reported: set[str] = set()
        self._logged: dict[str, set[tuple[str, str]]] = {}
        self._clashes: set[tuple[str, str]] = set()

    def register(self, name: str) -> str:
        """Add a source named ``name``; returns its key for :meth:`update` (two source
        objects may share a name, as v0.5's manifest URL and HTTP endpoint did)."""
        key = f"{name}#{len(self._order)}"
        self._order.append(key)
        self._names[key] = name
        self._maps[key] = {}
        self._logged[key] = set()
        self._publish()
        return key

    def update(self, key: str, snapshot: Snapshot) -> DesiredState:
        """Replace source ``key``'s pods with ``snapshot``'s valid ones; publish."""
        source = self._names[key]
        problems: list[tuple[str, InvalidObject | str, BoundPod | None]] = [
            (rej.origin, rej.error, None) for rej in snapshot.rejected
        ]
        pods: dict[str, DesiredPod] = {}
        for i, raw in enumerate(snapshot.pods):
            origin = f"pods[{i}] ({raw.id})" if raw.id else f"pods[{i}]"
            pod = apply_defaults(raw)
            causes = validate_bound_pod(pod)
            if not pod.uid:
                causes.append(Cause("FieldValueRequired", "required value", "uid"))
            if causes:
                problems.append((origin, InvalidObject("BoundPod", pod.id, causes), pod))
                continue
            name = full_name(pod, source)
            if name in pods:
                problems.append(
                    (origin, f"duplicate pod {name} in the snapshot; first kept", pod)
                )
                continue
            pod.annotations = {**pod.annotations, SOURCE_ANNOTATION: source}
            pods[name] = DesiredPod(full_name=name, source=source, pod=pod)
        self._report(key, source, problems)
        self._maps[key] = pods
        self._reported.add(key)
        return self._publish()

    def _report(
        self,
        key: str,
        source: str,
        problems: Sequence[tuple[str, InvalidObject | str, BoundPod | None]],
    ) -> None:
        # Sources re-send unchanged snapshots; a problem is reported when it first appears.
        seen: set[tuple[str, str]] = set()
        for origin, error, pod in problems:
            text = _problems(error)
            seen.add((origin, text))
            if (origin, text) in self._logged[key]:
                continue
            field_path = _first_field(error)
            log.warning("pod rejected", source=source, origin=origin, field=field_path,
                        error=text)
            if self.events is not None:
                where = f" field {field_path}:" if field_path else ""
                self.events.record(
                    FAILED_VALIDATION,
                    f"pod from source {source!r} rejected: {origin}:{where} {text}",
                    pod_id=pod.id if pod is not None else "",
                    namespace=pod.namespace if pod is not None else "",
                    uid=pod.uid if pod is not None else "",
                )
        self._logged[key] = seen

    def _publish(self) -> DesiredState:
        merged: dict[str, DesiredPod] = {}
        uids: dict[str, str] = {}
        clashes: set[tuple[str, str]] = set()
        for key in self._order:
            for name, pod in self._maps[key].items():
                if name in merged or pod.uid in uids:
                    other = name if name in merged else uids[pod.uid]
                    clash = "full name" if name in merged else f"uid {pod.uid}"
                    clashes.add((key, name))
                    if (key, name) in self._clashes:
                        continue
                    field_path = "uid" if clash != "full name" else "id"
                    log.warning(
                        "pod ignored: another source has it",
                        source=self._names[key],
                        pod=name,
                        field=field_path,
                        error=f"{clash} already used by {other}",
                    )
                    if self.events is not None:
                        self.events.record(
                            DUPLICATE_POD,
                            f"pod {name} from source {self._names[key]!r} ignored: field"
                            f" {field_path}: {clash} already used by {other}",
                            pod_id=pod.pod.id, namespace=pod.pod.namespace, uid=pod.uid,
                        )
                    continue
                merged[name] = pod
                uids[pod.uid] = name
        self._clashes = clashes
        # A name shared by several sources counts as reported once all of them have.
        waiting = {self._names[key] for key in self._order if key not in self._reported}
        state = DesiredState(
            pods=merged,
            sources=frozenset(self._names.values()),
            reported=frozenset(self._names.values()) - waiting,
        )
        self.desired.set(state)
        return state
