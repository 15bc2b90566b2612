"""Events the kubelet records: pods it refuses (invalid, clashing, hostPort conflicts).

Every event is a v1beta1 ``Event`` whose ``source`` is ``kubelet`` and whose
``involvedObject`` is the pod (kind ``BoundPod``, its id and namespace, or an empty
name when the entry never became a pod, such as a file that does not parse). The
message names the manifest source, the origin (file, URL, key, request) and the field.

The newest ``keep`` events stay readable on the node without a master: the kubelet's
server answers ``GET /events`` with them as an ``EventList``, newest last. With an
apiserver they are also POSTed to ``/api/v1beta1/events`` by :meth:`EventRecorder.run`:
best effort, in order; while the apiserver is unreachable they wait (the oldest are
dropped beyond ``keep``) and are retried with backoff; an apiserver that does not take
events (404/405) is not asked again. Recording never blocks and never fails.

Callers record an event once per distinct problem (the merger and the sync loop
remember what they reported), not on every re-sent snapshot.
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import trio

from kubecore.api import API_VERSION, DEFAULT_NAMESPACE, Event, ObjectReference, is_dns_subdomain
from kubecore.log import get_logger

if TYPE_CHECKING:
    from kubecore.client import ApiClient

log = get_logger("kubecore.kubelet.events")

#: ``reason`` of an event for a pod that failed validation (v0.5's word).
FAILED_VALIDATION = "failedValidation"
#: ``reason`` of an event for a pod whose hostPort another pod on the node holds.
HOST_PORT_CONFLICT = "hostPortConflict"
#: ``reason`` of an event for a pod whose name or uid another source's pod has.
DUPLICATE_POD = "duplicatePod"
SOURCE = "kubelet"


class EventRecorder:
    """Keeps the node's newest ``keep`` events and, given ``client``, sends them to the
    apiserver (see the module docstring). ``retry_min``/``retry_max`` bound the delay
    between attempts while the apiserver does not answer."""

    def __init__(
        self,
        hostname: str,
        client: ApiClient | None = None,
        *,
        keep: int = 100,
        retry_min: float = 0.5,
        retry_max: float = 30.0,
    ) -> None:
        self.hostname = hostname
        self.client = client
        self.retry_min = retry_min
        self.retry_max = retry_max
        self._recent: deque[Event] = deque(maxlen=keep)
        self._pending: deque[Event] = deque(maxlen=keep)
        self._wake = trio.Event()
        self._supported = client is not None
        self.sent = 0

    def record(self, reason: str, message: str, *, pod_id: str = "",
               namespace: str = "", uid: str = "") -> Event:
        """Keep (and queue for the apiserver) one event about pod ``pod_id``."""
        if not is_dns_subdomain(namespace):
            namespace = DEFAULT_NAMESPACE
        event = Event(
            kind="Event",
            api_version=API_VERSION,
            namespace=namespace,
            involved_object=ObjectReference(kind="BoundPod", namespace=namespace, name=pod_id,
                                            uid=uid, api_version=API_VERSION),
            status=reason,
            reason=reason,
            message=f"{message} (node {self.hostname})",
            source=SOURCE,
            timestamp=datetime.now(UTC).replace(microsecond=0),
        )
        self._recent.append(event)
        if self._supported:
            self._pending.append(event)
            self._wake.set()
        return event

    def recent(self) -> list[Event]:
        """The kept events, oldest first."""
        return list(self._recent)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Send queued events to the apiserver until cancelled (returns at once
        without a client)."""
        task_status.started()
        if self.client is None:
            return
        from kubecore.events import Delivery, send_event

        delay = self.retry_min
        while self._supported:
            if not self._pending:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            event = self._pending[0]
            delivery = await send_event(self.client, event)
            if delivery is Delivery.UNSUPPORTED:  # they stay readable at /events
                self._supported = False
                self._pending.clear()
                return
            if delivery is Delivery.UNREACHABLE:  # keep it and try again later
                await trio.sleep(delay)
                delay = min(delay * 2, self.retry_max)
                continue
            if delivery is Delivery.SENT:
                self.sent += 1
            delay = self.retry_min
            if self._pending and self._pending[0] is event:
                self._pending.popleft()
