"""Events: an id and a timestamp by default; namespaced, but keyed by id alone (v0.5)."""

from __future__ import annotations

from typing import cast

from kubecore.api import Cause, Event, Reason, TypeMeta, apply_defaults, is_dns_subdomain
from kubecore.apiserver.resources import EVENTS
from kubecore.apiserver.strategy import Strategy, ensure, keep_identity, key_causes, new_uid, now


def _event_causes(event: Event) -> list[Cause]:
    causes = key_causes(event)
    if not is_dns_subdomain(event.namespace):
        causes.append(Cause(Reason.INVALID, f"invalid value {event.namespace!r}: must be a "
                            "DNS subdomain", "namespace"))
    return causes


class EventStrategy(Strategy):
    """An empty id becomes a new UUID and an empty ``timestamp`` the creation time.
    Events are deleted ``apiserver.event_ttl`` after their creation (see
    :mod:`kubecore.apiserver.expiry`)."""

    resource = EVENTS

    async def prepare_create(self, obj: TypeMeta) -> TypeMeta:
        event = apply_defaults(cast(Event, obj))
        event.uid = new_uid()
        if not event.id:
            event.id = event.uid
        event.creation_timestamp = now()
        if event.timestamp is None:
            event.timestamp = event.creation_timestamp
        ensure(event, _event_causes(event))
        return event

    async def prepare_update(self, old: TypeMeta, new: TypeMeta) -> TypeMeta:
        event = apply_defaults(cast(Event, new))
        keep_identity(old, event)
        ensure(event, _event_causes(event))
        return event
