"""Sending ``Event`` objects to the apiserver: one rule for every component that records
them (the kubelet's refused pods, the scheduler's placements and misfits).

An event is worth little next to the work it describes, so sending one never raises:
:func:`send_event` says what happened and the caller decides whether to retry, drop
the event, or stop sending (an apiserver that answers 404/405 takes no events at all).
"""

from __future__ import annotations

import enum

from kubecore.api import Event
from kubecore.client import ApiClient, ApiError, ClientError
from kubecore.log import get_logger

log = get_logger("kubecore.events")


class Delivery(enum.Enum):
    """What became of one event sent to the apiserver."""

    SENT = "sent"
    #: the apiserver takes no events (404/405): do not ask it again
    UNSUPPORTED = "unsupported"
    #: the apiserver refused this event (logged); others may still be taken
    REJECTED = "rejected"
    #: no answer (connection refused, timeout): worth trying again later
    UNREACHABLE = "unreachable"


async def send_event(client: ApiClient, event: Event) -> Delivery:
    """POST ``event`` to its namespace's ``/events``; never raises a client error."""
    try:
        await client.create(event, namespace=event.namespace)
    except ApiError as exc:
        if exc.code in (404, 405):
            log.info("the apiserver does not take events; not sending more")
            return Delivery.UNSUPPORTED
        log.warning("event not recorded", reason=event.reason, error=str(exc))
        return Delivery.REJECTED
    except ClientError as exc:
        log.debug("event not sent", reason=event.reason, error=str(exc))
        return Delivery.UNREACHABLE
    return Delivery.SENT
