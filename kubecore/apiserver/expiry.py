"""Event expiry: events are deleted ``apiserver.event_ttl`` seconds after their creation.

v0.5 wrote each event with an etcd TTL (``-event_ttl``, 48 hours), so events never
piled up. The Store contract has no TTLs (SQLite has none), so the apiserver sweeps
instead: every :func:`sweep_interval` it deletes the events created more than the TTL
ago, through the registry (watchers of events see them DELETED, as an etcd expiry
showed them). An event therefore lives between the TTL and the TTL plus one interval.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, cast

import trio

from kubecore.api import DEFAULT_NAMESPACE, Event
from kubecore.apiserver import errors
from kubecore.apiserver.resources import EVENTS
from kubecore.log import get_logger
from kubecore.store import StoreError

if TYPE_CHECKING:
    from kubecore.apiserver.registry import Registry

log = get_logger("kubecore.apiserver")

DEFAULT_EVENT_TTL = 48 * 3600.0
MAX_SWEEP_INTERVAL = 600.0


def sweep_interval(ttl: float) -> float:
    """Seconds between sweeps for ``ttl``: half of it, at most ten minutes."""
    return min(ttl / 2, MAX_SWEEP_INTERVAL)


async def expire_events(registry: Registry, ttl: float, *, now: datetime | None = None) -> int:
    """Delete every event created more than ``ttl`` seconds before ``now`` (default:
    the current time); returns how many were deleted. One already gone is skipped;
    a store error propagates."""
    cutoff = (now or datetime.now(UTC)) - timedelta(seconds=ttl)
    events, _ = await registry.list_raw(EVENTS.name)
    deleted = 0
    for event in cast(list[Event], events):
        created = event.creation_timestamp
        if created is None or created > cutoff:
            continue
        try:
            await registry.delete(EVENTS.name, event.id,
                                  namespace=event.namespace or DEFAULT_NAMESPACE)
        except errors.StatusError as exc:
            if exc.code != 404:
                raise
            continue
        deleted += 1
    return deleted


async def run_event_expiry(registry: Registry, ttl: float) -> None:
    """Sweep every :func:`sweep_interval` until cancelled; a failed sweep is logged
    and tried again at the next one."""
    interval = sweep_interval(ttl)
    while True:
        await trio.sleep(interval)
        try:
            deleted = await expire_events(registry, ttl)
        except (StoreError, errors.StatusError) as exc:
            log.warning("expiring events failed; retrying", error=str(exc), retry_in=interval)
            continue
        if deleted:
            log.info("events expired", count=deleted, ttl=ttl)
